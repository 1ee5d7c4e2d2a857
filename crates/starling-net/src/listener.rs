//! Listeners: accept loops for c2s and s2s over TCP (STARTTLS, RFC 6120 §5) or Direct TLS (XEP-0368)
//! and for HTTP(S) carrying WebSocket (RFC 7395) and host-meta (XEP-0156), with connection
//! budgets, TCP_NODELAY, accept errors that back off instead of spinning, and graceful shutdown.
//! What runs a stream is the caller's [`StreamHandler`], so net never names core's server.
//!
//! Budgets: c2s connections and upgraded WebSockets share the stream budget
//! (`max_connections`); HTTP connections not (yet) upgraded have a smaller one of their own
//! (`max_http_pending`), so idle or slow HTTP clients cannot crowd out XMPP streams; each
//! TLS listener runs at most `max_tls_handshakes` handshakes at once. Plain HTTP connections
//! are closed when the request head does not arrive in time or nothing moves for a while; a
//! WebSocket is a stream, left to core's negotiation and keepalive timers.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use starling_proto::sasl::ChannelBindings;
use starling_xml::{ns, Limits};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::tcp::{TcpOptions, TcpTransport};
use crate::tls::TlsSetup;
use crate::websocket::{self, ConnInfo, StreamBudget, WsConfig, WsTransport};
use crate::NetError;

mod http;

/// What runs a stream once its transport exists (the binary passes one calling core's c2s
/// session). Each method spawns its own task and returns at once.
pub trait StreamHandler: Send + Sync + 'static {
    fn tcp(&self, transport: TcpTransport);
    fn ws(&self, transport: WsTransport);
}

/// Per-listener limits. Build with `..ConnLimits::default()` so fields added later keep
/// their defaults.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// Open XMPP streams at most (c2s connections and upgraded WebSockets); past it new c2s
    /// connections are accepted and closed at once, and WebSocket upgrades are refused (503).
    pub max_connections: usize,
    /// Largest stanza the XML parser accepts (RFC 6120 §13.12: at least 10000 bytes).
    pub max_stanza_bytes: usize,
    /// How long a TLS handshake may take before the connection is dropped.
    pub tls_handshake_timeout: Duration,
    /// How long an HTTP client has to send a whole request head, counted from when the
    /// connection is ready (TLS done) or the previous response was sent: so also how long an
    /// idle keep-alive connection stays open. Default 10 s.
    pub http_header_timeout: Duration,
    /// How long an HTTP connection not upgraded to a WebSocket may go without a byte read or
    /// written (a client that stops reading responses or sending a body) before it is closed.
    /// Upgraded WebSockets are never cut by it. Default 30 s.
    pub http_idle_timeout: Duration,
    /// HTTP connections not upgraded to a WebSocket (TLS handshakes included) open at most,
    /// over all HTTP listeners of a [`ListenerSet`]; past it new ones are closed at once.
    /// They do not count against `max_connections`. `None` (the default): a quarter of
    /// `max_connections`, at least 1.
    pub max_http_pending: Option<usize>,
    /// TLS handshakes (Direct TLS and HTTPS) in progress at most per listener; past it new
    /// connections are closed at once. Default 256.
    pub max_tls_handshakes: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 10_000,
            max_stanza_bytes: Limits::default().max_stanza_bytes,
            tls_handshake_timeout: Duration::from_secs(30),
            http_header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(30),
            max_http_pending: None,
            max_tls_handshakes: 256,
        }
    }
}

impl ConnLimits {
    fn xml_limits(&self) -> Limits {
        Limits {
            max_stanza_bytes: self.max_stanza_bytes,
            ..Limits::default()
        }
    }

    /// The budget of HTTP connections not upgraded.
    pub fn http_pending(&self) -> usize {
        self.max_http_pending
            .unwrap_or(self.max_connections / 4)
            .max(1)
    }

    fn semaphore(&self) -> Arc<Semaphore> {
        semaphore(self.max_connections)
    }

    fn http_semaphore(&self) -> Arc<Semaphore> {
        semaphore(self.http_pending())
    }

    fn handshake_semaphore(&self) -> Arc<Semaphore> {
        semaphore(self.max_tls_handshakes.max(1))
    }
}

fn semaphore(permits: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(permits.min(Semaphore::MAX_PERMITS)))
}

/// Every listener of a server sharing one handler, one stream budget, one budget of pending
/// HTTP connections and one shutdown signal. The free functions [`bind_c2s`] and
/// [`bind_http`] do the same with budgets of their own.
pub struct ListenerSet {
    handler: Arc<dyn StreamHandler>,
    limits: ConnLimits,
    permits: Arc<Semaphore>,
    http_permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    bound: Vec<(&'static str, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
}

impl ListenerSet {
    /// Listeners stop accepting when `shutdown` becomes true (or its sender is dropped).
    pub fn new(
        handler: Arc<dyn StreamHandler>,
        limits: ConnLimits,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        ListenerSet {
            handler,
            permits: limits.semaphore(),
            http_permits: limits.http_semaphore(),
            limits,
            shutdown,
            bound: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// A c2s listener: STARTTLS offered on plain TCP, or Direct TLS (XEP-0368). Returns the
    /// bound address (port 0 picks one).
    pub async fn bind_c2s(
        &mut self,
        addr: SocketAddr,
        tls: Arc<TlsSetup>,
        direct_tls: bool,
    ) -> Result<SocketAddr, NetError> {
        let name = if direct_tls { "c2s-tls" } else { "c2s" };
        self.bind_stream(Kind::C2s, name, addr, tls, direct_tls)
            .await
    }

    /// A server-to-server listener (`jabber:server` streams, RFC 6120 §4.8.3): STARTTLS on
    /// plain TCP, or Direct TLS (XEP-0368, `tls` built by `TlsSetup::for_servers`). Its
    /// streams draw on this set's budget, so give s2s a set of its own.
    pub async fn bind_s2s(
        &mut self,
        addr: SocketAddr,
        tls: Arc<TlsSetup>,
        direct_tls: bool,
    ) -> Result<SocketAddr, NetError> {
        let name = if direct_tls { "s2s-tls" } else { "s2s" };
        self.bind_stream(Kind::S2s, name, addr, tls, direct_tls)
            .await
    }

    async fn bind_stream(
        &mut self,
        kind: Kind,
        name: &'static str,
        addr: SocketAddr,
        tls: Arc<TlsSetup>,
        direct_tls: bool,
    ) -> Result<SocketAddr, NetError> {
        let (local, task) = stream_listener(
            kind,
            addr,
            tls,
            direct_tls,
            self.handler.clone(),
            self.limits.clone(),
            self.permits.clone(),
            self.shutdown.clone(),
        )
        .await?;
        self.bound.push((name, local));
        self.tasks.push(task);
        Ok(local)
    }

    /// An HTTP listener (HTTPS when `tls` is given) serving the WebSocket endpoint at
    /// `ws_path` and host-meta.
    pub async fn bind_http(
        &mut self,
        addr: SocketAddr,
        tls: Option<Arc<TlsSetup>>,
        ws_path: &str,
    ) -> Result<SocketAddr, NetError> {
        let https = tls.is_some();
        let (local, task) = http::serve(
            addr,
            tls,
            ws_path,
            self.handler.clone(),
            self.limits.clone(),
            Budgets {
                streams: self.permits.clone(),
                http: self.http_permits.clone(),
            },
            self.shutdown.clone(),
        )
        .await?;
        self.bound
            .push((if https { "https" } else { "http" }, local));
        self.tasks.push(task);
        Ok(local)
    }

    /// What is listening where: ("c2s" | "c2s-tls" | "http" | "https", address).
    pub fn bound(&self) -> &[(&'static str, SocketAddr)] {
        &self.bound
    }

    /// Waits until every listener stopped (after the shutdown signal), HTTP connections not
    /// upgraded included.
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds a c2s listener with its own connection budget. See [`ListenerSet::bind_c2s`].
pub async fn bind_c2s(
    addr: SocketAddr,
    tls: Arc<TlsSetup>,
    direct_tls: bool,
    handler: Arc<dyn StreamHandler>,
    limits: ConnLimits,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), NetError> {
    let permits = limits.semaphore();
    stream_listener(
        Kind::C2s,
        addr,
        tls,
        direct_tls,
        handler,
        limits,
        permits,
        shutdown,
    )
    .await
}

/// Binds an HTTP(S) listener with budgets of its own. See [`ListenerSet::bind_http`].
pub async fn bind_http(
    addr: SocketAddr,
    tls: Option<Arc<TlsSetup>>,
    ws_path: &str,
    handler: Arc<dyn StreamHandler>,
    limits: ConnLimits,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), NetError> {
    let budgets = Budgets {
        streams: limits.semaphore(),
        http: limits.http_semaphore(),
    };
    http::serve(addr, tls, ws_path, handler, limits, budgets, shutdown).await
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), NetError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| NetError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| NetError::Bind { addr, source })?;
    Ok((listener, local))
}

/// What an XML stream listener serves.
#[derive(Clone, Copy)]
enum Kind {
    C2s,
    S2s,
}

#[allow(clippy::too_many_arguments)]
async fn stream_listener(
    kind: Kind,
    addr: SocketAddr,
    tls: Arc<TlsSetup>,
    direct_tls: bool,
    handler: Arc<dyn StreamHandler>,
    limits: ConnLimits,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), NetError> {
    let (listener, local) = bind(addr).await?;
    let (name, content_ns) = match kind {
        Kind::C2s => ("c2s", ns::CLIENT),
        Kind::S2s => ("s2s", ns::SERVER),
    };
    info!(
        "{name} listening on {local}{}",
        if direct_tls { " (Direct TLS)" } else { "" }
    );
    let opts = TcpOptions {
        content_ns,
        limits: limits.xml_limits(),
        tls_handshake_timeout: limits.tls_handshake_timeout,
    };
    let handshakes = limits.handshake_semaphore();
    let task = tokio::spawn(accept_loop(
        listener,
        local,
        Budget {
            what: "connection limit (max_connections)",
            max: limits.max_connections,
            permits,
        },
        shutdown,
        move |stream, peer, permit| {
            if direct_tls {
                let Some(handshake) = handshake_permit(&handshakes, peer, local) else {
                    return;
                };
                let (tls, opts, handler) = (tls.clone(), opts.clone(), handler.clone());
                tokio::spawn(async move {
                    let accepted = TcpTransport::accept_direct_tls(stream, tls, opts).await;
                    drop(handshake);
                    match accepted {
                        Ok(mut t) => {
                            t.hold_permit(permit);
                            handler.tcp(t);
                        }
                        Err(e) => debug!(%peer, "Direct TLS: {e}"),
                    }
                });
            } else {
                let mut t = TcpTransport::new(stream, Some(tls.clone()), opts.clone());
                t.hold_permit(permit);
                handler.tcp(t);
            }
        },
    ));
    Ok((local, task))
}

/// A slot for one more TLS handshake on this listener, or `None` (the connection is then
/// dropped) when `max_tls_handshakes` are under way.
fn handshake_permit(
    handshakes: &Arc<Semaphore>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<OwnedSemaphorePermit> {
    let permit = handshakes.clone().try_acquire_owned().ok();
    if permit.is_none() {
        debug!(%peer, %local, "too many TLS handshakes in progress (max_tls_handshakes); closing");
    }
    permit
}

/// The budgets an HTTP listener draws on.
struct Budgets {
    /// XMPP streams: an upgraded WebSocket takes one of these.
    streams: Arc<Semaphore>,
    /// HTTP connections not upgraded.
    http: Arc<Semaphore>,
}

/// Resolves when shutdown is signalled or the sender is gone.
async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Accepts until shutdown; hands each connection with its permit to `on_conn`.
/// One budget an accept loop draws a permit from for each connection.
struct Budget {
    /// For the log: which limit this is.
    what: &'static str,
    max: usize,
    permits: Arc<Semaphore>,
}

async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    budget: Budget,
    mut shutdown: watch::Receiver<bool>,
    mut on_conn: impl FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit) + Send + 'static,
) {
    let mut refused: u64 = 0;
    let mut last_fd_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = wait_shutdown(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_error(&e, local, &mut last_fd_log).await;
                continue;
            }
        };
        let Ok(permit) = budget.permits.clone().try_acquire_owned() else {
            // Log once per burst, not once per connection.
            if refused == 0 {
                warn!(
                    "{local}: {} reached ({} open); closing new connections until some end",
                    budget.what, budget.max
                );
            }
            refused += 1;
            drop(stream);
            continue;
        };
        if refused > 0 {
            info!("{local}: accepting connections again ({refused} refused at the limit)");
            refused = 0;
        }
        let _ = stream.set_nodelay(true);
        debug!(%peer, %local, "accepted");
        on_conn(stream, peer, permit);
    }
    debug!("{local}: no longer accepting");
}

/// Accept errors must not make the loop spin: running out of descriptors keeps failing
/// until some connection closes, so back off and say what to do about it.
async fn accept_error(e: &io::Error, local: SocketAddr, last_fd_log: &mut Option<Instant>) {
    match e.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => {
            if !matches!(last_fd_log, Some(t) if t.elapsed() < Duration::from_secs(10)) {
                let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .map(|(soft, hard)| format!("open-files limit {soft} (hard {hard})"))
                    .unwrap_or_else(|_| "open-files limit unknown".into());
                error!(
                    "{local}: out of file descriptors at the {limit}: raise it (ulimit -n) \
                     or lower max_connections; new connections wait ({e})"
                );
                *last_fd_log = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // The peer gave up between SYN and accept: nothing to do.
        Some(libc::ECONNABORTED) | Some(libc::ECONNRESET) | Some(libc::EPROTO) => {
            debug!("{local}: accept: {e}");
        }
        _ => {
            warn!("{local}: accept failed: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Raises the soft limit on open files to the hard limit (a server holds one descriptor per
/// connection). Returns (soft, hard) as they are afterwards; (0, 0) where unknown.
pub fn raise_fd_limit() -> (u64, u64) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(_) => {}
        Err(e) => warn!("cannot raise the open-files limit: {e}"),
    }
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            warn!("cannot read the open-files limit: {e}");
            (0, 0)
        }
    }
}
