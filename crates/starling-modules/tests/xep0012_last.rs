//! XEP-0012 Last Activity: server uptime (§5), and for bare JIDs (§4): 0 while available,
//! seconds since logout with the unavailable status afterwards, `forbidden` for entities not
//! subscribed to the user's presence.
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

use starling_store::{RosterItem, Subscription};

const LAST: &str = "jabber:iq:last";

async fn subscribe(server: &Server, user: &str, contact: &str, sub: Subscription) {
    server
        .store
        .put_roster_item(
            "localhost",
            user,
            &RosterItem {
                jid: contact.to_string(),
                name: None,
                subscription: sub,
                ask_out: false,
                approved: false,
                groups: Vec::new(),
            },
        )
        .await
        .expect("roster item");
}

fn seconds(reply: &Element) -> (u64, String) {
    let q = reply.get_child("query", LAST).expect("query");
    let s = q.attr("seconds").expect("seconds").parse().expect("number");
    (s, q.text())
}

async fn ask(c: &mut TestClient, to: &str) -> Element {
    iq(
        c,
        &format!("<iq type='get' id='l-{to}' to='{to}'><query xmlns='jabber:iq:last'/></iq>"),
    )
    .await
}

#[tokio::test]
async fn server_uptime() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let r = ask(&mut juliet, "localhost").await;
    let (s, text) = seconds(&r);
    assert!(s < 60, "{r}");
    assert_eq!(text, "");
}

#[tokio::test]
async fn subscribers_see_online_then_logout_time_and_status() {
    let server = server().await;
    subscribe(&server, "juliet", "romeo@localhost", Subscription::From).await;
    let mut romeo = TestClient::connect(&server, "romeo@localhost/orchard").await;

    // Never logged out since accounts were created: nothing to report.
    let r = ask(&mut romeo, "juliet@localhost").await;
    assert_eq!(
        condition(&r),
        Some(StanzaErrorCondition::ItemNotFound),
        "{r}"
    );

    let juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    juliet.send(xml("<presence/>")).await.expect("send");
    let r = ask(&mut romeo, "juliet@localhost").await;
    assert_eq!(seconds(&r), (0, String::new()), "{r}");

    juliet
        .send(xml(
            "<presence type='unavailable'><status>Heading Home</status></presence>",
        ))
        .await
        .expect("send");
    juliet.disconnect().await;
    let r = ask(&mut romeo, "juliet@localhost").await;
    let (s, text) = seconds(&r);
    assert!(s <= 2, "{r}");
    assert_eq!(text, "Heading Home");
}

#[tokio::test]
async fn a_second_resource_keeps_the_account_logged_in() {
    let server = server().await;
    let mut a = TestClient::connect(&server, "juliet@localhost/a").await;
    let b = TestClient::connect(&server, "juliet@localhost/b").await;
    b.send(xml(
        "<presence type='unavailable'><status>bye</status></presence>",
    ))
    .await
    .expect("send");
    b.disconnect().await;
    // Resource a is connected but not available, and no logout happened.
    let r = ask(&mut a, "juliet@localhost").await;
    assert_eq!(
        condition(&r),
        Some(StanzaErrorCondition::ItemNotFound),
        "{r}"
    );
    let stored = server
        .store
        .kv_get("localhost", "juliet", "last")
        .await
        .expect("kv");
    assert_eq!(stored, None);
}

#[tokio::test]
async fn others_are_forbidden() {
    let server = server().await;
    // Juliet is subscribed *to* Romeo, not the other way round: Romeo may not know.
    subscribe(&server, "juliet", "romeo@localhost", Subscription::To).await;
    let mut romeo = TestClient::connect(&server, "romeo@localhost/orchard").await;
    let r = ask(&mut romeo, "juliet@localhost").await;
    assert_eq!(condition(&r), Some(StanzaErrorCondition::Forbidden), "{r}");
    let r = ask(&mut romeo, "nobody@localhost").await;
    assert_eq!(
        condition(&r),
        Some(StanzaErrorCondition::ServiceUnavailable),
        "{r}"
    );
}

#[tokio::test]
async fn own_account_after_an_earlier_logout() {
    let server = server().await;
    let first = TestClient::connect(&server, "juliet@localhost/balcony").await;
    first.disconnect().await;
    let mut again = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let r = iq(
        &mut again,
        "<iq type='get' id='own'><query xmlns='jabber:iq:last'/></iq>",
    )
    .await;
    let (s, text) = seconds(&r);
    assert!(s <= 2, "{r}");
    assert_eq!(text, "");
}
