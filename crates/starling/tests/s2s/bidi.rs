//! XEP-0288 bidirectional server-to-server streams: `a.test` opens the only TCP connection
//! (`b.test` has no route back), requests bidi, and both directions use it.

use std::time::Duration;

use starling_core::config::S2sPolicy;

use crate::harness::*;
use crate::support::TempDir;

/// `s2s_connections` lines once the stream list settles on `n` lines (verification streams
/// of dialback close shortly after they answered).
async fn links(node: &Node, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let all = node.s2s_connections().await;
        let lines: Vec<String> = all.lines().map(str::to_owned).collect();
        if lines.len() == n || tokio::time::Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn chat_both_ways(a: &Node, b: &Node) {
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.login("alice", "laptop").await;
    let mut bob = b.login("bob", "phone").await;
    alice
        .send_stanza("<message to='bob@b.test' type='chat'><body>one way</body></message>")
        .await;
    bob.wait_for("alice's message", |el| message_with(el, "one way"))
        .await;
    bob.send_stanza(
        "<message to='alice@a.test/laptop' type='chat'><body>and back</body></message>",
    )
    .await;
    let m = alice
        .wait_for("bob's answer", |el| message_with(el, "and back"))
        .await;
    assert_eq!(m.attr("from"), Some("bob@b.test/phone"));
    // An IQ from b.test to a.test and its answer, both over the one stream.
    let r = bob
        .request(
            "<iq type='get' id='p1' to='a.test'><ping xmlns='urn:xmpp:ping'/></iq>",
            "p1",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
}

#[tokio::test]
async fn bidi_with_certificates_one_connection_both_ways() {
    let dir = TempDir::new("ca");
    let ca = Ca::new(dir.path());
    let (a, b) = two_servers_with_certs(S2sPolicy::Certs, &ca, |cfg| {
        cfg.s2s.routes.clear();
    })
    .await;
    chat_both_ways(&a, &b).await;
    let a_links = links(&a, 1).await;
    assert_eq!(a_links.len(), 1, "{a_links:?}");
    assert!(
        a_links[0].starts_with("out a.test b.test sasl-external TLSv1.3 established bidi "),
        "{a_links:?}"
    );
    let b_links = links(&b, 1).await;
    assert_eq!(b_links.len(), 1, "{b_links:?}");
    assert!(
        b_links[0].starts_with("in b.test a.test sasl-external TLSv1.3 established bidi "),
        "{b_links:?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn bidi_with_dialback_one_stanza_connection() {
    // Self-signed certificates: dialback. b.test needs a route to a.test only to verify the
    // key with a.test (XEP-0220 §2.4); its stanzas still use a.test's bidi stream.
    let (pa, pb) = (crate::support::free_port(), crate::support::free_port());
    let a = Node::start("a.test", pa, &[("b.test", pb)], |_| {}).await;
    let b = Node::start("b.test", pb, &[("a.test", pa)], |_| {}).await;
    chat_both_ways(&a, &b).await;
    let a_links = links(&a, 1).await;
    assert_eq!(a_links.len(), 1, "{a_links:?}");
    assert!(
        a_links[0].starts_with("out a.test b.test dialback TLSv1.3 established bidi "),
        "{a_links:?}"
    );
    let b_links = links(&b, 1).await;
    assert!(
        b_links[0].starts_with("in b.test a.test dialback TLSv1.3 established bidi "),
        "{b_links:?}"
    );
    a.stop().await;
    b.stop().await;
}
