//! Server-to-server federation: `jabber:server` streams (RFC 6120 §4.8.3) with STARTTLS (§5),
//! SASL EXTERNAL with certificates (§6, XEP-0178; names per RFC 6125/7590), Server Dialback
//! (XEP-0220), Direct TLS (XEP-0368), bidirectional streams (XEP-0288), a pool of outgoing
//! streams fed by the router's `route/remote` event, and listeners for incoming streams whose
//! stanzas go to the router.
//!
//! Layout: [`pki`] (trust and certificate checks), [`resolve`] (SRV/static routes),
//! [`outgoing`] (the initiating side and the pool), [`incoming`] (the receiving side),
//! [`link`] (the live streams, for `starling ctl s2s_connections`).

pub mod incoming;
pub mod initiate;
pub mod link;
pub mod outgoing;
pub mod pki;
pub mod resolve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use starling_core::config::{S2sConfig, S2sPolicy};
use starling_core::router::ROUTE_REMOTE;
use starling_core::{Config, Flow, Module, Registrar, Server, StanzaEvent, StanzaHook};
use starling_net::{
    ClientTls, ConnLimits, ListenerSet, StreamHandler, TcpTransport, TlsSetup, WsTransport,
};
use starling_proto::StanzaErrorCondition;
use tracing::{debug, info, warn};

use crate::link::Links;
use crate::outgoing::Pool;
use crate::pki::Pki;

#[derive(Debug, thiserror::Error)]
pub enum S2sError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Net(#[from] starling_net::NetError),
}

/// The federation service of one server. Attached to the [`Server`] as an extension, so the
/// admin commands find it.
pub struct S2s {
    pub cfg: S2sConfig,
    pki: Pki,
    /// Our certificates (presented as TLS client certificates on outgoing streams).
    tls: Arc<TlsSetup>,
    secret: String,
    pub links: Arc<Links>,
    pool: Pool,
    dns: resolve::Dns,
    /// TLS client configurations per (local domain, Direct TLS).
    client_configs: Mutex<HashMap<(String, bool), Arc<rustls::ClientConfig>>>,
    log_stanzas: bool,
}

impl std::fmt::Debug for S2s {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S2s")
            .field("pki", &self.pki)
            .finish_non_exhaustive()
    }
}

/// Where the s2s listeners are bound.
#[derive(Debug, Default, Clone, Copy)]
pub struct Bound {
    pub starttls: Option<SocketAddr>,
    pub direct_tls: Option<SocketAddr>,
}

impl S2s {
    /// The service for this config, `None` when federation is disabled (`s2s.listen = ""`).
    pub fn new(config: &Config, tls: Arc<TlsSetup>) -> Result<Option<Arc<S2s>>, S2sError> {
        let cfg = config.s2s.clone();
        if !cfg.enabled() {
            return Ok(None);
        }
        let pki = Pki::load(&cfg.ca_file)?;
        let secret = if cfg.dialback_secret.is_empty() {
            starling_proto::new_stream_id() + &starling_proto::new_stream_id()
        } else {
            cfg.dialback_secret.clone()
        };
        let dns = resolve::Dns::new(&cfg.nameservers);
        Ok(Some(Arc::new(S2s {
            cfg,
            pki,
            tls,
            secret,
            links: Arc::default(),
            pool: Pool::default(),
            dns,
            client_configs: Mutex::default(),
            log_stanzas: config.log.stanzas,
        })))
    }

    /// Binds the listeners (`s2s.listen`, `s2s.direct_tls_listen`) with a connection budget of
    /// their own (`s2s.max_connections`).
    pub async fn listen(
        self: &Arc<Self>,
        server: &Arc<Server>,
    ) -> Result<(Bound, ListenerSet), S2sError> {
        let limits = ConnLimits {
            max_connections: self.cfg.max_connections,
            max_stanza_bytes: self.cfg.max_stanza_bytes,
            ..ConnLimits::default()
        };
        let handler: Arc<dyn StreamHandler> = Arc::new(Incoming {
            s2s: self.clone(),
            server: server.clone(),
        });
        let server_tls = Arc::new(self.tls.for_servers(self.pki.client_cert_verifier())?);
        let mut set = ListenerSet::new(handler, limits, server.shutdown_signal());
        let mut bound = Bound::default();
        for (value, direct) in [
            (&self.cfg.listen, false),
            (&self.cfg.direct_tls_listen, true),
        ] {
            if value.is_empty() {
                continue;
            }
            let addr: SocketAddr = value
                .parse()
                .map_err(|_| S2sError::Config(format!("bad s2s address {value:?}")))?;
            let local = set.bind_s2s(addr, server_tls.clone(), direct).await?;
            info!(
                "server connections{} on {local}",
                if direct {
                    " (Direct TLS, XEP-0368)"
                } else {
                    " (STARTTLS)"
                }
            );
            if direct {
                bound.direct_tls = Some(local);
            } else {
                bound.starttls = Some(local);
            }
        }
        Ok((bound, set))
    }

    pub fn policy(&self, remote: &str) -> S2sPolicy {
        self.cfg.policy_for(remote)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.connect_timeout_secs.max(1))
    }

    pub(crate) fn negotiation_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.negotiation_timeout_secs.max(1))
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.idle_timeout_secs.max(1))
    }

    pub(crate) fn dialback_key(
        &self,
        receiving: &str,
        originating: &str,
        stream_id: &str,
    ) -> String {
        starling_proto::dialback::key(&self.secret, receiving, originating, stream_id)
    }

    /// The TLS client side for a stream from `local` to `remote`.
    pub(crate) fn client_tls(
        &self,
        local: &str,
        remote: &str,
        direct: bool,
    ) -> Result<ClientTls, String> {
        let server_name = rustls::pki_types::ServerName::try_from(remote.to_owned())
            .map_err(|_| format!("TLS: {remote:?} is not a valid server name"))?;
        let key = (local.to_owned(), direct);
        let cached = self.client_configs.lock().get(&key).cloned();
        let config = match cached {
            Some(c) => c,
            None => {
                let alpn = direct.then_some(starling_net::tls::ALPN_XMPP_SERVER);
                let c = self
                    .pki
                    .client_config(self.tls.certified_key(local), alpn)
                    .map_err(|e| e.to_string())?;
                self.client_configs.lock().insert(key, c.clone());
                c
            }
        };
        Ok(ClientTls {
            config,
            server_name,
        })
    }

    /// One line per live stream: direction, local, remote, auth, TLS, state, bidi, age.
    pub fn connections(&self) -> Vec<String> {
        self.links.all().iter().map(|l| l.line()).collect()
    }
}

impl Module for S2s {
    fn name(&self) -> &'static str {
        "s2s"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.hook(ROUTE_REMOTE, 0, Arc::new(RemoteRoute(self)));
    }
}

/// Takes stanzas for other domains off the router and queues them on the outgoing stream.
struct RemoteRoute(Arc<S2s>);

#[async_trait]
impl StanzaHook for RemoteRoute {
    async fn on_stanza(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        let local = ev.from.domain().to_owned();
        let remote = ev.to.domain().to_owned();
        if !serves(server, &local) {
            // Not ours to send: a stanza from another domain cannot leave with our streams.
            debug!(%local, %remote, "dropping a stanza between two remote domains");
            return Flow::Handled;
        }
        if self.0.policy(&remote) == S2sPolicy::Deny {
            warn!("s2s to {remote} failed: policy denies {remote}");
            return Flow::Continue;
        }
        let stanza = std::mem::replace(&mut ev.stanza, starling_xml::Element::new("x", ""));
        outgoing::send(&self.0, server, &local, &remote, stanza).await;
        Flow::Handled
    }
}

/// True when federation treats `domain` as ours: one of our hosts, or a domain routed here
/// (`server.domain_routes`: an external component's, XEP-0114, whether connected now or only
/// configured), so stanzas from it may leave over our server streams and remote servers may
/// open streams to it (RFC 6120 §2.5: a service hosted by this server).
pub(crate) fn serves(server: &Server, domain: &str) -> bool {
    server.is_local_host(domain) || server.domain_routes.is_routed(domain)
}

/// Hands accepted server connections to the incoming stream task.
struct Incoming {
    s2s: Arc<S2s>,
    server: Arc<Server>,
}

impl StreamHandler for Incoming {
    fn tcp(&self, t: TcpTransport) {
        tokio::spawn(incoming::run(self.s2s.clone(), self.server.clone(), t));
    }

    fn ws(&self, _t: WsTransport) {
        // Server streams never arrive over WebSocket.
    }
}

/// The stanza error for a failed outgoing stream: a timeout, or the server is not reachable.
pub(crate) fn bounce_condition(timeout: bool) -> StanzaErrorCondition {
    if timeout {
        StanzaErrorCondition::RemoteServerTimeout
    } else {
        StanzaErrorCondition::RemoteServerNotFound
    }
}
