//! XEP-0191 Blocking Command: the blocklist and its pushes (§3.2-§3.5), enforcement both ways
//! (§3.3: inbound presence dropped, messages and IQs answered service-unavailable; outbound
//! refused with not-acceptable + `<blocked/>`), JID matching (§2), and the presence sent on
//! block and unblock.

mod support;

use starling_core::testing::TestClient;
use starling_proto::StanzaErrorCondition;
use starling_xml::{ns, Element};
use support::*;

const BLOCKING: &str = "urn:xmpp:blocking";
const ERRORS: &str = "urn:xmpp:blocking:errors";

/// Sends a `<block/>` or `<unblock/>` (`verb`) of these JIDs and asserts the result.
async fn block_command(c: &mut TestClient, verb: &str, id: &str, jids: &[&str]) {
    let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
    let r = iq(
        c,
        &format!(
            "<iq type='set' id='{id}'><{verb} xmlns='urn:xmpp:blocking'>{items}</{verb}></iq>"
        ),
    )
    .await;
    assert_result(&r);
}

async fn block(c: &mut TestClient, jids: &[&str]) {
    block_command(c, "block", "b", jids).await;
}

async fn unblock(c: &mut TestClient, jids: &[&str]) {
    block_command(c, "unblock", "u", jids).await;
}

async fn blocklist(c: &mut TestClient) -> Vec<String> {
    let r = iq_get(c, "l", None, "<blocklist xmlns='urn:xmpp:blocking'/>").await;
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

#[tokio::test]
async fn list_block_unblock_and_pushes() {
    let server = server().await;
    let mut balcony = TestClient::connect(&server, J_FULL).await;
    let mut chamber = TestClient::connect(&server, "juliet@localhost/chamber").await;
    assert!(blocklist(&mut balcony).await.is_empty());

    send_xml(
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
    assert_eq!(push.attr("to"), Some(J_FULL));
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
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    assert_conditions(
        &mut juliet,
        &[
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
        ],
    )
    .await;
    assert!(blocklist(&mut juliet).await.is_empty());
}

#[tokio::test]
async fn inbound_from_a_blocked_contact() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let mut romeo = TestClient::connect(&server, R_FULL).await;
    send_xml(&juliet, "<presence/>").await;
    block(&mut juliet, &["romeo@localhost"]).await;
    drain(&mut juliet).await;

    for to in ["juliet@localhost", J_FULL] {
        send_xml(
            &romeo,
            &format!("<message to='{to}' type='chat' id='m'><body>hi</body></message>"),
        )
        .await;
        let err = romeo.recv().await;
        assert_eq!(err.name(), "message");
        assert_condition(&err, StanzaErrorCondition::ServiceUnavailable);
    }
    for (id, to, payload) in [
        ("i1", J_FULL, "<ping xmlns='urn:xmpp:ping'/>"),
        ("i2", "juliet@localhost", "<vCard xmlns='vcard-temp'/>"),
        ("i3", "juliet@localhost", "<ping xmlns='urn:xmpp:ping'/>"),
    ] {
        let r = iq(
            &mut romeo,
            &format!("<iq type='get' id='{id}' to='{to}'>{payload}</iq>"),
        )
        .await;
        assert_condition(&r, StanzaErrorCondition::ServiceUnavailable);
    }
    send_xml(&romeo, "<presence to='juliet@localhost'/>").await;
    send_xml(&romeo, "<presence to='juliet@localhost' type='subscribe'/>").await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;

    unblock(&mut juliet, &["romeo@localhost"]).await;
    drain(&mut juliet).await;
    send_xml(
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
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let mut romeo = TestClient::connect(&server, R_FULL).await;
    block(&mut juliet, &["romeo@localhost", "evil.example"]).await;

    for to in [
        "romeo@localhost",
        R_FULL,
        "iago@evil.example",
        "room@chat.evil.example/nick",
    ] {
        send_xml(
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
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let mut orchard = TestClient::connect(&server, R_FULL).await;
    let mut garden = TestClient::connect(&server, "romeo@localhost/garden").await;
    send_xml(&juliet, "<presence/>").await;
    block(&mut juliet, &[R_FULL]).await;
    drain(&mut juliet).await;
    send_xml(
        &orchard,
        "<message to='juliet@localhost/balcony' id='x'><body>1</body></message>",
    )
    .await;
    assert_condition(
        &orchard.recv().await,
        StanzaErrorCondition::ServiceUnavailable,
    );
    send_xml(
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
    befriend(&server, JULIET, ROMEO).await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let mut romeo = TestClient::connect(&server, R_FULL).await;
    send_xml(&romeo, "<presence/>").await;
    send_xml(&juliet, "<presence><show>chat</show></presence>").await;
    drain(&mut romeo).await;
    drain(&mut juliet).await;

    block(&mut juliet, &["romeo@localhost"]).await;
    let p = romeo.recv().await;
    assert_eq!(p.name(), "presence");
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert_eq!(p.attr("from"), Some(J_FULL));

    // While blocked, neither side's broadcasts cross.
    send_xml(&juliet, "<presence><show>away</show></presence>").await;
    send_xml(&romeo, "<presence><show>dnd</show></presence>").await;
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
    assert_eq!(p.attr("from"), Some(J_FULL));
    assert_eq!(p.child_text("show", ns::CLIENT).as_deref(), Some("away"));
}

#[tokio::test]
async fn the_list_outlives_sessions() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    block(&mut juliet, &["romeo@localhost"]).await;
    juliet.disconnect().await;

    // Offline: a message from Romeo is refused, not stored.
    let mut romeo = TestClient::connect(&server, R_FULL).await;
    send_xml(
        &romeo,
        "<message to='juliet@localhost' type='chat' id='m'><body>hi</body></message>",
    )
    .await;
    assert_condition(
        &romeo.recv().await,
        StanzaErrorCondition::ServiceUnavailable,
    );
    assert_eq!(offline_count(&server, JULIET).await, 0);

    let mut juliet = TestClient::connect(&server, J_FULL).await;
    assert_eq!(blocklist(&mut juliet).await, ["romeo@localhost"]);
}

#[tokio::test]
async fn removing_a_blocked_contact_still_cancels_the_subscription() {
    let server = server().await;
    befriend(&server, JULIET, ROMEO).await;
    let mut juliet = online(&server, J_FULL).await;
    let mut romeo = online(&server, R_FULL).await;
    block(&mut juliet, &["romeo@localhost"]).await;
    // RFC 6121 §2.5.2: removal sends unsubscribe and unsubscribed, which the blocklist must
    // let through: they end what Romeo's server holds, they reveal nothing.
    let r = iq(
        &mut juliet,
        "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'>\
         <item jid='romeo@localhost' subscription='remove'/></query></iq>",
    )
    .await;
    assert_result(&r);
    assert!(roster_item(&server, JULIET, ROMEO).await.is_none());
    assert_eq!(
        roster_item(&server, ROMEO, JULIET)
            .await
            .map(|i| i.subscription),
        Some(starling_store::Subscription::None)
    );
    let got = drain(&mut romeo).await;
    for ty in ["unsubscribe", "unsubscribed"] {
        assert!(
            got.iter()
                .any(|p| p.name() == "presence" && p.attr("type") == Some(ty)),
            "{ty}: {got:?}"
        );
    }
}

#[tokio::test]
async fn replies_to_a_blocked_entity_still_leave() {
    let (server, outbox) = server_capturing_remote().await;
    let mut juliet = online(&server, J_FULL).await;
    block(&mut juliet, &["iago@evil.example"]).await;
    take_outbox(&outbox);

    // §3.5: the blocked entity's message is answered service-unavailable, and that error
    // must reach it.
    server
        .route(xml(
            "<message type='chat' id='m' from='iago@evil.example/x' to='juliet@localhost'>\
             <body>hi</body></message>",
        ))
        .await;
    // A reply the server builds for the user (an IQ result) is not new traffic either.
    server
        .route(xml(
            "<iq type='result' id='r' from='juliet@localhost' to='iago@evil.example/x'/>",
        ))
        .await;
    let sent = take_outbox(&outbox);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].name(), "message");
    assert_eq!(sent[0].attr("to"), Some("iago@evil.example/x"));
    assert_condition(&sent[0], StanzaErrorCondition::ServiceUnavailable);
    assert_eq!(sent[1].attr("id"), Some("r"));
    juliet.expect_silence().await;

    // New traffic to the blocked entity still stays home.
    server
        .route(xml(
            "<message type='chat' id='n' from='juliet@localhost' to='iago@evil.example'>\
             <body>x</body></message>",
        ))
        .await;
    assert!(take_outbox(&outbox).is_empty());
}

#[tokio::test]
async fn iq_to_the_bare_jid_from_a_blocked_remote_entity() {
    let (server, outbox) = server_capturing_remote().await;
    let mut juliet = online(&server, J_FULL).await;
    block(&mut juliet, &["iago@evil.example"]).await;
    take_outbox(&outbox);

    let request = |from: &str| {
        xml(&format!(
            "<iq type='get' id='v' from='{from}' to='juliet@localhost'>\
             <vCard xmlns='vcard-temp'/></iq>"
        ))
    };
    // §3.5: service-unavailable, and the vCard handler never answers.
    server.route(request("iago@evil.example/x")).await;
    let sent = take_outbox(&outbox);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].attr("type"), Some("error"), "{}", sent[0]);
    assert_eq!(sent[0].attr("to"), Some("iago@evil.example/x"));
    assert_eq!(sent[0].attr("id"), Some("v"));
    assert_condition(&sent[0], StanzaErrorCondition::ServiceUnavailable);

    // Anyone else gets the answer.
    server.route(request("benvolio@montague.example/x")).await;
    let sent = take_outbox(&outbox);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].attr("type"), Some("result"), "{}", sent[0]);
    juliet.expect_silence().await;
}

#[tokio::test]
async fn a_user_can_cancel_a_blocked_contacts_subscription() {
    let server = server().await;
    befriend(&server, JULIET, ROMEO).await;
    let mut juliet = online(&server, J_FULL).await;
    let _romeo = online(&server, R_FULL).await;
    block(&mut juliet, &["romeo@localhost"]).await;
    // RFC 6121 §3.2: Juliet cancels Romeo's subscription to her presence; the blocklist lets
    // it out (it only takes away), so Romeo's side of the subscription ends too.
    send_xml(
        &juliet,
        "<presence to='romeo@localhost' type='unsubscribed'/>",
    )
    .await;
    drain(&mut juliet).await;
    assert_eq!(
        roster_item(&server, ROMEO, JULIET)
            .await
            .map(|i| i.subscription),
        Some(starling_store::Subscription::From)
    );
}
