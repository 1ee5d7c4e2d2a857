//! XEP-0115 Entity Capabilities of the server: the `<c/>` stream feature at both stages, and
//! its `ver` is the §5.1 hash of what disco#info actually answers.

mod support;

use std::sync::Arc;

use starling_core::testing::TestClient;
use starling_core::{Config, FeatureStage, Server};
use starling_modules::services::caps::{self, CapsIdentity};
use starling_xml::Element;
use support::*;

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
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let r = iq_get(
        &mut juliet,
        "d",
        Some("localhost"),
        &format!("<query xmlns='{INFO}'/>"),
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
    let only = server_of(
        Config::default(),
        vec![
            Arc::new(starling_modules::services::disco::Disco),
            Arc::new(caps::Caps),
        ],
        &[],
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
