//! XEP-0160 offline messages (with XEP-0203 delay stamps), in process.

mod rfc6121_support;

use rfc6121_support::*;
use starling_core::Config;
use starling_xml::Element;

const JULIET: &str = "juliet@localhost";
const J_FULL: &str = "juliet@localhost/balcony";
const R_FULL: &str = "romeo@localhost/orchard";
const DELAY: &str = "urn:xmpp:delay";

fn body(m: &Element) -> Option<String> {
    m.child_text("body", "jabber:client")
}

#[tokio::test]
async fn stored_and_delivered_with_delay_at_next_initial_presence() {
    let s = server(&[JULIET, "romeo@localhost"]).await;
    let mut romeo = online(&s, R_FULL).await;
    romeo
        .send(message(JULIET, "chat", "one"))
        .await
        .expect("send");
    romeo
        .send(message("juliet@localhost/gone", "normal", "two"))
        .await
        .expect("send");
    romeo.expect_silence().await;
    assert_eq!(
        s.store
            .count_offline("localhost", "juliet")
            .await
            .expect("count"),
        2
    );

    let mut juliet = interested(&s, J_FULL).await;
    // Not before initial presence.
    juliet.expect_silence().await;
    juliet.send(presence()).await.expect("send");
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
    assert_eq!(
        s.store
            .count_offline("localhost", "juliet")
            .await
            .expect("count"),
        0
    );
}

#[tokio::test]
async fn negative_priority_resource_does_not_take_them() {
    let s = server(&[JULIET, "romeo@localhost"]).await;
    let romeo = online(&s, R_FULL).await;
    romeo
        .send(message(JULIET, "chat", "kept"))
        .await
        .expect("send");
    let mut shy = interested(&s, "juliet@localhost/shy").await;
    shy.send(presence_prio(-1)).await.expect("send");
    let got = drain(&mut shy).await;
    assert!(got.iter().all(|e| e.name() != "message"), "{got:?}");
    let mut juliet = interested(&s, J_FULL).await;
    juliet.send(presence()).await.expect("send");
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
    let s = server_with(config, true, &[JULIET, "romeo@localhost"]).await;
    let mut romeo = online(&s, R_FULL).await;
    for text in ["1", "2"] {
        romeo
            .send(message(JULIET, "chat", text))
            .await
            .expect("send");
    }
    romeo.expect_silence().await;
    romeo
        .send(message(JULIET, "chat", "3"))
        .await
        .expect("send");
    let e = romeo.recv().await;
    assert_eq!(e.attr("type"), Some("error"), "{e}");
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("service-unavailable"),
        "{e}"
    );
    assert_eq!(
        s.store
            .count_offline("localhost", "juliet")
            .await
            .expect("count"),
        2
    );
}

#[tokio::test]
async fn chat_states_are_dropped_and_no_store_is_bounced() {
    let s = server(&[JULIET, "romeo@localhost"]).await;
    let mut romeo = online(&s, R_FULL).await;
    let typing = stanza("message")
        .with_attr("to", JULIET)
        .with_attr("type", "chat")
        .with_child(Element::new(
            "composing",
            "http://jabber.org/protocol/chatstates",
        ));
    romeo.send(typing).await.expect("send");
    romeo.expect_silence().await;
    let hinted =
        message(JULIET, "chat", "ephemeral").with_child(Element::new("no-store", "urn:xmpp:hints"));
    romeo.send(hinted).await.expect("send");
    let e = romeo.recv().await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("service-unavailable"),
        "{e}"
    );
    assert_eq!(
        s.store
            .count_offline("localhost", "juliet")
            .await
            .expect("count"),
        0
    );
}

#[tokio::test]
async fn groupchat_and_headline_are_not_stored() {
    let s = server(&[JULIET, "romeo@localhost"]).await;
    let romeo = online(&s, R_FULL).await;
    for ty in ["groupchat", "headline", "error"] {
        romeo.send(message(JULIET, ty, "x")).await.expect("send");
    }
    assert_eq!(
        s.store
            .count_offline("localhost", "juliet")
            .await
            .expect("count"),
        0
    );
}

#[tokio::test]
async fn msgoffline_is_advertised() {
    let s = server(&[]).await;
    assert!(s.disco.host_features.iter().any(|f| f == "msgoffline"));
}
