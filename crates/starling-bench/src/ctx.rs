//! What every scenario shares: the options common to all of them ([`Common`]), and the run's
//! context built from them ([`Ctx`]): the resolved target, TLS configuration, source
//! addresses, the SCRAM SaltedPassword cache, progress counters and the failure log.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use starling_proto::sasl::{Mechanism, SaltedPasswordCache};
use starling_xml::escape_attr;
use tokio::sync::Semaphore;

use crate::error::{BenchError, ConnError};
use crate::progress::Progress;
use crate::source::Sources;

/// How clients reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP, `<starttls/>`, then TLS (RFC 6120 §5).
    StartTls,
    /// Direct TLS with ALPN `xmpp-client` (XEP-0368).
    Tls,
    /// RFC 7395 WebSocket (`ws://` or `wss://`).
    Ws,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::StartTls => "starttls",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
        }
    }
}

/// Options every scenario takes.
#[derive(Clone, Debug)]
pub struct Common {
    pub transport: Transport,
    /// `host:port` for `starttls` and `tls`.
    pub server: String,
    /// `ws://host:port/path` or `wss://…` for `ws`.
    pub ws_url: String,
    /// The XMPP domain (stream `to`, JIDs, TLS SNI).
    pub domain: String,
    /// None: the best offered of SCRAM-SHA-256, SCRAM-SHA-1, PLAIN.
    pub mechanism: Option<Mechanism>,
    /// Users are `{user_prefix}{i}` for i in `first..first+N`.
    pub user_prefix: String,
    pub first: u64,
    pub password: String,
    /// Logins (or other requests) in flight.
    pub concurrency: usize,
    pub sources: Vec<IpAddr>,
    /// The server's process, sampled for CPU and RSS.
    pub pid: Option<u32>,
    pub duration: Duration,
    /// Longest one login (or one request) may take.
    pub timeout: Duration,
    pub progress: bool,
    /// Where the SCRAM SaltedPassword cache is kept between runs (None: memory only).
    pub scram_cache: Option<PathBuf>,
    /// The in-memory SaltedPassword cache; clones of a `Common` share it, so several runs
    /// in one process pay PBKDF2 once per account.
    pub scram: Arc<SaltedPasswordCache>,
    pub resource: String,
}

impl Common {
    /// Defaults for a server at `server` (`host:port`) serving `domain`.
    pub fn new(server: &str, domain: &str) -> Self {
        Common {
            transport: Transport::StartTls,
            server: server.to_owned(),
            ws_url: String::new(),
            domain: domain.to_owned(),
            mechanism: None,
            user_prefix: "bench".into(),
            first: 0,
            password: "benchpass".into(),
            concurrency: 100,
            sources: Vec::new(),
            pid: None,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            progress: false,
            scram_cache: None,
            scram: Arc::new(SaltedPasswordCache::new()),
            resource: "bench".into(),
        }
    }

    /// What the report calls the target: the address or the WebSocket URL.
    pub fn target_name(&self) -> String {
        match self.transport {
            Transport::Ws => self.ws_url.clone(),
            _ => self.server.clone(),
        }
    }

    pub fn username(&self, i: u64) -> String {
        format!("{}{i}", self.user_prefix)
    }
}

/// The resolved place to connect to.
#[derive(Clone, Debug)]
pub enum Target {
    Tcp(SocketAddr),
    Ws {
        addr: SocketAddr,
        url: String,
        tls: bool,
    },
}

/// Failures grouped by reason, in the order first seen.
#[derive(Default)]
pub struct FailureLog {
    count: AtomicU64,
    reasons: Mutex<Vec<(String, u64)>>,
    emfile_said: AtomicBool,
}

/// Distinct reasons kept (the rest are only counted).
const MAX_REASONS: usize = 8;

impl FailureLog {
    pub fn record(&self, reason: String) {
        self.count.fetch_add(1, Relaxed);
        let mut r = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = r.iter_mut().find(|(k, _)| *k == reason) {
            slot.1 += 1;
        } else if r.len() < MAX_REASONS {
            r.push((reason, 1));
        }
    }

    pub fn conn(&self, e: &ConnError) {
        if e.is_emfile() && !self.emfile_said.swap(true, Relaxed) {
            eprintln!("starling-bench: {e}");
        }
        self.record(e.reason());
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// "N× reason" lines.
    pub fn reasons(&self) -> Vec<String> {
        let r = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().map(|(k, n)| format!("{n}× {k}")).collect()
    }
}

/// The run's shared context.
pub struct Ctx {
    pub common: Common,
    pub target: Target,
    pub tls: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    pub sources: Sources,
    pub scram: Arc<SaltedPasswordCache>,
    pub scram_hits: AtomicU64,
    pub scram_misses: AtomicU64,
    /// PBKDF2 runs at once: no more than the machine has cores, so a burst of first logins
    /// does not fill the blocking pool with hundreds of threads.
    pub pbkdf2: Semaphore,
    pub progress: Arc<Progress>,
    pub failures: FailureLog,
    /// The mechanism the last login used (for the report).
    pub mechanism_used: Mutex<Option<Mechanism>>,
    /// `user_prefix` and `domain`, escaped for attribute values.
    pub prefix_xml: String,
    pub domain_xml: String,
}

fn resolve(hostport: &str, option: &str) -> Result<SocketAddr, BenchError> {
    hostport
        .to_socket_addrs()
        .map_err(|e| BenchError::Usage(format!("{option}: cannot resolve {hostport:?}: {e}")))?
        .next()
        .ok_or_else(|| BenchError::Usage(format!("{option}: {hostport:?} has no address")))
}

/// `ws[s]://host[:port]/path` → (host:port, tls).
pub fn parse_ws_url(url: &str) -> Result<(String, bool), BenchError> {
    let bad = |why: &str| BenchError::Usage(format!("--ws-url: {url:?}: {why}"));
    let (tls, rest) = if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else {
        return Err(bad("must start with ws:// or wss://"));
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let has_port = match authority.rfind(']') {
        Some(i) => authority[i..].contains(':'),
        None => authority.contains(':'),
    };
    let hostport = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    Ok((hostport, tls))
}

impl Ctx {
    pub fn new(common: Common) -> Result<Arc<Ctx>, BenchError> {
        if common.concurrency == 0 {
            return Err(BenchError::Usage(
                "--concurrency: must be at least 1".into(),
            ));
        }
        let target = match common.transport {
            Transport::Ws => {
                let (hostport, tls) = parse_ws_url(&common.ws_url)?;
                Target::Ws {
                    addr: resolve(&hostport, "--ws-url")?,
                    url: common.ws_url.clone(),
                    tls,
                }
            }
            _ => Target::Tcp(resolve(&common.server, "--server")?),
        };
        let alpn: &[&[u8]] = if common.transport == Transport::Tls {
            &[crate::tls::ALPN_XMPP_CLIENT]
        } else {
            &[]
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let esc = |s: &str| {
            let mut o = String::new();
            escape_attr(s, &mut o);
            o
        };
        Ok(Arc::new(Ctx {
            tls: crate::tls::client_config(alpn)?,
            server_name: crate::tls::server_name(&common.domain)?,
            sources: Sources::new(common.sources.clone()),
            target,
            scram: common.scram.clone(),
            scram_hits: AtomicU64::new(0),
            scram_misses: AtomicU64::new(0),
            pbkdf2: Semaphore::new(cores),
            progress: Arc::new(Progress::default()),
            failures: FailureLog::default(),
            mechanism_used: Mutex::new(None),
            prefix_xml: esc(&common.user_prefix),
            domain_xml: esc(&common.domain),
            common,
        }))
    }

    pub fn record_mechanism(&self, m: Mechanism) {
        *self
            .mechanism_used
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(m);
    }

    pub fn mechanism_used(&self) -> Option<Mechanism> {
        *self
            .mechanism_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls() {
        assert_eq!(
            parse_ws_url("ws://127.0.0.1:5280/xmpp-websocket").ok(),
            Some(("127.0.0.1:5280".into(), false))
        );
        assert_eq!(
            parse_ws_url("wss://localhost/ws").ok(),
            Some(("localhost:443".into(), true))
        );
        assert_eq!(
            parse_ws_url("ws://[::1]/x").ok(),
            Some(("[::1]:80".into(), false))
        );
        assert!(parse_ws_url("http://x/").is_err());
        assert!(parse_ws_url("ws:///x").is_err());
    }

    #[test]
    fn failures_group_by_reason() {
        let f = FailureLog::default();
        f.record("a".into());
        f.record("b".into());
        f.record("a".into());
        assert_eq!(f.count(), 3);
        assert_eq!(f.reasons(), ["2× a", "1× b"]);
    }
}
