//! RFC 7395 XMPP over WebSocket over a real socket: the `xmpp` subprotocol is required
//! (§3.2), `<open/>` is answered with `<open/>` and `<stream:features/>` (§3.4), one element
//! per message, login without STARTTLS (the connection's security is HTTP's, and loopback is
//! treated as secure), chat with a TCP client, `<close/>` answered with `<close/>` (§3.6);
//! and XEP-0156 §3 discovery of the endpoint through host-meta and host-meta.json.

mod support;

use starling_xml::ns;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// §3.4: `<open/>` gets our `<open/>` (from, id, version 1.0) and features without STARTTLS.
#[tokio::test]
async fn s3_4_open_is_answered_with_open_and_features() {
    let srv = TestServer::start().await;
    let mut c = srv.connect_ws().await;
    c.open().await;
    let open = c.expect_open().await;
    assert!(open.is("open", ns::FRAMING), "{open}");
    assert_eq!(open.attr("from"), Some(HOST), "{open}");
    assert_eq!(open.attr("version"), Some("1.0"), "{open}");
    assert!(open.attr("id").is_some_and(|i| !i.is_empty()), "{open}");
    let f = c.expect_features().await;
    assert!(
        !f.has_child("starttls", NS_TLS),
        "no STARTTLS over WebSocket: {f}"
    );
    let mechs = c.mechanisms();
    assert!(mechs.contains(&"SCRAM-SHA-256".to_owned()), "{mechs:?}");
}

/// Login over WebSocket (SCRAM and PLAIN) and a chat both ways with a TCP client, with
/// `from` stamped as the sender's full JID.
#[tokio::test]
async fn s3_login_and_chat_with_tcp_client() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    srv.add_user("bob", "secret").await;
    let mut ws = srv.connect_ws().await;
    let alice = ws
        .login("alice", "secret", Some("browser"), Mech::SCRAM_SHA_256)
        .await;
    assert_eq!(alice, "alice@localhost/browser");
    let mut plain = srv.connect_ws().await;
    plain
        .login("bob", "secret", Some("other-tab"), Mech::Plain)
        .await;
    let mut bob = srv.login("bob", "secret", "desk").await;
    let bob_full = bob.full();

    ws.send_stanza(&format!(
        "<message to='{bob_full}' type='chat' id='w1'><body>from the web</body></message>"
    ))
    .await;
    let m = bob
        .wait_for("alice's message", |e| {
            e.name() == "message" && e.attr("id") == Some("w1")
        })
        .await;
    assert_eq!(m.attr("from"), Some(alice.as_str()), "{m}");
    assert_eq!(
        m.child_text("body", "jabber:client").as_deref(),
        Some("from the web")
    );

    bob.send_stanza(&format!(
        "<message to='{alice}' type='chat' id='t1'><body>from tcp</body></message>"
    ))
    .await;
    let m = ws
        .wait_for("bob's message", |e| {
            e.name() == "message" && e.attr("id") == Some("t1")
        })
        .await;
    assert_eq!(m.attr("from"), Some(bob_full.as_str()), "{m}");
    assert_eq!(
        m.child_text("body", "jabber:client").as_deref(),
        Some("from tcp")
    );
}

/// §3.6: the client's `<close/>` is answered with `<close/>`, then the WebSocket closes;
/// before and after authentication.
#[tokio::test]
async fn s3_6_close_is_answered_with_close() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.connect_ws().await;
    c.open_stream().await;
    c.close().await;
    c.expect_closed().await;

    let mut c = srv.connect_ws().await;
    c.login("alice", "secret", Some("bye"), Mech::SCRAM_SHA_1)
        .await;
    c.close().await;
    c.expect_closed().await;
}

/// §3.2: without the `xmpp` subprotocol the server must not complete the handshake.
#[tokio::test]
async fn s3_2_connection_without_xmpp_subprotocol_is_refused() {
    let srv = TestServer::start().await;
    for offered in [None, Some("chat, superchat")] {
        let r = XmppClient::connect_ws_with(srv.http(), WS_PATH, HOST, offered).await;
        match r {
            Ok(_) => panic!("handshake completed with subprotocols {offered:?}"),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert!(
                    resp.status().is_client_error(),
                    "expected a 4xx refusal, got {}",
                    resp.status()
                );
            }
            Err(e) => panic!("expected an HTTP refusal, got {e}"),
        }
    }
}

/// Plain HTTP/1.1 GET; returns (status, content-type, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut raw))
        .await
        .expect("HTTP response in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "this little client does not decode chunked bodies: {head}"
    );
    (status, content_type, body.to_owned())
}

/// XEP-0156 §3: host-meta (XRD) names the WebSocket endpoint with the Host used.
#[tokio::test]
async fn xep0156_host_meta_lists_websocket_url() {
    let srv = TestServer::start().await;
    let addr = srv.http();
    let (status, ctype, body) = http_get(addr, "/.well-known/host-meta").await;
    assert_eq!(status, 200, "{body}");
    assert!(ctype.contains("xrd+xml"), "content type {ctype}");
    let xrd = starling_xml::parse_document(body.as_bytes(), "", &starling_xml::Limits::default())
        .unwrap_or_else(|e| panic!("host-meta is not XML ({e}): {body}"));
    let xrd_ns = "http://docs.oasis-open.org/ns/xri/xrd-1.0";
    assert!(xrd.is("XRD", xrd_ns), "{body}");
    let expected = format!("ws://{addr}{WS_PATH}");
    let found = xrd.children().any(|l| {
        l.is("Link", xrd_ns)
            && l.attr("rel") == Some("urn:xmpp:alt-connections:websocket")
            && l.attr("href") == Some(expected.as_str())
    });
    assert!(found, "no websocket link to {expected}: {body}");
}

/// XEP-0156 §3: the JSON form (RFC 6415 JRD).
#[tokio::test]
async fn xep0156_host_meta_json_lists_websocket_url() {
    let srv = TestServer::start().await;
    let addr = srv.http();
    let (status, ctype, body) = http_get(addr, "/.well-known/host-meta.json").await;
    assert_eq!(status, 200, "{body}");
    assert!(ctype.contains("json"), "content type {ctype}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let expected = format!("ws://{addr}{WS_PATH}");
    let links = v["links"]
        .as_array()
        .unwrap_or_else(|| panic!("no links: {body}"));
    assert!(
        links
            .iter()
            .any(|l| l["rel"] == "urn:xmpp:alt-connections:websocket"
                && l["href"] == expected.as_str()),
        "no websocket link to {expected}: {body}"
    );
}

/// §3.4 with RFC 6120 §4.9.3.6: `<open/>` to a domain we do not serve gets our `<open/>`,
/// a host-unknown stream error and `<close/>`.
#[tokio::test]
async fn s3_4_open_to_unknown_host_is_host_unknown() {
    let srv = TestServer::start().await;
    let mut c = XmppClient::connect_ws(srv.http(), WS_PATH, "unknown.example").await;
    c.open().await;
    c.expect_open().await;
    c.expect_stream_error("host-unknown").await;
}
