//! The live server-to-server streams, for the operator (`starling ctl s2s_connections`) and
//! the shared pieces of both directions: the transport extras s2s needs (peer certificates,
//! TLS version), how a stream ends (RFC 6120 §4.4, §4.9), and the wire log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::pki_types::CertificateDer;
use starling_core::c2s::wirelog::WireLog;
use starling_core::{Transport, TransportError};
use starling_net::TcpTransport;
use starling_proto::dialback::NS_DIALBACK;
use starling_proto::{Jid, StreamError, StreamErrorCondition};
use starling_xml::{Element, StreamEvent, XmlError};

/// What s2s needs from a transport beyond [`Transport`].
pub trait S2sTransport: Transport {
    /// The certificate chain the peer presented, leaf first (empty without TLS or certificate).
    fn peer_chain(&self) -> Vec<CertificateDer<'static>>;
    /// "TLSv1.3", "TLSv1.2", or "plain".
    fn tls_label(&self) -> String;
}

impl S2sTransport for TcpTransport {
    fn peer_chain(&self) -> Vec<CertificateDer<'static>> {
        self.peer_certificates().unwrap_or_default()
    }

    fn tls_label(&self) -> String {
        match self.tls_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
            Some(v) => format!("{v:?}"),
            None => "plain".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// How the remote domain authenticated on a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    SaslExternal,
    Dialback,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::SaslExternal => "sasl-external",
            AuthMethod::Dialback => "dialback",
        }
    }
}

/// What the operator sees of one stream.
#[derive(Clone, Debug)]
pub struct LinkState {
    pub local: String,
    pub remote: String,
    pub auth: Option<AuthMethod>,
    pub tls: String,
    pub state: &'static str,
    /// Stanzas flow both ways on this stream (XEP-0288).
    pub bidi: bool,
}

pub struct LinkInfo {
    pub id: u64,
    pub direction: Direction,
    started: Instant,
    state: Mutex<LinkState>,
}

impl LinkInfo {
    pub fn update(&self, f: impl FnOnce(&mut LinkState)) {
        f(&mut self.state.lock());
    }

    pub fn state(&self) -> LinkState {
        self.state.lock().clone()
    }

    /// One line for `s2s_connections`: direction, local, remote, auth, TLS, state, "bidi"
    /// when both directions use the stream (XEP-0288), age.
    pub fn line(&self) -> String {
        let s = self.state();
        format!(
            "{} {} {} {} {} {}{} {}s",
            match self.direction {
                Direction::In => "in",
                Direction::Out => "out",
            },
            if s.local.is_empty() { "-" } else { &s.local },
            if s.remote.is_empty() { "-" } else { &s.remote },
            s.auth.map_or("none-yet", AuthMethod::as_str),
            s.tls,
            s.state,
            if s.bidi { " bidi" } else { "" },
            self.started.elapsed().as_secs()
        )
    }
}

/// Every live s2s stream of a server.
#[derive(Default)]
pub struct Links {
    map: Mutex<HashMap<u64, Arc<LinkInfo>>>,
    next: AtomicU64,
}

impl Links {
    pub fn open(self: &Arc<Self>, direction: Direction, local: &str, remote: &str) -> LinkGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(LinkInfo {
            id,
            direction,
            started: Instant::now(),
            state: Mutex::new(LinkState {
                local: local.into(),
                remote: remote.into(),
                auth: None,
                tls: "plain".into(),
                state: "connecting",
                bidi: false,
            }),
        });
        self.map.lock().insert(id, info.clone());
        LinkGuard {
            links: self.clone(),
            info,
        }
    }

    /// Every stream, oldest first.
    pub fn all(&self) -> Vec<Arc<LinkInfo>> {
        let mut v: Vec<_> = self.map.lock().values().cloned().collect();
        v.sort_by_key(|l| l.id);
        v
    }
}

/// Removes the stream from [`Links`] when it ends.
pub struct LinkGuard {
    links: Arc<Links>,
    pub info: Arc<LinkInfo>,
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.links.map.lock().remove(&self.info.id);
    }
}

/// How a stream ends.
#[derive(Debug)]
pub enum End {
    /// We close with this stream error.
    Error(StreamError),
    /// We close cleanly (the peer closed, idle, shutdown after a clean close).
    Closed,
    /// Nothing more can be written.
    Eof,
}

impl End {
    pub fn error(c: StreamErrorCondition, text: impl Into<String>) -> End {
        End::Error(StreamError::new(c).with_text(text))
    }
}

/// The stream error for what the transport refused to read (RFC 6120 §4.9.3).
pub fn transport_end(e: TransportError) -> End {
    match e {
        TransportError::Xml(XmlError::NotWellFormed(t)) => {
            End::Error(StreamError::new(StreamErrorCondition::NotWellFormed).with_text(t))
        }
        TransportError::Xml(XmlError::Restricted(t)) => {
            End::error(StreamErrorCondition::RestrictedXml, t)
        }
        TransportError::Xml(XmlError::LimitExceeded(t)) => End::error(
            StreamErrorCondition::PolicyViolation,
            format!("{t} exceeded"),
        ),
        _ => End::Eof,
    }
}

/// The `from` and `to` of a stanza from a peer server, both required (RFC 6120 §8.1.1.2):
/// a missing or malformed `from` is invalid-from, a bad `to` improper-addressing.
pub fn stanza_addresses(el: &Element) -> Result<(Jid, Jid), End> {
    let addr = |name: &str| -> Result<Jid, End> {
        let v = el.attr(name).ok_or_else(|| {
            End::error(
                StreamErrorCondition::ImproperAddressing,
                format!("stanza without '{name}'"),
            )
        })?;
        Jid::parse(v).map_err(|_| {
            let c = if name == "from" {
                StreamErrorCondition::InvalidFrom
            } else {
                StreamErrorCondition::ImproperAddressing
            };
            End::error(c, format!("'{name}' is not a valid JID"))
        })
    };
    Ok((addr("from")?, addr("to")?))
}

/// Logs elements when `log.stanzas` is on, dialback keys hidden.
pub fn log_element(log: &WireLog, el: &Element, incoming: bool) {
    if !log.enabled {
        return;
    }
    let shown;
    let el = if el.ns() == NS_DIALBACK && !el.text().is_empty() {
        let mut copy = el.clone();
        copy.clear_children();
        copy.append_text("[key]");
        shown = copy;
        &shown
    } else {
        el
    };
    if incoming {
        log.incoming(el);
    } else {
        log.outgoing(el);
    }
}

/// After our closing tag: reads (and drops) what the peer still sends until its own closing
/// tag or the end of the connection, at most 2 s.
pub async fn await_peer_close<T: Transport>(t: &mut T) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(ev)) = t.recv().await {
            if matches!(ev, StreamEvent::Close) {
                break;
            }
        }
    })
    .await;
}

/// Resolves once the server is shutting down (at once when it already is).
pub async fn shutdown_requested(rx: &mut tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
