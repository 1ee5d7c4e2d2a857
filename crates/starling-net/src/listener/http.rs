//! The HTTP side of the listeners: XMPP over WebSocket (RFC 7395) and host-meta (XEP-0156)
//! behind hyper, with their own connection budget, header and idle timeouts, and TLS.

use super::*;

/// How long an HTTP connection may take to finish after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What every connection of one HTTP listener shares.
struct HttpShared {
    router: Router,
    tls: Option<Arc<TlsSetup>>,
    streams: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    limits: ConnLimits,
    local: SocketAddr,
}

pub(super) async fn serve(
    addr: SocketAddr,
    tls: Option<Arc<TlsSetup>>,
    ws_path: &str,
    handler: Arc<dyn StreamHandler>,
    limits: ConnLimits,
    budgets: Budgets,
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
    let shared = Arc::new(HttpShared {
        router,
        tls,
        streams: budgets.streams,
        handshakes: limits.handshake_semaphore(),
        limits: limits.clone(),
        local,
    });
    // Every connection task holds a sender; the listener is done once all are gone.
    let (running, mut all_done) = mpsc::channel::<()>(1);
    let conn_shutdown = shutdown.clone();
    let accept = accept_loop(
        listener,
        local,
        Budget {
            what: "HTTP connection limit (max_http_pending)",
            max: limits.http_pending(),
            permits: budgets.http,
        },
        shutdown,
        move |stream, peer, permit| {
            let (shared, shutdown, running) =
                (shared.clone(), conn_shutdown.clone(), running.clone());
            // TLS handshakes run in the connection's own task, so one slow handshake never
            // holds up accepting.
            tokio::spawn(async move {
                serve_http(stream, peer, &shared, shutdown).await;
                // The connection's HTTP slot is free once it is closed or upgraded (the
                // WebSocket then holds a stream slot of its own).
                drop(permit);
                drop(running);
            });
        },
    );
    let task = tokio::spawn(async move {
        accept.await;
        // The accept loop dropped its sender with the closure: wait for the connections,
        // which finish their requests and close on the shutdown signal.
        let _ = all_done.recv().await;
        debug!("{scheme} listener on {local} stopped");
    });
    Ok((local, task))
}

/// Serves one HTTP connection: TLS when configured, then HTTP/1.1 with the header-read and
/// idle timeouts, until it closes, is upgraded to a WebSocket, or shutdown lets it finish.
async fn serve_http(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &HttpShared,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = &shared.limits;
    let (io, info) = match &shared.tls {
        None => (
            HttpIo::Plain(stream),
            ConnInfo {
                peer,
                tls: false,
                sni: None,
                bindings: ChannelBindings::default(),
            },
        ),
        Some(setup) => {
            let Some(handshake) = handshake_permit(&shared.handshakes, peer, shared.local) else {
                return;
            };
            let done = tokio::select! {
                done = http_tls_handshake(stream, peer, setup, limits.tls_handshake_timeout) => done,
                _ = wait_shutdown(&mut shutdown) => return,
            };
            drop(handshake);
            match done {
                Some(done) => done,
                None => return,
            }
        }
    };
    let activity = Arc::new(Activity::new());
    let io = HttpConn {
        io,
        activity: activity.clone(),
    };
    let router = TowerToHyperService::new(shared.router.clone());
    let streams = StreamBudget(shared.streams.clone());
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        // What the WebSocket upgrade needs: the connection and the stream budget.
        req.extensions_mut().insert(ConnectInfo(info.clone()));
        req.extensions_mut().insert(streams.clone());
        router.call(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.http_header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut stopping = false;
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            // Ends when the connection closes, or right after an upgrade, whose stream then
            // lives on in the WebSocket task (and is no longer watched for idleness here).
            served = conn.as_mut() => {
                if let Err(e) = served {
                    debug!(%peer, "HTTP connection: {e}");
                }
                return;
            }
            // Idle connections close at once, a request being answered is finished; one still
            // trickling in its head gets a moment, not the whole header timeout.
            _ = wait_shutdown(&mut shutdown), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
                grace.as_mut().reset(tokio::time::Instant::now() + SHUTDOWN_GRACE);
            }
            _ = grace.as_mut(), if stopping => {
                debug!(%peer, "HTTP connection still busy at shutdown; closing");
                return;
            }
            _ = activity.idle(limits.http_idle_timeout) => {
                debug!(%peer, "HTTP connection idle; closing");
                return;
            }
        }
    }
}

async fn http_tls_handshake(
    stream: TcpStream,
    peer: SocketAddr,
    setup: &TlsSetup,
    timeout: Duration,
) -> Option<(HttpIo, ConnInfo)> {
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
    let info = ConnInfo {
        peer,
        tls: true,
        sni,
        bindings,
    };
    Some((HttpIo::Tls(Box::new(tls)), info))
}

/// An accepted HTTP connection, TLS done, noting when bytes last moved.
struct HttpConn {
    io: HttpIo,
    activity: Arc<Activity>,
}

enum HttpIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// When an HTTP connection last read or wrote a byte.
struct Activity {
    start: tokio::time::Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + limit;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

impl AsyncRead for HttpConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.io {
            HttpIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            HttpIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl HttpConn {
    fn wrote(&self, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for HttpConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            HttpIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            HttpIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        this.wrote(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            HttpIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            HttpIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        this.wrote(polled)
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
