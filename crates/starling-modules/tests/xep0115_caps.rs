//! XEP-0115 Entity Capabilities of the server: the `<c/>` stream feature at both stages, and
//! its `ver` is the §5.1 hash of what disco#info actually answers.
#![allow(dead_code)]

// --- shared test helpers (each test file is its own crate, so they are repeated) ---
use std::sync::Arc;

use starling_core::testing::{self, TestClient};
use starling_core::{Config, Server};
use starling_proto::{StanzaError, StanzaErrorCondition};
use starling_xml::{ns, parse_document, Element, Limits};

fn xml(s: &str) -> Element {
    parse_document(s.as_bytes(), ns::CLIENT, &Limits::default()).expect("test XML")
}

async fn server_with(config: Config) -> Arc<Server> {
    let server = testing::server(config, starling_modules::default_modules()).await;
    testing::create_account(&server, "juliet@localhost", "pw").await;
    testing::create_account(&server, "romeo@localhost", "pw").await;
    server
}

async fn server() -> Arc<Server> {
    server_with(Config::default()).await
}

/// Sends an IQ and returns the reply with its id, skipping whatever else arrives first.
async fn iq(c: &mut TestClient, stanza: &str) -> Element {
    let el = xml(stanza);
    let id = el.attr("id").expect("test IQ has an id").to_string();
    c.send(el).await.expect("send");
    loop {
        let got = c.recv().await;
        if got.name() == "iq" && got.attr("id") == Some(id.as_str()) {
            return got;
        }
    }
}

fn condition(reply: &Element) -> Option<StanzaErrorCondition> {
    reply
        .get_child("error", ns::CLIENT)
        .and_then(StanzaError::from_element)
        .map(|e| e.condition)
}
// --- end of helpers ---

use starling_core::FeatureStage;
use starling_modules::services::caps::{self, CapsIdentity};

const INFO: &str = "http://jabber.org/protocol/disco#info";
const CAPS: &str = "http://jabber.org/protocol/caps";

fn caps_feature(server: &Server, stage: FeatureStage) -> Element {
    server
        .hooks
        .features(stage)
        .find(|f| f.is("c", CAPS))
        .expect("caps stream feature")
        .clone()
}

#[tokio::test]
async fn offered_before_and_after_authentication() {
    let server = server().await;
    let pre = caps_feature(&server, FeatureStage::PreAuth);
    let post = caps_feature(&server, FeatureStage::PostAuth);
    assert_eq!(pre, post);
    assert_eq!(pre.attr("hash"), Some("sha-1"));
    assert_eq!(pre.attr("node"), Some(caps::NODE));
    assert_eq!(
        pre.attr("ver"),
        Some(caps::registry_ver(&server.disco).as_str())
    );
}

#[tokio::test]
async fn ver_matches_the_disco_answer() {
    let server = server().await;
    let ver = caps_feature(&server, FeatureStage::PostAuth)
        .attr("ver")
        .expect("ver")
        .to_string();
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let r = iq(
        &mut juliet,
        "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    .await;
    let q = r.get_child("query", INFO).expect("query");
    // Recompute as a verifying client would (XEP-0115 §5.4) from the reply alone.
    let ids: Vec<CapsIdentity<'_>> = q
        .children()
        .filter(|c| c.is("identity", INFO))
        .map(|c| CapsIdentity {
            category: c.attr("category").unwrap_or_default(),
            kind: c.attr("type").unwrap_or_default(),
            lang: c.attr("xml:lang").unwrap_or_default(),
            name: c.attr("name").unwrap_or_default(),
        })
        .collect();
    let feats: Vec<&str> = q
        .children()
        .filter(|c| c.is("feature", INFO))
        .filter_map(|c| c.attr("var"))
        .collect();
    let forms: Vec<Element> = q
        .children()
        .filter(|c| c.is("x", "jabber:x:data"))
        .cloned()
        .collect();
    let s = caps::verification_string(&ids, &feats, &forms);
    assert_eq!(caps::hash_ver(&s), ver, "S = {s}");
}

#[tokio::test]
async fn ver_changes_with_the_feature_set() {
    let full = server().await;
    let only = testing::server(
        Config::default(),
        vec![
            Arc::new(starling_modules::services::disco::Disco),
            Arc::new(caps::Caps),
        ],
    )
    .await;
    let a = caps_feature(&full, FeatureStage::PostAuth);
    let b = caps_feature(&only, FeatureStage::PostAuth);
    assert_ne!(a.attr("ver"), b.attr("ver"));
    // disco alone: server/im Starling + disco#info + disco#items.
    let s = "server/im//Starling<http://jabber.org/protocol/disco#info<\
             http://jabber.org/protocol/disco#items<";
    assert_eq!(b.attr("ver"), Some(caps::hash_ver(s).as_str()));
}
