//! RFC 6121 §3 presence subscriptions (handshake, pre-approval, cancellation, pending
//! requests) and §2.5.2 removal, in process.

mod rfc6121_support;

use rfc6121_support::*;
use starling_store::Subscription;

const JULIET: &str = "juliet@localhost";
const ROMEO: &str = "romeo@localhost";
const J_FULL: &str = "juliet@localhost/balcony";
const R_FULL: &str = "romeo@localhost/orchard";

fn subscription(s: Option<starling_store::RosterItem>) -> Option<(Subscription, bool, bool)> {
    s.map(|i| (i.subscription, i.ask_out, i.approved))
}

#[tokio::test]
async fn full_handshake_to_mutual_subscription() {
    let s = server(&[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    let mut juliet = online(&s, J_FULL).await;
    drain(&mut romeo).await;

    // §3.1.2: Romeo asks; his roster shows the pending request, Juliet gets it from his
    // bare JID.
    romeo
        .send(presence_to(JULIET, "subscribe"))
        .await
        .expect("send");
    expect_push(&mut romeo, JULIET, "none", true).await;
    let req = expect_presence(&mut juliet, ROMEO, Some("subscribe")).await;
    assert_eq!(req.attr("to"), Some(JULIET));
    romeo.expect_silence().await;
    juliet.expect_silence().await;

    // §3.1.5: Juliet approves; both rosters change; Romeo learns and sees her presence.
    juliet
        .send(presence_to(ROMEO, "subscribed"))
        .await
        .expect("send");
    expect_push(&mut juliet, ROMEO, "from", false).await;
    expect_push(&mut romeo, JULIET, "to", false).await;
    expect_presence(&mut romeo, JULIET, Some("subscribed")).await;
    expect_presence(&mut romeo, J_FULL, None).await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;

    // And the other way round: mutual → both.
    juliet
        .send(presence_to(ROMEO, "subscribe"))
        .await
        .expect("send");
    expect_push(&mut juliet, ROMEO, "from", true).await;
    expect_presence(&mut romeo, JULIET, Some("subscribe")).await;
    romeo
        .send(presence_to(JULIET, "subscribed"))
        .await
        .expect("send");
    expect_push(&mut romeo, JULIET, "both", false).await;
    expect_push(&mut juliet, ROMEO, "both", false).await;
    expect_presence(&mut juliet, ROMEO, Some("subscribed")).await;
    expect_presence(&mut juliet, R_FULL, None).await;
    assert_eq!(
        subscription(roster_item(&s, JULIET, ROMEO).await),
        Some((Subscription::Both, false, false))
    );
    assert_eq!(
        subscription(roster_item(&s, ROMEO, JULIET).await),
        Some((Subscription::Both, false, false))
    );
    // Answered: nothing pending any more.
    let pending = s
        .store
        .pending_in("localhost", "juliet")
        .await
        .expect("pending");
    assert!(pending.is_empty());
}

#[tokio::test]
async fn pending_request_waits_and_is_redelivered_at_each_login() {
    let s = server(&[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    romeo
        .send(presence_to(JULIET, "subscribe"))
        .await
        .expect("send");
    expect_push(&mut romeo, JULIET, "none", true).await;

    for _ in 0..2 {
        let mut juliet = interested(&s, J_FULL).await;
        juliet.send(presence()).await.expect("send");
        let got = drain(&mut juliet).await;
        assert!(
            got.iter()
                .any(|p| p.attr("type") == Some("subscribe") && p.attr("from") == Some(ROMEO)),
            "request redelivered at initial presence: {got:?}"
        );
        juliet.disconnect().await;
    }
    // A repeated request in the same state is not delivered again (A.3.1).
    let mut juliet = online(&s, J_FULL).await;
    romeo
        .send(presence_to(JULIET, "subscribe"))
        .await
        .expect("send");
    juliet.expect_silence().await;
    // Denied: Romeo's pending-out ends, nothing is pending for Juliet.
    juliet
        .send(presence_to(ROMEO, "unsubscribed"))
        .await
        .expect("send");
    drain(&mut romeo).await;
    assert_eq!(
        subscription(roster_item(&s, ROMEO, JULIET).await),
        Some((Subscription::None, false, false))
    );
    juliet.disconnect().await;
    let mut juliet = interested(&s, J_FULL).await;
    juliet.send(presence()).await.expect("send");
    let got = drain(&mut juliet).await;
    assert!(
        got.iter().all(|p| p.attr("type") != Some("subscribe")),
        "{got:?}"
    );
}

#[tokio::test]
async fn pre_approval_grants_without_asking() {
    let s = server(&[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    let mut juliet = online(&s, J_FULL).await;
    drain(&mut romeo).await;

    // §3.4: subscribed with no request pending → approved='true', not routed.
    juliet
        .send(presence_to(ROMEO, "subscribed"))
        .await
        .expect("send");
    let item = expect_push(&mut juliet, ROMEO, "none", false).await;
    assert_eq!(item.attr("approved"), Some("true"));
    romeo.expect_silence().await;

    romeo
        .send(presence_to(JULIET, "subscribe"))
        .await
        .expect("send");
    expect_push(&mut romeo, JULIET, "none", true).await;
    expect_push(&mut romeo, JULIET, "to", false).await;
    expect_presence(&mut romeo, JULIET, Some("subscribed")).await;
    expect_presence(&mut romeo, J_FULL, None).await;
    // Juliet's roster now says 'from', the approval spent; she was never asked.
    let item = expect_push(&mut juliet, ROMEO, "from", false).await;
    assert_eq!(item.attr("approved"), None);
    juliet.expect_silence().await;
}

#[tokio::test]
async fn pre_approval_can_be_withdrawn() {
    let s = server(&[JULIET, ROMEO]).await;
    let mut juliet = online(&s, J_FULL).await;
    juliet
        .send(presence_to(ROMEO, "subscribed"))
        .await
        .expect("send");
    expect_push(&mut juliet, ROMEO, "none", false).await;
    juliet
        .send(presence_to(ROMEO, "unsubscribed"))
        .await
        .expect("send");
    let item = expect_push(&mut juliet, ROMEO, "none", false).await;
    assert_eq!(item.attr("approved"), None);
}

#[tokio::test]
async fn unsubscribe_ends_the_users_subscription() {
    let s = server(&[JULIET, ROMEO]).await;
    befriend(&s, JULIET, ROMEO).await;
    let mut romeo = online(&s, R_FULL).await;
    let mut juliet = online(&s, J_FULL).await;
    drain(&mut romeo).await;

    // §3.3: Romeo no longer wants Juliet's presence.
    romeo
        .send(presence_to(JULIET, "unsubscribe"))
        .await
        .expect("send");
    expect_push(&mut romeo, JULIET, "from", false).await;
    expect_push(&mut juliet, ROMEO, "to", false).await;
    expect_presence(&mut juliet, ROMEO, Some("unsubscribe")).await;
    // Juliet's resources tell Romeo they are gone (§3.3.3).
    expect_presence(&mut romeo, J_FULL, Some("unavailable")).await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;
}

#[tokio::test]
async fn unsubscribed_cancels_the_contacts_subscription() {
    let s = server(&[JULIET, ROMEO]).await;
    befriend(&s, JULIET, ROMEO).await;
    let mut romeo = online(&s, R_FULL).await;
    let mut juliet = online(&s, J_FULL).await;
    drain(&mut romeo).await;

    // §3.2: Juliet cancels Romeo's subscription to her.
    juliet
        .send(presence_to(ROMEO, "unsubscribed"))
        .await
        .expect("send");
    expect_push(&mut juliet, ROMEO, "to", false).await;
    expect_presence(&mut romeo, J_FULL, Some("unavailable")).await;
    expect_push(&mut romeo, JULIET, "from", false).await;
    expect_presence(&mut romeo, JULIET, Some("unsubscribed")).await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;

    // Her later presence no longer reaches him.
    juliet.send(presence()).await.expect("send");
    drain(&mut juliet).await;
    romeo.expect_silence().await;
}

#[tokio::test]
async fn no_state_change_no_routing() {
    let s = server(&[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    let mut juliet = online(&s, J_FULL).await;
    drain(&mut romeo).await;
    // A.2.4: unsubscribed in state None is neither stored nor routed.
    juliet
        .send(presence_to(ROMEO, "unsubscribed"))
        .await
        .expect("send");
    // A.3.3 / A.3.4: an approval or cancellation Romeo never asked for is not delivered.
    let mut stray = presence_to(ROMEO, "subscribed");
    stray.set_attr("from", JULIET);
    s.route(stray).await;
    let mut stray = presence_to(ROMEO, "unsubscribe");
    stray.set_attr("from", JULIET);
    s.route(stray).await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;
    assert!(roster_item(&s, ROMEO, JULIET).await.is_none());
    assert!(roster_item(&s, JULIET, ROMEO).await.is_none());
}

#[tokio::test]
async fn already_subscribed_request_is_auto_approved() {
    let s = server(&[JULIET, ROMEO]).await;
    befriend(&s, JULIET, ROMEO).await;
    let mut romeo = online(&s, R_FULL).await;
    let mut juliet = online(&s, J_FULL).await;
    drain(&mut romeo).await;
    romeo
        .send(presence_to(JULIET, "subscribe"))
        .await
        .expect("send");
    // §3.1.3: Juliet's server answers 'subscribed' for her (she is not asked); Romeo's
    // server, with no pending-out, swallows it (A.3.3); her presence follows.
    expect_presence(&mut romeo, J_FULL, None).await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;
}

#[tokio::test]
async fn subscribe_to_nonexistent_account_is_refused() {
    let s = server(&[ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    romeo
        .send(presence_to("nobody@localhost", "subscribe"))
        .await
        .expect("send");
    expect_push(&mut romeo, "nobody@localhost", "none", true).await;
    expect_push(&mut romeo, "nobody@localhost", "none", false).await;
    expect_presence(&mut romeo, "nobody@localhost", Some("unsubscribed")).await;
}

#[tokio::test]
async fn subscription_to_full_jid_is_stamped_bare() {
    let s = server(&[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    let mut juliet = online(&s, J_FULL).await;
    drain(&mut romeo).await;
    romeo
        .send(presence_to(J_FULL, "subscribe"))
        .await
        .expect("send");
    expect_push(&mut romeo, JULIET, "none", true).await;
    let req = expect_presence(&mut juliet, ROMEO, Some("subscribe")).await;
    assert_eq!(req.attr("to"), Some(JULIET));
}

#[tokio::test]
async fn removing_a_mutual_contact_cancels_both_ways() {
    let s = server(&[JULIET, ROMEO]).await;
    befriend(&s, JULIET, ROMEO).await;
    let mut romeo = online(&s, R_FULL).await;
    let mut juliet = online(&s, J_FULL).await;
    drain(&mut romeo).await;

    juliet
        .send(roster_set(
            "rm",
            item(ROMEO).with_attr("subscription", "remove"),
        ))
        .await
        .expect("send");
    // §2.5.2: remove push, then unsubscribe and unsubscribed reach Romeo.
    let (_, it) = push_item(&juliet.recv().await);
    assert_eq!(it.attr("subscription"), Some("remove"));
    expect_push(&mut romeo, JULIET, "to", false).await;
    expect_presence(&mut romeo, JULIET, Some("unsubscribe")).await;
    expect_presence(&mut romeo, J_FULL, Some("unavailable")).await;
    expect_push(&mut romeo, JULIET, "none", false).await;
    expect_presence(&mut romeo, JULIET, Some("unsubscribed")).await;
    romeo.expect_silence().await;
    // Juliet saw Romeo go away, then her result.
    expect_presence(&mut juliet, R_FULL, Some("unavailable")).await;
    assert_eq!(juliet.recv().await.attr("type"), Some("result"));
    assert!(roster_item(&s, JULIET, ROMEO).await.is_none());
    assert_eq!(
        subscription(roster_item(&s, ROMEO, JULIET).await),
        Some((Subscription::None, false, false))
    );
}
