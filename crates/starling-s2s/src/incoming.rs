//! Incoming server streams, the receiving side (RFC 6120 §4.3 features, §4.9.3.6 host-unknown,
//! §4.9.3.9 invalid-from, §5 STARTTLS, §6 SASL EXTERNAL per XEP-0178, §8.1.1.2 addressing;
//! XEP-0220 §2.1–§2.4 dialback, both as receiving and as authoritative server; XEP-0288
//! bidi): negotiate within `s2s.negotiation_timeout_secs`, then hand every stanza from an
//! authenticated domain pair to the router. When the initiator enabled bidi, the first
//! authenticated pair's inverse is served by this stream too: it takes the outgoing pool's
//! place for (local, remote) and writes what is queued there.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use starling_core::c2s::wirelog::WireLog;
use starling_core::config::S2sPolicy;
use starling_core::{Server, StanzaEvent};
use starling_proto::dialback::{key_matches, Answer, Dialback, Kind, NS_DIALBACK};
use starling_proto::s2s::{
    change_content_ns, check_external_authzid, receiving_features, NS_BIDI, NS_TLS,
};
use starling_proto::sasl::{SaslFailure, NS_SASL};
use starling_proto::{new_stream_id, Jid, StreamError, StreamErrorCondition, StreamHeader};
use starling_xml::{ns, Element, StreamEvent};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::initiate::verify_key;
use crate::link::{
    log_element, shutdown_requested, stanza_addresses, transport_end, AuthMethod, Direction, End,
    LinkInfo, S2sTransport,
};
use crate::outgoing::{self, Adopted};
use crate::{serves, S2s};

/// How long the peer may take to accept one write before it counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a dialback verification with the authoritative server may take (the receive
/// loop waits for it).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed `<db:result/>` requests after which a stream is closed.
const MAX_DB_FAILURES: u32 = 3;

/// Runs one incoming server stream to its end.
pub async fn run<T: S2sTransport>(s2s: Arc<S2s>, server: Arc<Server>, t: T) {
    let _counted = server.stream_guard();
    let guard = s2s.links.open(Direction::In, "", "");
    let tls = t.tls_label();
    guard.info.update(|l| l.tls = tls);
    let peer = t
        .peer_addr()
        .map_or_else(|| "?".to_owned(), |p| p.to_string());
    let mut r = Receiver {
        log: WireLog {
            enabled: s2s.log_stanzas,
            label: format!("s2s-in {peer}"),
        },
        s2s,
        server,
        t,
        link: guard.info.clone(),
        peer,
        local: None,
        header_from: None,
        stream_id: String::new(),
        header_sent: false,
        sasl_done: false,
        authed: HashSet::new(),
        bidi: false,
        out: None,
        out_failed: false,
        db_failures: 0,
    };
    let (end, peer_closed) = match r.serve().await {
        Ok(peer_closed) => (End::Closed, peer_closed),
        Err(end) => (end, false),
    };
    if let Some(a) = r.out.take() {
        outgoing::release(&r.s2s, &r.server, a, r.out_failed).await;
    }
    r.finish(end, peer_closed).await;
}

struct Receiver<T: S2sTransport> {
    s2s: Arc<S2s>,
    server: Arc<Server>,
    t: T,
    log: WireLog,
    link: Arc<LinkInfo>,
    peer: String,
    /// Our domain this stream is for (the header's `to`).
    local: Option<String>,
    /// The domain in the peer's header `from`.
    header_from: Option<String>,
    /// Our id of the current stream (dialback keys are bound to it).
    stream_id: String,
    header_sent: bool,
    /// SASL EXTERNAL succeeded: no more authentication on this stream.
    sasl_done: bool,
    /// Authenticated (remote domain, local domain) pairs.
    authed: HashSet<(String, String)>,
    /// The initiator enabled bidi (XEP-0288).
    bidi: bool,
    /// With bidi: our queue for (local, remote), written on this stream.
    out: Option<Adopted>,
    /// The peer did not take what we wrote: bounce what is left instead of re-routing it.
    out_failed: bool,
    /// `<db:result/>` requests refused on this stream.
    db_failures: u32,
}

/// What the outgoing queue of a bidi stream has for us.
enum OutEvent {
    Stanza(Element),
    /// The pool found the queue full: the peer does not read.
    Overflow,
    /// The pool dropped the queue.
    Gone,
}

/// Waits for the queue; never while a stream restart is pending (nothing may precede our
/// new header).
async fn next_out(out: &mut Option<Adopted>, header_sent: bool) -> OutEvent {
    let (Some(a), true) = (out, header_sent) else {
        return std::future::pending().await;
    };
    tokio::select! {
        el = a.queue.next() => el.map_or(OutEvent::Gone, OutEvent::Stanza),
        _ = a.kill.notified() => OutEvent::Overflow,
    }
}

impl<T: S2sTransport> Receiver<T> {
    fn who(&self) -> String {
        self.header_from
            .clone()
            .unwrap_or_else(|| self.peer.clone())
    }

    async fn send(&mut self, el: &Element) -> Result<(), End> {
        log_element(&self.log, el, false);
        self.t.send_element(el);
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), End> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.t.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Eof),
        }
    }

    /// `Ok(true)`: the peer closed the stream; `Ok(false)`: idle.
    async fn serve(&mut self) -> Result<bool, End> {
        let negotiation = self.s2s.negotiation_timeout();
        let deadline = Instant::now() + negotiation;
        let idle = self.s2s.idle_timeout();
        let mut last = Instant::now();
        let mut shutdown = self.server.shutdown_signal();
        loop {
            let limit = if self.authed.is_empty() {
                deadline
            } else {
                last + idle
            };
            let ev = tokio::select! {
                _ = shutdown_requested(&mut shutdown) => {
                    return Err(End::error(StreamErrorCondition::SystemShutdown, "server shutting down"));
                }
                o = next_out(&mut self.out, self.header_sent) => {
                    self.on_out(o).await?;
                    last = Instant::now();
                    continue;
                }
                r = tokio::time::timeout_at(limit, self.t.recv()) => match r {
                    Err(_) if self.authed.is_empty() => {
                        warn!(
                            "s2s from {} failed: not authenticated within {}s",
                            self.who(),
                            negotiation.as_secs()
                        );
                        return Err(End::error(
                            StreamErrorCondition::ConnectionTimeout,
                            "not authenticated in time",
                        ));
                    }
                    Err(_) => return Ok(false),
                    Ok(Ok(Some(ev))) => ev,
                    Ok(Ok(None)) => return Err(End::Eof),
                    Ok(Err(e)) => return Err(transport_end(e)),
                },
            };
            last = Instant::now();
            match ev {
                StreamEvent::Open { header, default_ns } => {
                    self.on_open(&header, &default_ns).await?
                }
                StreamEvent::Close => return Ok(true),
                StreamEvent::Stanza(el) => {
                    log_element(&self.log, &el, true);
                    self.on_element(el).await?;
                }
            }
        }
    }

    /// A stanza queued for the peer on a bidi stream (XEP-0288), or the end of that queue.
    async fn on_out(&mut self, o: OutEvent) -> Result<(), End> {
        let who = self.who();
        let Some(a) = self.out.as_mut() else {
            return Ok(());
        };
        match o {
            OutEvent::Stanza(el) => {
                let kill = a.kill.clone();
                let written = tokio::select! {
                    r = outgoing::write_batch(&mut self.t, &self.log, &mut a.queue, el, &who) => r,
                    _ = kill.notified() => Err(("queue full: the peer does not read".into(), true)),
                };
                if let Err((why, _)) = written {
                    warn!("s2s to {who} failed: {why}");
                    self.out_failed = true;
                    return Err(End::Eof);
                }
                Ok(())
            }
            OutEvent::Overflow => {
                warn!("s2s to {who} failed: queue full: the peer does not read");
                self.out_failed = true;
                Err(End::error(
                    StreamErrorCondition::PolicyViolation,
                    "you do not read what we send",
                ))
            }
            OutEvent::Gone => {
                self.out = None;
                Ok(())
            }
        }
    }

    /// `<bidi xmlns='urn:xmpp:bidi'/>` (XEP-0288 §2.2): after TLS, before authentication.
    fn on_bidi(&mut self) -> Result<(), End> {
        if !self.s2s.cfg.bidi {
            return Err(End::error(
                StreamErrorCondition::UnsupportedFeature,
                "bidi is not offered",
            ));
        }
        if !self.t.is_secure() {
            return Err(End::error(
                StreamErrorCondition::PolicyViolation,
                "STARTTLS before bidi",
            ));
        }
        self.bidi = true;
        Ok(())
    }

    /// Answers a stream header with ours and the features of this stage.
    async fn on_open(&mut self, header: &Element, default_ns: &str) -> Result<(), End> {
        let parsed = StreamHeader::from_open(header, default_ns);
        let domain = |v: Option<&String>| {
            v.and_then(|s| Jid::parse(s).ok())
                .map(|j| j.domain().to_owned())
        };
        let to = parsed.as_ref().ok().and_then(|h| domain(h.to.as_ref()));
        let from = parsed.as_ref().ok().and_then(|h| domain(h.from.as_ref()));
        let host_ok = to.as_ref().is_some_and(|d| serves(&self.server, d));
        let ours = match (&to, host_ok) {
            (Some(d), true) => d.clone(),
            _ => self
                .local
                .clone()
                .unwrap_or_else(|| self.server.config.default_host().to_owned()),
        };
        self.stream_id = new_stream_id();
        let mut attrs = vec![
            ("from", ours.as_str()),
            ("id", self.stream_id.as_str()),
            ("version", "1.0"),
        ];
        if let Some(f) = &from {
            attrs.push(("to", f.as_str()));
        }
        self.t.send_open(&attrs);
        self.header_sent = true;
        let header = parsed.map_err(End::Error)?;
        header.check(ns::SERVER).map_err(End::Error)?;
        if !host_ok {
            return Err(End::error(
                StreamErrorCondition::HostUnknown,
                format!("this server does not serve {}", to.unwrap_or_default()),
            ));
        }
        if self.local.as_ref().is_some_and(|prev| *prev != ours) {
            return Err(End::error(
                StreamErrorCondition::HostUnknown,
                "the stream changed its 'to'",
            ));
        }
        self.local = Some(ours.clone());
        self.header_from = from.clone();
        self.link.update(|l| {
            l.local = ours.clone();
            if l.auth.is_none() {
                l.remote = from.clone().unwrap_or_default();
                l.state = "negotiating";
            }
        });
        if header.version.is_none() {
            // A pre-XMPP 1.0 peer gets no features; dialback still works.
            return self.flush().await;
        }
        let secure = self.t.is_secure();
        let (mut offer_external, mut offer_dialback) = (false, false);
        if secure && !self.sasl_done {
            let policy = self.s2s.policy(from.as_deref().unwrap_or(""));
            offer_dialback = match &from {
                Some(f) => self.s2s.policy(f) == S2sPolicy::Dialback,
                None => self.s2s.cfg.default_policy == S2sPolicy::Dialback,
            };
            if let Some(f) = &from {
                match self.s2s.pki.verify(&self.t.peer_chain(), f) {
                    Ok(()) => offer_external = policy != S2sPolicy::Deny,
                    Err(e) if policy == S2sPolicy::Certs => {
                        warn!("s2s from {f} failed: TLS: {e}");
                        return Err(End::error(
                            StreamErrorCondition::NotAuthorized,
                            format!("a valid certificate is required: {e}"),
                        ));
                    }
                    Err(e) => debug!(peer = %self.peer, "no SASL EXTERNAL for {f}: {e}"),
                }
                if policy == S2sPolicy::Deny {
                    warn!("s2s from {f} failed: policy denies {f}");
                    return Err(End::error(
                        StreamErrorCondition::PolicyViolation,
                        format!("policy denies {f}"),
                    ));
                }
            }
        }
        let features = receiving_features(
            secure,
            self.sasl_done,
            offer_external,
            offer_dialback,
            self.s2s.cfg.bidi,
        );
        self.send(&features).await
    }

    async fn on_element(&mut self, el: Element) -> Result<(), End> {
        match (el.ns(), el.name()) {
            (NS_TLS, "starttls") => self.on_starttls().await,
            (NS_SASL, "auth") => self.on_sasl(&el).await,
            (NS_DIALBACK, _) => self.on_dialback(&el).await,
            (NS_BIDI, "bidi") => self.on_bidi(),
            (ns::SERVER, "message" | "presence" | "iq") => self.on_stanza(el).await,
            (ns::STREAM, "error") => {
                debug!(peer = %self.peer, "stream error from peer: {el}");
                Err(End::Closed)
            }
            _ if self.authed.is_empty() => Err(End::error(
                StreamErrorCondition::NotAuthorized,
                "authenticate first",
            )),
            _ => Err(End::error(
                StreamErrorCondition::UnsupportedStanzaType,
                format!("<{}/> in {} is not a stanza we accept", el.name(), el.ns()),
            )),
        }
    }

    async fn on_starttls(&mut self) -> Result<(), End> {
        if self.t.is_secure() || !self.t.can_starttls() {
            self.send(&Element::new("failure", NS_TLS)).await?;
            return Err(End::Closed);
        }
        self.send(&Element::new("proceed", NS_TLS)).await?;
        if let Err(e) = self.t.starttls().await {
            debug!(peer = %self.peer, "STARTTLS handshake failed: {e}");
            return Err(End::Eof);
        }
        self.log.note("TLS established");
        self.header_sent = false;
        let tls = self.t.tls_label();
        self.link.update(|l| l.tls = tls);
        Ok(())
    }

    /// SASL EXTERNAL (XEP-0178 §3): the certificate must be valid for the header's `from`.
    async fn on_sasl(&mut self, auth: &Element) -> Result<(), End> {
        let fail = |f: SaslFailure, text: &str| f.to_element(Some(text));
        if !self.t.is_secure() {
            return self
                .send(&fail(SaslFailure::EncryptionRequired, "use STARTTLS first"))
                .await;
        }
        if self.sasl_done || auth.attr("mechanism") != Some("EXTERNAL") {
            return self
                .send(&fail(SaslFailure::InvalidMechanism, "only EXTERNAL"))
                .await;
        }
        let (Some(from), Some(local)) = (self.header_from.clone(), self.local.clone()) else {
            return self
                .send(&fail(
                    SaslFailure::NotAuthorized,
                    "the stream header has no 'from'",
                ))
                .await;
        };
        if serves(&self.server, &from) {
            // A certificate for one of our own domains must not let a peer speak for it.
            warn!("s2s from {from} failed: {from} is one of our domains");
            return self
                .send(&fail(SaslFailure::NotAuthorized, "that is our domain"))
                .await;
        }
        if self.s2s.policy(&from) == S2sPolicy::Deny {
            warn!("s2s from {from} failed: policy denies {from}");
            return self.send(&fail(SaslFailure::NotAuthorized, "policy")).await;
        }
        if let Err(e) = self.s2s.pki.verify(&self.t.peer_chain(), &from) {
            warn!("s2s from {from} failed: TLS: {e}");
            return self
                .send(&fail(SaslFailure::NotAuthorized, &e.to_string()))
                .await;
        }
        if let Err(f) = check_external_authzid(auth, &from) {
            return self
                .send(&fail(f, "the authzid must be the stream's 'from'"))
                .await;
        }
        self.send(&Element::new("success", NS_SASL)).await?;
        self.t.reset();
        self.header_sent = false;
        self.sasl_done = true;
        self.authenticated(&from, &local, AuthMethod::SaslExternal);
        Ok(())
    }

    fn authenticated(&mut self, remote: &str, local: &str, method: AuthMethod) {
        self.authed.insert((remote.to_owned(), local.to_owned()));
        let tls = self.t.tls_label();
        if self.bidi && self.out.is_none() {
            // XEP-0288 §2.2: we may now send from `local` to `remote` on this stream.
            self.out = outgoing::adopt(&self.s2s, local, remote);
        }
        let bidi = self.out.is_some();
        self.link.update(|l| {
            l.remote = remote.to_owned();
            l.auth = Some(method);
            l.state = "established";
            l.bidi = bidi;
        });
        info!(
            "s2s from {remote} to {local} authenticated ({}, {tls}{})",
            method.as_str(),
            if bidi { ", bidi" } else { "" }
        );
    }

    /// XEP-0220: `<db:verify/>` as authoritative server, `<db:result/>` as receiving server.
    async fn on_dialback(&mut self, el: &Element) -> Result<(), End> {
        let db = Dialback::parse(el)
            .map_err(|e| End::error(StreamErrorCondition::BadFormat, e.to_string()))?;
        if db.answer.is_some() {
            debug!(peer = %self.peer, "ignoring a dialback answer on an incoming stream");
            return Ok(());
        }
        let key = db.key.clone().unwrap_or_default();
        match db.kind {
            Kind::Verify => {
                // db.from is the receiving server asking; db.to is (supposedly) us, originating.
                let valid = serves(&self.server, &db.to)
                    && key_matches(
                        &self.s2s.dialback_key(
                            &db.from,
                            &db.to,
                            db.id.as_deref().unwrap_or_default(),
                        ),
                        &key,
                    );
                debug!(peer = %self.peer, from = %db.from, valid, "answering db:verify");
                let answer = db.answer(if valid {
                    Answer::Valid
                } else {
                    Answer::Invalid
                });
                self.send(&answer.to_element()).await
            }
            Kind::Result => self.on_db_result(db, key).await,
        }
    }

    async fn on_db_result(&mut self, db: Dialback, key: String) -> Result<(), End> {
        if !self.t.is_secure() {
            return Err(End::error(
                StreamErrorCondition::PolicyViolation,
                "use STARTTLS first",
            ));
        }
        // Policy, the authenticated pairs and bidi use normalized domains (RFC 7622 §3.2), as
        // the stanzas' addresses are.
        let Ok(local) = Jid::new(None, &db.to, None).map(|j| j.domain().to_owned()) else {
            return Err(End::error(
                StreamErrorCondition::HostUnknown,
                format!("this server does not serve {}", db.to),
            ));
        };
        let Ok(remote) = Jid::new(None, &db.from, None).map(|j| j.domain().to_owned()) else {
            return Err(End::error(
                StreamErrorCondition::InvalidFrom,
                "not a domain",
            ));
        };
        if !serves(&self.server, &local) {
            return Err(End::error(
                StreamErrorCondition::HostUnknown,
                format!("this server does not serve {local}"),
            ));
        }
        let mut condition = "remote-server-not-found";
        let verdict = match self.s2s.policy(&remote) {
            // A peer claiming one of our own domains (a host or a component) is never it.
            _ if serves(&self.server, &remote) => {
                warn!("s2s from {remote} failed: {remote} is one of our domains");
                Answer::Invalid
            }
            S2sPolicy::Deny => {
                warn!("s2s from {remote} failed: policy denies {remote}");
                Answer::Invalid
            }
            S2sPolicy::Certs => match self.s2s.pki.verify(&self.t.peer_chain(), &remote) {
                Ok(()) => Answer::Valid,
                Err(e) => {
                    warn!("s2s from {remote} failed: policy requires certificates: TLS: {e}");
                    Answer::Invalid
                }
            },
            S2sPolicy::Dialback => {
                let verify = verify_key(&self.s2s, &local, &remote, &self.stream_id, &key);
                match tokio::time::timeout(VERIFY_TIMEOUT, verify).await {
                    Ok(Ok(true)) => Answer::Valid,
                    Ok(Ok(false)) => {
                        warn!("s2s from {remote} failed: dialback key for {remote} did not verify");
                        Answer::Invalid
                    }
                    Ok(Err(f)) => {
                        warn!("s2s from {remote} failed: dialback verification: {f}");
                        Answer::Error
                    }
                    Err(_) => {
                        warn!(
                            "s2s from {remote} failed: dialback verification took over {}s",
                            VERIFY_TIMEOUT.as_secs()
                        );
                        condition = "remote-server-timeout";
                        Answer::Error
                    }
                }
            }
        };
        let mut answer = db.answer(verdict).to_element();
        if verdict == Answer::Error {
            answer.append_child(
                Element::new("error", ns::SERVER)
                    .with_attr("type", "cancel")
                    .with_child(Element::new(
                        condition,
                        "urn:ietf:params:xml:ns:xmpp-stanzas",
                    )),
            );
        }
        self.send(&answer).await?;
        if verdict == Answer::Valid {
            self.authenticated(&remote, &local, AuthMethod::Dialback);
        } else {
            self.db_failures += 1;
            if self.authed.is_empty() || self.db_failures >= MAX_DB_FAILURES {
                return Err(End::error(
                    StreamErrorCondition::NotAuthorized,
                    format!("dialback for {remote} failed"),
                ));
            }
        }
        Ok(())
    }

    /// A stanza from the peer (RFC 6120 §8.1.1.2: `from` and `to` are required on s2s).
    async fn on_stanza(&mut self, mut el: Element) -> Result<(), End> {
        if self.authed.is_empty() {
            return Err(End::error(
                StreamErrorCondition::NotAuthorized,
                "authenticate first",
            ));
        }
        let (from, to) = stanza_addresses(&el)?;
        let pair = (from.domain().to_owned(), to.domain().to_owned());
        if !self.authed.contains(&pair) {
            if self.authed.iter().any(|(r, _)| *r == pair.0) {
                return Err(End::error(
                    StreamErrorCondition::HostUnknown,
                    format!("{} is not authenticated for {}", pair.0, pair.1),
                ));
            }
            warn!(
                "s2s from {} refused: a stanza from {} which did not authenticate on this stream",
                self.who(),
                pair.0
            );
            return Err(End::error(
                StreamErrorCondition::InvalidFrom,
                format!("{} did not authenticate on this stream", pair.0),
            ));
        }
        change_content_ns(&mut el, ns::SERVER, ns::CLIENT);
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

    /// Ends the stream (RFC 6120 §4.4); `peer_closed`: the peer's closing tag came first.
    async fn finish(&mut self, end: End, peer_closed: bool) {
        match end {
            End::Error(err) => {
                if !self.header_sent {
                    let host = self
                        .local
                        .clone()
                        .unwrap_or_else(|| self.server.config.default_host().to_owned());
                    let id = new_stream_id();
                    self.t.send_open(&[
                        ("from", host.as_str()),
                        ("id", id.as_str()),
                        ("version", "1.0"),
                    ]);
                }
                debug!(peer = %self.peer, "closing s2s stream: {}", stream_error_label(&err));
                let el = err.to_element();
                log_element(&self.log, &el, false);
                self.t.send_element(&el);
                self.t.send_close();
            }
            End::Closed => self.t.send_close(),
            End::Eof => return,
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.t.flush()).await;
        if !peer_closed {
            crate::link::await_peer_close(&mut self.t).await;
        }
    }
}

fn stream_error_label(e: &StreamError) -> &'static str {
    e.condition.as_str()
}
