//! XEP-0202 Entity Time of the server (§3), in UTC.
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
async fn entity_time_in_utc() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let r = iq(
        &mut juliet,
        "<iq type='get' id='t' to='localhost'><time xmlns='urn:xmpp:time'/></iq>",
    )
    .await;
    let t = r.get_child("time", "urn:xmpp:time").expect("time");
    assert_eq!(
        t.child_text("tzo", "urn:xmpp:time").as_deref(),
        Some("+00:00")
    );
    let utc = t.child_text("utc", "urn:xmpp:time").expect("utc");
    assert!(utc.ends_with('Z'), "{utc}");
    let parsed = chrono::DateTime::parse_from_rfc3339(&utc).expect("XEP-0082 DateTime");
    let skew = chrono::Utc::now().signed_duration_since(parsed);
    assert!(skew.num_seconds().abs() < 5, "{utc}");
}
