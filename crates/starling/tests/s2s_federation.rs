//! Server-to-server federation over real sockets (RFC 6120 §4–§6 on `jabber:server`, XEP-0178
//! SASL EXTERNAL, XEP-0220 dialback): two in-process servers `a.test` and `b.test` with static
//! routes to each other, certificates from a test CA (rcgen), users on both sides; and raw
//! peers that misbehave (spoofed `from`, wrong certificate, no authentication, wrong dialback
//! key), each refused with the right error and nothing delivered.

#[path = "s2s/bidi.rs"]
mod bidi;
#[path = "s2s/components.rs"]
mod components;
#[path = "s2s/dns.rs"]
mod dns;
#[path = "s2s/failures.rs"]
mod failures;
#[path = "s2s/hardening.rs"]
mod hardening;
#[path = "s2s/harness.rs"]
mod harness;
mod support;

use std::time::Duration;

use harness::*;
use starling_core::config::{S2sPolicy, S2sRoute};
use starling_core::Transport;
use starling_xml::{ns, Element, StreamEvent};
use support::{assert_stanza_error, free_port, TempDir};

#[tokio::test]
async fn certificates_sasl_external_full_im_across_servers() {
    let dir = TempDir::new("ca");
    let ca = Ca::new(dir.path());
    let (a, b) = two_servers_with_certs(S2sPolicy::Certs, &ca, |_| {}).await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    b.add_user("carol").await;
    let mut alice = a.login("alice", "laptop").await;
    let mut bob = b.login("bob", "phone").await;

    // RFC 6121 §3.1: alice subscribes to bob across servers, bob approves.
    alice
        .send_stanza("<presence type='subscribe' to='bob@b.test'/>")
        .await;
    bob.wait_for("subscribe from alice", |el| {
        presence_of_type(el, Some("subscribe"), "alice@a.test")
    })
    .await;
    bob.send_stanza("<presence type='subscribed' to='alice@a.test'/>")
        .await;
    alice
        .wait_for_all(vec![
            support::want("subscribed from bob", |el| {
                presence_of_type(el, Some("subscribed"), "bob@b.test")
            }),
            support::want("bob's presence", |el| {
                presence_of_type(el, None, "bob@b.test/phone")
            }),
        ])
        .await;

    // And the other way round.
    bob.send_stanza("<presence type='subscribe' to='alice@a.test'/>")
        .await;
    alice
        .wait_for("subscribe from bob", |el| {
            presence_of_type(el, Some("subscribe"), "bob@b.test")
        })
        .await;
    alice
        .send_stanza("<presence type='subscribed' to='bob@b.test'/>")
        .await;
    bob.wait_for_all(vec![
        support::want("subscribed from alice", |el| {
            presence_of_type(el, Some("subscribed"), "alice@a.test")
        }),
        support::want("alice's presence", |el| {
            presence_of_type(el, None, "alice@a.test/laptop")
        }),
    ])
    .await;

    // Chat both ways.
    alice
        .send_stanza("<message to='bob@b.test' type='chat' id='m1'><body>hi bob</body></message>")
        .await;
    let m = bob
        .wait_for("alice's message", |el| message_with(el, "hi bob"))
        .await;
    assert_eq!(m.attr("from"), Some("alice@a.test/laptop"));
    assert_eq!(m.attr("to"), Some("bob@b.test"));
    bob.send_stanza(
        "<message to='alice@a.test/laptop' type='chat' id='m2'><body>hi alice</body></message>",
    )
    .await;
    let m = alice
        .wait_for("bob's message", |el| message_with(el, "hi alice"))
        .await;
    assert_eq!(m.attr("from"), Some("bob@b.test/phone"));

    // IQs across: disco#info of the remote server, vCard of a remote account.
    let r = alice
        .request(
            "<iq type='get' id='d1' to='b.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
            "d1",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    assert_eq!(r.attr("from"), Some("b.test"));
    let r = alice
        .request(
            "<iq type='get' id='v1' to='bob@b.test'><vCard xmlns='vcard-temp'/></iq>",
            "v1",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");

    // XEP-0160: a message to an offline remote account is stored there.
    alice
        .send_stanza(
            "<message to='carol@b.test' type='chat' id='m3'><body>for later</body></message>",
        )
        .await;
    // The stream keeps order: once this answer is back, the message was handled.
    alice
        .request(
            "<iq type='get' id='d2' to='b.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
            "d2",
        )
        .await;
    let mut carol = b.login("carol", "desk").await;
    let m = carol
        .wait_for("the offline message", |el| message_with(el, "for later"))
        .await;
    assert_eq!(m.attr("from"), Some("alice@a.test/laptop"));

    // XEP-0288: a.test opened the stream and requested bidi; b.test answers over it.
    let a_links = a.s2s_connections().await;
    assert!(
        a_links.contains("out a.test b.test sasl-external TLSv1.3 established bidi"),
        "{a_links}"
    );
    assert!(!a_links.contains("in "), "{a_links}");
    let b_links = b.s2s_connections().await;
    assert!(
        b_links.contains("in b.test a.test sasl-external TLSv1.3 established bidi"),
        "{b_links}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn dialback_with_untrusted_self_signed_certificates() {
    let (pa, pb) = (free_port(), free_port());
    // No [tls] certs: each server generates its own self-signed certificate, which the
    // other does not trust; dialback authenticates instead. Without bidi (XEP-0288), each
    // direction has its own stream.
    let a = Node::start("a.test", pa, &[("b.test", pb)], |c| c.s2s.bidi = false).await;
    let b = Node::start("b.test", pb, &[("a.test", pa)], |c| c.s2s.bidi = false).await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.login("alice", "laptop").await;
    let mut bob = b.login("bob", "phone").await;
    alice
        .send_stanza("<message to='bob@b.test' type='chat'><body>over dialback</body></message>")
        .await;
    bob.wait_for("the message", |el| message_with(el, "over dialback"))
        .await;
    bob.send_stanza("<message to='alice@a.test' type='chat'><body>back</body></message>")
        .await;
    alice
        .wait_for("the answer", |el| message_with(el, "back"))
        .await;
    let links = a.s2s_connections().await;
    assert!(
        links.contains("out a.test b.test dialback TLSv1.3 established"),
        "{links}"
    );
    assert!(
        links.contains("in a.test b.test dialback TLSv1.3 established"),
        "{links}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn direct_tls_route_xep0368() {
    let (pa, pb, pb_tls) = (free_port(), free_port(), free_port());
    let a = Node::start("a.test", pa, &[], |cfg| {
        cfg.s2s.routes.push(S2sRoute {
            domain: "b.test".into(),
            host: "127.0.0.1".into(),
            port: pb_tls,
            direct_tls: true,
        });
    })
    .await;
    let b = Node::start("b.test", pb, &[("a.test", pa)], |cfg| {
        cfg.s2s.direct_tls_listen = format!("127.0.0.1:{pb_tls}");
    })
    .await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.login("alice", "laptop").await;
    let mut bob = b.login("bob", "phone").await;
    alice
        .send_stanza("<message to='bob@b.test' type='chat'><body>direct</body></message>")
        .await;
    bob.wait_for("the message", |el| message_with(el, "direct"))
        .await;
    let links = b.s2s_connections().await;
    assert!(
        links.contains("in b.test a.test dialback TLSv1.3 established"),
        "{links}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn unreachable_domain_bounces_remote_server_not_found() {
    let closed = free_port();
    let a = Node::start("a.test", free_port(), &[("nowhere.test", closed)], |_| {}).await;
    a.add_user("alice").await;
    let mut alice = a.login("alice", "laptop").await;
    alice
        .send_stanza("<message to='u@nowhere.test' id='lost' type='chat'><body>x</body></message>")
        .await;
    let err = alice
        .wait_for("the bounce", |el| {
            el.name() == "message" && el.attr("id") == Some("lost")
        })
        .await;
    assert_stanza_error(&err, "remote-server-not-found", "cancel");
    assert_eq!(err.attr("from"), Some("u@nowhere.test"));
    // An IQ bounces the same way; nothing stays behind.
    let r = alice
        .request(
            "<iq type='get' id='q' to='nowhere.test'><ping xmlns='urn:xmpp:ping'/></iq>",
            "q",
        )
        .await;
    assert_stanza_error(&r, "remote-server-not-found", "cancel");
    a.stop().await;
}

#[tokio::test]
async fn bad_peers_are_refused_and_nothing_is_delivered() {
    let dir = TempDir::new("ca");
    let ca = Ca::new(dir.path());
    // b.test requires a valid certificate from w.test and gives 1 s to authenticate.
    let (a, b) = two_servers_with_certs(S2sPolicy::Dialback, &ca, |cfg| {
        cfg.s2s.negotiation_timeout_secs = 1;
        cfg.s2s.policy.insert("w.test".into(), S2sPolicy::Certs);
    })
    .await;
    b.add_user("bob").await;
    let mut bob = b.login("bob", "phone").await;

    // 1. Authenticated as x.test (SASL EXTERNAL), then a stanza from y.test: invalid-from.
    let mut peer = RawPeer::connect(b.s2s, Some(ca.leaf("x", &["x.test"]))).await;
    let (_, features) = peer.starttls("x.test").await;
    assert!(
        features
            .to_xml()
            .contains("<mechanism>EXTERNAL</mechanism>"),
        "{features}"
    );
    peer.send(&starling_proto::s2s::external_auth("x.test"))
        .await;
    assert!(peer.element().await.is("success", NS_SASL));
    peer.t.reset();
    peer.open("x.test").await;
    peer.send(
        &Element::new("message", ns::SERVER)
            .with_attr("from", "mallory@y.test")
            .with_attr("to", "bob@b.test")
            .with_child(Element::new("body", ns::SERVER).with_text("spoofed")),
    )
    .await;
    assert_eq!(peer.stream_error().await, "invalid-from");

    // 2. Policy "certs" for w.test and a certificate naming another domain: refused.
    let mut peer = RawPeer::connect(b.s2s, Some(ca.leaf("other", &["other.test"]))).await;
    peer.open("w.test").await;
    peer.send(&Element::new("starttls", NS_TLS)).await;
    assert!(peer.element().await.is("proceed", NS_TLS));
    peer.t.starttls().await.expect("TLS");
    peer.t
        .send_open(&[("from", "w.test"), ("to", "b.test"), ("version", "1.0")]);
    peer.t.flush().await.expect("write");
    assert!(matches!(peer.next().await, Some(StreamEvent::Open { .. })));
    assert_eq!(peer.stream_error().await, "not-authorized");

    // 3. A stream that never authenticates is closed at the negotiation timeout.
    let mut peer = RawPeer::connect(b.s2s, None).await;
    let started = std::time::Instant::now();
    peer.open("z.test").await;
    assert_eq!(peer.stream_error().await, "connection-timeout");
    assert!(started.elapsed() < Duration::from_secs(5));

    // 4. Dialback with a wrong key: b.test asks a.test (authoritative), which says invalid.
    let mut peer = RawPeer::connect(b.s2s, None).await;
    let (_, features) = peer.starttls("a.test").await;
    assert!(
        features.has_child("dialback", "urn:xmpp:features:dialback"),
        "{features}"
    );
    peer.send(
        &Element::new("result", NS_DB)
            .with_attr("from", "a.test")
            .with_attr("to", "b.test")
            .with_text("0123456789abcdef"),
    )
    .await;
    let answer = peer.element().await;
    assert!(answer.is("result", NS_DB), "{answer}");
    assert_eq!(answer.attr("type"), Some("invalid"), "{answer}");
    assert_eq!(peer.stream_error().await, "not-authorized");

    // Nothing reached bob.
    let seen = bob.barrier().await;
    assert!(
        !seen.iter().any(|el| el.name() == "message"),
        "delivered: {seen:?}"
    );
    a.stop().await;
    b.stop().await;
}
