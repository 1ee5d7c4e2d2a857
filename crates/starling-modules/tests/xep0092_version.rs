//! XEP-0092 Software Version of the server (§2), without the operating system (§6).
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
async fn software_version_without_os() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let r = iq(
        &mut juliet,
        "<iq type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>",
    )
    .await;
    let q = r.get_child("query", "jabber:iq:version").expect("query");
    assert_eq!(
        q.child_text("name", "jabber:iq:version").as_deref(),
        Some("Starling")
    );
    assert_eq!(
        q.child_text("version", "jabber:iq:version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(!q.has_child("os", "jabber:iq:version"));
    // Not answered for accounts: the client's version is the client's business.
    let r = iq(
        &mut juliet,
        "<iq type='get' id='v2' to='romeo@localhost'><query xmlns='jabber:iq:version'/></iq>",
    )
    .await;
    assert_eq!(
        condition(&r),
        Some(StanzaErrorCondition::ServiceUnavailable)
    );
}
