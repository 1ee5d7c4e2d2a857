//! RFC 6121 §8.5 message delivery to local accounts, in process (offline storage left out
//! unless a test needs it, so undeliverable messages bounce).

mod support;

use std::sync::Arc;

use starling_core::testing::TestClient;
use starling_core::Config;
use starling_proto::StanzaErrorCondition;
use support::*;

async fn no_offline() -> std::sync::Arc<starling_core::Server> {
    im_server_with(Config::default(), false, &[JULIET, ROMEO]).await
}

/// The next stanza is the service-unavailable error reply from `from` to message `m1`.
async fn expect_bounce(c: &mut TestClient, from: &str) {
    let e = c.recv().await;
    assert_eq!(e.name(), "message", "{e}");
    assert_eq!(e.attr("type"), Some("error"), "{e}");
    assert_eq!(e.attr("from"), Some(from), "{e}");
    assert_eq!(e.attr("id"), Some("m1"), "{e}");
    assert_condition(&e, StanzaErrorCondition::ServiceUnavailable);
}

#[tokio::test]
async fn bare_jid_goes_to_highest_priority_resources() {
    let s = no_offline().await;
    let mut low = online_with(&s, "juliet@localhost/low", presence_prio(1)).await;
    let mut high1 = online_with(&s, "juliet@localhost/high1", presence_prio(5)).await;
    let mut high2 = online_with(&s, "juliet@localhost/high2", presence_prio(5)).await;
    drain(&mut low).await;
    drain(&mut high1).await;
    let romeo = online(&s, R_FULL).await;
    send(&romeo, message(JULIET, "chat", "hello")).await;
    // §8.5.2.1.1: every resource sharing the highest priority; the rest get nothing.
    for c in [&mut high1, &mut high2] {
        let m = c.recv().await;
        assert_eq!(body(&m).as_deref(), Some("hello"));
        assert_eq!(m.attr("from"), Some(R_FULL));
        assert_eq!(m.attr("to"), Some(JULIET));
    }
    low.expect_silence().await;
}

#[tokio::test]
async fn negative_priority_never_gets_bare_messages() {
    let s = no_offline().await;
    let mut shy = online_with(&s, "juliet@localhost/shy", presence_prio(-1)).await;
    let mut romeo = online(&s, R_FULL).await;
    send(&romeo, message(JULIET, "chat", "hello")).await;
    shy.expect_silence().await;
    // No resource and no offline storage → service-unavailable (§8.5.2.2.1).
    expect_bounce(&mut romeo, JULIET).await;
    // Addressed to its full JID, the shy resource does get it (§8.5.3.1).
    send(&romeo, message("juliet@localhost/shy", "chat", "psst")).await;
    assert_eq!(shy.recv().await.name(), "message");
}

#[tokio::test]
async fn full_jid_of_gone_resource_falls_back_to_bare_rules() {
    let s = no_offline().await;
    let mut juliet = online(&s, "juliet@localhost/balcony").await;
    let mut romeo = online(&s, R_FULL).await;
    send(&romeo, message("juliet@localhost/gone", "chat", "hello")).await;
    let m = juliet.recv().await;
    assert_eq!(body(&m).as_deref(), Some("hello"));
    // Groupchat to a gone resource is an error (§8.5.3.2.1), headline is dropped.
    send(&romeo, message("juliet@localhost/gone", "groupchat", "x")).await;
    expect_bounce(&mut romeo, "juliet@localhost/gone").await;
    send(&romeo, message("juliet@localhost/gone", "headline", "x")).await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;
}

#[tokio::test]
async fn nonexistent_account_is_service_unavailable() {
    let s = no_offline().await;
    let mut romeo = online(&s, R_FULL).await;
    for to in ["nobody@localhost", "nobody@localhost/res"] {
        send(&romeo, message(to, "chat", "hi")).await;
        expect_bounce(&mut romeo, to).await;
    }
    // Even a normal message with no type attribute.
    send(
        &romeo,
        stanza("message")
            .with_attr("to", "nobody@localhost")
            .with_attr("id", "m1")
            .with_child(stanza("body").with_text("x")),
    )
    .await;
    expect_bounce(&mut romeo, "nobody@localhost").await;
}

#[tokio::test]
async fn groupchat_and_headline_to_bare() {
    let s = no_offline().await;
    let mut romeo = online(&s, R_FULL).await;
    // §8.5.2.1.2: groupchat to a bare JID is an error even with nobody online.
    send(&romeo, message(JULIET, "groupchat", "x")).await;
    expect_bounce(&mut romeo, JULIET).await;
    // §8.5.2.2.3: headline with no resource is dropped silently.
    send(&romeo, message(JULIET, "headline", "x")).await;
    romeo.expect_silence().await;
    // With resources, headline reaches all non-negative ones.
    let mut a = online_with(&s, "juliet@localhost/a", presence_prio(0)).await;
    let mut b = online_with(&s, "juliet@localhost/b", presence_prio(3)).await;
    let mut c = online_with(&s, "juliet@localhost/c", presence_prio(-2)).await;
    drain(&mut a).await;
    drain(&mut b).await;
    drain(&mut c).await;
    send(&romeo, message(JULIET, "headline", "news")).await;
    assert_eq!(a.recv().await.name(), "message");
    assert_eq!(b.recv().await.name(), "message");
    c.expect_silence().await;
}

#[tokio::test]
async fn connected_but_unavailable_resource_gets_full_jid_messages() {
    let s = no_offline().await;
    let mut juliet = TestClient::connect(&s, "juliet@localhost/balcony").await;
    let mut romeo = online(&s, R_FULL).await;
    send(&romeo, message("juliet@localhost/balcony", "chat", "hi")).await;
    assert_eq!(juliet.recv().await.name(), "message");
    // To her bare JID, though, no available resource → error.
    send(&romeo, message(JULIET, "normal", "hi")).await;
    expect_bounce(&mut romeo, JULIET).await;
    juliet.expect_silence().await;
}

#[tokio::test]
async fn error_messages_are_never_bounced() {
    let s = no_offline().await;
    let mut romeo = online(&s, R_FULL).await;
    send(&romeo, message("nobody@localhost", "error", "x")).await;
    send(&romeo, message(JULIET, "error", "x")).await;
    romeo.expect_silence().await;
}

#[tokio::test]
async fn refused_delivery_moves_on_to_the_next_resource() {
    let s = no_offline().await;
    let mut busy = online_with(&s, "juliet@localhost/busy", presence_prio(9)).await;
    let mut spare = online_with(&s, "juliet@localhost/spare", presence_prio(1)).await;
    drain(&mut spare).await;
    // Fill the busy session's queue: the next stanza for it is refused (overloaded).
    let filler = stanza("message").with_attr("type", "headline");
    while busy.session.send(filler.clone()).is_ok() {}
    let mut romeo = online(&s, R_FULL).await;
    send(&romeo, message(JULIET, "chat", "no one lost")).await;
    let m = spare.recv().await;
    assert_eq!(body(&m).as_deref(), Some("no one lost"));
    romeo.expect_silence().await;
    drain(&mut busy).await;
}

/// §8.5.2.1.1: a message of type 'error' to the bare JID is silently ignored, even with
/// resources available; to a connected full JID it is delivered (§8.5.3.1).
#[tokio::test]
async fn error_message_to_bare_jid_is_ignored() {
    let s = no_offline().await;
    let mut juliet = online(&s, J_FULL).await;
    let mut romeo = online(&s, R_FULL).await;
    let error = |to: &str| {
        xml(&format!(
            "<message type='error' id='e' from='{R_FULL}' to='{to}'><error type='cancel'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        ))
    };
    s.route(error(JULIET)).await;
    juliet.expect_silence().await;
    s.route(error(J_FULL)).await;
    assert_eq!(juliet.recv().await.attr("type"), Some("error"));
    romeo.expect_silence().await;
}

/// Candidates are ordered by one read of each priority: priorities changing under the sort
/// (other sessions' presence) must neither panic the sort nor lose a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_changing_during_delivery() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let s = no_offline().await;
    let mut resources = Vec::new();
    for i in 0..48 {
        let c = TestClient::connect(&s, &format!("juliet@localhost/r{i}")).await;
        {
            let mut p = c.session.presence.lock();
            p.available = true;
            p.priority = (i % 7) as i8;
        }
        resources.push(c);
    }
    let sessions: Vec<_> = resources.iter().map(|c| c.session.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                for (i, s) in sessions.iter().enumerate() {
                    n = n
                        .wrapping_mul(1_103_515_245)
                        .wrapping_add(12_345 + i as u32);
                    s.presence.lock().priority = ((n >> 16) % 100) as i8;
                }
            }
        })
    };
    let mut romeo = TestClient::connect(&s, R_FULL).await;
    const SENT: usize = 300;
    for _ in 0..SENT {
        send(&romeo, message(JULIET, "chat", "hi")).await;
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().expect("flipper");
    romeo.expect_silence().await;
    // Delivery is done by the time `send` returns: everything is queued already.
    let mut delivered = 0;
    for c in &mut resources {
        while c
            .recv_within(std::time::Duration::from_millis(5))
            .await
            .is_some()
        {
            delivered += 1;
        }
    }
    assert!(delivered >= SENT, "{delivered} of {SENT} delivered");
}
