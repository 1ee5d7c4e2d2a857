//! c2s over TCP: STARTTLS (RFC 6120 §5), Direct TLS (XEP-0368), SNI, limits, shutdown.

use std::sync::Arc;
use std::time::Duration;

use starling_net::{bind_c2s, build_tls, tls::tls_server_end_point, CertConfig, ConnLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::*;

const MESSAGE: &str = "<message to='juliet@localhost' id='m1'><body>hi &amp; bye</body></message>";

async fn starttls_dance(tls12_only: bool) -> String {
    let (stop, rx) = shutdown();
    let (addr, task) = bind_c2s(local(0), tls_setup(), false, handler(), limits(), rx)
        .await
        .expect("bind");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(STREAM_HEADER.as_bytes()).await.expect("write");
    let got = read_until(&mut s, "</stream:features>").await;
    assert!(
        got.starts_with(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='s1' \
             version='1.0'>"
        ),
        "{got}"
    );
    assert!(
        got.contains("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        "{got}"
    );
    s.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await
        .expect("write");
    read_until(&mut s, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;

    let connector = TlsConnector::from(client_config(&[], tls12_only));
    let mut s = connector
        .connect(server_name("example.com"), s)
        .await
        .expect("handshake");
    s.write_all(STREAM_HEADER.as_bytes()).await.expect("write");
    let got = read_until(&mut s, "<stream:features").await;
    assert!(!got.contains("starttls"), "offered STARTTLS again: {got}");
    s.write_all(MESSAGE.as_bytes()).await.expect("write");
    let echoed = read_until(&mut s, "</message>").await;
    s.write_all(b"</stream:stream>").await.expect("write");
    read_until(&mut s, "</stream:stream>").await;

    stop.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("listener stops")
        .expect("join");
    echoed
}

#[tokio::test]
async fn starttls_then_echo_with_tls13_bindings() {
    let echoed = starttls_dance(false).await;
    assert!(echoed.contains("<body>hi &amp; bye</body>"), "{echoed}");
    assert!(echoed.contains("secure='true'"), "{echoed}");
    assert!(echoed.contains("exporter='32'"), "{echoed}");
    assert!(echoed.contains("endpoint='32'"), "{echoed}");
    assert!(echoed.contains("sni='example.com'"), "{echoed}");
    assert!(echoed.contains("kind='tcp'"), "{echoed}");
}

#[tokio::test]
async fn starttls_on_tls12_has_no_exporter() {
    let echoed = starttls_dance(true).await;
    assert!(echoed.contains("exporter='0'"), "{echoed}");
    assert!(echoed.contains("endpoint='32'"), "{echoed}");
}

#[tokio::test]
async fn plain_stream_is_not_secure() {
    let (_stop, rx) = shutdown();
    let (addr, _task) = bind_c2s(local(0), tls_setup(), false, handler(), limits(), rx)
        .await
        .expect("bind");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(STREAM_HEADER.as_bytes()).await.expect("write");
    read_until(&mut s, "</stream:features>").await;
    s.write_all(MESSAGE.as_bytes()).await.expect("write");
    let echoed = read_until(&mut s, "</message>").await;
    assert!(echoed.contains("secure='false'"), "{echoed}");
    assert!(echoed.contains("exporter='0' endpoint='0'"), "{echoed}");
}

async fn direct_tls_echo(alpn: &[&[u8]]) -> (Option<Vec<u8>>, String) {
    let (_stop, rx) = shutdown();
    let (addr, _task) = bind_c2s(local(0), tls_setup(), true, handler(), limits(), rx)
        .await
        .expect("bind");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut s = TlsConnector::from(client_config(alpn, false))
        .connect(server_name("localhost"), tcp)
        .await
        .expect("handshake");
    let negotiated = s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    s.write_all(STREAM_HEADER.as_bytes()).await.expect("write");
    let features = read_until(&mut s, "<stream:features").await;
    assert!(!features.contains("starttls"), "{features}");
    s.write_all(MESSAGE.as_bytes()).await.expect("write");
    (negotiated, read_until(&mut s, "</message>").await)
}

#[tokio::test]
async fn direct_tls_with_alpn_xmpp_client() {
    let (alpn, echoed) = direct_tls_echo(&[b"xmpp-client"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"xmpp-client"[..]));
    assert!(echoed.contains("kind='tls'"), "{echoed}");
    assert!(echoed.contains("secure='true'"), "{echoed}");
    assert!(echoed.contains("exporter='32'"), "{echoed}");
}

#[tokio::test]
async fn direct_tls_without_alpn() {
    let (alpn, echoed) = direct_tls_echo(&[]).await;
    assert_eq!(alpn, None);
    assert!(echoed.contains("sni='localhost'"), "{echoed}");
}

#[tokio::test]
async fn direct_tls_handshake_with_and_without_alpn() {
    let (_stop, rx) = shutdown();
    let (addr, _task) = bind_c2s(local(0), tls_setup(), true, handler(), limits(), rx)
        .await
        .expect("bind");
    for (alpn, expect) in [
        (&[&b"xmpp-client"[..]][..], Some(&b"xmpp-client"[..])),
        (&[][..], None),
    ] {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let s = TlsConnector::from(client_config(alpn, false))
            .connect(server_name("localhost"), tcp)
            .await
            .expect("handshake");
        assert_eq!(s.get_ref().1.alpn_protocol(), expect);
    }
    // A client for another protocol (ALPACA-style cross-protocol use) is refused.
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let refused = TlsConnector::from(client_config(&[b"h2"], false))
        .connect(server_name("localhost"), tcp)
        .await;
    assert!(refused.is_err(), "h2-only client accepted");
}

#[tokio::test]
async fn sni_picks_the_configured_certificate() {
    let dir = std::env::temp_dir().join(format!("starling-net-sni-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut configs = Vec::new();
    let mut ders = Vec::new();
    for name in ["a.test", "b.test"] {
        let (cert, der, key) = cert(&[name]);
        let c = dir.join(format!("{name}.pem"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, cert).expect("write");
        std::fs::write(&k, key).expect("write");
        configs.push(CertConfig { cert: c, key: k });
        ders.push(der);
    }
    let setup =
        Arc::new(build_tls(&["a.test".into(), "b.test".into()], &configs, &dir).expect("tls"));
    assert_eq!(
        setup.server_end_point(Some("b.test")),
        tls_server_end_point(&ders[1])
    );
    let (_stop, rx) = shutdown();
    let (addr, _task) = bind_c2s(local(0), setup, true, handler(), limits(), rx)
        .await
        .expect("bind");
    for (sni, want) in [("a.test", 0), ("b.test", 1), ("unknown.test", 0)] {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let s = TlsConnector::from(client_config(&[], false))
            .connect(server_name(sni), tcp)
            .await
            .expect("handshake");
        let served = s.get_ref().1.peer_certificates().expect("certs");
        assert_eq!(served[0], ders[want], "certificate served for {sni}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    let (_stop, rx) = shutdown();
    let limits = ConnLimits {
        max_connections: 1,
        ..limits()
    };
    let (addr, _task) = bind_c2s(local(0), tls_setup(), false, handler(), limits, rx)
        .await
        .expect("bind");
    let first = TcpStream::connect(addr).await.expect("connect");
    // Let the listener take the permit before the second connection.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "second connection was not closed");

    // Once the first ends, there is room again.
    drop(first);
    let mut third = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let read = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
        if read.is_err() {
            third = Some(s);
            break;
        }
    }
    assert!(
        third.is_some(),
        "no connection accepted after the first closed"
    );
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let (stop, rx) = shutdown();
    let (addr, task) = bind_c2s(local(0), tls_setup(), false, handler(), limits(), rx)
        .await
        .expect("bind");
    stop.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("listener stops")
        .expect("join");
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

#[test]
fn fd_limit_is_raised_to_the_hard_limit() {
    let (soft, hard) = starling_net::raise_fd_limit();
    assert!(soft > 0);
    assert!(soft <= hard);
}
