//! RFC 6121 §4 presence: initial presence, probes, broadcast, unavailable, directed
//! presence, and inbound presence delivery, in process.

mod support;

use starling_core::testing::TestClient;
use starling_store::Subscription;
use support::*;

const NURSE: &str = "nurse@localhost";
const N_FULL: &str = "nurse@localhost/kitchen";

#[tokio::test]
async fn each_side_sees_the_other_at_login() {
    let s = im_server(&[JULIET, ROMEO]).await;
    befriend(&s, JULIET, ROMEO).await;

    let mut juliet = interested(&s, J_FULL).await;
    send(&juliet, presence_with("show", "chat")).await;
    // Her own presence comes back (§4.2.2); the probe finds Romeo offline (§4.3.2).
    let echo = expect_presence(&mut juliet, J_FULL, None).await;
    assert_eq!(
        echo.child_text("show", "jabber:client").as_deref(),
        Some("chat")
    );
    expect_presence(&mut juliet, ROMEO, Some("unavailable")).await;
    juliet.expect_silence().await;

    let mut romeo = interested(&s, R_FULL).await;
    send(&romeo, presence()).await;
    // Juliet gets Romeo's initial presence (§4.2.2)...
    expect_presence(&mut juliet, R_FULL, None).await;
    // ...and Romeo, after his echo, gets Juliet's last presence in answer to his probe.
    expect_presence(&mut romeo, R_FULL, None).await;
    let hers = expect_presence(&mut romeo, J_FULL, None).await;
    assert_eq!(hers.attr("to"), Some(R_FULL));
    assert_eq!(
        hers.child_text("show", "jabber:client").as_deref(),
        Some("chat")
    );
    romeo.expect_silence().await;
    juliet.expect_silence().await;
}

#[tokio::test]
async fn broadcast_follows_subscription_direction() {
    let s = im_server(&[JULIET, ROMEO]).await;
    // Romeo is subscribed to Juliet; she is not subscribed to him.
    put_item(&s, JULIET, ROMEO, Subscription::From).await;
    put_item(&s, ROMEO, JULIET, Subscription::To).await;
    let mut romeo = online(&s, R_FULL).await;
    let mut juliet = online(&s, J_FULL).await;
    expect_presence(&mut romeo, J_FULL, None).await;
    // Romeo's presence does not go to Juliet.
    send(&romeo, presence_with("show", "away")).await;
    expect_presence(&mut romeo, R_FULL, None).await;
    juliet.expect_silence().await;
    // Juliet's subsequent presence does go to Romeo (§4.4.2).
    send(&juliet, presence_with("status", "wherefore")).await;
    let p = expect_presence(&mut romeo, J_FULL, None).await;
    assert_eq!(
        p.child_text("status", "jabber:client").as_deref(),
        Some("wherefore")
    );
}

#[tokio::test]
async fn unavailable_on_disconnect_and_on_request() {
    let s = im_server(&[JULIET, ROMEO]).await;
    befriend(&s, JULIET, ROMEO).await;
    let mut juliet = online(&s, J_FULL).await;
    let romeo = online(&s, R_FULL).await;
    expect_presence(&mut juliet, R_FULL, None).await;
    // §4.5: a session that goes away is unavailable for its contacts.
    romeo.disconnect().await;
    expect_presence(&mut juliet, R_FULL, Some("unavailable")).await;

    let mut romeo = online(&s, R_FULL).await;
    expect_presence(&mut juliet, R_FULL, None).await;
    send(&romeo, presence().with_attr("type", "unavailable")).await;
    expect_presence(&mut juliet, R_FULL, Some("unavailable")).await;
    expect_presence(&mut romeo, R_FULL, Some("unavailable")).await;
    assert!(!romeo.session.is_available());
    // Nothing more when the already-unavailable session closes.
    romeo.disconnect().await;
    juliet.expect_silence().await;
}

#[tokio::test]
async fn directed_presence_is_remembered_and_ended() {
    let s = im_server(&[JULIET, NURSE]).await;
    let mut nurse = online(&s, N_FULL).await;
    let juliet = online(&s, J_FULL).await;
    // §4.6: presence to a non-contact is delivered and remembered.
    send(&juliet, presence().with_attr("to", NURSE)).await;
    let p = expect_presence(&mut nurse, J_FULL, None).await;
    assert_eq!(p.attr("to"), Some(NURSE));
    assert!(juliet
        .session
        .presence
        .lock()
        .directed
        .iter()
        .any(|j| j.to_string() == NURSE));
    juliet.disconnect().await;
    expect_presence(&mut nurse, J_FULL, Some("unavailable")).await;
    nurse.expect_silence().await;
}

#[tokio::test]
async fn directed_unavailable_forgets_the_target() {
    let s = im_server(&[JULIET, NURSE]).await;
    let mut nurse = online(&s, N_FULL).await;
    let juliet = online(&s, J_FULL).await;
    send(&juliet, presence().with_attr("to", N_FULL)).await;
    expect_presence(&mut nurse, J_FULL, None).await;
    send(&juliet, presence_to(N_FULL, "unavailable")).await;
    expect_presence(&mut nurse, J_FULL, Some("unavailable")).await;
    assert!(juliet.session.presence.lock().directed.is_empty());
    juliet.disconnect().await;
    nurse.expect_silence().await;
}

#[tokio::test]
async fn probes_are_answered_to_subscribers_only() {
    let s = im_server(&[JULIET, ROMEO, NURSE]).await;
    befriend(&s, JULIET, ROMEO).await;
    let mut juliet = online(&s, J_FULL).await;
    let mut romeo = interested(&s, R_FULL).await;
    let mut nurse = interested(&s, N_FULL).await;
    s.route(presence_to(JULIET, "probe").with_attr("from", R_FULL))
        .await;
    let p = expect_presence(&mut romeo, J_FULL, None).await;
    assert_eq!(p.attr("to"), Some(R_FULL));
    // The nurse is not subscribed: she learns nothing (the 'unsubscribed' answer finds no
    // subscription to cancel on her side and is not delivered).
    s.route(presence_to(JULIET, "probe").with_attr("from", N_FULL))
        .await;
    nurse.expect_silence().await;
    juliet.expect_silence().await;
}

#[tokio::test]
async fn presence_to_bare_reaches_available_resources_only() {
    let s = im_server(&[JULIET, NURSE]).await;
    let mut available = online(&s, J_FULL).await;
    let mut bound_only = TestClient::connect(&s, "juliet@localhost/chamber").await;
    let nurse = online(&s, N_FULL).await;
    send(&nurse, presence().with_attr("to", JULIET)).await;
    expect_presence(&mut available, N_FULL, None).await;
    bound_only.expect_silence().await;
    // To a full JID that is not connected: dropped, silently.
    send(
        &nurse,
        presence().with_attr("to", "juliet@localhost/nowhere"),
    )
    .await;
    available.expect_silence().await;
}

#[tokio::test]
async fn own_resources_see_each_other() {
    let s = im_server(&[JULIET]).await;
    let mut balcony = online(&s, J_FULL).await;
    let mut chamber = interested(&s, "juliet@localhost/chamber").await;
    send(&chamber, presence_prio(5)).await;
    assert_eq!(chamber.session.priority(), 5);
    let got = drain(&mut chamber).await;
    let froms: Vec<_> = got.iter().filter_map(|p| p.attr("from")).collect();
    assert!(froms.contains(&"juliet@localhost/chamber"), "{got:?}");
    assert!(froms.contains(&J_FULL), "{got:?}");
    expect_presence(&mut balcony, "juliet@localhost/chamber", None).await;
}

#[tokio::test]
async fn priority_is_parsed_and_clamped() {
    let s = im_server(&[JULIET]).await;
    let a = online_with(&s, J_FULL, presence_prio(-3)).await;
    assert_eq!(a.session.priority(), -3);
    let b = online_with(&s, "juliet@localhost/b", presence_with("priority", "1000")).await;
    assert_eq!(b.session.priority(), 127);
    let c = online_with(&s, "juliet@localhost/c", presence_with("priority", "high")).await;
    assert_eq!(c.session.priority(), 0);
}

#[tokio::test]
async fn replaced_session_does_not_mark_its_successor_unavailable() {
    let s = im_server(&[JULIET, ROMEO]).await;
    befriend(&s, JULIET, ROMEO).await;
    let mut romeo = online(&s, R_FULL).await;
    let old = online(&s, J_FULL).await;
    expect_presence(&mut romeo, J_FULL, None).await;
    // The same full JID binds again (conflict): the newer session wins and goes online.
    let _new = online(&s, J_FULL).await;
    expect_presence(&mut romeo, J_FULL, None).await;
    // The old session's end comes late: Romeo must not see Juliet go away.
    old.disconnect().await;
    romeo.expect_silence().await;
}
