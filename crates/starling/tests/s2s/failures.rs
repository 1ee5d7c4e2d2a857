//! How outgoing server streams fail (RFC 6120 §8.3.3.15/16 bounces), each failure class with
//! exactly one `warn!` line naming the reason; a peer that never reads (bounded queues,
//! `s2s.max_queued_stanzas`/`max_queued_bytes`); and the clean close at shutdown (RFC 6120
//! §4.4, TLS close_notify).

use std::time::Duration;

use starling_core::config::{S2sPolicy, S2sRoute};
use starling_xml::{ns, Element};

use crate::harness::*;
use crate::support::{assert_stanza_error, free_port, TempDir};

fn route(domain: &str, port: u16, direct_tls: bool) -> S2sRoute {
    S2sRoute {
        domain: domain.into(),
        host: "127.0.0.1".into(),
        port,
        direct_tls,
    }
}

#[tokio::test]
async fn each_failure_is_one_log_line_naming_its_reason() {
    let log = LogCapture::start();
    let dir = TempDir::new("ca");
    let ca = Ca::new(dir.path());
    let dns = crate::dns::DnsServer::start(&[]).await; // knows nothing: NXDOMAIN
                                                       // Speaks no TLS: the Direct TLS handshake fails.
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let garbage_port = garbage.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = garbage.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
        }
    });
    // wrongname.test presents a trusted certificate for another name; a.test requires
    // certificates from it.
    let (p_wrong, p_db) = (free_port(), free_port());
    let wrong_pair = ca.leaf("wrong", &["other.test"]);
    let ca_file = ca.ca_file().display().to_string();
    let wrong = Node::start("wrongname.test", p_wrong, &[], |cfg| {
        cfg.tls.certs = vec![starling_core::config::CertPair {
            cert: wrong_pair.0,
            key: wrong_pair.1,
        }];
    })
    .await;
    let pa = free_port();
    let closed = free_port();
    // dbfail.test cannot reach a.test's authoritative server: dialback fails.
    let db = Node::start("dbfail.test", p_db, &[("a.test", closed)], |_| {}).await;
    let ns = vec![dns.addr.to_string()];
    let a = Node::start("a.test", pa, &[], move |cfg| {
        cfg.s2s.nameservers = ns;
        cfg.s2s.ca_file = ca_file;
        cfg.s2s.routes = vec![
            route("closed.test", closed, false),
            route("garbage.test", garbage_port, true),
            route("wrongname.test", p_wrong, false),
            route("dbfail.test", p_db, false),
        ];
        cfg.s2s
            .policy
            .insert("wrongname.test".into(), S2sPolicy::Certs);
        cfg.s2s.policy.insert("denied.test".into(), S2sPolicy::Deny);
    })
    .await;
    a.add_user("alice").await;
    let mut alice = a.login("alice", "laptop").await;
    let cases = [
        ("gone.test", "DNS: gone.test does not exist (NXDOMAIN)"),
        (
            "closed.test",
            &format!("TCP connect 127.0.0.1:{closed} refused"),
        ),
        ("garbage.test", "TLS: Direct TLS to 127.0.0.1:"),
        (
            "wrongname.test",
            "TLS: certificate not valid for wrongname.test (names: other.test)",
        ),
        ("dbfail.test", "dialback error from dbfail.test"),
        ("denied.test", "policy denies denied.test"),
    ];
    for (i, (domain, reason)) in cases.iter().enumerate() {
        let id = format!("m{i}");
        alice
            .send_stanza(&format!(
                "<message to='u@{domain}' id='{id}' type='chat'><body>x</body></message>"
            ))
            .await;
        let err = alice
            .wait_for("the bounce", |el| el.attr("id") == Some(id.as_str()))
            .await;
        assert_stanza_error(&err, "remote-server-not-found", "cancel");
        let lines = log.matching(&format!("s2s to {domain} failed"));
        assert_eq!(lines.len(), 1, "{domain}: {lines:#?}");
        assert!(lines[0].contains(reason), "{domain}: {lines:#?}");
        assert!(lines[0].contains("WARN"), "{lines:#?}");
    }
    a.stop().await;
    wrong.stop().await;
    db.stop().await;
}

#[tokio::test]
async fn a_peer_that_never_reads_is_cut_off_and_stanzas_bounce() {
    let log = LogCapture::start();
    let dir = TempDir::new("ca");
    let ca = Ca::new(dir.path());
    let fake = FakeReceiver::start(tls_for(&ca, "b", &["b.test"]), true).await;
    let a = Node::start(
        "a.test",
        free_port(),
        &[("b.test", fake.addr.port())],
        |cfg| {
            cfg.s2s.max_stanza_bytes = 16 * 1024;
            cfg.s2s.max_queued_stanzas = 32;
            cfg.s2s.max_queued_bytes = 64 * 1024;
        },
    )
    .await;
    a.add_user("alice").await;
    let mut alice = a.login("alice", "laptop").await;
    let body = "x".repeat(1000);
    // First the stream is set up (the fake accepts dialback), then the flood starts: what
    // fills the queue is the peer not reading, not the negotiation.
    alice
        .send_stanza("<message to='bob@b.test' type='chat'><body>first</body></message>")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !a.s2s_connections().await.contains("established") {
        assert!(tokio::time::Instant::now() < deadline, "no stream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sent = 0;
    while log.matching("queue to b.test full").is_empty() {
        assert!(sent < 40_000, "the queue never filled");
        // Fewer than the queue holds: the stream started after the overflow cannot overflow
        // within the same batch.
        for _ in 0..10 {
            let m = Element::new("message", ns::CLIENT)
                .with_attr("from", "alice@a.test/laptop")
                .with_attr("to", "bob@b.test")
                .with_attr("id", format!("q{sent}"))
                .with_child(Element::new("body", ns::CLIENT).with_text(body.as_str()));
            a.server.route(m).await;
            sent += 1;
        }
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }
    assert!(sent > 32, "the socket took nothing before the queue filled");
    // The stream ended at once (not after the 30 s write timeout), with one line.
    let lines = log.matching("s2s to b.test failed");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("the peer does not read"), "{lines:#?}");
    // What the queue held comes back as errors.
    let err = alice
        .wait_for("a bounce", |el| {
            el.name() == "message" && el.attr("type") == Some("error")
        })
        .await;
    assert_stanza_error(&err, "remote-server-timeout", "wait");
    // Stanzas after the overflow went to a new stream (at most one is left).
    let links = a.s2s_connections().await;
    assert!(links.matches("out a.test b.test").count() <= 1, "{links}");
    a.stop().await;
}

#[tokio::test]
async fn shutdown_closes_server_streams_cleanly() {
    let dir = TempDir::new("ca");
    let ca = Ca::new(dir.path());
    // Outgoing: a.test's stream to a receiver played by the test.
    let mut fake = FakeReceiver::start(tls_for(&ca, "b", &["b.test"]), false).await;
    let a = Node::start(
        "a.test",
        free_port(),
        &[("b.test", fake.addr.port())],
        |_| {},
    )
    .await;
    a.add_user("alice").await;
    let mut alice = a.login("alice", "laptop").await;
    alice
        .send_stanza("<message to='bob@b.test' type='chat'><body>x</body></message>")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !a.s2s_connections().await.contains("established") {
        assert!(tokio::time::Instant::now() < deadline, "no stream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Incoming: a raw peer on a.test's listener, mid-negotiation.
    let mut peer = RawPeer::connect(a.s2s, None).await;
    peer.starttls_to("c.test", "a.test").await;
    a.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(5), fake.ended.recv())
        .await
        .expect("in time");
    assert_eq!(ended, Some(Ended::Clean(None)));
    assert_eq!(peer.stream_error().await, "system-shutdown");
    assert!(matches!(
        peer.next().await,
        Some(starling_xml::StreamEvent::Close)
    ));
    // TLS close_notify, then the end of TCP: a clean end, not an error.
    assert!(peer.next().await.is_none());
}
