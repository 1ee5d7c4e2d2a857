//! Harness for the protocol tests (ARCHITECTURE.md, "Tests, by level"): a whole server
//! started in-process on 127.0.0.1:0 in a fresh data folder, accounts, and raw XMPP clients
//! over TCP + STARTTLS (RFC 6120 §5), Direct TLS (XEP-0368) and WebSocket (RFC 7395).
//!
//! Each test binary uses part of it.
#![allow(dead_code)]

pub mod client;
pub mod expect;
pub mod negotiation;
pub mod sasl;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

use starling::app::Running;
use starling_core::{Config, Server};
use starling_proto::sasl::StoredCredentials;
use starling_xml::Element;

// Not every test binary uses every re-export.
#[allow(unused_imports)]
pub use client::{XmppClient, TIMEOUT};
#[allow(unused_imports)]
pub use expect::{stanza_error, want, Want};
#[allow(unused_imports)]
pub use negotiation::SaslOptions;
#[allow(unused_imports)]
pub use sasl::{Cb, Hash, Mech};

pub const HOST: &str = "localhost";
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";
pub const NS_ROSTER: &str = "jabber:iq:roster";
pub const NS_DELAY: &str = "urn:xmpp:delay";
pub const WS_PATH: &str = "/xmpp-websocket";

/// Set `STARLING_TEST_LOG=debug` (an env-filter) to see the server's log and every stanza.
fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("STARLING_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// A folder removed when dropped (kept when `STARLING_KEEP_TEST_DATA` is set).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        // Short: the admin socket path inside must fit a sockaddr_un (108 bytes).
        let path = std::env::temp_dir().join(format!(
            "stl-{tag}-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("STARLING_KEEP_TEST_DATA").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The configuration every test server starts from: host `localhost`, every listener on
/// 127.0.0.1:0, data under `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut cfg = Config {
        hosts: vec![HOST.to_owned()],
        data_dir: dir.join("data"),
        ..Config::default()
    };
    cfg.c2s.listen = "127.0.0.1:0".into();
    cfg.c2s.direct_tls_listen = "127.0.0.1:0".into();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.http.tls_listen = String::new();
    // Federation only where a test asks for it (s2s_federation.rs binds its own ports).
    cfg.s2s.listen = String::new();
    cfg.log.stanzas = std::env::var_os("STARLING_TEST_LOG").is_some();
    cfg
}

/// A running server for one test.
pub struct TestServer {
    running: Option<Running>,
    pub server: Arc<Server>,
    c2s: Option<SocketAddr>,
    direct_tls: Option<SocketAddr>,
    http: Option<SocketAddr>,
    component: Option<SocketAddr>,
    // Last: removed after the server is gone.
    dir: TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test configuration changed by `f`.
    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        init_logging();
        let dir = TempDir::new("srv");
        let mut cfg = test_config(dir.path());
        f(&mut cfg);
        let running = starling::app::start(cfg).await.expect("server starts");
        TestServer {
            server: running.server.clone(),
            c2s: running.c2s,
            direct_tls: running.direct_tls,
            http: running.http,
            component: running.component,
            running: Some(running),
            dir,
        }
    }

    pub fn c2s(&self) -> SocketAddr {
        self.c2s.expect("c2s listener configured")
    }

    pub fn direct_tls(&self) -> SocketAddr {
        self.direct_tls.expect("Direct TLS listener configured")
    }

    pub fn http(&self) -> SocketAddr {
        self.http.expect("HTTP listener configured")
    }

    /// The external component listener (XEP-0114), when the test configured services.
    pub fn component(&self) -> SocketAddr {
        self.component.expect("component listener configured")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.server.config.data_dir.clone()
    }

    /// Creates `user@localhost` (SCRAM credentials with 4096 iterations, RFC 7677's minimum).
    pub async fn add_user(&self, user: &str, password: &str) {
        let password = password.to_owned();
        let creds =
            tokio::task::spawn_blocking(move || StoredCredentials::from_password(&password, 4096))
                .await
                .expect("hash password");
        self.server
            .store
            .create_account(HOST, user, &creds)
            .await
            .expect("create account");
    }

    /// A plain TCP connection to the c2s port (nothing sent yet).
    pub async fn connect(&self) -> XmppClient {
        XmppClient::connect_tcp(self.c2s(), HOST).await
    }

    pub async fn connect_direct_tls(&self, alpn: bool) -> XmppClient {
        XmppClient::connect_direct_tls(self.direct_tls(), HOST, alpn).await
    }

    pub async fn connect_ws(&self) -> XmppClient {
        XmppClient::connect_ws(self.http(), WS_PATH, HOST).await
    }

    /// A TCP client logged in with SCRAM-SHA-256 after STARTTLS, resource bound.
    pub async fn login(&self, user: &str, password: &str, resource: &str) -> XmppClient {
        let mut c = self.connect().await;
        c.login(user, password, Some(resource), Mech::SCRAM_SHA_256)
            .await;
        c
    }

    /// Graceful shutdown (every stream gets `<system-shutdown/>`).
    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// The `<mechanism/>` names in features.
pub fn mechanisms(features: Option<&Element>) -> Vec<String> {
    features
        .and_then(|f| f.get_child("mechanisms", NS_SASL))
        .map(|m| {
            m.children()
                .filter(|c| c.is("mechanism", NS_SASL))
                .map(|c| c.text().trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The XEP-0440 channel-binding types in features.
pub fn channel_binding_types(features: &Element) -> Vec<String> {
    features
        .get_child("sasl-channel-binding", NS_SASL_CB)
        .map(|cb| {
            cb.children()
                .filter(|c| c.is("channel-binding", NS_SASL_CB))
                .filter_map(|c| c.attr("type").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts `el` is an error stanza with this condition and type (RFC 6120 §8.3).
#[track_caller]
pub fn assert_stanza_error(el: &Element, condition: &str, error_type: &str) {
    assert_eq!(el.attr("type"), Some("error"), "not an error stanza: {el}");
    match stanza_error(el) {
        Some((c, t)) => {
            assert_eq!(c, condition, "wrong condition in {el}");
            assert_eq!(t, error_type, "wrong error type in {el}");
        }
        None => panic!("no <error/> with a defined condition in {el}"),
    }
}

/// A free TCP port on 127.0.0.1 (bound and released: for the binary, which needs fixed ports).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}
