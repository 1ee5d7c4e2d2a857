//! XEP-0160 offline messages (with XEP-0203 delay stamps), in process.

mod support;

use starling_core::Config;
use starling_proto::StanzaErrorCondition;
use starling_xml::Element;
use support::*;

const DELAY: &str = "urn:xmpp:delay";

#[tokio::test]
async fn stored_and_delivered_with_delay_at_next_initial_presence() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    send(&romeo, message(JULIET, "chat", "one")).await;
    send(&romeo, message("juliet@localhost/gone", "normal", "two")).await;
    romeo.expect_silence().await;
    assert_eq!(offline_count(&s, JULIET).await, 2);

    let mut juliet = interested(&s, J_FULL).await;
    // Not before initial presence.
    juliet.expect_silence().await;
    send(&juliet, presence()).await;
    let got = drain(&mut juliet).await;
    let messages: Vec<&Element> = got.iter().filter(|e| e.name() == "message").collect();
    assert_eq!(messages.len(), 2, "{got:?}");
    assert_eq!(body(messages[0]).as_deref(), Some("one"));
    assert_eq!(body(messages[1]).as_deref(), Some("two"));
    for m in &messages {
        assert_eq!(m.attr("from"), Some(R_FULL));
        let delay = m.get_child("delay", DELAY).expect("XEP-0203 delay");
        assert_eq!(delay.attr("from"), Some("localhost"));
        let stamp = delay.attr("stamp").expect("stamp");
        assert!(stamp.ends_with('Z'), "{stamp}");
    }
    // Delivered once: the store is empty.
    assert_eq!(offline_count(&s, JULIET).await, 0);
}

#[tokio::test]
async fn negative_priority_resource_does_not_take_them() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let romeo = online(&s, R_FULL).await;
    send(&romeo, message(JULIET, "chat", "kept")).await;
    let mut shy = interested(&s, "juliet@localhost/shy").await;
    send(&shy, presence_prio(-1)).await;
    let got = drain(&mut shy).await;
    assert!(got.iter().all(|e| e.name() != "message"), "{got:?}");
    let mut juliet = interested(&s, J_FULL).await;
    send(&juliet, presence()).await;
    let got = drain(&mut juliet).await;
    assert!(
        got.iter()
            .any(|e| e.name() == "message" && body(e).as_deref() == Some("kept")),
        "{got:?}"
    );
}

#[tokio::test]
async fn over_the_limit_the_sender_gets_service_unavailable() {
    let mut config = Config::default();
    config.offline.max_per_user = 2;
    let s = im_server_with(config, true, &[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    for text in ["1", "2"] {
        send(&romeo, message(JULIET, "chat", text)).await;
    }
    romeo.expect_silence().await;
    send(&romeo, message(JULIET, "chat", "3")).await;
    let e = romeo.recv().await;
    assert_eq!(e.attr("type"), Some("error"), "{e}");
    assert_condition(&e, StanzaErrorCondition::ServiceUnavailable);
    assert_eq!(offline_count(&s, JULIET).await, 2);
}

#[tokio::test]
async fn chat_states_are_dropped_and_no_store_is_bounced() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    let typing = stanza("message")
        .with_attr("to", JULIET)
        .with_attr("type", "chat")
        .with_child(Element::new(
            "composing",
            "http://jabber.org/protocol/chatstates",
        ));
    send(&romeo, typing).await;
    romeo.expect_silence().await;
    let hinted =
        message(JULIET, "chat", "ephemeral").with_child(Element::new("no-store", "urn:xmpp:hints"));
    send(&romeo, hinted).await;
    let e = romeo.recv().await;
    assert_condition(&e, StanzaErrorCondition::ServiceUnavailable);
    assert_eq!(offline_count(&s, JULIET).await, 0);
}

#[tokio::test]
async fn groupchat_and_headline_are_not_stored() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let romeo = online(&s, R_FULL).await;
    for ty in ["groupchat", "headline", "error"] {
        send(&romeo, message(JULIET, ty, "x")).await;
    }
    assert_eq!(offline_count(&s, JULIET).await, 0);
}

#[tokio::test]
async fn msgoffline_is_advertised() {
    let s = im_server(&[]).await;
    assert!(s.disco.host_features.iter().any(|f| f == "msgoffline"));
}
