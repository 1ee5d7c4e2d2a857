//! The HTTP listener's defences: the header-read and idle timeouts for connections that are
//! not WebSocket streams, the budget of pending HTTP connections that keeps them from crowding
//! out c2s, the shared stream budget for upgraded WebSockets, and the cap on TLS handshakes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use starling_net::{bind_c2s, bind_http, ConnLimits, ListenerSet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use crate::support::*;
use crate::websocket::{conversation, http_get, request};

const HOST_META: &[u8] = b"GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn short_timeouts(header: Duration, idle: Duration) -> ConnLimits {
    ConnLimits {
        http_header_timeout: header,
        http_idle_timeout: idle,
        ..limits()
    }
}

/// Reads until the server closes the connection (end of stream or reset); returns what was
/// read and how long it took. Panics if it stays open past `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + within).into(), s.read(&mut chunk)).await {
            Err(_) => panic!(
                "still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

/// Whether the connection is still open and silent for `wait`.
async fn stays_open(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(wait, s.read(&mut buf)).await.is_err()
}

async fn http_server(limits: ConnLimits) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let (stop, rx) = shutdown();
    let (addr, _task) = bind_http(local(0), None, "/xmpp-websocket", handler(), limits, rx)
        .await
        .expect("bind");
    (addr, stop)
}

#[tokio::test]
async fn idle_connection_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let (addr, _stop) = http_server(short_timeouts(timeout, Duration::from_secs(60))).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let (got, took) = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    assert!(!got.contains(" 200 "), "served: {got}");
}

#[tokio::test]
async fn half_sent_request_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let (addr, _stop) = http_server(short_timeouts(timeout, Duration::from_secs(60))).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // Slowloris: the head trickles in and never ends.
    s.write_all(b"GET /.well-known/host-meta HTTP/1.1\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"Host: localhost\r\n").await.expect("write");
    let (got, took) = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(150),
        "closed too early: {took:?}"
    );
    assert!(!got.contains(" 200 "), "served: {got}");
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let timeout = Duration::from_millis(300);
    let (addr, _stop) = http_server(short_timeouts(timeout, Duration::from_secs(60))).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(HOST_META).await.expect("write");
    let response = read_until(&mut s, "</XRD>").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // The connection stays usable for a request that comes in time...
    s.write_all(HOST_META).await.expect("write");
    let response = read_until(&mut s, "</XRD>").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // ...and is closed once none does.
    let (got, _) = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(!got.contains(" 200 "), "served: {got}");
}

#[tokio::test]
async fn client_that_stops_reading_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(500);
    let (addr, _stop) = http_server(short_timeouts(Duration::from_secs(60), idle)).await;
    // A small receive buffer, so the server's responses back up quickly.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let s = socket.connect(addr).await.expect("connect");
    let (_read, mut write) = s.into_split();
    // Pipelined requests whose responses are never read: the server blocks writing, where
    // no header timeout runs; only the idle timeout ends it. The writer gets an error once
    // the server closed the connection (or blocks, its buffers full, until the reset).
    let writer = tokio::spawn(async move {
        let batch = HOST_META.repeat(100);
        for _ in 0..2_000 {
            if write.write_all(&batch).await.is_err() {
                return true;
            }
        }
        false
    });
    let reset = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the stalled connection was not closed")
        .expect("join");
    assert!(reset, "the server read everything without closing");
}

#[tokio::test]
async fn websocket_is_not_cut_by_the_http_timeouts() {
    let short = Duration::from_millis(200);
    let (addr, _stop) = http_server(short_timeouts(short, short)).await;
    let url = format!("ws://{addr}/xmpp-websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(request(&url, Some("xmpp")))
        .await
        .expect("upgrade");
    // Well past both timeouts with nothing sent: a stream is core's to time out, not HTTP's.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let echoed = conversation(&mut ws).await;
    assert!(echoed.contains("kind='websocket'"), "{echoed}");
}

#[tokio::test]
async fn idle_http_connections_do_not_starve_c2s() {
    let (stop, rx) = shutdown();
    // The reported case: five idle HTTP sockets used to fill max_connections = 5.
    let limits = ConnLimits {
        max_connections: 5,
        ..limits()
    };
    assert_eq!(limits.http_pending(), 1);
    let mut set = ListenerSet::new(handler(), limits, rx);
    let c2s = set
        .bind_c2s(local(0), tls_setup(), false)
        .await
        .expect("c2s");
    let http = set
        .bind_http(local(0), None, "/xmpp-websocket")
        .await
        .expect("http");

    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(http).await.expect("connect"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first takes the only pending-HTTP slot; the others are closed at accept.
    for s in &mut idle[1..] {
        closed_within(s, Duration::from_secs(5)).await;
    }
    assert!(stays_open(&mut idle[0], Duration::from_millis(200)).await);

    // Every stream slot is still there for c2s.
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(c2s).await.expect("connect");
        s.write_all(STREAM_HEADER.as_bytes()).await.expect("write");
        let got = read_until(&mut s, "</stream:features>").await;
        assert!(got.contains("<starttls"), "{got}");
        streams.push(s);
    }

    stop.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), set.join())
        .await
        .expect("listeners stop");
}

#[tokio::test]
async fn websocket_counts_against_the_stream_budget_and_listeners_stop_together() {
    let (stop, rx) = shutdown();
    let limits = ConnLimits {
        max_connections: 1,
        ..limits()
    };
    let mut set = ListenerSet::new(handler(), limits, rx);
    let c2s = set
        .bind_c2s(local(0), tls_setup(), false)
        .await
        .expect("c2s");
    let http = set
        .bind_http(local(0), None, "/xmpp-websocket")
        .await
        .expect("http");
    let kinds: Vec<&str> = set.bound().iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, ["c2s", "http"]);
    let url = format!("ws://{http}/xmpp-websocket");

    // The one stream slot is taken by c2s: plain HTTP is still served, an upgrade is not.
    let held = TcpStream::connect(c2s).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let xml = http_get(http, "/.well-known/host-meta").await;
    assert!(xml.starts_with("HTTP/1.1 200"), "{xml}");
    match tokio_tungstenite::connect_async(request(&url, Some("xmpp"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("upgrade over the stream budget accepted"),
    }

    // Once c2s lets go, the WebSocket gets the slot, and holds it against c2s.
    drop(held);
    let mut ws = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok((s, _)) = tokio_tungstenite::connect_async(request(&url, Some("xmpp"))).await {
            ws = Some(s);
            break;
        }
    }
    let mut ws = ws.expect("no upgrade once the slot was free");
    let mut refused = TcpStream::connect(c2s).await.expect("connect");
    closed_within(&mut refused, Duration::from_secs(5)).await;
    conversation(&mut ws).await;

    stop.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), set.join())
        .await
        .expect("listeners stop");
}

#[tokio::test]
async fn shutdown_closes_pending_http_connections() {
    let (stop, rx) = shutdown();
    let (addr, task) = bind_http(local(0), None, "/xmpp-websocket", handler(), limits(), rx)
        .await
        .expect("bind");
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("listener stops")
        .expect("join");
    closed_within(&mut idle, Duration::from_secs(5)).await;
    closed_within(&mut half, Duration::from_secs(5)).await;
}

/// With one handshake allowed, a client that connects and never starts TLS keeps the next
/// one out (closed at once), and a handshake works again once it is gone.
async fn handshakes_are_capped(addr: SocketAddr) {
    let stalled = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = TcpStream::connect(addr).await.expect("connect");
    closed_within(&mut second, Duration::from_secs(5)).await;

    drop(stalled);
    let connector = TlsConnector::from(client_config(&[], false));
    let mut done = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        if connector
            .connect(server_name("localhost"), tcp)
            .await
            .is_ok()
        {
            done = true;
            break;
        }
    }
    assert!(done, "no handshake once the stalled one was gone");
}

fn one_handshake() -> ConnLimits {
    ConnLimits {
        max_tls_handshakes: 1,
        ..limits()
    }
}

#[tokio::test]
async fn direct_tls_handshakes_are_capped() {
    let (_stop, rx) = shutdown();
    let (addr, _task) = bind_c2s(local(0), tls_setup(), true, handler(), one_handshake(), rx)
        .await
        .expect("bind");
    handshakes_are_capped(addr).await;
}

#[tokio::test]
async fn https_handshakes_are_capped() {
    let (_stop, rx) = shutdown();
    let (addr, _task) = bind_http(
        local(0),
        Some(tls_setup()),
        "/xmpp-websocket",
        handler(),
        one_handshake(),
        rx,
    )
    .await
    .expect("bind");
    handshakes_are_capped(addr).await;
}

#[test]
fn http_budget_defaults_to_a_quarter_of_the_stream_budget() {
    let limits = ConnLimits::default();
    assert_eq!(limits.http_pending(), 2_500);
    assert_eq!(limits.http_header_timeout, Duration::from_secs(10));
    assert_eq!(limits.http_idle_timeout, Duration::from_secs(30));
    assert_eq!(limits.max_tls_handshakes, 256);
    let tiny = ConnLimits {
        max_connections: 2,
        ..ConnLimits::default()
    };
    assert_eq!(tiny.http_pending(), 1);
    let set = ConnLimits {
        max_http_pending: Some(7),
        ..ConnLimits::default()
    };
    assert_eq!(set.http_pending(), 7);
}
