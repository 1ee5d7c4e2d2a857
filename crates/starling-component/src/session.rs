//! One external component's stream (XEP-0114 §3): the component opens a
//! `jabber:component:accept` stream to its domain, we answer with a stream id, it proves the
//! shared secret with `<handshake/>`, and from then on it is the domain: stanzas it sends from
//! its domain are routed like any other, stanzas to its domain (any JID in it) are written to
//! it. Stream errors as XEP-0114 §3 and RFC 6120 §4.9 name them: host-unknown (not a
//! configured component), not-authorized (wrong secret), conflict (the domain is already
//! connected: the new connection is refused, as Prosody and ejabberd do), invalid-from,
//! improper-addressing, unsupported-stanza-type. Generic over [`Transport`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use starling_core::c2s::wirelog::WireLog;
use starling_core::hooks::StanzaEvent;
use starling_core::transport::{Transport, TransportError};
use starling_core::{DomainClaim, DomainRoute, RouteConnection, Server};
use starling_proto::s2s::change_content_ns;
use starling_proto::{
    error_reply, new_stream_id, Jid, StanzaError, StanzaErrorCondition, StreamError,
    StreamErrorCondition, StreamHeader,
};
use starling_xml::{ns, Element, StreamEvent, XmlError};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::handshake::{verify_handshake, NS_COMPONENT_ACCEPT};

/// Stanzas written per wake-up before we flush, so one busy sender cannot starve reads.
const MAX_BATCH: usize = 64;
/// A component that takes longer than this to accept a write is not reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Writes before the handshake succeeded.
const NEGOTIATION_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The configured components: domain -> shared secret.
#[derive(Debug, Default, Clone)]
pub struct Services {
    secrets: HashMap<String, String>,
}

impl Services {
    pub fn new(services: impl IntoIterator<Item = (String, String)>) -> Self {
        Services {
            secrets: services.into_iter().collect(),
        }
    }

    pub fn secret(&self, domain: &str) -> Option<&str> {
        self.secrets.get(domain).map(String::as_str)
    }

    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.secrets.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// How a component stream ends.
enum End {
    /// We close with this stream error.
    Error(StreamError),
    /// The component sent its closing tag: we answer with ours.
    Closed,
    /// The connection is gone: nothing more to write.
    Eof,
}

impl End {
    fn error(c: StreamErrorCondition, text: impl Into<String>) -> End {
        End::Error(StreamError::new(c).with_text(text))
    }
}

fn xml_error(e: &XmlError) -> StreamError {
    match e {
        XmlError::NotWellFormed(t) => {
            StreamError::new(StreamErrorCondition::NotWellFormed).with_text(t.clone())
        }
        XmlError::Restricted(t) => {
            StreamError::new(StreamErrorCondition::RestrictedXml).with_text(t.to_string())
        }
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

/// Where the router hands stanzas for a connected component's domain: its bounded queue.
struct ComponentRoute {
    tx: mpsc::Sender<Element>,
    /// Set when the component must be disconnected (its queue overflowed).
    kill: watch::Sender<Option<StreamError>>,
    /// The component's address and when it authenticated (`starling ctl components`).
    connection: RouteConnection,
}

impl DomainRoute for ComponentRoute {
    fn deliver(&self, stanza: Element) -> Result<(), Element> {
        match self.tx.try_send(stanza) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(stanza)) => {
                self.kill.send_replace(Some(
                    StreamError::new(StreamErrorCondition::PolicyViolation)
                        .with_text("too many unread stanzas"),
                ));
                Err(stanza)
            }
            Err(mpsc::error::TrySendError::Closed(stanza)) => Err(stanza),
        }
    }

    fn connection(&self) -> Option<RouteConnection> {
        Some(self.connection.clone())
    }
}

/// An authenticated component: its domain, the route it holds and its queue.
struct Bound {
    domain: String,
    claim: DomainClaim,
    rx: mpsc::Receiver<Element>,
    kill: watch::Receiver<Option<StreamError>>,
}

/// Runs one component stream to its end.
pub async fn run<T: Transport>(server: Arc<Server>, services: Arc<Services>, transport: T) {
    let _counted = server.stream_guard();
    let label = match transport.peer_addr() {
        Some(p) => format!("component:{p}"),
        None => "component".to_string(),
    };
    let log = WireLog {
        enabled: server.config.log.stanzas,
        label,
    };
    let mut c = Component {
        server,
        services,
        t: transport,
        log,
        header_sent: false,
        from: None,
    };
    let end = match c.negotiate().await {
        Ok(bound) => c.run_bound(bound).await,
        Err(end) => end,
    };
    c.finish(end).await;
}

struct Component<T: Transport> {
    server: Arc<Server>,
    services: Arc<Services>,
    t: T,
    log: WireLog,
    header_sent: bool,
    /// The domain our stream header names (the one the component asked for, once known).
    from: Option<String>,
}

impl<T: Transport> Component<T> {
    fn send(&mut self, el: &Element) {
        self.log.outgoing(el);
        self.t.send_element(el);
    }

    async fn flush(&mut self, limit: Duration) -> Result<(), End> {
        match tokio::time::timeout(limit, self.t.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Eof),
        }
    }

    fn send_header(&mut self, id: &str) {
        let from = self.from.clone().unwrap_or_default();
        let mut attrs = vec![("id", id)];
        if !from.is_empty() {
            attrs.insert(0, ("from", from.as_str()));
        }
        self.t.send_open(&attrs);
        self.header_sent = true;
    }

    async fn recv_until(&mut self, deadline: Instant) -> Result<StreamEvent, End> {
        let mut shutdown = self.server.shutdown_signal();
        if *shutdown.borrow_and_update() {
            return Err(End::Error(StreamError::new(
                StreamErrorCondition::SystemShutdown,
            )));
        }
        tokio::select! {
            _ = shutdown.changed() => Err(End::Error(StreamError::new(StreamErrorCondition::SystemShutdown))),
            r = tokio::time::timeout_at(deadline, self.t.recv()) => match r {
                Err(_) => Err(End::error(StreamErrorCondition::ConnectionTimeout,
                    "component handshake took too long")),
                Ok(Ok(Some(ev))) => Ok(ev),
                Ok(Ok(None)) => Err(End::Eof),
                Ok(Err(e)) => Err(transport_end(e)),
            },
        }
    }

    /// Header, stream id, handshake (XEP-0114 §3), then the domain is claimed.
    async fn negotiate(&mut self) -> Result<Bound, End> {
        let cfg = &self.server.config.component;
        let deadline = Instant::now() + Duration::from_secs(cfg.negotiation_timeout_secs);
        let queue = cfg.max_queued_stanzas.max(16);
        let (header, default_ns) = match self.recv_until(deadline).await? {
            StreamEvent::Open { header, default_ns } => (header, default_ns),
            StreamEvent::Close => return Err(End::Closed),
            StreamEvent::Stanza(_) => {
                return Err(End::error(
                    StreamErrorCondition::NotAuthorized,
                    "a stream header first",
                ))
            }
        };
        let header = StreamHeader::from_open(&header, &default_ns).map_err(End::Error)?;
        let domain = header
            .to
            .as_deref()
            .and_then(|to| Jid::new(None, to, None).ok())
            .map(|j| j.domain().to_owned());
        self.from = domain.clone().or(header.to.clone());
        header.check(NS_COMPONENT_ACCEPT).map_err(End::Error)?;
        let Some((domain, secret)) = domain.and_then(|d| {
            let secret = self.services.secret(&d)?.to_owned();
            Some((d, secret))
        }) else {
            return Err(End::error(
                StreamErrorCondition::HostUnknown,
                "no component is configured for this domain",
            ));
        };
        let id = new_stream_id();
        self.send_header(&id);
        self.flush(NEGOTIATION_WRITE_TIMEOUT).await?;

        let el = match self.recv_until(deadline).await? {
            StreamEvent::Stanza(el) => el,
            StreamEvent::Close => return Err(End::Closed),
            StreamEvent::Open { .. } => {
                return Err(End::error(
                    StreamErrorCondition::InvalidXml,
                    "unexpected stream restart",
                ))
            }
        };
        // The handshake carries a digest of the secret: logged as a name only.
        self.log.note(&format!("<< <{}/>", el.name()));
        if !el.is("handshake", NS_COMPONENT_ACCEPT) {
            return Err(End::error(
                StreamErrorCondition::NotAuthorized,
                "<handshake/> expected",
            ));
        }
        if !verify_handshake(&id, &secret, &el.text()) {
            info!(%domain, session = %self.log.label, "component handshake failed");
            return Err(End::error(
                StreamErrorCondition::NotAuthorized,
                "wrong handshake",
            ));
        }
        let (tx, rx) = mpsc::channel(queue);
        let (kill_tx, kill) = watch::channel(None);
        let peer = self
            .t
            .peer_addr()
            .map_or_else(|| "?".to_owned(), |p| p.to_string());
        let route = Arc::new(ComponentRoute {
            tx,
            kill: kill_tx,
            connection: RouteConnection {
                peer,
                since: std::time::Instant::now(),
            },
        });
        let claim = match self.server.domain_routes.claim(&domain, route) {
            Ok(c) => c,
            Err(_) => {
                info!(%domain, session = %self.log.label, "component refused: already connected");
                return Err(End::error(
                    StreamErrorCondition::Conflict,
                    "this component is already connected",
                ));
            }
        };
        self.send(&Element::new("handshake", NS_COMPONENT_ACCEPT));
        self.flush(NEGOTIATION_WRITE_TIMEOUT).await?;
        info!(%domain, session = %self.log.label, "component connected");
        Ok(Bound {
            domain,
            claim,
            rx,
            kill,
        })
    }

    async fn run_bound(&mut self, mut b: Bound) -> End {
        let mut shutdown = self.server.shutdown_signal();
        let keepalive = Duration::from_secs(self.server.config.c2s.keepalive_secs.max(1));
        let mut batch: Vec<Element> = Vec::new();
        let end = loop {
            if *shutdown.borrow_and_update() {
                break End::Error(StreamError::new(StreamErrorCondition::SystemShutdown));
            }
            tokio::select! {
                biased;
                _ = b.kill.changed() => {
                    let reason = b.kill.borrow().clone();
                    break End::Error(reason.unwrap_or_else(|| StreamError::new(StreamErrorCondition::PolicyViolation)));
                }
                _ = shutdown.changed() => break End::Error(StreamError::new(StreamErrorCondition::SystemShutdown)),
                next = b.rx.recv() => {
                    let Some(first) = next else { break End::Eof };
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match b.rx.try_recv() {
                            Ok(el) => batch.push(el),
                            Err(_) => break,
                        }
                    }
                    for el in &mut batch {
                        change_content_ns(el, ns::CLIENT, NS_COMPONENT_ACCEPT);
                        self.log.outgoing(el);
                        self.t.send_element(el);
                    }
                    match tokio::time::timeout(WRITE_TIMEOUT, self.t.flush()).await {
                        Ok(Ok(())) => batch.clear(),
                        Ok(Err(_)) => break End::Eof,
                        Err(_) => break End::error(StreamErrorCondition::PolicyViolation,
                            "the component does not read its stream"),
                    }
                }
                ev = tokio::time::timeout(keepalive, self.t.recv()) => match ev {
                    Err(_) => {
                        self.t.send_keepalive();
                        if self.flush(WRITE_TIMEOUT).await.is_err() {
                            break End::Eof;
                        }
                        self.t.shrink();
                    }
                    Ok(Ok(Some(StreamEvent::Stanza(el)))) => {
                        if let Err(end) = self.inbound(&b.domain, el).await {
                            break end;
                        }
                    }
                    Ok(Ok(Some(StreamEvent::Close))) => break End::Closed,
                    Ok(Ok(Some(StreamEvent::Open { .. }))) => {
                        break End::error(StreamErrorCondition::InvalidXml, "unexpected stream restart")
                    }
                    Ok(Ok(None)) => break End::Eof,
                    Ok(Err(e)) => break transport_end(e),
                }
            }
        };
        // The domain is free again before what was queued for it is bounced (RFC 6120 §8.3:
        // the senders learn it was not delivered).
        let domain = b.domain.clone();
        drop(b.claim);
        b.rx.close();
        while let Ok(el) = b.rx.try_recv() {
            batch.push(el);
        }
        for el in batch {
            let mut el = el;
            change_content_ns(&mut el, NS_COMPONENT_ACCEPT, ns::CLIENT);
            self.server
                .bounce(
                    &el,
                    StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                )
                .await;
        }
        info!(%domain, session = %self.log.label, "component disconnected");
        end
    }

    /// A stanza from the component: checked (XEP-0114 §3: `from` in its domain, a `to`),
    /// moved to the server's content namespace and routed.
    async fn inbound(&mut self, domain: &str, mut el: Element) -> Result<(), End> {
        self.log.incoming(&el);
        if !(el.ns() == NS_COMPONENT_ACCEPT || el.ns() == ns::CLIENT)
            || !matches!(el.name(), "message" | "presence" | "iq")
        {
            return Err(End::error(
                StreamErrorCondition::UnsupportedStanzaType,
                format!("<{}/> in {} is not a stanza", el.name(), el.ns()),
            ));
        }
        change_content_ns(&mut el, NS_COMPONENT_ACCEPT, ns::CLIENT);
        let from = match el.attr("from") {
            // COMPAT: some components leave `from` out; it can only mean the domain itself.
            None => Jid::new(None, domain, None).map_err(|_| End::Eof)?,
            Some(f) => match Jid::parse(f) {
                Ok(j) if j.domain() == domain => j,
                _ => {
                    return Err(End::error(
                        StreamErrorCondition::InvalidFrom,
                        format!("'from' must be in {domain}"),
                    ))
                }
            },
        };
        el.set_attr("from", from.to_string());
        let to = match el.attr("to").map(Jid::parse) {
            None => {
                return Err(End::error(
                    StreamErrorCondition::ImproperAddressing,
                    "a stanza without 'to'",
                ))
            }
            Some(Ok(j)) => j,
            Some(Err(_)) => {
                let mut reply =
                    error_reply(&el, &StanzaError::new(StanzaErrorCondition::JidMalformed));
                if el.attr("type") != Some("error") {
                    change_content_ns(&mut reply, ns::CLIENT, NS_COMPONENT_ACCEPT);
                    self.send(&reply);
                    self.flush(WRITE_TIMEOUT).await?;
                }
                return Ok(());
            }
        };
        debug!(%from, %to, "component stanza");
        self.server
            .route_event(StanzaEvent {
                stanza: el,
                from,
                to,
                origin: None,
            })
            .await;
        Ok(())
    }

    /// Ends the stream: our header first if the component never got one (RFC 6120 §4.9.1.2),
    /// the error if there is one, our closing tag.
    async fn finish(&mut self, end: End) {
        let error = match end {
            End::Eof => return,
            End::Closed => None,
            End::Error(e) => Some(e),
        };
        if !self.header_sent {
            let id = new_stream_id();
            self.send_header(&id);
        }
        if let Some(e) = error {
            debug!(session = %self.log.label, "closing component stream: {e}");
            self.send(&e.to_element());
        }
        self.t.send_close();
        let _ = self.flush(NEGOTIATION_WRITE_TIMEOUT).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_stops_at_foreign_namespaces() {
        let mut m = Element::new("message", NS_COMPONENT_ACCEPT)
            .with_child(Element::new("body", NS_COMPONENT_ACCEPT).with_text("hi"))
            .with_child(
                Element::new("forwarded", "urn:xmpp:forward:0")
                    .with_child(Element::new("message", NS_COMPONENT_ACCEPT)),
            );
        change_content_ns(&mut m, NS_COMPONENT_ACCEPT, ns::CLIENT);
        assert_eq!(m.ns(), ns::CLIENT);
        assert!(m.has_child("body", ns::CLIENT));
        let fwd = m
            .get_child("forwarded", "urn:xmpp:forward:0")
            .expect("forwarded");
        assert!(fwd.has_child("message", NS_COMPONENT_ACCEPT));
    }
}
