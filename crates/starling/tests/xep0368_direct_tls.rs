//! XEP-0368 Direct TLS over a real socket: TLS from the first byte, with ALPN `xmpp-client`
//! (§4) and without ALPN (older clients), then the usual stream (RFC 6120 §4) with SASL
//! offered at once and no STARTTLS (the connection is already encrypted, RFC 6120 §5.3.1).

mod support;

use support::*;

/// With ALPN: the server selects `xmpp-client`; features offer SASL (PLAIN and -PLUS
/// included) and no STARTTLS; login and bind work.
#[tokio::test]
async fn xep0368_login_with_alpn() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.connect_direct_tls(true).await;
    let alpn = c.tls.as_ref().and_then(|t| t.alpn.clone());
    assert_eq!(
        alpn.as_deref(),
        Some(&b"xmpp-client"[..]),
        "ALPN not selected"
    );
    let f = c.open_stream().await;
    assert!(
        !f.has_child("starttls", NS_TLS),
        "no STARTTLS on Direct TLS: {f}"
    );
    let mechs = c.mechanisms();
    assert!(mechs.contains(&"PLAIN".to_owned()), "{mechs:?}");
    assert!(
        mechs.contains(&"SCRAM-SHA-256-PLUS".to_owned()),
        "{mechs:?}"
    );
    // A fresh connection for the full login (login opens the stream itself).
    let mut c = srv.connect_direct_tls(true).await;
    let jid = c
        .login(
            "alice",
            "secret",
            Some("direct"),
            Mech::ScramPlus(Hash::Sha256, Cb::Exporter),
        )
        .await;
    assert_eq!(jid, "alice@localhost/direct");
}

/// Without ALPN: still accepted (XEP-0368 §4 says clients SHOULD send it, not MUST).
#[tokio::test]
async fn xep0368_login_without_alpn() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.connect_direct_tls(false).await;
    assert_eq!(c.tls.as_ref().and_then(|t| t.alpn.clone()), None);
    let jid = c
        .login(
            "alice",
            "secret",
            Some("noalpn"),
            Mech::ScramPlus(Hash::Sha1, Cb::EndPoint),
        )
        .await;
    assert_eq!(jid, "alice@localhost/noalpn");
}

/// `<starttls/>` on an already encrypted stream is answered with `<failure/>` and the
/// stream is closed (RFC 6120 §5.4.2.2).
#[tokio::test]
async fn xep0368_starttls_on_direct_tls_fails() {
    let srv = TestServer::start().await;
    let mut c = srv.connect_direct_tls(true).await;
    c.open_stream().await;
    c.send_raw(&format!("<starttls xmlns='{NS_TLS}'/>")).await;
    c.expect("failure", NS_TLS).await;
    c.expect_closed().await;
}
