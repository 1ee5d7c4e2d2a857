//! Wires a server together: data folder, store, modules, TLS, listeners, admin socket, and
//! graceful shutdown (RFC 6120 §4.4 closing with `<system-shutdown/>`).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use starling_core::{Config, Server};
use starling_net::{
    build_tls, CertConfig, ConnLimits, ListenerSet, StreamHandler, TcpTransport, TlsSetup,
    WsTransport,
};
use tokio::task::JoinHandle;
use tracing::info;

use crate::datalock::DataLock;

/// A started server and where it listens (ports may be 0 in the config: these are the real ones).
pub struct Running {
    pub server: Arc<Server>,
    pub c2s: Option<SocketAddr>,
    pub direct_tls: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    /// Server-to-server listeners (STARTTLS, Direct TLS), when federation is enabled.
    pub s2s: Option<SocketAddr>,
    pub s2s_direct_tls: Option<SocketAddr>,
    /// External components (XEP-0114), when configured.
    pub component: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    /// This server is its data folder's only user while it runs.
    _data_lock: DataLock,
}

/// Hands each accepted connection to a client stream task.
struct C2sStreams {
    server: Arc<Server>,
}

impl StreamHandler for C2sStreams {
    fn tcp(&self, t: TcpTransport) {
        tokio::spawn(starling_core::c2s::run(self.server.clone(), t));
    }

    fn ws(&self, t: WsTransport) {
        tokio::spawn(starling_core::c2s::run(self.server.clone(), t));
    }
}

fn addr(value: &str) -> anyhow::Result<Option<SocketAddr>> {
    if value.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        value
            .parse()
            .with_context(|| format!("bad address {value:?}"))?,
    ))
}

/// Starts everything the config names.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data folder {}", config.data_dir.display()))?;
    // The data folder holds the database, the TLS key and the admin socket: owner only.
    std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", config.data_dir.display()))?;
    let data_lock = DataLock::acquire(&config.data_dir).with_context(|| {
        format!(
            "the data folder {} is in use: one server per data folder",
            config.data_dir.display()
        )
    })?;

    let url = config.storage_url();
    let store = starling_store::open(&url)
        .await
        .with_context(|| format!("cannot open storage {url}"))?;
    let certs: Vec<CertConfig> = config
        .tls
        .certs
        .iter()
        .map(|c| CertConfig {
            cert: c.cert.clone(),
            key: c.key.clone(),
        })
        .collect();
    let tls: Arc<TlsSetup> =
        Arc::new(build_tls(&config.hosts, &certs, &config.data_dir).context("TLS setup failed")?);

    // Federation (s2s.listen = "" disables it: stanzas to other domains then bounce).
    let s2s = starling_s2s::S2s::new(&config, tls.clone()).context("s2s setup failed")?;
    let mut modules = starling_modules::default_modules();
    if let Some(s) = &s2s {
        modules.push(s.clone());
    }
    let server = Server::build(config, store, modules);
    let cfg = server.config.clone();
    let handler: Arc<dyn StreamHandler> = Arc::new(C2sStreams {
        server: server.clone(),
    });
    let limits = ConnLimits {
        max_connections: cfg.c2s.max_connections,
        max_stanza_bytes: cfg.c2s.max_stanza_bytes,
        tls_handshake_timeout: Duration::from_secs(30),
        ..ConnLimits::default()
    };
    // One stream budget for c2s and WebSockets (max_connections bounds the process), and a
    // separate, smaller one for plain HTTP requests.
    let mut listeners = ListenerSet::new(handler, limits, server.shutdown_signal());
    let mut running = Running {
        server: server.clone(),
        c2s: None,
        direct_tls: None,
        http: None,
        https: None,
        s2s: None,
        s2s_direct_tls: None,
        component: None,
        tasks: Vec::new(),
        _data_lock: data_lock,
    };
    if let Some(a) = addr(&cfg.c2s.listen)? {
        let bound = listeners.bind_c2s(a, tls.clone(), false).await?;
        info!("client connections (STARTTLS) on {bound}");
        running.c2s = Some(bound);
    }
    if let Some(a) = addr(&cfg.c2s.direct_tls_listen)? {
        let bound = listeners.bind_c2s(a, tls.clone(), true).await?;
        info!("client connections (Direct TLS, XEP-0368) on {bound}");
        running.direct_tls = Some(bound);
    }
    if let Some(a) = addr(&cfg.http.listen)? {
        let bound = listeners
            .bind_http(a, None, &cfg.http.websocket_path)
            .await?;
        info!("WebSocket at ws://{bound}{}", cfg.http.websocket_path);
        running.http = Some(bound);
    }
    if let Some(a) = addr(&cfg.http.tls_listen)? {
        let bound = listeners
            .bind_http(a, Some(tls.clone()), &cfg.http.websocket_path)
            .await?;
        info!("WebSocket at wss://{bound}{}", cfg.http.websocket_path);
        running.https = Some(bound);
    }
    let mut tasks = vec![tokio::spawn(listeners.join())];
    if let Some(s) = &s2s {
        server.set_extension(s.clone());
        let (bound, s2s_listeners) = s.listen(&server).await?;
        running.s2s = bound.starttls;
        running.s2s_direct_tls = bound.direct_tls;
        tasks.push(tokio::spawn(s2s_listeners.join()));
    }
    if let Some(c) = starling_component::start(&server).await? {
        running.component = Some(c.local_addr);
        tasks.push(c.task);
    }
    tasks.push(
        crate::admin::socket::serve(server.clone(), &cfg.admin_socket()).with_context(|| {
            format!("cannot open admin socket {}", cfg.admin_socket().display())
        })?,
    );
    running.tasks = tasks;
    info!(hosts = ?cfg.hosts, modules = ?server.hooks.modules, "Starling {} started", env!("CARGO_PKG_VERSION"));
    Ok(running)
}

impl Running {
    /// Closes every stream, negotiating or bound, with `<system-shutdown/>`, waits until
    /// they have written it (up to 10 s), stops listening.
    pub async fn shutdown(self) {
        self.server.begin_shutdown();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.server.open_streams() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(self.server.config.admin_socket());
        info!("Starling stopped");
    }
}
