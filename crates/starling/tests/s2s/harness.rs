//! Shared pieces of the federation tests: a test CA (rcgen) and its certificates, in-process
//! servers (`Node`) with static routes, and a hand-driven server-to-server peer (`RawPeer`)
//! for RFC 6120 §4–§6 negotiation on `jabber:server`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use starling::admin::{self, Command, Target};
use starling::app::Running;
use starling_core::config::{S2sPolicy, S2sRoute};
use starling_core::{Config, Server, Transport};
use starling_net::{ClientTls, TcpOptions, TcpTransport, TlsSetup};
use starling_proto::sasl::StoredCredentials;
use starling_xml::{ns, Element, StreamEvent};

use crate::support::{free_port, test_config, Mech, TempDir, XmppClient};

pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const NS_DB: &str = "jabber:server:dialback";

/// A test CA and the leaf certificates it signs, as PEM files in a folder.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
    pub dir: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path) -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Starling Test CA");
        let cert = p.self_signed(&key).expect("CA cert");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write CA");
        Ca {
            cert,
            key,
            dir: dir.to_owned(),
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf for `names`, written as `<file>.pem` / `<file>.key`.
    pub fn leaf(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign");
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }
}

/// Set `STARLING_TEST_LOG=debug` (an env-filter) to see both servers' logs.
pub fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("STARLING_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// One server of a federation test.
pub struct Node {
    pub running: Option<Running>,
    pub server: Arc<Server>,
    pub c2s: SocketAddr,
    pub s2s: SocketAddr,
    pub host: &'static str,
    pub _dir: TempDir,
}

impl Node {
    pub async fn start(
        host: &'static str,
        s2s_port: u16,
        routes: &[(&str, u16)],
        f: impl FnOnce(&mut Config),
    ) -> Node {
        init_logging();
        let dir = TempDir::new("s2s");
        let mut cfg = test_config(dir.path());
        cfg.hosts = vec![host.to_owned()];
        cfg.c2s.direct_tls_listen = String::new();
        cfg.http.listen = String::new();
        cfg.s2s.listen = format!("127.0.0.1:{s2s_port}");
        cfg.s2s.connect_timeout_secs = 3;
        cfg.s2s.negotiation_timeout_secs = 5;
        for (domain, port) in routes {
            cfg.s2s.routes.push(S2sRoute {
                domain: (*domain).to_owned(),
                host: "127.0.0.1".into(),
                port: *port,
                direct_tls: false,
            });
        }
        f(&mut cfg);
        let running = starling::app::start(cfg).await.expect("server starts");
        Node {
            server: running.server.clone(),
            c2s: running.c2s.expect("c2s"),
            s2s: running.s2s.expect("s2s listener"),
            running: Some(running),
            host,
            _dir: dir,
        }
    }

    pub async fn add_user(&self, user: &str) {
        let creds = tokio::task::spawn_blocking(|| StoredCredentials::from_password("pw", 4096))
            .await
            .expect("hash");
        self.server
            .store
            .create_account(self.host, user, &creds)
            .await
            .expect("create account");
    }

    pub async fn login(&self, user: &str, resource: &str) -> XmppClient {
        let mut c = XmppClient::connect_tcp(self.c2s, self.host).await;
        c.login_available(user, "pw", Some(resource), Mech::SCRAM_SHA_256)
            .await;
        c
    }

    pub async fn s2s_connections(&self) -> String {
        admin::execute(Target::Running(&self.server), Command::S2sConnections)
            .await
            .expect("s2s_connections")
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Two servers trusting the test CA, each with a CA-signed certificate for its domain.
pub async fn two_servers_with_certs(
    policy: S2sPolicy,
    ca: &Ca,
    tweak_b: impl FnOnce(&mut Config),
) -> (Node, Node) {
    let (pa, pb) = (free_port(), free_port());
    let (ca_file, a_pair, b_pair) = (
        ca.ca_file(),
        ca.leaf("a", &["a.test"]),
        ca.leaf("b", &["b.test"]),
    );
    let setup = |pair: (PathBuf, PathBuf), ca_file: PathBuf| {
        move |cfg: &mut Config| {
            cfg.tls.certs = vec![starling_core::config::CertPair {
                cert: pair.0,
                key: pair.1,
            }];
            cfg.s2s.ca_file = ca_file.display().to_string();
            cfg.s2s.default_policy = policy;
        }
    };
    let a = Node::start(
        "a.test",
        pa,
        &[("b.test", pb)],
        setup(a_pair, ca_file.clone()),
    )
    .await;
    let b_setup = setup(b_pair, ca_file);
    let b = Node::start("b.test", pb, &[("a.test", pa)], |cfg| {
        b_setup(cfg);
        tweak_b(cfg);
    })
    .await;
    (a, b)
}

pub fn from_is(el: &Element, prefix: &str) -> bool {
    el.attr("from").is_some_and(|f| f.starts_with(prefix))
}

pub fn presence_of_type(el: &Element, ty: Option<&str>, from: &str) -> bool {
    el.name() == "presence" && el.attr("type") == ty && from_is(el, from)
}

pub fn message_with(el: &Element, body: &str) -> bool {
    el.name() == "message" && el.child_text("body", ns::CLIENT).as_deref() == Some(body)
}

/// A hand-driven server-to-server peer (misbehaving on purpose).
pub struct RawPeer {
    pub t: TcpTransport,
}

impl RawPeer {
    /// Connects to `addr`; `cert` is presented as the TLS client certificate after STARTTLS.
    pub async fn connect(addr: SocketAddr, cert: Option<(PathBuf, PathBuf)>) -> RawPeer {
        let key = cert.map(|(c, k)| {
            let pem = |p: &Path| std::fs::read(p).expect("read pem");
            let setup = TlsSetup::from_pem(&[(&pem(&c), &pem(&k))]).expect("tls setup");
            setup.certified_key("any").expect("key")
        });
        let pki = starling_s2s::pki::Pki::load("").expect("pki");
        let config = pki.client_config(key, None).expect("client config");
        let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let client = ClientTls {
            config,
            server_name: rustls::pki_types::ServerName::try_from("b.test".to_owned())
                .expect("name"),
        };
        let opts = TcpOptions {
            content_ns: ns::SERVER,
            ..TcpOptions::default()
        };
        RawPeer {
            t: TcpTransport::connect(socket, client, opts),
        }
    }

    pub async fn next(&mut self) -> Option<StreamEvent> {
        match tokio::time::timeout(Duration::from_secs(8), self.t.recv()).await {
            Ok(Ok(ev)) => ev,
            Ok(Err(e)) => panic!("reading: {e}"),
            Err(_) => panic!("nothing received in time"),
        }
    }

    pub async fn element(&mut self) -> Element {
        match self.next().await {
            Some(StreamEvent::Stanza(el)) => el,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    pub async fn send(&mut self, el: &Element) {
        self.t.send_element(el);
        self.t.flush().await.expect("write");
    }

    /// Sends a header to b.test, returns the answer's id and the features.
    pub async fn open(&mut self, from: &str) -> (String, Element) {
        self.open_to(from, "b.test").await
    }

    pub async fn open_to(&mut self, from: &str, to: &str) -> (String, Element) {
        self.t.send_open(&[
            ("from", from),
            ("to", to),
            ("version", "1.0"),
            ("xmlns:db", NS_DB),
        ]);
        self.t.flush().await.expect("write");
        let id = match self.next().await {
            Some(StreamEvent::Open { header, .. }) => header.attr("id").unwrap_or("").to_owned(),
            other => panic!("expected a stream header, got {other:?}"),
        };
        (id, self.element().await)
    }

    pub async fn starttls(&mut self, from: &str) -> (String, Element) {
        self.starttls_to(from, "b.test").await
    }

    pub async fn starttls_to(&mut self, from: &str, to: &str) -> (String, Element) {
        self.open_to(from, to).await;
        self.send(&Element::new("starttls", NS_TLS)).await;
        assert!(self.element().await.is("proceed", NS_TLS));
        self.t.starttls().await.expect("TLS");
        self.open_to(from, to).await
    }

    /// Reads until a stream error, and returns its condition.
    pub async fn stream_error(&mut self) -> String {
        loop {
            match self.next().await {
                Some(StreamEvent::Stanza(el)) if el.is("error", ns::STREAM) => {
                    return el
                        .children()
                        .find(|c| c.ns() == NS_STREAMS && c.name() != "text")
                        .map(|c| c.name().to_owned())
                        .unwrap_or_default();
                }
                Some(StreamEvent::Stanza(_)) => continue,
                other => panic!("expected a stream error, got {other:?}"),
            }
        }
    }
}

/// Captures the `warn!` (and worse) lines logged on this thread: `#[tokio::test]` runs the
/// servers' tasks on the test's thread, so this sees both servers of a test and no other test.
pub struct LogCapture {
    buf: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct CaptureWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub fn start() -> LogCapture {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = CaptureWriter(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        LogCapture {
            buf,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn lines(&self) -> Vec<String> {
        let b = self.buf.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&b)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The lines containing `needle`.
    pub fn matching(&self, needle: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }
}

/// How a stream to a [`FakeReceiver`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// `</stream:stream>`, then a clean end of TLS and TCP; the stream error seen before, if any.
    Clean(Option<String>),
    /// Anything else: a read error (such as a TLS connection without close_notify).
    Broken(String),
}

/// A receiving server played by the test for `b.test`: STARTTLS with `tls`, dialback answered
/// `valid` without checking, then either reads until the stream ends (reporting how on
/// `ended`) or, with `never_read`, never reads again. Every connection is served alike.
pub struct FakeReceiver {
    pub addr: SocketAddr,
    pub ended: tokio::sync::mpsc::UnboundedReceiver<Ended>,
}

impl FakeReceiver {
    pub async fn start(tls: Arc<TlsSetup>, never_read: bool) -> FakeReceiver {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if never_read {
            // A small receive window, so the sender's writes stall soon.
            socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        }
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let listener = socket.listen(16).expect("listen");
        let addr = listener.local_addr().expect("local addr");
        let (tx, ended) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                let opts = TcpOptions {
                    content_ns: ns::SERVER,
                    ..TcpOptions::default()
                };
                let mut t = TcpTransport::new(stream, Some(tls.clone()), opts);
                if fake_negotiate(&mut t).await.is_err() {
                    continue;
                }
                if never_read {
                    held.push(t);
                    continue;
                }
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut error = None;
                    let end = loop {
                        match t.recv().await {
                            Ok(Some(StreamEvent::Stanza(el))) if el.is("error", ns::STREAM) => {
                                error = el
                                    .children()
                                    .find(|c| c.name() != "text")
                                    .map(|c| c.name().to_owned());
                            }
                            Ok(Some(StreamEvent::Close)) => {
                                t.send_close();
                                let _ = t.flush().await;
                                break match t.recv().await {
                                    Ok(None) => Ended::Clean(error),
                                    other => Ended::Broken(format!("after close: {other:?}")),
                                };
                            }
                            Ok(Some(_)) => continue,
                            Ok(None) => break Ended::Broken("EOF without </stream:stream>".into()),
                            Err(e) => break Ended::Broken(e.to_string()),
                        }
                    };
                    let _ = tx.send(end);
                });
            }
        });
        FakeReceiver { addr, ended }
    }
}

async fn next_event(t: &mut TcpTransport) -> Result<StreamEvent, String> {
    match t.recv().await {
        Ok(Some(ev)) => Ok(ev),
        other => Err(format!("{other:?}")),
    }
}

async fn fake_negotiate(t: &mut TcpTransport) -> Result<(), String> {
    let header = |t: &mut TcpTransport| {
        t.send_open(&[
            ("from", "b.test"),
            ("to", "a.test"),
            ("id", "fake-stream-id"),
            ("version", "1.0"),
            ("xmlns:db", NS_DB),
        ]);
    };
    let Ok(StreamEvent::Open { .. }) = next_event(t).await else {
        return Err("no header".into());
    };
    header(t);
    t.send_element(
        &Element::new("features", ns::STREAM).with_child(
            Element::new("starttls", NS_TLS).with_child(Element::new("required", NS_TLS)),
        ),
    );
    t.flush().await.map_err(|e| e.to_string())?;
    let Ok(StreamEvent::Stanza(_starttls)) = next_event(t).await else {
        return Err("no starttls".into());
    };
    t.send_element(&Element::new("proceed", NS_TLS));
    t.starttls().await.map_err(|e| e.to_string())?;
    let Ok(StreamEvent::Open { .. }) = next_event(t).await else {
        return Err("no header after TLS".into());
    };
    header(t);
    t.send_element(
        &Element::new("features", ns::STREAM)
            .with_child(Element::new("dialback", "urn:xmpp:features:dialback")),
    );
    t.flush().await.map_err(|e| e.to_string())?;
    loop {
        match next_event(t).await? {
            StreamEvent::Stanza(el) if el.is("result", NS_DB) => break,
            StreamEvent::Stanza(_) => continue,
            other => return Err(format!("{other:?}")),
        }
    }
    t.send_element(
        &Element::new("result", NS_DB)
            .with_attr("from", "b.test")
            .with_attr("to", "a.test")
            .with_attr("type", "valid"),
    );
    t.flush().await.map_err(|e| e.to_string())
}

/// A server-side TLS setup with a certificate for `b.test` from `ca`.
pub fn tls_for(ca: &Ca, file: &str, names: &[&str]) -> Arc<TlsSetup> {
    let (c, k) = ca.leaf(file, names);
    let pem = |p: &Path| std::fs::read(p).expect("read pem");
    Arc::new(TlsSetup::from_pem(&[(&pem(&c), &pem(&k))]).expect("tls setup"))
}
