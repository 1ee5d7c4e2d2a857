//! Listeners: accept loops for c2s over TCP (STARTTLS, RFC 6120 §5) or Direct TLS (XEP-0368)
//! and for HTTP(S) carrying WebSocket (RFC 7395) and host-meta (XEP-0156), with a connection
//! limit, TCP_NODELAY, accept errors that back off instead of spinning, and graceful shutdown.
//! What runs a stream is the caller's [`StreamHandler`], so net never names core's server.

use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
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
use crate::websocket::{self, ConnInfo, WsConfig, WsTransport};
use crate::NetError;

/// What runs a stream once its transport exists (the binary passes one calling core's c2s
/// session). Each method spawns its own task and returns at once.
pub trait StreamHandler: Send + Sync + 'static {
    fn tcp(&self, transport: TcpTransport);
    fn ws(&self, transport: WsTransport);
}

/// Per-listener limits.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// Open connections at most; past it new connections are accepted and closed at once.
    pub max_connections: usize,
    /// Largest stanza the XML parser accepts (RFC 6120 §13.12: at least 10000 bytes).
    pub max_stanza_bytes: usize,
    /// How long a TLS handshake may take before the connection is dropped.
    pub tls_handshake_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 10_000,
            max_stanza_bytes: Limits::default().max_stanza_bytes,
            tls_handshake_timeout: Duration::from_secs(30),
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

    fn semaphore(&self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(
            self.max_connections.min(Semaphore::MAX_PERMITS),
        ))
    }
}

/// Every listener of a server sharing one handler, one connection budget and one shutdown
/// signal. The free functions [`bind_c2s`] and [`bind_http`] do the same with a budget each.
pub struct ListenerSet {
    handler: Arc<dyn StreamHandler>,
    limits: ConnLimits,
    permits: Arc<Semaphore>,
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
        let (local, task) = c2s(
            addr,
            tls,
            direct_tls,
            self.handler.clone(),
            self.limits.clone(),
            self.permits.clone(),
            self.shutdown.clone(),
        )
        .await?;
        self.bound
            .push((if direct_tls { "c2s-tls" } else { "c2s" }, local));
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
        let (local, task) = http(
            addr,
            tls,
            ws_path,
            self.handler.clone(),
            self.limits.clone(),
            self.permits.clone(),
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

    /// Waits until every listener stopped (after the shutdown signal).
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
    c2s(addr, tls, direct_tls, handler, limits, permits, shutdown).await
}

/// Binds an HTTP(S) listener with its own connection budget. See [`ListenerSet::bind_http`].
pub async fn bind_http(
    addr: SocketAddr,
    tls: Option<Arc<TlsSetup>>,
    ws_path: &str,
    handler: Arc<dyn StreamHandler>,
    limits: ConnLimits,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), NetError> {
    let permits = limits.semaphore();
    http(addr, tls, ws_path, handler, limits, permits, shutdown).await
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

async fn c2s(
    addr: SocketAddr,
    tls: Arc<TlsSetup>,
    direct_tls: bool,
    handler: Arc<dyn StreamHandler>,
    limits: ConnLimits,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), NetError> {
    let (listener, local) = bind(addr).await?;
    info!(
        "c2s listening on {local}{}",
        if direct_tls { " (Direct TLS)" } else { "" }
    );
    let opts = TcpOptions {
        content_ns: ns::CLIENT,
        limits: limits.xml_limits(),
        tls_handshake_timeout: limits.tls_handshake_timeout,
    };
    let max = limits.max_connections;
    let task = tokio::spawn(accept_loop(
        listener,
        local,
        max,
        permits,
        shutdown,
        move |stream, peer, permit| {
            if direct_tls {
                let (tls, opts, handler) = (tls.clone(), opts.clone(), handler.clone());
                tokio::spawn(async move {
                    match TcpTransport::accept_direct_tls(stream, tls, opts).await {
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

async fn http(
    addr: SocketAddr,
    tls: Option<Arc<TlsSetup>>,
    ws_path: &str,
    handler: Arc<dyn StreamHandler>,
    limits: ConnLimits,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), NetError> {
    let (listener, local) = bind(addr).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!("{scheme} listening on {local} (WebSocket at {ws_path})");
    let router = websocket::router(
        handler,
        WsConfig {
            path: ws_path.to_owned(),
            limits: limits.xml_limits(),
            tls: tls.is_some(),
        },
    );
    // TLS handshakes run in their own tasks and hand finished connections to the HTTP server
    // through this channel, so one slow handshake never holds up accepting.
    let (tx, rx) = mpsc::channel::<HttpConn>(64);
    let timeout = limits.tls_handshake_timeout;
    let accept = accept_loop(
        listener,
        local,
        limits.max_connections,
        permits,
        shutdown.clone(),
        move |stream, peer, permit| {
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                let conn = match tls {
                    None => HttpConn {
                        io: HttpIo::Plain(stream),
                        info: ConnInfo {
                            peer,
                            tls: false,
                            sni: None,
                            bindings: ChannelBindings::default(),
                        },
                        _permit: permit,
                    },
                    Some(setup) => {
                        match http_tls_handshake(stream, peer, &setup, timeout, permit).await {
                            Some(conn) => conn,
                            None => return,
                        }
                    }
                };
                let _ = tx.send(conn).await;
            });
        },
    );
    let mut stop = shutdown;
    let serve = axum::serve(
        HttpListener { rx, local },
        router.into_make_service_with_connect_info::<ConnInfo>(),
    )
    .with_graceful_shutdown(async move { wait_shutdown(&mut stop).await });
    let task = tokio::spawn(async move {
        let (_, served) = tokio::join!(accept, serve.into_future());
        if let Err(e) = served {
            error!("{scheme} listener on {local} failed: {e}");
        }
    });
    Ok((local, task))
}

async fn http_tls_handshake(
    stream: TcpStream,
    peer: SocketAddr,
    setup: &TlsSetup,
    timeout: Duration,
    permit: OwnedSemaphorePermit,
) -> Option<HttpConn> {
    let accept = TlsAcceptor::from(setup.starttls.clone()).accept(stream);
    let tls = match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(%peer, "HTTPS handshake failed: {e}");
            return None;
        }
        Err(_) => {
            debug!(%peer, "HTTPS handshake timed out");
            return None;
        }
    };
    let (sni, bindings) = crate::tls::session_info(tls.get_ref().1, setup);
    Some(HttpConn {
        io: HttpIo::Tls(Box::new(tls)),
        info: ConnInfo {
            peer,
            tls: true,
            sni,
            bindings,
        },
        _permit: permit,
    })
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
async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    max_connections: usize,
    permits: Arc<Semaphore>,
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Log once per burst, not once per connection.
            if refused == 0 {
                warn!(
                    "{local}: connection limit reached ({max_connections} open); closing new \
                     connections until some end"
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
                error!(
                    "{local}: out of file descriptors: raise the limit or lower \
                     max_connections ({e})"
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

/// An accepted HTTP connection, TLS done, with what the WebSocket transport needs to know.
struct HttpConn {
    io: HttpIo,
    info: ConnInfo,
    /// Released when hyper drops the connection, or the upgraded WebSocket ends.
    _permit: OwnedSemaphorePermit,
}

enum HttpIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for HttpConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            HttpIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            HttpIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for HttpConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            HttpIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            HttpIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            HttpIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            HttpIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            HttpIo::Plain(s) => s.is_write_vectored(),
            HttpIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            HttpIo::Plain(s) => Pin::new(s).poll_flush(cx),
            HttpIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            HttpIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            HttpIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Feeds axum's server with connections accepted (and TLS-terminated) by our accept loop.
struct HttpListener {
    rx: mpsc::Receiver<HttpConn>,
    local: SocketAddr,
}

impl axum::serve::Listener for HttpListener {
    type Io = HttpConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => {
                let peer = conn.info.peer;
                (conn, peer)
            }
            // The accept loop stopped (shutdown): graceful shutdown ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, HttpListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, HttpListener>) -> Self {
        stream.io().info.clone()
    }
}
