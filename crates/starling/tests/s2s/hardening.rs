//! Peers claiming one of our own domains (RFC 6120 §13.7.2: a certificate for our host does not
//! let a peer speak for our users) and streams that keep failing dialback (XEP-0220).

use starling_core::config::S2sPolicy;
use starling_core::Transport;
use starling_xml::Element;

use crate::harness::*;
use crate::support::TempDir;

fn db_result(from: &str) -> Element {
    Element::new("result", NS_DB)
        .with_attr("from", from)
        .with_attr("to", "b.test")
        .with_text("0123456789abcdef")
}

#[tokio::test]
async fn our_own_domain_is_refused_and_repeated_dialback_failures_close() {
    let dir = TempDir::new("ca");
    let ca = Ca::new(dir.path());
    let (a, b) = two_servers_with_certs(S2sPolicy::Dialback, &ca, |_| {}).await;

    // A trusted certificate for b.test itself: SASL EXTERNAL as b.test is refused.
    let mut peer = RawPeer::connect(b.s2s, Some(ca.leaf("bself", &["b.test"]))).await;
    peer.starttls("b.test").await;
    peer.send(&starling_proto::s2s::external_auth("b.test"))
        .await;
    let answer = peer.element().await;
    assert!(answer.is("failure", NS_SASL), "{answer}");
    assert!(answer.has_child("not-authorized", NS_SASL), "{answer}");

    // Authenticated as x.test, then dialback claiming b.test (in any spelling): invalid each
    // time, and the third failure closes the stream.
    let mut peer = RawPeer::connect(b.s2s, Some(ca.leaf("x", &["x.test"]))).await;
    peer.starttls("x.test").await;
    peer.send(&starling_proto::s2s::external_auth("x.test"))
        .await;
    assert!(peer.element().await.is("success", NS_SASL));
    peer.t.reset();
    peer.open("x.test").await;
    for from in ["b.test", "B.Test.", "b.test"] {
        peer.send(&db_result(from)).await;
        let answer = peer.element().await;
        assert!(answer.is("result", NS_DB), "{answer}");
        assert_eq!(answer.attr("type"), Some("invalid"), "{answer}");
    }
    assert_eq!(peer.stream_error().await, "not-authorized");

    // Unauthenticated dialback for b.test: invalid, closed.
    let mut peer = RawPeer::connect(b.s2s, None).await;
    peer.starttls("a.test").await;
    peer.send(&db_result("b.test")).await;
    let answer = peer.element().await;
    assert_eq!(answer.attr("type"), Some("invalid"), "{answer}");
    assert_eq!(peer.stream_error().await, "not-authorized");
    a.stop().await;
    b.stop().await;
}
