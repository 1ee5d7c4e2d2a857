//! Helpers shared by the in-process tests of the modules (each test file is its own crate and
//! includes this one with `mod support;`): servers with the default or the RFC 6121 module set
//! and a few accounts, clients that log in the way a real client does, stanza builders, store
//! set-up, and assertions that print the stanza when they fail.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use starling_core::router::ROUTE_REMOTE;
use starling_core::testing::{self, TestClient};
use starling_core::{Config, Flow, Module, Registrar, Server, StanzaEvent, StanzaHook};
use starling_modules::im;
use starling_proto::{StanzaError, StanzaErrorCondition};
use starling_store::{RosterItem, Subscription};
use starling_xml::{ns, parse_document, Element, Limits};

pub const JULIET: &str = "juliet@localhost";
pub const ROMEO: &str = "romeo@localhost";
pub const J_FULL: &str = "juliet@localhost/balcony";
pub const R_FULL: &str = "romeo@localhost/orchard";
pub const ROSTER: &str = "jabber:iq:roster";

// --- servers ---

/// A server with these modules and these accounts (password `pw`).
pub async fn server_of(
    config: Config,
    modules: Vec<Arc<dyn Module>>,
    accounts: &[&str],
) -> Arc<Server> {
    let server = testing::server(config, modules).await;
    for a in accounts {
        testing::create_account(&server, a, "pw").await;
    }
    server
}

/// A server with every default module and the accounts of Juliet and Romeo.
pub async fn server_with(config: Config) -> Arc<Server> {
    server_of(
        config,
        starling_modules::default_modules(),
        &[JULIET, ROMEO],
    )
    .await
}

pub async fn server() -> Arc<Server> {
    server_with(Config::default()).await
}

/// What left for remote domains, in order.
pub type Outbox = Arc<Mutex<Vec<Element>>>;

/// Takes every stanza for a remote domain (last on `route/remote`, after filters such as
/// blocking) and keeps it.
struct CaptureRemote(Outbox);

#[async_trait]
impl StanzaHook for CaptureRemote {
    async fn on_stanza(&self, _server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ev.stanza.clone());
        Flow::Handled
    }
}

impl Module for CaptureRemote {
    fn name(&self) -> &'static str {
        "capture-remote"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.hook(ROUTE_REMOTE, -1000, Arc::new(CaptureRemote(self.0.clone())));
    }
}

/// A server with every default module, Juliet's and Romeo's accounts, and what it sends to
/// remote domains captured instead of bounced.
pub async fn server_capturing_remote() -> (Arc<Server>, Outbox) {
    let outbox = Outbox::default();
    let mut modules = starling_modules::default_modules();
    modules.push(Arc::new(CaptureRemote(outbox.clone())));
    let server = server_of(Config::default(), modules, &[JULIET, ROMEO]).await;
    (server, outbox)
}

/// Empties the outbox, returning what it held.
pub fn take_outbox(outbox: &Outbox) -> Vec<Element> {
    std::mem::take(&mut *outbox.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A server with the RFC 6121 modules (all, or without offline storage) and these accounts.
pub async fn im_server_with(config: Config, offline: bool, accounts: &[&str]) -> Arc<Server> {
    let modules: Vec<Arc<dyn Module>> = im::modules()
        .into_iter()
        .filter(|m| offline || m.name() != "offline")
        .collect();
    server_of(config, modules, accounts).await
}

pub async fn im_server(accounts: &[&str]) -> Arc<Server> {
    im_server_with(Config::default(), true, accounts).await
}

// --- clients ---

/// Sends a stanza as the client.
pub async fn send(c: &TestClient, stanza: Element) {
    c.send(stanza).await.expect("send");
}

/// Sends a stanza written as XML (jabber:client the default namespace) as the client.
pub async fn send_xml(c: &TestClient, stanza: &str) {
    send(c, xml(stanza)).await;
}

/// Sends an IQ written as XML and returns the reply with its id, skipping whatever else
/// arrives first.
pub async fn iq(c: &mut TestClient, stanza: &str) -> Element {
    let el = xml(stanza);
    let id = el.attr("id").expect("test IQ has an id").to_string();
    send(c, el).await;
    loop {
        let got = c.recv().await;
        if got.name() == "iq" && got.attr("id") == Some(id.as_str()) {
            return got;
        }
    }
}

/// Sends an IQ `get` carrying `payload` (XML) to `to`, or with no 'to' (the user's own
/// account) for `None`, and returns the reply.
pub async fn iq_get(c: &mut TestClient, id: &str, to: Option<&str>, payload: &str) -> Element {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    iq(c, &format!("<iq type='get' id='{id}'{to}>{payload}</iq>")).await
}

/// Connects and asks for the roster (so the session gets pushes); returns the client with
/// the roster result consumed.
pub async fn interested(server: &Arc<Server>, jid: &str) -> TestClient {
    let mut c = TestClient::connect(server, jid).await;
    send(&c, roster_get("r0", None)).await;
    let r = c.recv().await;
    assert_result(&r);
    c
}

/// Connects, gets the roster, sends initial presence and reads until quiet.
pub async fn online(server: &Arc<Server>, jid: &str) -> TestClient {
    online_with(server, jid, presence()).await
}

pub async fn online_with(server: &Arc<Server>, jid: &str, initial: Element) -> TestClient {
    let mut c = interested(server, jid).await;
    send(&c, initial).await;
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

// --- stanzas ---

/// Parses test XML with jabber:client as the default namespace.
pub fn xml(s: &str) -> Element {
    parse_document(s.as_bytes(), ns::CLIENT, &Limits::default()).expect("test XML")
}

pub fn stanza(name: &str) -> Element {
    Element::new(name, ns::CLIENT)
}

pub fn presence() -> Element {
    stanza("presence")
}

/// Presence with one child element holding text (`<show/>`, `<status/>`, `<priority/>`).
pub fn presence_with(child: &str, text: &str) -> Element {
    presence().with_child(stanza(child).with_text(text))
}

pub fn presence_prio(priority: i8) -> Element {
    presence_with("priority", &priority.to_string())
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

/// A roster set removing the item for `jid` (RFC 6121 §2.5).
pub fn roster_remove(id: &str, jid: &str) -> Element {
    roster_set(id, item(jid).with_attr("subscription", "remove"))
}

pub fn item(jid: &str) -> Element {
    Element::new("item", ROSTER).with_attr("jid", jid)
}

pub fn group(name: &str) -> Element {
    Element::new("group", ROSTER).with_text(name)
}

// --- the store ---

fn account_key(account: &str) -> (&str, &str) {
    let (user, host) = account.split_once('@').expect("user@host");
    (host, user)
}

/// Puts a roster item straight into the store (set-up without a handshake).
pub async fn put_item(server: &Server, account: &str, contact: &str, sub: Subscription) {
    let (host, user) = account_key(account);
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
    let (host, user) = account_key(account);
    server
        .store
        .roster_item(host, user, contact)
        .await
        .expect("roster read")
}

/// How many messages wait in the account's offline storage.
pub async fn offline_count(server: &Server, account: &str) -> u64 {
    let (host, user) = account_key(account);
    server.store.count_offline(host, user).await.expect("count")
}

// --- reading replies ---

/// The defined condition of an error stanza.
pub fn condition(reply: &Element) -> Option<StanzaErrorCondition> {
    reply
        .get_child("error", ns::CLIENT)
        .and_then(StanzaError::from_element)
        .map(|e| e.condition)
}

/// Asserts the reply is an IQ result.
#[track_caller]
pub fn assert_result(reply: &Element) {
    assert_eq!(reply.attr("type"), Some("result"), "{reply}");
}

/// Asserts the stanza is an error with this defined condition.
#[track_caller]
pub fn assert_condition(reply: &Element, want: StanzaErrorCondition) {
    assert_eq!(condition(reply), Some(want), "{reply}");
}

/// Sends each IQ (XML) and asserts the error condition of its reply.
pub async fn assert_conditions(c: &mut TestClient, cases: &[(&str, StanzaErrorCondition)]) {
    for (stanza, want) in cases {
        let r = iq(c, stanza).await;
        assert_condition(&r, *want);
    }
}

/// The text of a message's `<body/>`.
pub fn body(m: &Element) -> Option<String> {
    m.child_text("body", ns::CLIENT)
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
