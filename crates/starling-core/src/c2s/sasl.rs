//! SASL negotiation on a client stream (RFC 6120 §6): which mechanisms we offer on which
//! connection, the challenge/response loop, and the throttled failure answer.

use std::time::Duration;

use starling_proto::sasl::{decode_b64, encode_b64, Mechanism, SaslFailure, SaslServer, SaslStep};
use starling_proto::{Jid, StreamError, StreamErrorCondition};
use starling_xml::{Element, StreamEvent};
use tokio::time::Instant;
use tracing::info;

use super::{C2s, End, NS_SASL};
use crate::transport::Transport;

const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";
/// Failed attempts on one stream before we close it.
const MAX_FAILURES_PER_STREAM: u32 = 5;

/// The mechanisms this connection may use: -PLUS only with channel-binding data, PLAIN only
/// over TLS (RFC 6120 §13.8), SCRAM everywhere.
pub(super) fn offered<T: Transport>(t: &T) -> Vec<Mechanism> {
    let cb = t.channel_bindings();
    let has_cb = cb.tls_exporter.is_some() || cb.tls_server_end_point.is_some();
    Mechanism::ALL
        .into_iter()
        .filter(|m| {
            if m.is_plus() {
                t.is_secure() && has_cb
            } else if *m == Mechanism::Plain {
                t.is_secure()
            } else {
                true
            }
        })
        .collect()
}

pub(super) fn mechanisms_element<T: Transport>(t: &T) -> Element {
    let mut el = Element::new("mechanisms", NS_SASL);
    for m in offered(t) {
        el.append_child(Element::new("mechanism", NS_SASL).with_text(m.name()));
    }
    el
}

/// XEP-0440: which channel-binding types the -PLUS mechanisms accept here.
pub(super) fn channel_binding_element<T: Transport>(t: &T) -> Option<Element> {
    let cb = t.channel_bindings();
    let mut el = Element::new("sasl-channel-binding", NS_SASL_CB);
    if cb.tls_exporter.is_some() {
        el.append_child(
            Element::new("channel-binding", NS_SASL_CB).with_attr("type", "tls-exporter"),
        );
    }
    if cb.tls_server_end_point.is_some() {
        el.append_child(
            Element::new("channel-binding", NS_SASL_CB).with_attr("type", "tls-server-end-point"),
        );
    }
    (el.first_child().is_some() && t.is_secure()).then_some(el)
}

impl<T: Transport> C2s<T> {
    /// Runs one SASL exchange. `Ok(true)`: authenticated, a stream restart follows.
    pub(super) async fn sasl(&mut self, auth: Element, deadline: Instant) -> Result<bool, End> {
        let offered = offered(&self.t);
        let mech = auth
            .attr("mechanism")
            .and_then(Mechanism::from_name)
            .filter(|m| offered.contains(m));
        let Some(mech) = mech else {
            return self.sasl_failure(SaslFailure::InvalidMechanism).await;
        };
        // RFC 6120 §6.4.2: no text is no initial response; "=" is an empty one.
        let text = auth.text();
        let initial = if text.trim().is_empty() {
            None
        } else {
            match decode_b64(&text) {
                Ok(d) => Some(d),
                Err(f) => return self.sasl_failure(f).await,
            }
        };
        let plus_offered = offered.iter().any(Mechanism::is_plus);
        let mut server = SaslServer::new(mech, &self.t.channel_bindings(), plus_offered);
        let mut step = server.start(initial.as_deref());
        loop {
            step = match step {
                SaslStep::NeedCredentials { username } => {
                    let host = self.host.clone().unwrap_or_default();
                    let creds = match Jid::new(Some(&username), &host, None) {
                        Ok(jid) => self
                            .server
                            .store
                            .credentials(&host, jid.node().unwrap_or_default())
                            .await
                            .map_err(|e| {
                                tracing::error!("credential lookup failed: {e}");
                                End::Error(StreamError::new(
                                    StreamErrorCondition::InternalServerError,
                                ))
                            })?,
                        Err(_) => None,
                    };
                    if mech == Mechanism::Plain {
                        // PLAIN checks the password with PBKDF2: CPU work that must not
                        // stall the async workers (SCRAM only compares stored keys).
                        let (back, step) = tokio::task::spawn_blocking(move || {
                            let step = server.provide_credentials(creds.as_ref());
                            (server, step)
                        })
                        .await
                        .map_err(|_| {
                            End::Error(StreamError::new(StreamErrorCondition::InternalServerError))
                        })?;
                        server = back;
                        step
                    } else {
                        server.provide_credentials(creds.as_ref())
                    }
                }
                SaslStep::Challenge(data) => {
                    let ch = Element::new("challenge", NS_SASL).with_text(encode_b64(&data));
                    self.send(&ch).await;
                    self.flush().await?;
                    let el = match self.recv_until(deadline).await? {
                        StreamEvent::Stanza(el) => el,
                        StreamEvent::Close => return Err(End::Closed),
                        StreamEvent::Open { .. } => {
                            return Err(End::Error(StreamError::new(
                                StreamErrorCondition::NotAuthorized,
                            )))
                        }
                    };
                    self.log.incoming(&el);
                    match (el.ns(), el.name()) {
                        (NS_SASL, "response") => match decode_b64(&el.text()) {
                            Ok(d) => server.respond(&d),
                            Err(f) => SaslStep::Failure(f),
                        },
                        (NS_SASL, "abort") => SaslStep::Failure(SaslFailure::Aborted),
                        _ => {
                            return Err(End::Error(StreamError::new(
                                StreamErrorCondition::NotAuthorized,
                            )))
                        }
                    }
                }
                SaslStep::Success {
                    username,
                    additional_data,
                } => {
                    let host = self.host.clone().unwrap_or_default();
                    let Ok(account) = Jid::new(Some(&username), &host, None) else {
                        return self.sasl_failure(SaslFailure::NotAuthorized).await;
                    };
                    // RFC 6120 §6.3.8: a client may only act as itself here; the mechanism
                    // checked the localpart, the domain is ours to check.
                    if let Some(authzid) = server.authzid().filter(|a| !a.is_empty()) {
                        // Compared as JIDs: normalized, so case does not matter.
                        let same = Jid::parse(authzid).is_ok_and(|j| j == account)
                            || Jid::new(Some(authzid), &host, None).is_ok_and(|j| j == account);
                        if !same {
                            return self.sasl_failure(SaslFailure::InvalidAuthzid).await;
                        }
                    }
                    let mut ok = Element::new("success", NS_SASL);
                    if let Some(d) = additional_data {
                        ok.append_text(encode_b64(&d));
                    }
                    self.send(&ok).await;
                    self.flush().await?;
                    info!(account = %account, mechanism = mech.name(), transport = self.t.kind(), "authenticated");
                    self.authenticated = Some(account);
                    // RFC 6120 §6.4.6: both sides restart the stream.
                    self.t.reset();
                    return Ok(true);
                }
                SaslStep::Failure(f) => return self.sasl_failure(f).await,
            };
        }
    }

    /// Answers a failed attempt, slowed down for an address that keeps failing.
    async fn sasl_failure(&mut self, failure: SaslFailure) -> Result<bool, End> {
        if matches!(failure, SaslFailure::NotAuthorized) {
            if let Some(p) = self.t.peer_addr() {
                let delay = self.server.auth_throttle.failure(p.ip());
                if delay > Duration::ZERO {
                    tokio::time::sleep(delay).await;
                }
            }
            info!(session = %self.log.label, "authentication failed");
        }
        self.send(&failure.to_element(None)).await;
        self.flush().await?;
        self.sasl_failures += 1;
        if self.sasl_failures >= MAX_FAILURES_PER_STREAM {
            return Err(End::Error(
                StreamError::new(StreamErrorCondition::PolicyViolation)
                    .with_text("too many failed authentication attempts"),
            ));
        }
        Ok(false)
    }
}
