//! The initiating side of a server stream (RFC 6120 §4.3 negotiation, §5 STARTTLS as TLS
//! client, §6 SASL EXTERNAL per XEP-0178, XEP-0220 §2.1 `<db:result/>` and §2.4 `<db:verify/>`
//! on a verification stream, XEP-0288 §2.2 `<bidi/>` before authentication): connect to the
//! resolved targets (XEP-0368 Direct TLS or STARTTLS), then authenticate as the local domain.

use std::net::SocketAddr;
use std::time::Duration;

use starling_core::c2s::wirelog::WireLog;
use starling_core::config::S2sPolicy;
use starling_net::{TcpOptions, TcpTransport};
use starling_proto::dialback::{Answer, Dialback, Kind};
use starling_proto::s2s::{external_auth, next_step, Features, Step, NS_BIDI, NS_TLS};
use starling_proto::sasl::NS_SASL;
use starling_proto::{StreamError, StreamErrorCondition, StreamHeader};
use starling_xml::{ns, Element, Limits, StreamEvent};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use crate::link::{log_element, AuthMethod, S2sTransport};
use crate::resolve;
use crate::S2s;

/// Why an outgoing stream could not be set up; the text is the one `warn!` line.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Dns(String),
    #[error("TCP connect {0} refused")]
    Refused(SocketAddr),
    #[error("TCP connect {0} timed out")]
    ConnectTimeout(SocketAddr),
    #[error("TCP connect {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("policy denies {0}")]
    Policy(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Stream(String),
    #[error("no answer from {0} in time")]
    Timeout(String),
}

impl Failure {
    /// Timeouts bounce with remote-server-timeout, everything else remote-server-not-found.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Failure::ConnectTimeout(_) | Failure::Timeout(_))
    }
}

/// What the stream is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Purpose {
    /// Authenticate as the local domain and carry stanzas.
    Stanzas,
    /// Only TLS: a dialback verification (`<db:verify/>`) needs no authentication.
    Verify,
}

/// SRV targets tried per connection attempt at most (a hostile zone could list hundreds).
const MAX_TARGETS: usize = 8;
/// Addresses tried per target at most.
const MAX_ADDRS_PER_TARGET: usize = 4;

/// Connects to the first reachable target of `remote` (the first [`MAX_TARGETS`] targets,
/// the first [`MAX_ADDRS_PER_TARGET`] addresses of each).
pub async fn connect(s2s: &S2s, local: &str, remote: &str) -> Result<TcpTransport, Failure> {
    let targets = resolve::targets(&s2s.cfg, &s2s.dns, remote)
        .await
        .map_err(Failure::Dns)?;
    let mut last = None;
    for target in targets.into_iter().take(MAX_TARGETS) {
        let addrs = match s2s
            .dns
            .addresses(&target.host, target.port, s2s.connect_timeout())
            .await
        {
            Ok(a) => a,
            Err(e) => {
                last.get_or_insert(Failure::Dns(e));
                continue;
            }
        };
        for addr in addrs.into_iter().take(MAX_ADDRS_PER_TARGET) {
            let socket =
                match tokio::time::timeout(s2s.connect_timeout(), TcpStream::connect(addr)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        last = Some(Failure::Refused(addr));
                        continue;
                    }
                    Ok(Err(e)) => {
                        last = Some(Failure::Connect {
                            addr,
                            reason: e.to_string(),
                        });
                        continue;
                    }
                    Err(_) => {
                        last = Some(Failure::ConnectTimeout(addr));
                        continue;
                    }
                };
            let opts = TcpOptions {
                content_ns: ns::SERVER,
                limits: Limits {
                    max_stanza_bytes: s2s.cfg.max_stanza_bytes,
                    ..Limits::default()
                },
                tls_handshake_timeout: s2s.connect_timeout(),
            };
            let client = s2s
                .client_tls(local, remote, target.direct_tls)
                .map_err(Failure::Tls)?;
            if target.direct_tls {
                match TcpTransport::connect_direct_tls(socket, client, opts).await {
                    Ok(t) => return Ok(t),
                    Err(e) => {
                        last = Some(Failure::Tls(format!("Direct TLS to {addr}: {e}")));
                        continue;
                    }
                }
            }
            return Ok(TcpTransport::connect(socket, client, opts));
        }
    }
    Err(last.unwrap_or_else(|| Failure::Dns(format!("DNS: no SRV/A records for {remote}"))))
}

/// One stream we initiate, during negotiation.
pub struct Initiator<T: S2sTransport> {
    pub t: T,
    pub local: String,
    pub remote: String,
    /// The receiving server's stream id (of the current stream, after restarts).
    pub stream_id: String,
    pub log: WireLog,
    pub deadline: Instant,
    /// We enabled bidi (XEP-0288): the peer may send its stanzas to us on this stream.
    pub bidi: bool,
}

impl<T: S2sTransport> Initiator<T> {
    pub fn new(t: T, local: &str, remote: &str, log_enabled: bool, within: Duration) -> Self {
        Initiator {
            t,
            local: local.into(),
            remote: remote.into(),
            stream_id: String::new(),
            log: WireLog {
                enabled: log_enabled,
                label: format!("s2s-out {local}->{remote}"),
            },
            deadline: Instant::now() + within,
            bidi: false,
        }
    }

    async fn recv(&mut self) -> Result<StreamEvent, Failure> {
        match tokio::time::timeout_at(self.deadline, self.t.recv()).await {
            Err(_) => Err(Failure::Timeout(self.remote.clone())),
            Ok(Ok(Some(ev))) => Ok(ev),
            Ok(Ok(None)) => Err(Failure::Stream(format!(
                "{} closed the connection",
                self.remote
            ))),
            Ok(Err(e)) => Err(Failure::Stream(format!(
                "reading from {}: {e}",
                self.remote
            ))),
        }
    }

    /// The next element; a stream error or close from the peer is a failure.
    pub async fn next_element(&mut self) -> Result<Element, Failure> {
        match self.recv().await? {
            StreamEvent::Stanza(el) => {
                log_element(&self.log, &el, true);
                if el.is("error", ns::STREAM) {
                    return Err(Failure::Stream(format!(
                        "{} sent a stream error: {}",
                        self.remote,
                        describe_stream_error(&el)
                    )));
                }
                Ok(el)
            }
            StreamEvent::Close => Err(Failure::Stream(format!(
                "{} closed the stream",
                self.remote
            ))),
            StreamEvent::Open { .. } => Err(Failure::Stream(format!(
                "{} sent an unexpected stream header",
                self.remote
            ))),
        }
    }

    pub async fn send(&mut self, el: &Element) -> Result<(), Failure> {
        log_element(&self.log, el, false);
        self.t.send_element(el);
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), Failure> {
        match tokio::time::timeout_at(self.deadline, self.t.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Stream(format!("writing to {}: {e}", self.remote))),
            Err(_) => Err(Failure::Timeout(self.remote.clone())),
        }
    }

    /// Sends our header, reads the answer header and the features (RFC 6120 §4.3.2). The
    /// transport declares `xmlns:db` on every server stream header (XEP-0220 §2.1).
    async fn open(&mut self) -> Result<Features, Failure> {
        self.t.send_open(&[
            ("from", self.local.as_str()),
            ("to", self.remote.as_str()),
            ("version", "1.0"),
        ]);
        self.flush().await?;
        let (header, default_ns) = match self.recv().await? {
            StreamEvent::Open { header, default_ns } => (header, default_ns),
            _ => {
                return Err(Failure::Stream(format!(
                    "{} did not open a stream",
                    self.remote
                )))
            }
        };
        let header = StreamHeader::from_open(&header, &default_ns)
            .and_then(|h| h.check(ns::SERVER).map(|_| h))
            .map_err(|e| Failure::Stream(format!("bad stream header from {}: {e}", self.remote)))?;
        self.stream_id = header.id.unwrap_or_default();
        let features = self.next_element().await?;
        if !features.is("features", ns::STREAM) {
            return Err(Failure::Stream(format!(
                "{} sent no stream features",
                self.remote
            )));
        }
        Ok(Features::parse(&features))
    }

    /// Negotiates TLS and, for [`Purpose::Stanzas`], authentication as the local domain
    /// under the policy for the remote one. `None`: not authenticated (verification streams).
    pub async fn negotiate(
        &mut self,
        s2s: &S2s,
        purpose: Purpose,
    ) -> Result<Option<AuthMethod>, Failure> {
        let policy = s2s.policy(&self.remote);
        if policy == S2sPolicy::Deny {
            return Err(Failure::Policy(self.remote.clone()));
        }
        let dialback_allowed = policy == S2sPolicy::Dialback;
        let mut features = self.open().await?;
        let mut external_failed = false;
        loop {
            let secure = self.t.is_secure();
            if purpose == Purpose::Verify && secure {
                return Ok(None);
            }
            let cert = if secure {
                s2s.pki.verify(&self.t.peer_chain(), &self.remote)
            } else {
                Ok(())
            };
            match next_step(
                &features,
                secure,
                cert.is_ok(),
                dialback_allowed,
                external_failed,
            ) {
                Step::StartTls => {
                    self.send(&Element::new("starttls", NS_TLS)).await?;
                    let answer = self.next_element().await?;
                    if !answer.is("proceed", NS_TLS) {
                        return Err(Failure::Tls(format!("{} refused STARTTLS", self.remote)));
                    }
                    let within = self.deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(within, self.t.starttls()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            return Err(Failure::Tls(format!("with {}: {e}", self.remote)))
                        }
                        Err(_) => return Err(Failure::Timeout(self.remote.clone())),
                    }
                    self.log.note("TLS established");
                    features = self.open().await?;
                }
                step @ (Step::SaslExternal | Step::Dialback)
                    if !self.bidi
                        && features.bidi
                        && s2s.cfg.bidi
                        && purpose == Purpose::Stanzas =>
                {
                    // XEP-0288 §2.2: after TLS, before SASL or dialback; no answer comes.
                    debug!(remote = %self.remote, "requesting bidi before {step:?}");
                    self.send(&Element::new("bidi", NS_BIDI)).await?;
                    self.bidi = true;
                }
                Step::SaslExternal => {
                    self.send(&external_auth(&self.local)).await?;
                    let answer = self.next_element().await?;
                    if answer.is("success", NS_SASL) {
                        self.t.reset();
                        self.open().await?;
                        return Ok(Some(AuthMethod::SaslExternal));
                    }
                    debug!(remote = %self.remote, "SASL EXTERNAL refused: {answer}");
                    external_failed = true;
                }
                Step::Dialback => {
                    let key = s2s.dialback_key(&self.remote, &self.local, &self.stream_id);
                    let request =
                        Dialback::request(Kind::Result, &self.local, &self.remote, None, &key);
                    self.send(&request.to_element()).await?;
                    return self.await_dialback_result().await.map(Some);
                }
                Step::Fail(reason) => {
                    return Err(match cert {
                        Err(e) if !dialback_allowed => Failure::Tls(e.to_string()),
                        _ => Failure::Auth(format!("{} ({})", reason, self.remote)),
                    });
                }
            }
        }
    }

    async fn await_dialback_result(&mut self) -> Result<AuthMethod, Failure> {
        loop {
            let el = self.next_element().await?;
            let Ok(db) = Dialback::parse(&el) else {
                debug!(remote = %self.remote, "ignoring {el} while waiting for dialback");
                continue;
            };
            if db.kind != Kind::Result || db.from != self.remote || db.to != self.local {
                continue;
            }
            return match db.answer {
                Some(Answer::Valid) => Ok(AuthMethod::Dialback),
                Some(Answer::Invalid) => Err(Failure::Auth(format!(
                    "dialback refused by {} (our key did not verify)",
                    self.remote
                ))),
                _ => Err(Failure::Auth(format!(
                    "dialback error from {}: {}",
                    self.remote,
                    el.first_child().map(|e| e.to_xml()).unwrap_or_default()
                ))),
            };
        }
    }

    /// Closes the stream cleanly (RFC 6120 §4.4): our `</stream:stream>`, TLS close_notify,
    /// then waits (bounded) for the peer's closing tag, so the socket is not dropped with
    /// unread data (which would reset the connection under the peer).
    pub async fn close(&mut self) {
        self.close_answer().await;
        crate::link::await_peer_close(&mut self.t).await;
    }

    /// Answers the peer's `</stream:stream>` with ours (best effort, bounded).
    pub async fn close_answer(&mut self) {
        self.t.send_close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.t.flush()).await;
    }
}

/// `<db:verify/>` with the originating server's authoritative server (XEP-0220 §2.4) over a
/// fresh stream: is `key` the one it issued for (`local` receiving, `remote` originating,
/// `stream_id`)?
pub async fn verify_key(
    s2s: &S2s,
    local: &str,
    remote: &str,
    stream_id: &str,
    key: &str,
) -> Result<bool, Failure> {
    let t = connect(s2s, local, remote).await?;
    let mut out = Initiator::new(t, local, remote, s2s.log_stanzas, s2s.negotiation_timeout());
    out.log.label = format!("s2s-verify {local}->{remote}");
    out.negotiate(s2s, Purpose::Verify).await?;
    let request = Dialback::request(Kind::Verify, local, remote, Some(stream_id), key);
    out.send(&request.to_element()).await?;
    let valid = loop {
        let el = out.next_element().await?;
        match Dialback::parse(&el) {
            Ok(db) if is_verify_answer(&db, local, remote, stream_id) => {
                break db.answer == Some(Answer::Valid);
            }
            _ => continue,
        }
    };
    out.close().await;
    Ok(valid)
}

/// Whether `db` answers our `<db:verify/>` (XEP-0220 §2.4): same id, from the authoritative
/// server (`remote`) to us (`local`).
fn is_verify_answer(db: &Dialback, local: &str, remote: &str, stream_id: &str) -> bool {
    let same = |a: &str, b: &str| a.trim_end_matches('.').eq_ignore_ascii_case(b);
    db.kind == Kind::Verify
        && db.id.as_deref() == Some(stream_id)
        && same(&db.from, remote)
        && same(&db.to, local)
}

/// "condition: text" of a received `<stream:error/>`.
pub fn describe_stream_error(el: &Element) -> String {
    let condition = el
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".into());
    match el.children().find(|c| c.name() == "text") {
        Some(t) => format!("{condition} ({})", t.text()),
        None => condition,
    }
}

/// Our stream error as a failure text (for the log).
pub fn stream_error_text(e: &StreamError) -> String {
    match &e.text {
        Some(t) => format!("{} ({t})", e.condition.as_str()),
        None => e.condition.as_str().to_owned(),
    }
}

/// A stream error for a failed negotiation on our side.
pub fn failure_stream_error(f: &Failure) -> StreamError {
    StreamError::new(StreamErrorCondition::UndefinedCondition).with_text(f.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn verify_answer(from: &str, to: &str, id: &str) -> Dialback {
        let el = Element::new("verify", starling_proto::dialback::NS_DIALBACK)
            .with_attr("from", from)
            .with_attr("to", to)
            .with_attr("id", id)
            .with_attr("type", "valid");
        Dialback::parse(&el).unwrap()
    }

    #[test]
    fn verify_answer_must_come_from_the_remote_to_us() {
        let ok = verify_answer("a.test", "b.test", "s1");
        assert!(is_verify_answer(&ok, "b.test", "a.test", "s1"));
        assert!(is_verify_answer(
            &verify_answer("A.test", "b.test", "s1"),
            "b.test",
            "a.test",
            "s1"
        ));
        assert!(!is_verify_answer(&ok, "b.test", "a.test", "s2"));
        assert!(!is_verify_answer(
            &verify_answer("evil.test", "b.test", "s1"),
            "b.test",
            "a.test",
            "s1"
        ));
        assert!(!is_verify_answer(
            &verify_answer("a.test", "c.test", "s1"),
            "b.test",
            "a.test",
            "s1"
        ));
    }
}
