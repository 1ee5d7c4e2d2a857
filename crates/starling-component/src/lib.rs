//! External components, XEP-0114 (Jabber Component Protocol): a listener for
//! `jabber:component:accept` streams, the handshake, and the component's domain as a domain
//! route of the server (its stanzas are checked and routed; stanzas to its domain are
//! written to it). Configured by `[component]` (`listen`, limits, `[[component.services]]`).
//!
//! The listener has its own connection budget (`max_connections`), stanza size limit
//! (`max_stanza_bytes`) and handshake deadline (`negotiation_timeout_secs`), as c2s has.

pub mod handshake;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use starling_core::Server;
use starling_net::{TcpOptions, TcpTransport};
use starling_xml::Limits;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use handshake::{handshake_digest, verify_handshake, NS_COMPONENT_ACCEPT};
pub use session::{run, Services};

/// Errors of starting the component listener.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("`component.listen`: {0:?} is not an address:port")]
    Address(String),
    #[error("cannot listen for components on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The running component listener.
pub struct ComponentListener {
    pub local_addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// Reserves every configured component domain on the server (so stanzas to a component that
/// is not connected bounce instead of going to another server), and starts the listener when
/// `[component]` has an address and services. Returns `None` when nothing listens.
pub async fn start(server: &Arc<Server>) -> Result<Option<ComponentListener>, ComponentError> {
    let cfg = &server.config.component;
    let services = Arc::new(Services::new(
        cfg.services
            .iter()
            .map(|s| (s.domain.clone(), s.secret.clone())),
    ));
    for d in services.domains() {
        server.domain_routes.reserve(d);
    }
    if !cfg.enabled() {
        return Ok(None);
    }
    let addr: SocketAddr = cfg
        .listen
        .parse()
        .map_err(|_| ComponentError::Address(cfg.listen.clone()))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ComponentError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ComponentError::Bind { addr, source })?;
    info!("external components (XEP-0114) on {local_addr}");
    let opts = TcpOptions {
        content_ns: NS_COMPONENT_ACCEPT,
        limits: Limits {
            max_stanza_bytes: cfg.max_stanza_bytes,
            ..Limits::default()
        },
        tls_handshake_timeout: Duration::from_secs(30),
    };
    let task = tokio::spawn(accept_loop(
        server.clone(),
        services,
        listener,
        opts,
        cfg.max_connections.max(1),
    ));
    Ok(Some(ComponentListener { local_addr, task }))
}

async fn accept_loop(
    server: Arc<Server>,
    services: Arc<Services>,
    listener: TcpListener,
    opts: TcpOptions,
    max_connections: usize,
) {
    let permits = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
    let mut shutdown = server.shutdown_signal();
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                warn!("component listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, "component connection limit (max_connections = {max_connections}) reached; closing");
            drop(stream);
            continue;
        };
        debug!(%peer, "component connection accepted");
        let transport = TcpTransport::new(stream, None, opts.clone());
        let (server, services) = (server.clone(), services.clone());
        tokio::spawn(async move {
            session::run(server, services, transport).await;
            drop(permit);
        });
    }
    debug!("component listener stopped");
}
