//! Stanzas from a bound local session (RFC 6120 §8.1): checked, `from` stamped, IQ rules
//! enforced, then handed to the `pre-*` hooks and the router. Every transport and the
//! in-process test client go through here.

use std::sync::Arc;

use starling_proto::{
    error_reply, iq_result, Jid, StanzaError, StanzaErrorCondition, StreamError,
    StreamErrorCondition,
};
use starling_xml::{ns, Element};

use crate::hooks::{events, Flow, StanzaEvent};
use crate::registry::SessionInfo;
use crate::Server;

const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

impl Server {
    /// Accepts one stanza from `session`. `Err` is a stream error: the stream must close.
    pub async fn accept_from_session(
        self: &Arc<Self>,
        session: &Arc<SessionInfo>,
        mut el: Element,
    ) -> Result<(), StreamError> {
        if el.ns() != ns::CLIENT || !matches!(el.name(), "message" | "presence" | "iq") {
            return Err(
                StreamError::new(StreamErrorCondition::UnsupportedStanzaType).with_text(format!(
                    "<{}/> in {} is not a stanza we accept",
                    el.name(),
                    el.ns()
                )),
            );
        }
        // RFC 6120 §8.1.2.1: the server stamps 'from'; a client may only claim its own JID.
        if let Some(from) = el.attr("from") {
            match Jid::parse(from) {
                Ok(j) if j == session.jid || j == session.jid.bare() => {}
                _ => {
                    return Err(StreamError::new(StreamErrorCondition::InvalidFrom)
                        .with_text("'from' must be your own JID"))
                }
            }
        }
        el.set_attr("from", session.jid.to_string());
        let to = match el.attr("to") {
            None => session.jid.bare(),
            Some(t) => match Jid::parse(t) {
                Ok(j) => j,
                Err(_) => {
                    let err = StanzaError::new(StanzaErrorCondition::JidMalformed);
                    let _ = session.send(error_reply(&el, &err));
                    return Ok(());
                }
            },
        };
        let event = match el.name() {
            "iq" => {
                if let Some(reply) = check_iq(&el) {
                    let _ = session.send(reply);
                    return Ok(());
                }
                events::PRE_IQ
            }
            "message" => events::PRE_MESSAGE,
            _ => events::PRE_PRESENCE,
        };
        let mut ev = StanzaEvent {
            stanza: el,
            from: session.jid.clone(),
            to,
            origin: Some(session.clone()),
        };
        if self.hooks.fire(event, self, &mut ev).await == Flow::Handled {
            return Ok(());
        }
        self.route_event(ev).await;
        Ok(())
    }
}

/// RFC 6120 §8.2.3 IQ rules; also answers the legacy session request (RFC 3921 §3).
fn check_iq(iq: &Element) -> Option<Element> {
    let ty = iq.attr("type");
    if iq.attr("id").is_none() {
        return Some(error_reply(
            iq,
            &StanzaError::new(StanzaErrorCondition::BadRequest).with_text("IQ without id"),
        ));
    }
    match ty {
        Some("get") | Some("set") => {
            if iq.children().count() != 1 {
                return Some(error_reply(
                    iq,
                    &StanzaError::new(StanzaErrorCondition::BadRequest)
                        .with_text("an IQ get/set carries exactly one payload"),
                ));
            }
            if ty == Some("set") && iq.has_child("session", NS_SESSION) {
                return Some(iq_result(iq, None));
            }
            None
        }
        Some("result") | Some("error") => None,
        _ => Some(error_reply(
            iq,
            &StanzaError::new(StanzaErrorCondition::BadRequest).with_text("bad IQ type"),
        )),
    }
}
