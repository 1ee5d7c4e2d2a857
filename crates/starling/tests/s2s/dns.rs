//! The DNS path of federation (RFC 6120 §3.2, XEP-0368 §3) against a tiny UDP DNS server
//! played by the test (RFC 1035 §4 messages, SRV per RFC 2782, A): SRV `_xmpp-server._tcp`,
//! `_xmpps-server._tcp` preferred, the domain itself on 5269 without SRV, and NXDOMAIN
//! bouncing with remote-server-not-found and one log line naming DNS.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use starling_core::config::S2sConfig;
use starling_s2s::resolve::{self, Dns, Target};

use crate::harness::*;
use crate::support::{assert_stanza_error, free_port};

/// One answer record.
#[derive(Clone, Debug)]
pub enum Rr {
    Srv {
        priority: u16,
        port: u16,
        target: String,
    },
    A(Ipv4Addr),
}

const TYPE_A: u16 = 1;
const TYPE_SRV: u16 = 33;

/// A UDP DNS server answering from a fixed table; names not in it are NXDOMAIN.
pub struct DnsServer {
    pub addr: SocketAddr,
}

impl DnsServer {
    pub async fn start(records: &[(&str, Rr)]) -> DnsServer {
        let mut table: HashMap<String, Vec<Rr>> = HashMap::new();
        for (name, rr) in records {
            table
                .entry(name.to_ascii_lowercase())
                .or_default()
                .push(rr.clone());
        }
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind DNS");
        let addr = socket.local_addr().expect("DNS addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if let Some(answer) = answer(&table, &buf[..n]) {
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        DnsServer { addr }
    }
}

fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// The response to one query (one question), or `None` for garbage.
fn answer(table: &HashMap<String, Vec<Rr>>, q: &[u8]) -> Option<Vec<u8>> {
    let header = q.get(..12)?;
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
    let question = q.get(12..pos + 4)?;
    let name = labels.join(".");
    let found = table.get(&name);
    let answers: Vec<&Rr> = found
        .map(|rrs| {
            rrs.iter()
                .filter(|rr| match rr {
                    Rr::Srv { .. } => qtype == TYPE_SRV,
                    Rr::A(_) => qtype == TYPE_A,
                })
                .collect()
        })
        .unwrap_or_default();
    let rcode = if found.is_some() { 0 } else { 3 }; // NOERROR or NXDOMAIN
    let mut out = Vec::new();
    out.extend_from_slice(&header[..2]);
    out.push(0x84 | (header[2] & 0x01)); // QR, AA, RD as asked
    out.push(0x80 | rcode); // RA
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for rr in answers {
        out.extend_from_slice(&[0xc0, 12]); // the question's name
        let mut rdata = Vec::new();
        let ty = match rr {
            Rr::Srv {
                priority,
                port,
                target,
            } => {
                rdata.extend_from_slice(&priority.to_be_bytes());
                rdata.extend_from_slice(&0u16.to_be_bytes());
                rdata.extend_from_slice(&port.to_be_bytes());
                encode_name(target, &mut rdata);
                TYPE_SRV
            }
            Rr::A(ip) => {
                rdata.extend_from_slice(&ip.octets());
                TYPE_A
            }
        };
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 60]); // IN, TTL 60
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

fn srv(priority: u16, port: u16, target: &str) -> Rr {
    Rr::Srv {
        priority,
        port,
        target: target.into(),
    }
}

const LOCALHOST: Rr = Rr::A(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn srv_records_direct_tls_preferred_and_nxdomain() {
    let log = LogCapture::start();
    let (pa, pb, pb_tls) = (free_port(), free_port(), free_port());
    // Where STARTTLS for b.test would go: nothing may connect there, as Direct TLS
    // (XEP-0368) is preferred at equal priority.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("trap");
    let trap_port = trap.local_addr().expect("trap addr").port();
    let trapped = Arc::new(AtomicUsize::new(0));
    let counter = trapped.clone();
    tokio::spawn(async move {
        while trap.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let dns = DnsServer::start(&[
        ("_xmpps-server._tcp.b.test", srv(10, pb_tls, "xmpp.b.test.")),
        (
            "_xmpp-server._tcp.b.test",
            srv(10, trap_port, "xmpp.b.test."),
        ),
        ("xmpp.b.test", LOCALHOST),
        // b.test verifies a.test's dialback key through a.test's SRV record (XEP-0220 §2.4).
        ("_xmpp-server._tcp.a.test", srv(0, pa, "server.a.test.")),
        ("server.a.test", LOCALHOST),
        ("a.test", LOCALHOST),
    ])
    .await;
    let ns = vec![dns.addr.to_string()];
    let ns_b = ns.clone();
    let a = Node::start("a.test", pa, &[], |cfg| cfg.s2s.nameservers = ns).await;
    let b = Node::start("b.test", pb, &[], |cfg| {
        cfg.s2s.nameservers = ns_b;
        cfg.s2s.direct_tls_listen = format!("127.0.0.1:{pb_tls}");
    })
    .await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.login("alice", "laptop").await;
    let mut bob = b.login("bob", "phone").await;
    alice
        .send_stanza("<message to='bob@b.test' type='chat'><body>found by SRV</body></message>")
        .await;
    bob.wait_for("the message", |el| message_with(el, "found by SRV"))
        .await;
    assert_eq!(trapped.load(Ordering::SeqCst), 0, "STARTTLS target used");
    let links = b.s2s_connections().await;
    assert!(
        links.contains("in b.test a.test dialback TLSv1.3 established"),
        "{links}"
    );

    // NXDOMAIN: no SRV, no A: the stanza bounces, one line names DNS.
    alice
        .send_stanza("<message to='u@gone.test' id='nx' type='chat'><body>x</body></message>")
        .await;
    let err = alice
        .wait_for("the bounce", |el| el.attr("id") == Some("nx"))
        .await;
    assert_stanza_error(&err, "remote-server-not-found", "cancel");
    let lines = log.matching("s2s to gone.test failed");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("DNS: gone.test does not exist (NXDOMAIN)"),
        "{lines:#?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn without_srv_the_domain_itself_on_5269() {
    let dns = DnsServer::start(&[
        ("_xmpp-server._tcp.b.test", srv(0, 15269, "xmpp.b.test.")),
        ("xmpp.b.test", LOCALHOST),
        ("plain.test", Rr::A(Ipv4Addr::new(127, 0, 0, 9))),
    ])
    .await;
    let cfg = S2sConfig::default();
    let resolver = Dns::new(&[dns.addr.to_string()]);
    let t = resolve::targets(&cfg, &resolver, "plain.test")
        .await
        .expect("targets");
    assert_eq!(t, vec![resolve::fallback("plain.test")]);
    assert_eq!(t[0].port, 5269);
    let addrs = resolver
        .addresses("plain.test", 5269, std::time::Duration::from_secs(5))
        .await
        .expect("A record");
    assert_eq!(addrs, vec!["127.0.0.9:5269".parse().expect("addr")]);
    let t = resolve::targets(&cfg, &resolver, "b.test")
        .await
        .expect("targets");
    assert_eq!(
        t,
        vec![Target {
            host: "xmpp.b.test".into(),
            port: 15269,
            direct_tls: false
        }]
    );
    let e = resolver
        .addresses("gone.test", 5269, std::time::Duration::from_secs(5))
        .await
        .expect_err("NXDOMAIN");
    assert_eq!(e, "DNS: gone.test does not exist (NXDOMAIN)");
}
