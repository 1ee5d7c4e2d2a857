//! RFC 6121 §3 presence subscriptions (handshake, pre-approval, cancellation, pending
//! requests) and §2.5.2 removal, in process.

mod support;

use std::sync::Arc;

use starling_core::testing::TestClient;
use starling_core::Server;
use starling_proto::Jid;
use starling_store::Subscription;
use support::*;

/// Juliet and Romeo online (mutual subscribers in the store first when `friends`), with what
/// Romeo received at login read: `(server, romeo, juliet)`.
async fn both_online(friends: bool) -> (Arc<Server>, TestClient, TestClient) {
    let s = im_server(&[JULIET, ROMEO]).await;
    if friends {
        befriend(&s, JULIET, ROMEO).await;
    }
    let mut romeo = online(&s, R_FULL).await;
    let juliet = online(&s, J_FULL).await;
    drain(&mut romeo).await;
    (s, romeo, juliet)
}

/// `(subscription, ask, approved)` of the account's roster item for `contact`.
async fn state(s: &Server, account: &str, contact: &str) -> Option<(Subscription, bool, bool)> {
    roster_item(s, account, contact)
        .await
        .map(|i| (i.subscription, i.ask_out, i.approved))
}

#[tokio::test]
async fn full_handshake_to_mutual_subscription() {
    let (s, mut romeo, mut juliet) = both_online(false).await;

    // §3.1.2: Romeo asks; his roster shows the pending request, Juliet gets it from his
    // bare JID.
    send(&romeo, presence_to(JULIET, "subscribe")).await;
    expect_push(&mut romeo, JULIET, "none", true).await;
    let req = expect_presence(&mut juliet, ROMEO, Some("subscribe")).await;
    assert_eq!(req.attr("to"), Some(JULIET));
    romeo.expect_silence().await;
    juliet.expect_silence().await;

    // §3.1.5: Juliet approves; both rosters change; Romeo learns and sees her presence.
    send(&juliet, presence_to(ROMEO, "subscribed")).await;
    expect_push(&mut juliet, ROMEO, "from", false).await;
    expect_push(&mut romeo, JULIET, "to", false).await;
    expect_presence(&mut romeo, JULIET, Some("subscribed")).await;
    expect_presence(&mut romeo, J_FULL, None).await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;

    // And the other way round: mutual → both.
    send(&juliet, presence_to(ROMEO, "subscribe")).await;
    expect_push(&mut juliet, ROMEO, "from", true).await;
    expect_presence(&mut romeo, JULIET, Some("subscribe")).await;
    send(&romeo, presence_to(JULIET, "subscribed")).await;
    expect_push(&mut romeo, JULIET, "both", false).await;
    expect_push(&mut juliet, ROMEO, "both", false).await;
    expect_presence(&mut juliet, ROMEO, Some("subscribed")).await;
    expect_presence(&mut juliet, R_FULL, None).await;
    assert_eq!(
        state(&s, JULIET, ROMEO).await,
        Some((Subscription::Both, false, false))
    );
    assert_eq!(
        state(&s, ROMEO, JULIET).await,
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
    let s = im_server(&[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    send(&romeo, presence_to(JULIET, "subscribe")).await;
    expect_push(&mut romeo, JULIET, "none", true).await;

    for _ in 0..2 {
        let mut juliet = interested(&s, J_FULL).await;
        send(&juliet, presence()).await;
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
    send(&romeo, presence_to(JULIET, "subscribe")).await;
    juliet.expect_silence().await;
    // Denied: Romeo's pending-out ends, nothing is pending for Juliet.
    send(&juliet, presence_to(ROMEO, "unsubscribed")).await;
    drain(&mut romeo).await;
    assert_eq!(
        state(&s, ROMEO, JULIET).await,
        Some((Subscription::None, false, false))
    );
    juliet.disconnect().await;
    let mut juliet = interested(&s, J_FULL).await;
    send(&juliet, presence()).await;
    let got = drain(&mut juliet).await;
    assert!(
        got.iter().all(|p| p.attr("type") != Some("subscribe")),
        "{got:?}"
    );
}

#[tokio::test]
async fn pre_approval_grants_without_asking() {
    let (_s, mut romeo, mut juliet) = both_online(false).await;

    // §3.4: subscribed with no request pending → approved='true', not routed.
    send(&juliet, presence_to(ROMEO, "subscribed")).await;
    let item = expect_push(&mut juliet, ROMEO, "none", false).await;
    assert_eq!(item.attr("approved"), Some("true"));
    romeo.expect_silence().await;

    send(&romeo, presence_to(JULIET, "subscribe")).await;
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
    let s = im_server(&[JULIET, ROMEO]).await;
    let mut juliet = online(&s, J_FULL).await;
    send(&juliet, presence_to(ROMEO, "subscribed")).await;
    expect_push(&mut juliet, ROMEO, "none", false).await;
    send(&juliet, presence_to(ROMEO, "unsubscribed")).await;
    let item = expect_push(&mut juliet, ROMEO, "none", false).await;
    assert_eq!(item.attr("approved"), None);
}

#[tokio::test]
async fn unsubscribe_ends_the_users_subscription() {
    let (_s, mut romeo, mut juliet) = both_online(true).await;

    // §3.3: Romeo no longer wants Juliet's presence.
    send(&romeo, presence_to(JULIET, "unsubscribe")).await;
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
    let (_s, mut romeo, mut juliet) = both_online(true).await;

    // §3.2: Juliet cancels Romeo's subscription to her.
    send(&juliet, presence_to(ROMEO, "unsubscribed")).await;
    expect_push(&mut juliet, ROMEO, "to", false).await;
    expect_presence(&mut romeo, J_FULL, Some("unavailable")).await;
    expect_push(&mut romeo, JULIET, "from", false).await;
    expect_presence(&mut romeo, JULIET, Some("unsubscribed")).await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;

    // Her later presence no longer reaches him.
    send(&juliet, presence()).await;
    drain(&mut juliet).await;
    romeo.expect_silence().await;
}

#[tokio::test]
async fn no_state_change_no_routing() {
    let (s, mut romeo, mut juliet) = both_online(false).await;
    // A.2.4: unsubscribed in state None is neither stored nor routed.
    send(&juliet, presence_to(ROMEO, "unsubscribed")).await;
    // A.3.3 / A.3.4: an approval or cancellation Romeo never asked for is not delivered.
    s.route(presence_to(ROMEO, "subscribed").with_attr("from", JULIET))
        .await;
    s.route(presence_to(ROMEO, "unsubscribe").with_attr("from", JULIET))
        .await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;
    assert!(roster_item(&s, ROMEO, JULIET).await.is_none());
    assert!(roster_item(&s, JULIET, ROMEO).await.is_none());
}

#[tokio::test]
async fn already_subscribed_request_is_auto_approved() {
    let (_s, mut romeo, mut juliet) = both_online(true).await;
    send(&romeo, presence_to(JULIET, "subscribe")).await;
    // §3.1.3: Juliet's server answers 'subscribed' for her (she is not asked); Romeo's
    // server, with no pending-out, swallows it (A.3.3); her presence follows.
    expect_presence(&mut romeo, J_FULL, None).await;
    romeo.expect_silence().await;
    juliet.expect_silence().await;
}

#[tokio::test]
async fn subscribe_to_nonexistent_account_is_refused() {
    let s = im_server(&[ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    send(&romeo, presence_to("nobody@localhost", "subscribe")).await;
    expect_push(&mut romeo, "nobody@localhost", "none", true).await;
    expect_push(&mut romeo, "nobody@localhost", "none", false).await;
    expect_presence(&mut romeo, "nobody@localhost", Some("unsubscribed")).await;
}

#[tokio::test]
async fn subscription_to_full_jid_is_stamped_bare() {
    let (_s, mut romeo, mut juliet) = both_online(false).await;
    send(&romeo, presence_to(J_FULL, "subscribe")).await;
    expect_push(&mut romeo, JULIET, "none", true).await;
    let req = expect_presence(&mut juliet, ROMEO, Some("subscribe")).await;
    assert_eq!(req.attr("to"), Some(JULIET));
}

#[tokio::test]
async fn removing_a_mutual_contact_cancels_both_ways() {
    let (s, mut romeo, mut juliet) = both_online(true).await;

    send(&juliet, roster_remove("rm", ROMEO)).await;
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
        state(&s, ROMEO, JULIET).await,
        Some((Subscription::None, false, false))
    );
}

#[tokio::test]
async fn inbound_subscription_from_full_jid_is_stamped_bare() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let mut juliet = online(&s, J_FULL).await;
    // §3.1.3: the contact's server stamps both ends with bare JIDs, whatever the sender's
    // server put there.
    s.route(presence_to(J_FULL, "subscribe").with_attr("from", "benvolio@montague.example/street"))
        .await;
    let req = expect_presence(&mut juliet, "benvolio@montague.example", Some("subscribe")).await;
    assert_eq!(req.attr("to"), Some(JULIET));
    juliet.disconnect().await;

    // The stored request is redelivered with the bare 'from' as well.
    let mut juliet = interested(&s, J_FULL).await;
    send(&juliet, presence()).await;
    let got = drain(&mut juliet).await;
    let again: Vec<_> = got
        .iter()
        .filter(|p| p.attr("type") == Some("subscribe"))
        .collect();
    assert_eq!(again.len(), 1, "{got:?}");
    assert_eq!(again[0].attr("from"), Some("benvolio@montague.example"));
}

/// XEP-0077 §3.2 / `ctl unregister`: a deleted account goes unavailable at its contacts and
/// its subscriptions are cancelled both ways (as ejabberd does), before its data is gone.
#[tokio::test]
async fn removed_account_goes_unavailable_and_cancels_subscriptions() {
    let (s, mut romeo, _juliet) = both_online(true).await;
    let juliet = Jid::parse(JULIET).expect("jid");
    s.remove_account(&juliet).await.expect("removed");

    let got = drain(&mut romeo).await;
    let from_juliet = |ty: &str| {
        got.iter().any(|p| {
            p.name() == "presence"
                && p.attr("type") == Some(ty)
                && p.attr("from").is_some_and(|f| f.starts_with(JULIET))
        })
    };
    assert!(
        from_juliet("unavailable"),
        "no unavailable presence: {got:?}"
    );
    // Juliet was subscribed to Romeo's presence and he to hers: both directions end.
    assert_eq!(
        state(&s, ROMEO, JULIET).await.map(|(sub, ..)| sub),
        Some(Subscription::None)
    );
    assert!(roster_item(&s, JULIET, ROMEO).await.is_none());
}
