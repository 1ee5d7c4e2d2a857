//! XEP-0191 Blocking Command: the blocklist and its pushes (§3.2-§3.5), enforcement both ways
//! (§3.3: inbound presence dropped, messages and IQs answered service-unavailable; outbound
//! refused with not-acceptable + `<blocked/>`), JID matching (§2), and the presence sent on
//! block and unblock.
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

use std::time::Duration;

use starling_store::{RosterItem, Subscription};

const BLOCKING: &str = "urn:xmpp:blocking";
const ERRORS: &str = "urn:xmpp:blocking:errors";

/// Everything that arrives until the client has been quiet for a moment.
async fn drain(c: &mut TestClient) -> Vec<Element> {
    let mut out = Vec::new();
    while let Some(el) = c.recv_within(Duration::from_millis(150)).await {
        out.push(el);
    }
    out
}

async fn send(c: &TestClient, stanza: &str) {
    c.send(xml(stanza)).await.expect("send");
}

async fn block(c: &mut TestClient, jids: &[&str]) {
    let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
    let r = iq(
        c,
        &format!("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>{items}</block></iq>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
}

async fn unblock(c: &mut TestClient, jids: &[&str]) {
    let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
    let r = iq(
        c,
        &format!("<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'>{items}</unblock></iq>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
}

async fn blocklist(c: &mut TestClient) -> Vec<String> {
    let r = iq(
        c,
        "<iq type='get' id='l'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
    )
    .await;
    r.get_child("blocklist", BLOCKING)
        .expect("blocklist")
        .children()
        .filter_map(|i| i.attr("jid").map(str::to_owned))
        .collect()
}

fn is_blocked_error(r: &Element) -> bool {
    r.attr("type") == Some("error")
        && condition(r) == Some(StanzaErrorCondition::NotAcceptable)
        && r.get_child("error", ns::CLIENT)
            .is_some_and(|e| e.has_child("blocked", ERRORS))
}

async fn befriend(server: &Server, a: &str, b: &str) {
    for (user, contact) in [(a, b), (b, a)] {
        server
            .store
            .put_roster_item(
                "localhost",
                user,
                &RosterItem {
                    jid: format!("{contact}@localhost"),
                    name: None,
                    subscription: Subscription::Both,
                    ask_out: false,
                    approved: false,
                    groups: Vec::new(),
                },
            )
            .await
            .expect("roster");
    }
}

#[tokio::test]
async fn list_block_unblock_and_pushes() {
    let server = server().await;
    let mut balcony = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let mut chamber = TestClient::connect(&server, "juliet@localhost/chamber").await;
    assert!(blocklist(&mut balcony).await.is_empty());

    send(
        &chamber,
        "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'>\
         <item jid='Romeo@localhost'/><item jid='iago@evil.example'/></block></iq>",
    )
    .await;
    let got = drain(&mut chamber).await;
    assert_eq!(
        got.len(),
        1,
        "chamber never asked for the list: only the result"
    );
    assert_eq!(got[0].attr("type"), Some("result"));
    let push = balcony.recv().await;
    assert_eq!(push.attr("type"), Some("set"));
    assert_eq!(push.attr("to"), Some("juliet@localhost/balcony"));
    let items: Vec<&str> = push
        .get_child("block", BLOCKING)
        .expect("block push")
        .children()
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert_eq!(items, ["romeo@localhost", "iago@evil.example"]);

    assert_eq!(
        blocklist(&mut chamber).await,
        ["iago@evil.example", "romeo@localhost"]
    );
    drain(&mut balcony).await;

    unblock(&mut balcony, &["romeo@localhost"]).await;
    let push = chamber.recv().await;
    let un = push.get_child("unblock", BLOCKING).expect("unblock push");
    assert_eq!(un.children().count(), 1);
    assert_eq!(blocklist(&mut balcony).await, ["iago@evil.example"]);

    block(&mut balcony, &["tybalt@localhost"]).await;
    drain(&mut chamber).await;
    unblock(&mut balcony, &[]).await;
    let push = chamber.recv().await;
    let un = push
        .get_child("unblock", BLOCKING)
        .expect("unblock-all push");
    assert_eq!(un.children().count(), 0);
    assert!(blocklist(&mut balcony).await.is_empty());
}

#[tokio::test]
async fn bad_requests() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let cases = [
        (
            "<iq type='set' id='e1'><block xmlns='urn:xmpp:blocking'/></iq>",
            StanzaErrorCondition::BadRequest,
        ),
        (
            "<iq type='set' id='e2'><block xmlns='urn:xmpp:blocking'><item jid='a@b@c'/></block></iq>",
            StanzaErrorCondition::JidMalformed,
        ),
        (
            "<iq type='set' id='e3'><block xmlns='urn:xmpp:blocking'><item/></block></iq>",
            StanzaErrorCondition::JidMalformed,
        ),
        (
            "<iq type='get' id='e4' to='romeo@localhost'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
            StanzaErrorCondition::ServiceUnavailable,
        ),
    ];
    for (stanza, want) in cases {
        let r = iq(&mut juliet, stanza).await;
        assert_eq!(condition(&r), Some(want), "{r}");
    }
    assert!(blocklist(&mut juliet).await.is_empty());
}

#[tokio::test]
async fn inbound_from_a_blocked_contact() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let mut romeo = TestClient::connect(&server, "romeo@localhost/orchard").await;
    send(&juliet, "<presence/>").await;
    block(&mut juliet, &["romeo@localhost"]).await;
    drain(&mut juliet).await;

    for to in ["juliet@localhost", "juliet@localhost/balcony"] {
        send(
            &romeo,
            &format!("<message to='{to}' type='chat' id='m'><body>hi</body></message>"),
        )
        .await;
        let err = romeo.recv().await;
        assert_eq!(err.name(), "message");
        assert_eq!(
            condition(&err),
            Some(StanzaErrorCondition::ServiceUnavailable),
            "{err}"
        );
    }
    for (id, to, payload) in [
        (
            "i1",
            "juliet@localhost/balcony",
            "<ping xmlns='urn:xmpp:ping'/>",
        ),
        ("i2", "juliet@localhost", "<vCard xmlns='vcard-temp'/>"),
        ("i3", "juliet@localhost", "<ping xmlns='urn:xmpp:ping'/>"),
    ] {
        let r = iq(
            &mut romeo,
            &format!("<iq type='get' id='{id}' to='{to}'>{payload}</iq>"),
        )
        .await;
        assert_eq!(
            condition(&r),
            Some(StanzaErrorCondition::ServiceUnavailable),
            "{r}"
        );
    }
    send(&romeo, "<presence to='juliet@localhost'/>").await;
    send(&romeo, "<presence to='juliet@localhost' type='subscribe'/>").await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;

    unblock(&mut juliet, &["romeo@localhost"]).await;
    drain(&mut juliet).await;
    send(
        &romeo,
        "<message to='juliet@localhost/balcony' type='chat' id='m2'><body>again</body></message>",
    )
    .await;
    let m = juliet.recv().await;
    assert_eq!(m.attr("id"), Some("m2"));
}

#[tokio::test]
async fn outbound_to_a_blocked_entity() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let mut romeo = TestClient::connect(&server, "romeo@localhost/orchard").await;
    block(&mut juliet, &["romeo@localhost", "evil.example"]).await;

    for to in [
        "romeo@localhost",
        "romeo@localhost/orchard",
        "iago@evil.example",
        "room@chat.evil.example/nick",
    ] {
        send(
            &juliet,
            &format!("<message to='{to}' type='chat' id='o'><body>hi</body></message>"),
        )
        .await;
        let err = juliet.recv().await;
        assert!(is_blocked_error(&err), "{err}");
    }
    let r = iq(
        &mut juliet,
        "<iq type='get' id='v' to='romeo@localhost'><vCard xmlns='vcard-temp'/></iq>",
    )
    .await;
    assert!(is_blocked_error(&r), "{r}");
    romeo.expect_silence().await;
}

#[tokio::test]
async fn full_jid_entries_block_only_that_resource() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let mut orchard = TestClient::connect(&server, "romeo@localhost/orchard").await;
    let mut garden = TestClient::connect(&server, "romeo@localhost/garden").await;
    send(&juliet, "<presence/>").await;
    block(&mut juliet, &["romeo@localhost/orchard"]).await;
    drain(&mut juliet).await;
    send(
        &orchard,
        "<message to='juliet@localhost/balcony' id='x'><body>1</body></message>",
    )
    .await;
    assert_eq!(
        condition(&orchard.recv().await),
        Some(StanzaErrorCondition::ServiceUnavailable)
    );
    send(
        &garden,
        "<message to='juliet@localhost/balcony' id='y'><body>2</body></message>",
    )
    .await;
    assert_eq!(juliet.recv().await.attr("id"), Some("y"));
    garden.expect_silence().await;
}

#[tokio::test]
async fn presence_on_block_and_unblock() {
    let server = server().await;
    befriend(&server, "juliet", "romeo").await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let mut romeo = TestClient::connect(&server, "romeo@localhost/orchard").await;
    send(&romeo, "<presence/>").await;
    send(&juliet, "<presence><show>chat</show></presence>").await;
    drain(&mut romeo).await;
    drain(&mut juliet).await;

    block(&mut juliet, &["romeo@localhost"]).await;
    let p = romeo.recv().await;
    assert_eq!(p.name(), "presence");
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert_eq!(p.attr("from"), Some("juliet@localhost/balcony"));

    // While blocked, neither side's broadcasts cross.
    send(&juliet, "<presence><show>away</show></presence>").await;
    send(&romeo, "<presence><show>dnd</show></presence>").await;
    let to_romeo: Vec<Element> = drain(&mut romeo)
        .await
        .into_iter()
        .filter(|e| e.attr("from").is_some_and(|f| f.starts_with("juliet@")))
        .collect();
    assert!(to_romeo.is_empty(), "{to_romeo:?}");
    let to_juliet: Vec<Element> = drain(&mut juliet)
        .await
        .into_iter()
        .filter(|e| e.attr("from").is_some_and(|f| f.starts_with("romeo@")))
        .collect();
    assert!(to_juliet.is_empty(), "{to_juliet:?}");

    unblock(&mut juliet, &["romeo@localhost"]).await;
    let p = romeo.recv().await;
    assert_eq!(p.name(), "presence");
    assert_eq!(p.attr("type"), None);
    assert_eq!(p.attr("from"), Some("juliet@localhost/balcony"));
    assert_eq!(p.child_text("show", ns::CLIENT).as_deref(), Some("away"));
}

#[tokio::test]
async fn the_list_outlives_sessions() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    block(&mut juliet, &["romeo@localhost"]).await;
    juliet.disconnect().await;

    // Offline: a message from Romeo is refused, not stored.
    let mut romeo = TestClient::connect(&server, "romeo@localhost/orchard").await;
    send(
        &romeo,
        "<message to='juliet@localhost' type='chat' id='m'><body>hi</body></message>",
    )
    .await;
    assert_eq!(
        condition(&romeo.recv().await),
        Some(StanzaErrorCondition::ServiceUnavailable)
    );
    let stored = server
        .store
        .count_offline("localhost", "juliet")
        .await
        .expect("count");
    assert_eq!(stored, 0);

    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    assert_eq!(blocklist(&mut juliet).await, ["romeo@localhost"]);
}
