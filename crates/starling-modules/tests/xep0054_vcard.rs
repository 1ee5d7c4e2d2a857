//! XEP-0054 vcard-temp: own vCard get/set (§3.1, §3.2), other users' vCards (§3.3), the
//! empty vCard for none, `forbidden` for setting someone else's, and the size cap.
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

const VCARD: &str = "vcard-temp";

#[tokio::test]
async fn empty_until_published_then_visible_to_others() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let mut romeo = TestClient::connect(&server, "romeo@localhost/orchard").await;

    let r = iq(
        &mut juliet,
        "<iq type='get' id='g1'><vCard xmlns='vcard-temp'/></iq>",
    )
    .await;
    let v = r.get_child("vCard", VCARD).expect("vCard");
    assert_eq!(v.children().count(), 0, "{r}");

    let r = iq(
        &mut juliet,
        "<iq type='set' id='s1'><vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN>\
         <N><FAMILY>Capulet</FAMILY><GIVEN>Juliet</GIVEN></N>\
         <PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO></vCard></iq>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    assert_eq!(r.children().count(), 0);

    for (client, to) in [(&mut juliet, ""), (&mut romeo, " to='juliet@localhost'")] {
        let r = iq(
            client,
            &format!("<iq type='get' id='g2'{to}><vCard xmlns='vcard-temp'/></iq>"),
        )
        .await;
        let v = r.get_child("vCard", VCARD).expect("vCard");
        assert_eq!(v.child_text("FN", VCARD).as_deref(), Some("Juliet Capulet"));
        let n = v.get_child("N", VCARD).expect("N");
        assert_eq!(n.child_text("GIVEN", VCARD).as_deref(), Some("Juliet"));
        let photo = v.get_child("PHOTO", VCARD).expect("PHOTO");
        assert_eq!(
            photo.child_text("BINVAL", VCARD).as_deref(),
            Some("iVBORw0KGgo=")
        );
    }

    // Romeo's is still empty; publishing an empty vCard clears Juliet's.
    let r = iq(
        &mut juliet,
        "<iq type='get' id='g3' to='romeo@localhost'><vCard xmlns='vcard-temp'/></iq>",
    )
    .await;
    assert_eq!(
        r.get_child("vCard", VCARD)
            .expect("vCard")
            .children()
            .count(),
        0
    );
    iq(
        &mut juliet,
        "<iq type='set' id='s2'><vCard xmlns='vcard-temp'/></iq>",
    )
    .await;
    let stored = server
        .store
        .kv_get("localhost", "juliet", "vcard")
        .await
        .expect("kv");
    assert_eq!(stored, None);
}

#[tokio::test]
async fn only_the_owner_sets_and_only_accounts_have_one() {
    let server = server().await;
    let mut romeo = TestClient::connect(&server, "romeo@localhost/orchard").await;
    let r = iq(
        &mut romeo,
        "<iq type='set' id='s' to='juliet@localhost'><vCard xmlns='vcard-temp'><FN>x</FN></vCard></iq>",
    )
    .await;
    assert_eq!(condition(&r), Some(StanzaErrorCondition::Forbidden), "{r}");
    let r = iq(
        &mut romeo,
        "<iq type='get' id='g' to='nobody@localhost'><vCard xmlns='vcard-temp'/></iq>",
    )
    .await;
    assert_eq!(
        condition(&r),
        Some(StanzaErrorCondition::ServiceUnavailable),
        "{r}"
    );
}

#[tokio::test]
async fn oversized_vcards_are_refused() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let big = "A".repeat(300 * 1024);
    let stanza = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", "big")
        .with_child(
            Element::new("vCard", VCARD).with_child(Element::new("DESC", VCARD).with_text(big)),
        );
    juliet.send(stanza).await.expect("send");
    let r = juliet.recv().await;
    assert_eq!(
        condition(&r),
        Some(StanzaErrorCondition::NotAcceptable),
        "{}",
        r.name()
    );
}
