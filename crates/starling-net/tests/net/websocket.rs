//! XMPP over WebSocket (RFC 7395) and host-meta discovery (XEP-0156 §3).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use starling_net::bind_http;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::support::*;

const OPEN: &str =
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";
const CLOSE: &str = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";

pub(crate) fn request(
    url: &str,
    protocol: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().expect("request");
    if let Some(p) = protocol {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(p).expect("header"),
        );
    }
    req
}

async fn next_text<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("timed out")
            .expect("stream ended")
            .expect("websocket error");
        match msg {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// open → open + features; stanza → echo; close → close and a WebSocket close.
pub(crate) async fn conversation<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> String {
    ws.send(Message::text(OPEN)).await.expect("send");
    let open = next_text(ws).await;
    assert!(
        open.starts_with("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost'"),
        "{open}"
    );
    let features = next_text(ws).await;
    assert_eq!(
        features,
        "<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>"
    );
    ws.send(Message::text(
        "<message xmlns='jabber:client' to='juliet@localhost'><body>hi</body></message>",
    ))
    .await
    .expect("send");
    let echoed = next_text(ws).await;
    assert!(
        echoed.starts_with("<message xmlns='jabber:client' to='juliet@localhost'"),
        "{echoed}"
    );
    ws.send(Message::text(CLOSE)).await.expect("send");
    assert_eq!(next_text(ws).await, CLOSE);
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("timed out");
    assert!(
        matches!(end, Some(Ok(Message::Close(_))) | None),
        "expected a close, got {end:?}"
    );
    echoed
}

#[tokio::test]
async fn websocket_stream_with_xmpp_subprotocol() {
    let (_stop, rx) = shutdown();
    let (addr, _task) = bind_http(local(0), None, "/xmpp-websocket", handler(), limits(), rx)
        .await
        .expect("bind");
    let url = format!("ws://{addr}/xmpp-websocket");
    let (mut ws, response) = tokio_tungstenite::connect_async(request(&url, Some("xmpp")))
        .await
        .expect("upgrade");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"xmpp"[..])
    );
    let echoed = conversation(&mut ws).await;
    // Loopback counts as secure (RFC 7395 leaves security to HTTP; local development).
    assert!(echoed.contains("secure='true'"), "{echoed}");
    assert!(echoed.contains("exporter='0'"), "{echoed}");
    assert!(echoed.contains("kind='websocket'"), "{echoed}");
}

#[tokio::test]
async fn websocket_over_https_has_channel_bindings() {
    let (_stop, rx) = shutdown();
    let (addr, _task) = bind_http(local(0), Some(tls_setup()), "/ws", handler(), limits(), rx)
        .await
        .expect("bind");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = TlsConnector::from(client_config(&[], false))
        .connect(server_name("localhost"), tcp)
        .await
        .expect("handshake");
    let url = format!("wss://localhost:{}/ws", addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(request(&url, Some("xmpp")), tls)
        .await
        .expect("upgrade");
    let echoed = conversation(&mut ws).await;
    assert!(echoed.contains("exporter='32'"), "{echoed}");
    assert!(echoed.contains("endpoint='32'"), "{echoed}");
    assert!(echoed.contains("sni='localhost'"), "{echoed}");
}

#[tokio::test]
async fn upgrade_without_xmpp_subprotocol_is_refused() {
    let (_stop, rx) = shutdown();
    let (addr, _task) = bind_http(local(0), None, "/xmpp-websocket", handler(), limits(), rx)
        .await
        .expect("bind");
    let url = format!("ws://{addr}/xmpp-websocket");
    for protocol in [None, Some("chat")] {
        match tokio_tungstenite::connect_async(request(&url, protocol)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 400);
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("upgrade without xmpp accepted ({protocol:?})"),
        }
    }
}

#[tokio::test]
async fn binary_messages_end_the_stream() {
    let (_stop, rx) = shutdown();
    let (addr, _task) = bind_http(local(0), None, "/xmpp-websocket", handler(), limits(), rx)
        .await
        .expect("bind");
    let url = format!("ws://{addr}/xmpp-websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(request(&url, Some("xmpp")))
        .await
        .expect("upgrade");
    ws.send(Message::binary(OPEN.as_bytes().to_vec()))
        .await
        .expect("send");
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("timed out");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_)))),
        "binary message was answered: {end:?}"
    );
}

pub(crate) async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: chat.example.com:5443\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("timed out")
        .expect("read");
    String::from_utf8(out).expect("utf-8")
}

#[tokio::test]
async fn host_meta_advertises_the_websocket_endpoint() {
    let (_stop, rx) = shutdown();
    let (addr, _task) = bind_http(local(0), None, "/xmpp-websocket", handler(), limits(), rx)
        .await
        .expect("bind");

    let xml = http_get(addr, "/.well-known/host-meta").await;
    assert!(xml.starts_with("HTTP/1.1 200"), "{xml}");
    let lower = xml.to_ascii_lowercase();
    assert!(lower.contains("access-control-allow-origin: *"), "{xml}");
    assert!(lower.contains("content-type: application/xrd+xml"), "{xml}");
    assert!(
        xml.contains("<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>"),
        "{xml}"
    );
    assert!(
        xml.contains(
            "<Link rel='urn:xmpp:alt-connections:websocket' \
             href='ws://chat.example.com:5443/xmpp-websocket'/>"
        ),
        "{xml}"
    );

    let json = http_get(addr, "/.well-known/host-meta.json").await;
    assert!(json.starts_with("HTTP/1.1 200"), "{json}");
    assert!(
        json.to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{json}"
    );
    assert!(
        json.contains(
            "{\"links\":[{\"rel\":\"urn:xmpp:alt-connections:websocket\",\
             \"href\":\"ws://chat.example.com:5443/xmpp-websocket\"}]}"
        ),
        "{json}"
    );
}
