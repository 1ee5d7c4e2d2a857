//! RFC 6121 instant messaging end to end over sockets, two users on one server: roster get
//! and set with pushes (§2.1.3, §2.1.5, §2.1.6), the subscription handshake to a mutual
//! subscription (§3.1.1 – §3.1.6, §3.4), presence broadcast both ways (§4.2, §4.4, §4.5),
//! chat both ways with `from` the sender's full JID (§5.2.2, §8.5.2.1.1), offline storage
//! (XEP-0160) delivered with a `<delay/>` (XEP-0203), and a message to an account that does
//! not exist (§8.5.2.2.1: service-unavailable).

mod support;

use starling_xml::{ns, Element};
use support::*;

const PW: &str = "secret";

/// A roster push (§2.1.6) or roster result item for `jid`.
fn roster_item<'a>(el: &'a Element, jid: &str) -> Option<&'a Element> {
    if el.name() != "iq" {
        return None;
    }
    el.get_child("query", NS_ROSTER)?
        .children()
        .find(|i| i.is("item", NS_ROSTER) && i.attr("jid") == Some(jid))
}

/// A roster push (an IQ set from the server, §2.1.6) whose item for `jid` has this
/// subscription and `ask`.
fn is_push(el: &Element, jid: &str, subscription: &str, ask: Option<&str>) -> bool {
    el.attr("type") == Some("set")
        && roster_item(el, jid).is_some_and(|i| {
            i.attr("subscription").unwrap_or("none") == subscription && i.attr("ask") == ask
        })
}

fn is_presence(el: &Element, from: &str, ty: Option<&str>) -> bool {
    el.name() == "presence" && el.attr("from") == Some(from) && el.attr("type") == ty
}

/// Logs in, requests the roster (§2.2: before initial presence; it makes the resource an
/// "interested resource" that gets roster pushes, §2.1.6) and sends initial presence (§4.2),
/// so the session is available.
async fn online(srv: &TestServer, user: &str, resource: &str) -> XmppClient {
    let mut c = srv.login(user, PW, resource).await;
    let r = c
        .request(
            "<iq type='get' id='roster-0'><query xmlns='jabber:iq:roster'/></iq>",
            "roster-0",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "roster get: {r}");
    c.send_stanza("<presence/>").await;
    c
}

async fn two_users() -> (TestServer, XmppClient, XmppClient) {
    let srv = TestServer::start().await;
    srv.add_user("alice", PW).await;
    srv.add_user("bob", PW).await;
    let alice = online(&srv, "alice", "home").await;
    let bob = online(&srv, "bob", "work").await;
    (srv, alice, bob)
}

/// `user` subscribes to `contact` and `contact` approves (§3.1), checking every step. Where
/// the RFC does not order two deliveries, the test accepts either order.
async fn subscribe_and_approve(user: &mut XmppClient, contact: &mut XmppClient) {
    let (u_bare, c_bare) = (user.bare(), contact.bare());
    let c_full = contact.full();
    // §3.1.1 / §3.1.2: the request, and a push of the pending subscription to the user.
    user.send_stanza(&format!("<presence to='{c_bare}' type='subscribe'/>"))
        .await;
    user.wait_for(&format!("a push of {c_bare} with ask='subscribe'"), |e| {
        roster_item(e, &c_bare).is_some_and(|i| i.attr("ask") == Some("subscribe"))
            && e.attr("type") == Some("set")
    })
    .await;
    // §3.1.3: the contact gets the request from the user's bare JID.
    contact
        .wait_for(&format!("subscribe from {u_bare}"), |e| {
            is_presence(e, &u_bare, Some("subscribe"))
        })
        .await;
    // §3.1.5: approval, and a push to the contact with 'from' (or 'both').
    contact
        .send_stanza(&format!("<presence to='{u_bare}' type='subscribed'/>"))
        .await;
    contact
        .wait_for(&format!("a push of {u_bare} with 'from' or 'both'"), |e| {
            e.attr("type") == Some("set")
                && roster_item(e, &u_bare)
                    .is_some_and(|i| matches!(i.attr("subscription"), Some("from") | Some("both")))
        })
        .await;
    // §3.1.6: the user gets `subscribed` from the contact's bare JID and a push with 'to'
    // or 'both' and no ask; §3.1.5: and the contact's current presence from its full JID.
    user.wait_for_all(vec![
        want(format!("subscribed from {c_bare}"), |e: &Element| {
            is_presence(e, &c_bare, Some("subscribed"))
        }),
        want(
            format!("a push of {c_bare} with 'to' or 'both'"),
            |e: &Element| {
                e.attr("type") == Some("set")
                    && roster_item(e, &c_bare).is_some_and(|i| {
                        matches!(i.attr("subscription"), Some("to") | Some("both"))
                            && i.attr("ask").is_none()
                    })
            },
        ),
        want(
            format!("available presence from {c_full}"),
            |e: &Element| is_presence(e, &c_full, None),
        ),
    ])
    .await;
}

async fn befriend(a: &mut XmppClient, b: &mut XmppClient) {
    subscribe_and_approve(a, b).await;
    subscribe_and_approve(b, a).await;
}

/// §2.1.3: the roster of a new account is empty.
#[tokio::test]
async fn s2_1_3_roster_get_of_new_account_is_empty() {
    let (_srv, mut alice, _bob) = two_users().await;
    let r = alice
        .request(
            "<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>",
            "r0",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    let q = r
        .get_child("query", NS_ROSTER)
        .unwrap_or_else(|| panic!("no query in roster result {r}"));
    assert_eq!(q.children().count(), 0, "{r}");
}

/// §2.1.5 / §2.1.6: adding an item is answered with a result and pushed with
/// subscription 'none'; a roster get then lists it with its name.
#[tokio::test]
async fn s2_1_5_roster_set_is_pushed_and_listed() {
    let (_srv, mut alice, _bob) = two_users().await;
    alice
        .send_stanza(
            "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'>\
             <item jid='bob@localhost' name='Bob'><group>Friends</group></item></query></iq>",
        )
        .await;
    let mut got_result = false;
    let mut got_push = false;
    while !(got_result && got_push) {
        let e = alice
            .wait_for("the roster set's result and push", |e| e.name() == "iq")
            .await;
        if e.attr("id") == Some("r1") {
            assert_eq!(e.attr("type"), Some("result"), "{e}");
            got_result = true;
        } else if is_push(&e, "bob@localhost", "none", None) {
            let i = roster_item(&e, "bob@localhost").expect("item");
            assert_eq!(i.attr("name"), Some("Bob"), "{e}");
            got_push = true;
        }
    }
    let r = alice
        .request(
            "<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>",
            "r2",
        )
        .await;
    let item = roster_item(&r, "bob@localhost").unwrap_or_else(|| panic!("bob not listed: {r}"));
    assert_eq!(item.attr("name"), Some("Bob"), "{r}");
    assert_eq!(
        item.child_text("group", NS_ROSTER).as_deref(),
        Some("Friends"),
        "{r}"
    );
}

/// §3.1 and §3.4: subscribe, approve, both ways: both rosters end at 'both' with no
/// pending ask.
#[tokio::test]
async fn s3_subscription_handshake_to_mutual() {
    let (_srv, mut alice, mut bob) = two_users().await;
    alice
        .request(
            "<iq type='set' id='add'><query xmlns='jabber:iq:roster'>\
             <item jid='bob@localhost' name='Bob'/></query></iq>",
            "add",
        )
        .await;
    befriend(&mut alice, &mut bob).await;
    for (c, other) in [(&mut alice, "bob@localhost"), (&mut bob, "alice@localhost")] {
        let r = c
            .request(
                "<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>",
                "rg",
            )
            .await;
        let item = roster_item(&r, other).unwrap_or_else(|| panic!("{other} not listed: {r}"));
        assert_eq!(item.attr("subscription"), Some("both"), "{r}");
        assert_eq!(item.attr("ask"), None, "{r}");
    }
}

/// §4.2.2 / §4.4.2 / §4.5.2: with a mutual subscription, presence changes reach the contact
/// from the sender's full JID, both ways, and so does unavailable presence.
#[tokio::test]
async fn s4_presence_broadcast_both_ways() {
    let (_srv, mut alice, mut bob) = two_users().await;
    befriend(&mut alice, &mut bob).await;
    let (a_full, b_full) = (alice.full(), bob.full());

    alice
        .send_stanza("<presence><show>away</show><status>lunch</status></presence>")
        .await;
    let p = bob
        .wait_for("alice's away presence", |e| {
            is_presence(e, &a_full, None) && e.child_text("show", ns::CLIENT).is_some()
        })
        .await;
    assert_eq!(
        p.child_text("show", ns::CLIENT).as_deref(),
        Some("away"),
        "{p}"
    );
    assert_eq!(
        p.child_text("status", ns::CLIENT).as_deref(),
        Some("lunch"),
        "{p}"
    );

    bob.send_stanza("<presence><status>working</status></presence>")
        .await;
    let p = alice
        .wait_for("bob's presence with a status", |e| {
            is_presence(e, &b_full, None) && e.child_text("status", ns::CLIENT).is_some()
        })
        .await;
    assert_eq!(
        p.child_text("status", ns::CLIENT).as_deref(),
        Some("working"),
        "{p}"
    );

    alice.send_stanza("<presence type='unavailable'/>").await;
    bob.wait_for("alice's unavailable presence", |e| {
        is_presence(e, &a_full, Some("unavailable"))
    })
    .await;
}

/// §5.2.2 / §8.5.2.1.1 / §8.5.3.1: a chat message to the bare JID reaches the available
/// resource, one to the full JID that resource; `from` is the sender's full JID both ways.
#[tokio::test]
async fn s5_chat_both_ways_from_full_jid() {
    let (_srv, mut alice, mut bob) = two_users().await;
    let (a_full, b_full) = (alice.full(), bob.full());
    alice
        .send_stanza(
            "<message to='bob@localhost' type='chat' id='c1'><body>Hello Bob</body></message>",
        )
        .await;
    let m = bob
        .wait_for("alice's message", |e| {
            e.name() == "message" && e.attr("id") == Some("c1")
        })
        .await;
    assert_eq!(m.attr("from"), Some(a_full.as_str()), "{m}");
    assert_eq!(m.attr("to"), Some("bob@localhost"), "{m}");
    assert_eq!(m.attr("type"), Some("chat"), "{m}");
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("Hello Bob")
    );

    bob.send_stanza(&format!(
        "<message to='{a_full}' type='chat' id='c2'><body>Hi Alice</body></message>"
    ))
    .await;
    let m = alice
        .wait_for("bob's reply", |e| {
            e.name() == "message" && e.attr("id") == Some("c2")
        })
        .await;
    assert_eq!(m.attr("from"), Some(b_full.as_str()), "{m}");
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("Hi Alice")
    );
    // Nothing bounced to the senders.
    for c in [&mut alice, &mut bob] {
        let before = c.barrier().await;
        assert!(
            !before.iter().any(|e| e.attr("type") == Some("error")),
            "unexpected errors: {before:?}"
        );
    }
}

/// XEP-0160 §3 / XEP-0203: a chat message to an offline user is stored and delivered when
/// the user next sends initial presence, with `<delay xmlns='urn:xmpp:delay' stamp=…/>`.
#[tokio::test]
async fn xep0160_offline_message_delivered_with_delay() {
    let srv = TestServer::start().await;
    srv.add_user("alice", PW).await;
    srv.add_user("bob", PW).await;
    let mut alice = online(&srv, "alice", "home").await;
    let a_full = alice.full();

    alice
        .send_stanza(
            "<message to='bob@localhost' type='chat' id='off1'>\
             <body>while you were out</body></message>",
        )
        .await;
    // Stored, not bounced (§8.5.2.2.1 allows storage for an existing account).
    let before = alice.barrier().await;
    assert!(
        !before.iter().any(|e| e.attr("id") == Some("off1")),
        "the offline message came back: {before:?}"
    );

    let mut bob = srv.login("bob", PW, "phone").await;
    bob.send_stanza("<presence/>").await;
    let m = bob
        .wait_for("the offline message", |e| {
            e.name() == "message" && e.attr("id") == Some("off1")
        })
        .await;
    assert_eq!(m.attr("from"), Some(a_full.as_str()), "{m}");
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("while you were out")
    );
    let delay = m
        .get_child("delay", NS_DELAY)
        .unwrap_or_else(|| panic!("no <delay xmlns='urn:xmpp:delay'/> in {m}"));
    let stamp = delay.attr("stamp").unwrap_or_default();
    // XEP-0082 DateTime in UTC: 2024-01-02T03:04:05Z or with fractions.
    assert!(
        stamp.len() >= 20 && stamp.as_bytes()[10] == b'T' && stamp.ends_with('Z'),
        "bad stamp {stamp:?} in {m}"
    );

    // Delivered once: a second login does not get it again.
    bob.close().await;
    bob.expect_closed().await;
    let mut bob = online(&srv, "bob", "phone").await;
    let before = bob.barrier().await;
    assert!(
        !before.iter().any(|e| e.attr("id") == Some("off1")),
        "offline message delivered twice: {before:?}"
    );
}

/// §8.5.2.2.1: a message to an account that does not exist is answered with
/// service-unavailable (type cancel) from the address it was sent to.
#[tokio::test]
async fn s8_5_2_2_1_message_to_nonexistent_user_is_service_unavailable() {
    let (_srv, mut alice, _bob) = two_users().await;
    alice
        .send_stanza(
            "<message to='nobody@localhost' type='chat' id='nx'><body>anyone?</body></message>",
        )
        .await;
    let e = alice
        .wait_for("the error for the message to nobody", |e| {
            e.name() == "message" && e.attr("id") == Some("nx")
        })
        .await;
    assert_stanza_error(&e, "service-unavailable", "cancel");
    assert_eq!(e.attr("from"), Some("nobody@localhost"), "{e}");
}

/// §8.5.3.2.1: a chat message to a full JID whose resource is not connected is handled as if
/// sent to the bare JID: the user's available resource gets it.
#[tokio::test]
async fn s8_5_3_2_1_chat_to_unavailable_resource_reaches_the_bare_jid() {
    let (_srv, mut alice, mut bob) = two_users().await;
    alice
        .send_stanza(
            "<message to='bob@localhost/gone' type='chat' id='fr1'><body>anyone?</body></message>",
        )
        .await;
    let m = bob
        .wait_for("the message sent to another resource", |e| {
            e.name() == "message" && e.attr("id") == Some("fr1")
        })
        .await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("anyone?"),
        "{m}"
    );
    let before = alice.barrier().await;
    assert!(
        !before.iter().any(|e| e.attr("type") == Some("error")),
        "the message bounced: {before:?}"
    );
}

/// §4.2.2 / §4.3: on initial presence the server probes the contacts: a user who comes back
/// gets the current presence of an online contact, and the contact gets the user's.
#[tokio::test]
async fn s4_3_initial_presence_gets_contacts_presence() {
    let (srv, mut alice, mut bob) = two_users().await;
    befriend(&mut alice, &mut bob).await;
    let a_full = alice.full();
    bob.close().await;
    bob.expect_closed().await;
    alice
        .wait_for("bob's unavailable presence when he left", |e| {
            is_presence(e, "bob@localhost/work", Some("unavailable"))
        })
        .await;

    let mut bob = online(&srv, "bob", "laptop").await;
    bob.wait_for("alice's presence in answer to the probe", |e| {
        is_presence(e, &a_full, None)
    })
    .await;
    alice
        .wait_for("bob's initial presence", |e| {
            is_presence(e, "bob@localhost/laptop", None)
        })
        .await;
}

/// §3.3: the user unsubscribes from the contact's presence: both rosters are pushed down
/// one step and the contact's presence is withdrawn (unavailable) from the user.
#[tokio::test]
async fn s3_3_unsubscribe() {
    let (_srv, mut alice, mut bob) = two_users().await;
    befriend(&mut alice, &mut bob).await;
    let b_full = bob.full();
    alice
        .send_stanza("<presence to='bob@localhost' type='unsubscribe'/>")
        .await;
    // §3.3.2: a push of 'from' to the user.
    // §3.3.3: the contact's server sends unavailable presence from the contact's resources.
    alice
        .wait_for_all(vec![
            want("a push of bob with 'from'", |e: &Element| {
                is_push(e, "bob@localhost", "from", None)
            }),
            want(format!("unavailable from {b_full}"), |e: &Element| {
                is_presence(e, &b_full, Some("unavailable"))
            }),
        ])
        .await;
    // §3.3.3: the contact gets `unsubscribe` from the user's bare JID and a push with 'to'.
    bob.wait_for_all(vec![
        want("unsubscribe from alice", |e: &Element| {
            is_presence(e, "alice@localhost", Some("unsubscribe"))
        }),
        want("a push of alice with 'to'", |e: &Element| {
            is_push(e, "alice@localhost", "to", None)
        }),
    ])
    .await;
}

/// §2.5.2 / §2.5.3: removing a contact with a mutual subscription pushes `remove` to the
/// user and cancels both subscriptions: the contact gets `unsubscribe` and `unsubscribed`.
#[tokio::test]
async fn s2_5_roster_remove_cancels_subscriptions() {
    let (_srv, mut alice, mut bob) = two_users().await;
    befriend(&mut alice, &mut bob).await;
    alice
        .send_stanza(
            "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'>\
             <item jid='bob@localhost' subscription='remove'/></query></iq>",
        )
        .await;
    alice
        .wait_for_all(vec![
            want("the result of the removal", |e: &Element| {
                e.attr("id") == Some("rm") && e.attr("type") == Some("result")
            }),
            want("a push of bob with 'remove'", |e: &Element| {
                is_push(e, "bob@localhost", "remove", None)
            }),
        ])
        .await;
    bob.wait_for_all(vec![
        want("unsubscribe from alice", |e: &Element| {
            is_presence(e, "alice@localhost", Some("unsubscribe"))
        }),
        want("unsubscribed from alice", |e: &Element| {
            is_presence(e, "alice@localhost", Some("unsubscribed"))
        }),
        want("a push of alice with 'none'", |e: &Element| {
            is_push(e, "alice@localhost", "none", None)
        }),
    ])
    .await;
}

/// §8.5.2.2.1 / XEP-0160 §3: a headline to an offline user is neither stored nor bounced.
#[tokio::test]
async fn xep0160_headline_to_offline_user_is_not_stored() {
    let srv = TestServer::start().await;
    srv.add_user("alice", PW).await;
    srv.add_user("bob", PW).await;
    let mut alice = online(&srv, "alice", "home").await;
    alice
        .send_stanza(
            "<message to='bob@localhost' type='headline' id='h1'><body>news</body></message>",
        )
        .await;
    let before = alice.barrier().await;
    assert!(
        !before.iter().any(|e| e.attr("id") == Some("h1")),
        "the headline came back: {before:?}"
    );
    let mut bob = online(&srv, "bob", "phone").await;
    let before = bob.barrier().await;
    assert!(
        !before.iter().any(|e| e.attr("id") == Some("h1")),
        "a headline was stored offline: {before:?}"
    );
}
