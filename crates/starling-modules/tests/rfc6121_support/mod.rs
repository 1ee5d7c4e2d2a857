//! Shared helpers for the RFC 6121 / XEP-0160 in-process tests: a server with the IM modules,
//! stanza builders, and clients that log in the way a real client does.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use starling_core::testing::{self, TestClient};
use starling_core::{Config, Module, Server};
use starling_modules::im;
use starling_store::{RosterItem, Subscription};
use starling_xml::{ns, Element};

pub const ROSTER: &str = "jabber:iq:roster";
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// A server with the RFC 6121 modules (all, or without offline storage) and these accounts.
pub async fn server_with(config: Config, offline: bool, accounts: &[&str]) -> Arc<Server> {
    let modules: Vec<Arc<dyn Module>> = im::modules()
        .into_iter()
        .filter(|m| offline || m.name() != "offline")
        .collect();
    let server = testing::server(config, modules).await;
    for a in accounts {
        testing::create_account(&server, a, "pw").await;
    }
    server
}

pub async fn server(accounts: &[&str]) -> Arc<Server> {
    server_with(Config::default(), true, accounts).await
}

pub fn stanza(name: &str) -> Element {
    Element::new(name, ns::CLIENT)
}

pub fn presence() -> Element {
    stanza("presence")
}

pub fn presence_prio(priority: i8) -> Element {
    presence().with_child(stanza("priority").with_text(priority.to_string()))
}

pub fn presence_to(to: &str, ty: &str) -> Element {
    presence().with_attr("to", to).with_attr("type", ty)
}

pub fn message(to: &str, ty: &str, body: &str) -> Element {
    stanza("message")
        .with_attr("to", to)
        .with_attr("type", ty)
        .with_attr("id", "m1")
        .with_child(stanza("body").with_text(body))
}

pub fn roster_get(id: &str, ver: Option<&str>) -> Element {
    stanza("iq")
        .with_attr("type", "get")
        .with_attr("id", id)
        .with_child(Element::new("query", ROSTER).with_opt_attr("ver", ver))
}

pub fn roster_set(id: &str, item: Element) -> Element {
    stanza("iq")
        .with_attr("type", "set")
        .with_attr("id", id)
        .with_child(Element::new("query", ROSTER).with_child(item))
}

pub fn item(jid: &str) -> Element {
    Element::new("item", ROSTER).with_attr("jid", jid)
}

pub fn group(name: &str) -> Element {
    Element::new("group", ROSTER).with_text(name)
}

/// Puts a roster item straight into the store (set-up without a handshake).
pub async fn put_item(server: &Server, account: &str, contact: &str, sub: Subscription) {
    let (user, host) = account.split_once('@').expect("user@host");
    server
        .store
        .put_roster_item(
            host,
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
        .expect("put roster item");
}

/// Mutual subscription in the store.
pub async fn befriend(server: &Server, a: &str, b: &str) {
    put_item(server, a, b, Subscription::Both).await;
    put_item(server, b, a, Subscription::Both).await;
}

pub async fn roster_item(server: &Server, account: &str, contact: &str) -> Option<RosterItem> {
    let (user, host) = account.split_once('@').expect("user@host");
    server
        .store
        .roster_item(host, user, contact)
        .await
        .expect("roster read")
}

/// Connects and asks for the roster (so the session gets pushes); returns the client with
/// the roster result consumed.
pub async fn interested(server: &Arc<Server>, jid: &str) -> TestClient {
    let mut c = TestClient::connect(server, jid).await;
    c.send(roster_get("r0", None)).await.expect("send");
    let r = c.recv().await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    c
}

/// Connects, gets the roster, sends initial presence and reads until quiet.
pub async fn online(server: &Arc<Server>, jid: &str) -> TestClient {
    online_with(server, jid, presence()).await
}

pub async fn online_with(server: &Arc<Server>, jid: &str, initial: Element) -> TestClient {
    let mut c = interested(server, jid).await;
    c.send(initial).await.expect("send");
    drain(&mut c).await;
    c
}

/// Everything queued for the client until 200 ms of silence.
pub async fn drain(c: &mut TestClient) -> Vec<Element> {
    let mut out = Vec::new();
    while let Some(el) = c.recv_within(Duration::from_millis(200)).await {
        out.push(el);
    }
    out
}

/// The roster push carried by an IQ: asserts it is one and returns (ver, item).
pub fn push_item(iq: &Element) -> (String, Element) {
    assert!(
        iq.name() == "iq" && iq.attr("type") == Some("set"),
        "not a roster push: {iq}"
    );
    assert!(iq.attr("id").is_some(), "push without id: {iq}");
    let q = iq.get_child("query", ROSTER).expect("roster query");
    let ver = q.attr("ver").expect("push carries ver").to_string();
    let mut items = q.children();
    let item = items.next().expect("one item").clone();
    assert!(items.next().is_none(), "one item per push: {iq}");
    (ver, item)
}

/// Asserts the next stanza is a roster push for `jid` with this subscription and ask.
pub async fn expect_push(c: &mut TestClient, jid: &str, sub: &str, ask: bool) -> Element {
    let iq = c.recv().await;
    let (_, item) = push_item(&iq);
    assert_eq!(item.attr("jid"), Some(jid), "{iq}");
    assert_eq!(item.attr("subscription"), Some(sub), "{iq}");
    assert_eq!(item.attr("ask") == Some("subscribe"), ask, "{iq}");
    item
}

/// Asserts the next stanza is a presence of this type (None = available) from `from`.
pub async fn expect_presence(c: &mut TestClient, from: &str, ty: Option<&str>) -> Element {
    let p = c.recv().await;
    assert_eq!(p.name(), "presence", "{p}");
    assert_eq!(p.attr("from"), Some(from), "{p}");
    assert_eq!(p.attr("type"), ty, "{p}");
    p
}

/// The defined condition of an error stanza.
pub fn error_condition(el: &Element) -> Option<String> {
    let err = el.get_child("error", ns::CLIENT)?;
    err.children()
        .find(|c| c.ns() == STANZAS && c.name() != "text")
        .map(|c| c.name().to_string())
}
