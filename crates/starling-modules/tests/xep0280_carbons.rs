//! XEP-0280 Message Carbons: enabling (§4), received copies (§6), sent copies (§7), the
//! private and no-copy exclusions (§6.1, XEP-0334), and disco (§3).

mod support;

use std::sync::Arc;

use starling_core::testing::TestClient;
use starling_core::Server;
use starling_xml::Element;
use support::*;

const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";
const J_PHONE: &str = "juliet@localhost/phone";

async fn enable(c: &mut TestClient) {
    let r = iq(
        c,
        &format!("<iq type='set' id='cb'><enable xmlns='{CARBONS}'/></iq>"),
    )
    .await;
    assert_result(&r);
}

/// Juliet on her balcony (carbons off) and her phone (carbons on), and Romeo, all online
/// and quiet.
async fn juliet_with_phone() -> (Arc<Server>, TestClient, TestClient, TestClient) {
    let srv = server().await;
    let mut balcony = online(&srv, J_FULL).await;
    let mut phone = online(&srv, J_PHONE).await;
    enable(&mut phone).await;
    let romeo = online(&srv, R_FULL).await;
    drain(&mut balcony).await;
    drain(&mut phone).await;
    (srv, balcony, phone, romeo)
}

/// The message inside a carbon of kind `wrapper` ("sent" or "received").
fn forwarded<'a>(carbon: &'a Element, wrapper: &str) -> &'a Element {
    carbon
        .get_child(wrapper, CARBONS)
        .and_then(|w| w.get_child("forwarded", FORWARD))
        .and_then(|f| f.get_child("message", "jabber:client"))
        .unwrap_or_else(|| panic!("expected a <{wrapper}/> carbon, got {carbon}"))
}

#[tokio::test]
async fn s3_server_advertises_carbons() {
    let srv = server().await;
    let mut c = online(&srv, J_FULL).await;
    let r = iq_get(
        &mut c,
        "d1",
        Some("localhost"),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    assert!(r.to_xml().contains(CARBONS), "{r}");
}

#[tokio::test]
async fn s6_received_copy_goes_to_the_other_enabled_resource() {
    let (_srv, mut balcony, mut phone, romeo) = juliet_with_phone().await;
    send(&romeo, message(J_FULL, "chat", "to the balcony")).await;
    let direct = balcony.recv().await;
    assert_eq!(body(&direct).as_deref(), Some("to the balcony"));
    let carbon = phone.recv().await;
    assert_eq!(carbon.attr("from"), Some(JULIET), "{carbon}");
    assert_eq!(carbon.attr("to"), Some(J_PHONE), "{carbon}");
    let inner = forwarded(&carbon, "received");
    assert_eq!(inner.attr("from"), Some(R_FULL));
    assert_eq!(body(inner).as_deref(), Some("to the balcony"));
}

#[tokio::test]
async fn s7_sent_copy_goes_to_the_other_enabled_resources_only() {
    let srv = server().await;
    let mut balcony = online(&srv, J_FULL).await;
    enable(&mut balcony).await;
    let mut phone = online(&srv, J_PHONE).await;
    enable(&mut phone).await;
    let mut romeo = online(&srv, R_FULL).await;
    drain(&mut balcony).await;
    drain(&mut phone).await;
    send(&phone, message(ROMEO, "chat", "from the phone")).await;
    let carbon = balcony.recv().await;
    let inner = forwarded(&carbon, "sent");
    assert_eq!(inner.attr("to"), Some(ROMEO));
    assert_eq!(inner.attr("from"), Some(J_PHONE));
    assert_eq!(body(&romeo.recv().await).as_deref(), Some("from the phone"));
    // The sender itself gets no copy of its own message.
    phone.expect_silence().await;
}

#[tokio::test]
async fn s4_disabled_or_never_enabled_resources_get_no_copies() {
    let (_srv, mut balcony, mut phone, romeo) = juliet_with_phone().await;
    let r = iq(
        &mut phone,
        &format!("<iq type='set' id='off'><disable xmlns='{CARBONS}'/></iq>"),
    )
    .await;
    assert_result(&r);
    send(&romeo, message(J_FULL, "chat", "hi")).await;
    balcony.recv().await;
    phone.expect_silence().await;
}

#[tokio::test]
async fn s6_1_private_and_no_copy_messages_are_not_copied() {
    let (_srv, mut balcony, mut phone, romeo) = juliet_with_phone().await;
    for marker in [
        format!("<private xmlns='{CARBONS}'/>"),
        "<no-copy xmlns='urn:xmpp:hints'/>".to_string(),
    ] {
        send_xml(
            &romeo,
            &format!("<message to='{J_FULL}' type='chat'><body>psst</body>{marker}</message>"),
        )
        .await;
        let delivered = balcony.recv().await;
        // §8: the receiving server removes the marker before delivery.
        assert!(!delivered.has_child("private", CARBONS), "{delivered}");
    }
    phone.expect_silence().await;
}

#[tokio::test]
async fn s6_1_headlines_are_not_copied() {
    let (_srv, mut balcony, mut phone, romeo) = juliet_with_phone().await;
    send(&romeo, message(J_FULL, "headline", "news")).await;
    balcony.recv().await;
    phone.expect_silence().await;
}

/// §6–7: between two resources of the same account nobody gets a carbon: the addressed
/// resource has the message itself, and the sender wrote it.
#[tokio::test]
async fn no_carbons_between_resources_of_one_account() {
    let srv = server().await;
    let mut balcony = online(&srv, J_FULL).await;
    enable(&mut balcony).await;
    let mut phone = online(&srv, J_PHONE).await;
    enable(&mut phone).await;
    let mut tablet = online(&srv, "juliet@localhost/tablet").await;
    enable(&mut tablet).await;
    drain(&mut balcony).await;
    drain(&mut phone).await;
    send(&balcony, message(J_PHONE, "chat", "note to self")).await;
    let got = drain(&mut phone).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(body(&got[0]).as_deref(), Some("note to self"));
    balcony.expect_silence().await;
    tablet.expect_silence().await;
}

/// §6.1: an error message is copied only when it would be eligible otherwise (here: the
/// bounce of a chat message, which carries its body); a bare error is not.
#[tokio::test]
async fn s6_1_error_messages_are_copied_only_when_eligible() {
    let srv = server().await;
    let mut balcony = online(&srv, J_FULL).await;
    let mut phone = online(&srv, J_PHONE).await;
    enable(&mut phone).await;
    drain(&mut balcony).await;
    let error = |payload: &str| {
        xml(&format!(
            "<message type='error' id='e' from='romeo@localhost' to='{J_FULL}'>{payload}\
             <error type='cancel'><service-unavailable \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        ))
    };
    srv.route(error("")).await;
    assert_eq!(balcony.recv().await.attr("type"), Some("error"));
    phone.expect_silence().await;

    srv.route(error("<body>bounced</body>")).await;
    assert_eq!(balcony.recv().await.attr("type"), Some("error"));
    let carbon = phone.recv().await;
    let inner = forwarded(&carbon, "received");
    assert_eq!(inner.attr("type"), Some("error"));
    assert_eq!(body(inner).as_deref(), Some("bounced"));
}
