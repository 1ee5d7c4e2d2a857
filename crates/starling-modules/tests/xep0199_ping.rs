//! XEP-0199 XMPP Ping: to the server (§4.2) and to bare JIDs, answered by the server on the
//! account's behalf; to a full JID, delivered to that client.
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

#[tokio::test]
async fn ping_server_and_accounts() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    for (id, to) in [
        ("p1", " to='localhost'"),
        ("p2", ""),
        ("p3", " to='juliet@localhost'"),
        ("p4", " to='romeo@localhost'"),
    ] {
        let r = iq(
            &mut juliet,
            &format!("<iq type='get' id='{id}'{to}><ping xmlns='urn:xmpp:ping'/></iq>"),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{r}");
        assert_eq!(r.children().count(), 0, "empty result: {r}");
        assert_eq!(r.attr("to"), Some("juliet@localhost/balcony"));
    }
    let r = iq(
        &mut juliet,
        "<iq type='get' id='p5' to='nobody@localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    assert_eq!(
        condition(&r),
        Some(StanzaErrorCondition::ServiceUnavailable)
    );
}

#[tokio::test]
async fn ping_to_a_full_jid_reaches_that_client() {
    let server = server().await;
    let juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let mut romeo = TestClient::connect(&server, "romeo@localhost/orchard").await;
    juliet
        .send(xml(
            "<iq type='get' id='pf' to='romeo@localhost/orchard'><ping xmlns='urn:xmpp:ping'/></iq>",
        ))
        .await
        .expect("send");
    let got = romeo.recv().await;
    assert_eq!(got.attr("id"), Some("pf"));
    assert_eq!(got.attr("from"), Some("juliet@localhost/balcony"));
}
