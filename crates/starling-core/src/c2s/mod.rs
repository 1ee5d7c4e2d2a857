//! Client-to-server streams (RFC 6120 §4–§7): stream headers, features, STARTTLS, SASL,
//! resource binding, then the bound session. Generic over [`Transport`], so TCP, Direct TLS and
//! WebSocket share every line of it.

mod bound;
mod sasl;
pub mod wirelog;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use starling_proto::{
    error_reply, iq_result, new_stream_id, Jid, StanzaError, StanzaErrorCondition, StreamError,
    StreamErrorCondition, StreamHeader,
};
use starling_xml::{ns, Element, StreamEvent, XmlError};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::hooks::{FeatureStage, PreAuthIq, SessionEvent};
use crate::registry::{NewSession, SessionInfo, SessionReceiver};
use crate::server::StreamGuard;
use crate::transport::{Transport, TransportError};
use crate::Server;
use wirelog::WireLog;

pub(crate) const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub(crate) const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// How long an unauthenticated or unbound peer may take to accept one write.
const NEGOTIATION_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a stream ends.
pub(crate) enum End {
    /// We close with this stream error (RFC 6120 §4.9).
    Error(StreamError),
    /// The peer sent its closing tag: we answer with ours (RFC 6120 §4.4).
    Closed,
    /// The connection is gone (or unusable): nothing more to write.
    Eof,
}

impl End {
    fn condition(c: StreamErrorCondition) -> End {
        End::Error(StreamError::new(c))
    }
}

pub(crate) fn xml_error(e: &XmlError) -> StreamError {
    match e {
        // RFC 6120 §11.6: only UTF-8 is allowed.
        XmlError::NotWellFormed(t) if t.starts_with("unsupported encoding") => {
            StreamError::new(StreamErrorCondition::UnsupportedEncoding).with_text(t.clone())
        }
        XmlError::NotWellFormed(t) => {
            StreamError::new(StreamErrorCondition::NotWellFormed).with_text(t.clone())
        }
        XmlError::Restricted(t) => StreamError::new(StreamErrorCondition::RestrictedXml)
            .with_text(format!("{t} (RFC 6120 §11.1)")),
        XmlError::LimitExceeded(t) => StreamError::new(StreamErrorCondition::PolicyViolation)
            .with_text(format!("{t} exceeded")),
    }
}

fn transport_end(e: TransportError) -> End {
    match e {
        TransportError::Xml(x) => End::Error(xml_error(&x)),
        TransportError::Framing(t) => {
            End::Error(StreamError::new(StreamErrorCondition::BadFormat).with_text(t))
        }
        _ => End::Eof,
    }
}

/// Runs one client stream to its end.
///
/// Not an `async fn`: the stream state is built first and moved into the task once (an
/// `async fn` keeps its arguments in the task beside the state built from them, and the
/// task's size is what every idle connection costs).
pub fn run<T: Transport>(server: Arc<Server>, transport: T) -> impl Future<Output = ()> + Send {
    let counted = server.stream_guard();
    let peer = transport.peer_addr();
    let label = match peer {
        Some(p) => format!("{}:{p}", transport.kind()),
        None => transport.kind().to_string(),
    };
    let log = WireLog {
        enabled: server.config.log.stanzas,
        label,
    };
    let stream = C2s {
        server,
        t: transport,
        log,
        host: None,
        header_sent: false,
        authenticated: None,
        sasl_failures: 0,
    };
    run_stream(stream, counted)
}

async fn run_stream<T: Transport>(mut stream: C2s<T>, _counted: StreamGuard) {
    // The task is allocated whole for the connection's lifetime, at the size of its largest
    // state: negotiation (TLS, SASL, binding) is boxed so its state lives only while it runs,
    // and an idle bound session keeps only the small state of its loop.
    let end = match Box::pin(stream.negotiate()).await {
        Ok((session, rx)) => stream.run_bound(session, rx).await,
        Err(end) => end,
    };
    Box::pin(stream.finish(end)).await;
}

pub(crate) struct C2s<T: Transport> {
    pub(crate) server: Arc<Server>,
    pub(crate) t: T,
    pub(crate) log: WireLog,
    /// The local domain this stream is for (from the header's `to`).
    pub(crate) host: Option<String>,
    /// Whether our header for the current stream went out (an error must follow one).
    header_sent: bool,
    /// The account, after SASL success.
    pub(crate) authenticated: Option<Jid>,
    pub(crate) sasl_failures: u32,
}

impl<T: Transport> C2s<T> {
    pub(crate) async fn send(&mut self, el: &Element) {
        self.log.outgoing(el);
        self.t.send_element(el);
    }

    /// Writes what is queued. Before binding, a peer that does not read (and so never
    /// completes the write) is cut off after [`NEGOTIATION_WRITE_TIMEOUT`].
    pub(crate) async fn flush(&mut self) -> Result<(), End> {
        match tokio::time::timeout(NEGOTIATION_WRITE_TIMEOUT, self.t.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(End::Eof),
        }
    }

    /// Receives the next stream item within the negotiation deadline.
    /// Receives the next stream item within the negotiation deadline; a server shutdown
    /// ends streams still negotiating too.
    pub(crate) async fn recv_until(&mut self, deadline: Instant) -> Result<StreamEvent, End> {
        let mut shutdown = self.server.shutdown_signal();
        if *shutdown.borrow_and_update() {
            return Err(End::condition(StreamErrorCondition::SystemShutdown));
        }
        tokio::select! {
            _ = shutdown.changed() => Err(End::condition(StreamErrorCondition::SystemShutdown)),
            r = tokio::time::timeout_at(deadline, self.t.recv()) => match r {
                Err(_) => Err(End::Error(
                    StreamError::new(StreamErrorCondition::ConnectionTimeout)
                        .with_text("stream negotiation took too long"),
                )),
                Ok(Ok(Some(ev))) => Ok(ev),
                Ok(Ok(None)) => Err(End::Eof),
                Ok(Err(e)) => Err(transport_end(e)),
            },
        }
    }

    /// From connect to a bound resource (RFC 6120 §4.3 – §7).
    async fn negotiate(&mut self) -> Result<(Arc<SessionInfo>, SessionReceiver), End> {
        let deadline =
            Instant::now() + Duration::from_secs(self.server.config.c2s.negotiation_timeout_secs);
        let mut awaiting_header = true;
        loop {
            let ev = self.recv_until(deadline).await?;
            let el = match ev {
                StreamEvent::Open { header, default_ns } => {
                    self.on_open(&header, &default_ns).await?;
                    awaiting_header = false;
                    continue;
                }
                StreamEvent::Close => return Err(End::Closed),
                StreamEvent::Stanza(el) => el,
            };
            self.log.incoming(&el);
            if awaiting_header {
                // Only WebSocket can deliver an element outside a stream (RFC 7395 §3.3.2).
                return Err(End::condition(StreamErrorCondition::NotAuthorized));
            }
            match (el.ns(), el.name()) {
                (NS_TLS, "starttls") => {
                    if self.t.is_secure() || !self.t.can_starttls() {
                        // RFC 6120 §5.4.2.2: <failure/>, then close the stream.
                        self.send(&Element::new("failure", NS_TLS)).await;
                        return Err(End::Closed);
                    }
                    self.send(&Element::new("proceed", NS_TLS)).await;
                    self.flush().await?;
                    if let Err(e) = self.t.starttls().await {
                        debug!(session = %self.log.label, "STARTTLS handshake failed: {e}");
                        return Err(End::Eof);
                    }
                    self.log.note("TLS established");
                    awaiting_header = true;
                    // RFC 6120 §4.9.1.2: the new stream needs our header before any error.
                    self.header_sent = false;
                }
                (NS_SASL, "auth") if self.authenticated.is_none() => {
                    if self.server.config.c2s.require_tls && !self.t.is_secure() {
                        let f = starling_proto::sasl::SaslFailure::EncryptionRequired;
                        self.send(&f.to_element(None)).await;
                        self.flush().await?;
                        continue;
                    }
                    if self.sasl(el, deadline).await? {
                        awaiting_header = true;
                        self.header_sent = false;
                    }
                }
                (ns::CLIENT, "iq") => {
                    if let Some(bound) = self.pre_bind_iq(el).await? {
                        return Ok(bound);
                    }
                }
                _ => {
                    // RFC 6120 §6.4 / §7.1: nothing else may come before authentication
                    // and binding.
                    return Err(End::condition(StreamErrorCondition::NotAuthorized));
                }
            }
        }
    }

    /// Answers a stream header with ours and the features of this stage.
    async fn on_open(&mut self, header: &Element, default_ns: &str) -> Result<(), End> {
        let parsed = StreamHeader::from_open(header, default_ns);
        // Pick the host first: even an error must come after a header with a valid 'from'.
        let requested = parsed
            .as_ref()
            .ok()
            .and_then(|h| h.to.clone())
            .and_then(|t| Jid::parse(&t).ok())
            .map(|j| j.domain().to_string());
        let host_ok = match &requested {
            Some(h) => self.server.is_local_host(h),
            // RFC 6120 §4.7.2: 'to' SHOULD be present; without it we serve the default host.
            None => true,
        };
        let host = match (&requested, host_ok) {
            (Some(h), true) => h.clone(),
            _ => self
                .host
                .clone()
                .unwrap_or_else(|| self.server.config.default_host().to_string()),
        };
        let id = new_stream_id();
        self.t.send_open(&[
            ("from", host.as_str()),
            ("id", id.as_str()),
            ("version", "1.0"),
            ("xml:lang", "en"),
        ]);
        self.header_sent = true;
        let header = parsed.map_err(End::Error)?;
        header.check(ns::CLIENT).map_err(End::Error)?;
        if !host_ok {
            return Err(End::Error(
                StreamError::new(StreamErrorCondition::HostUnknown).with_text(format!(
                    "this server does not serve {}",
                    requested.unwrap_or_default()
                )),
            ));
        }
        if header.version.is_none() {
            // Pre-RFC 3920 streams have no features; we only speak XMPP 1.0.
            return Err(End::condition(StreamErrorCondition::UnsupportedVersion));
        }
        if let Some(prev) = &self.host {
            if *prev != host {
                return Err(End::condition(StreamErrorCondition::HostUnknown));
            }
        }
        self.host = Some(host);
        let features = self.features();
        self.send(&features).await;
        self.flush().await
    }

    fn features(&self) -> Element {
        let mut f = Element::new("features", ns::STREAM);
        if self.authenticated.is_some() {
            f.append_child(Element::new("bind", NS_BIND));
            // RFC 3921 §3 session establishment (dropped by RFC 6121): some clients still send it.
            f.append_child(
                Element::new("session", NS_SESSION)
                    .with_child(Element::new("optional", NS_SESSION)),
            );
            for feat in self.server.hooks.features(FeatureStage::PostAuth) {
                f.append_child(feat.clone());
            }
            return f;
        }
        let secure = self.t.is_secure();
        let require_tls = self.server.config.c2s.require_tls;
        if !secure && self.t.can_starttls() {
            let mut st = Element::new("starttls", NS_TLS);
            if require_tls {
                st.append_child(Element::new("required", NS_TLS));
            }
            f.append_child(st);
        }
        if secure || !require_tls {
            f.append_child(sasl::mechanisms_element(&self.t));
            if let Some(cb) = sasl::channel_binding_element(&self.t) {
                f.append_child(cb);
            }
            for feat in self.server.hooks.features(FeatureStage::PreAuth) {
                f.append_child(feat.clone());
            }
        }
        f
    }

    /// IQs before a resource is bound: in-band registration before authentication,
    /// resource binding and legacy session after it.
    async fn pre_bind_iq(
        &mut self,
        iq: Element,
    ) -> Result<Option<(Arc<SessionInfo>, SessionReceiver)>, End> {
        let Some(account) = self.authenticated.clone() else {
            return self.pre_auth_iq(iq).await.map(|_| None);
        };
        let is_set = iq.attr("type") == Some("set");
        if is_set {
            if let Some(bind) = iq.get_child("bind", NS_BIND) {
                let requested = bind.child_text("resource", NS_BIND).unwrap_or_default();
                return self.bind(&account, &iq, requested.trim()).await;
            }
            if iq.has_child("session", NS_SESSION) {
                self.send(&iq_result(&iq, None)).await;
                self.flush().await?;
                return Ok(None);
            }
        }
        // RFC 6120 §7.1: no other stanza before a resource is bound.
        Err(End::condition(StreamErrorCondition::NotAuthorized))
    }

    async fn pre_auth_iq(&mut self, iq: Element) -> Result<(), End> {
        let secure = self.t.is_secure();
        if self.server.config.c2s.require_tls && !secure {
            return Err(End::Error(
                StreamError::new(StreamErrorCondition::PolicyViolation)
                    .with_text("use STARTTLS first"),
            ));
        }
        let handler = iq
            .first_child()
            .and_then(|p| self.server.hooks.pre_auth_iq_handler(p.ns()));
        let Some(handler) = handler else {
            return Err(End::condition(StreamErrorCondition::NotAuthorized));
        };
        let host = self.host.clone().unwrap_or_default();
        let reply_to = iq.clone();
        let result = handler
            .handle_pre_auth_iq(
                &self.server,
                PreAuthIq {
                    stanza: iq,
                    host: host.clone(),
                    peer: self.t.peer_addr(),
                    secure,
                },
            )
            .await;
        let mut reply = match result {
            Ok(payload) => iq_result(&reply_to, payload),
            Err(e) => error_reply(&reply_to, &e),
        };
        // The unauthenticated client has no JID; answer from the host, to nobody.
        reply.remove_attr("to");
        if reply.attr("from").is_none() {
            reply.set_attr("from", host);
        }
        self.send(&reply).await;
        self.flush().await
    }

    /// RFC 6120 §7: binds a resource (the client's, or one we generate).
    async fn bind(
        &mut self,
        account: &Jid,
        iq: &Element,
        requested: &str,
    ) -> Result<Option<(Arc<SessionInfo>, SessionReceiver)>, End> {
        let resource = if requested.is_empty() {
            generated_resource()
        } else {
            requested.to_string()
        };
        let full = match account.with_resource(&resource) {
            Ok(j) => j,
            Err(_) => {
                let err = StanzaError::new(StanzaErrorCondition::BadRequest)
                    .with_text("resource is not a valid resourcepart (RFC 7622 §3.4)");
                self.send(&error_reply(iq, &err)).await;
                self.flush().await?;
                return Ok(None);
            }
        };
        if !self
            .server
            .store
            .account_exists(full.domain(), full.node().unwrap_or_default())
            .await
            .unwrap_or(false)
        {
            // Deleted between authentication and bind.
            return Err(End::condition(StreamErrorCondition::NotAuthorized));
        }
        let (session, rx, replaced) = self.server.sessions.bind(NewSession {
            jid: full.clone(),
            transport: self.t.kind(),
            peer: self.t.peer_addr(),
            secure: self.t.is_secure(),
            queue: self.server.config.c2s.max_queued_stanzas,
            queue_bytes: self.server.config.c2s.max_queued_bytes,
        });
        if let Some(old) = replaced {
            old.close(
                StreamError::new(StreamErrorCondition::Conflict)
                    .with_text("replaced by a new connection for the same resource"),
            );
        }
        let payload = Element::new("bind", NS_BIND)
            .with_child(Element::new("jid", NS_BIND).with_text(full.to_string()));
        self.send(&iq_result(iq, Some(payload))).await;
        self.flush().await?;
        self.log.label = full.to_string();
        info!(jid = %full, transport = self.t.kind(), peer = ?self.t.peer_addr(), "session bound");
        self.server
            .hooks
            .fire_session(SessionEvent::Bound, &self.server, &session)
            .await;
        Ok(Some((session, rx)))
    }

    /// Writes the end of the stream.
    async fn finish(&mut self, end: End) {
        match end {
            End::Error(err) => {
                if !self.header_sent {
                    let host = self
                        .host
                        .clone()
                        .unwrap_or_else(|| self.server.config.default_host().to_string());
                    let id = new_stream_id();
                    self.t.send_open(&[
                        ("from", host.as_str()),
                        ("id", id.as_str()),
                        ("version", "1.0"),
                    ]);
                }
                debug!(session = %self.log.label, "closing stream: {}", err.condition.as_str());
                let el = err.to_element();
                self.send(&el).await;
                self.t.send_close();
            }
            End::Closed => self.t.send_close(),
            End::Eof => return,
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.t.flush()).await;
    }
}

fn generated_resource() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let suffix: String = (0..12)
        .map(|_| {
            let n = rng.gen_range(0..36u8);
            char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
        })
        .collect();
    format!("starling-{suffix}")
}
