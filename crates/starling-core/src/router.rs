//! The stanza router: turns a stanza's kind and addressing into a named event (RFC 6120 §10,
//! RFC 6121 §8.5), dispatches IQ get/set to the module that owns the payload, and bounces what
//! nobody handles with the error the RFCs prescribe.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use starling_proto::{error_reply, iq_result, Jid, StanzaError, StanzaErrorCondition};
use starling_xml::{Element, Node};
use tracing::debug;

use crate::hooks::{events, Flow, IqRequest, IqTarget, StanzaEvent};
use crate::registry::SessionInfo;
use crate::routes::DomainLookup;
use crate::Server;

/// Fired for stanzas to domains that are neither ours nor domain routes
/// ([`crate::DomainRoutes`]); the federation module hooks it.
pub const ROUTE_REMOTE: &str = "route/remote";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Addressing {
    Host,
    Bare,
    Full,
}

impl Server {
    /// Routes a stanza built by the server or a module; `from` and `to` must be set.
    /// Boxed: routing can recurse (a reply or bounce is routed from inside routing).
    pub fn route(self: &Arc<Self>, stanza: Element) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (Some(from), Some(to)) = (
                stanza.attr("from").and_then(|f| Jid::parse(f).ok()),
                stanza.attr("to").and_then(|t| Jid::parse(t).ok()),
            ) else {
                debug!(stanza = %stanza, "dropping internal stanza without valid from/to");
                return;
            };
            self.route_event(StanzaEvent {
                stanza,
                from,
                to,
                origin: None,
            })
            .await;
        })
    }

    /// Routes a stanza whose addresses are already validated.
    pub async fn route_event(self: &Arc<Self>, mut ev: StanzaEvent) {
        if !self.is_local_host(ev.to.domain()) {
            // Domains served over a local connection come before other servers.
            match self.domain_routes.lookup(ev.to.domain()) {
                DomainLookup::NotRouted => {}
                DomainLookup::Route(route) => {
                    if let Err(stanza) = route.deliver(ev.stanza) {
                        self.bounce(
                            &stanza,
                            StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                        )
                        .await;
                    }
                    return;
                }
                DomainLookup::Unavailable => {
                    self.bounce(
                        &ev.stanza,
                        StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                    )
                    .await;
                    return;
                }
            }
            if self.hooks.fire(ROUTE_REMOTE, self, &mut ev).await == Flow::Continue {
                self.bounce(
                    &ev.stanza,
                    StanzaError::new(StanzaErrorCondition::RemoteServerNotFound),
                )
                .await;
            }
            return;
        }
        let addressing = match (ev.to.node(), ev.to.resource()) {
            (None, _) => Addressing::Host,
            (Some(_), None) => Addressing::Bare,
            (Some(_), Some(_)) => Addressing::Full,
        };
        match ev.stanza.name() {
            "iq" => self.route_iq(ev, addressing).await,
            "message" => self.route_message(ev, addressing).await,
            "presence" => self.route_presence(ev, addressing).await,
            _ => debug!("dropping non-stanza element in router"),
        }
    }

    async fn route_message(self: &Arc<Self>, mut ev: StanzaEvent, addressing: Addressing) {
        let event = match addressing {
            Addressing::Host => events::MESSAGE_HOST,
            Addressing::Bare => events::MESSAGE_BARE,
            Addressing::Full => events::MESSAGE_FULL,
        };
        if self.hooks.fire(event, self, &mut ev).await == Flow::Handled {
            return;
        }
        match addressing {
            // RFC 6120 §10.3.1: a message to the server itself that no module wants is dropped.
            Addressing::Host => {}
            Addressing::Full => {
                let stanza = match self.sessions.get_full(&ev.to) {
                    Some(s) => match s.send(ev.stanza) {
                        Ok(()) => return,
                        Err(e) => e.into_stanza(),
                    },
                    None => ev.stanza,
                };
                self.bounce(
                    &stanza,
                    StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                )
                .await;
            }
            Addressing::Bare => {
                self.bounce(
                    &ev.stanza,
                    StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                )
                .await;
            }
        }
    }

    async fn route_presence(self: &Arc<Self>, mut ev: StanzaEvent, addressing: Addressing) {
        let event = match addressing {
            Addressing::Host => events::PRESENCE_HOST,
            Addressing::Bare => events::PRESENCE_BARE,
            Addressing::Full => events::PRESENCE_FULL,
        };
        if self.hooks.fire(event, self, &mut ev).await == Flow::Handled {
            return;
        }
        // Unhandled presence is delivered to an exact session or silently dropped
        // (RFC 6121 §4.3, §8.5: presence is never bounced with service-unavailable).
        if addressing == Addressing::Full {
            if let Some(s) = self.sessions.get_full(&ev.to) {
                let _ = s.send(ev.stanza);
            }
        }
    }

    async fn route_iq(self: &Arc<Self>, mut ev: StanzaEvent, addressing: Addressing) {
        let is_set = match ev.stanza.attr("type") {
            Some("get") => false,
            Some("set") => true,
            Some("result") | Some("error") => {
                // Responses go to the exact session that asked; responses to the server or to
                // a bare JID answer requests we did not track, so they end here.
                if addressing == Addressing::Full {
                    if let Some(s) = self.sessions.get_full(&ev.to) {
                        let _ = s.send(ev.stanza);
                    }
                }
                return;
            }
            _ => {
                self.bounce(
                    &ev.stanza,
                    StanzaError::new(StanzaErrorCondition::BadRequest),
                )
                .await;
                return;
            }
        };
        if addressing == Addressing::Full {
            if self.hooks.fire(events::IQ_FULL, self, &mut ev).await == Flow::Handled {
                return;
            }
            if let Some(s) = self.sessions.get_full(&ev.to) {
                if let Err(e) = s.send(ev.stanza) {
                    self.bounce(
                        &e.into_stanza(),
                        StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                    )
                    .await;
                }
                return;
            }
            // RFC 6121 §8.5.3.2.2: an IQ to an unavailable resource.
            self.bounce(
                &ev.stanza,
                StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
            )
            .await;
            return;
        }
        if addressing == Addressing::Bare
            && self.hooks.fire(events::IQ_BARE, self, &mut ev).await == Flow::Handled
        {
            return;
        }
        let target = match addressing {
            Addressing::Host => IqTarget::Host,
            _ if ev.from.bare() == ev.to => IqTarget::OwnAccount,
            _ => IqTarget::OtherAccount,
        };
        // The handler gets the payload moved out of the IQ; the rest (addresses, id) is what
        // the reply is built from.
        let mut head = ev.stanza;
        let payload = match head
            .nodes_mut()
            .iter()
            .position(|n| matches!(n, Node::Element(_)))
        {
            Some(i) => match head.nodes_mut().remove(i) {
                Node::Element(p) => Some(p),
                Node::Text(_) => None,
            },
            None => None,
        };
        let handler = payload
            .as_ref()
            .and_then(|p| self.hooks.iq_handler(is_set, target, p));
        let (Some(handler), Some(payload)) = (handler, payload) else {
            // RFC 6120 §8.4: an IQ nobody understands gets service-unavailable.
            self.bounce(
                &head,
                StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
            )
            .await;
            return;
        };
        head.clear_children();
        let origin = ev.origin.clone();
        let result = handler
            .handle_iq(
                self,
                IqRequest {
                    stanza: head.clone(),
                    payload,
                    is_set,
                    from: ev.from,
                    to: ev.to,
                    target,
                    origin: origin.clone(),
                },
            )
            .await;
        let reply = match result {
            Ok(payload) => iq_result(&head, payload),
            Err(err) => error_reply(&head, &err),
        };
        self.deliver_reply(origin.as_ref(), reply).await;
    }

    /// Sends the reply to the session that asked (fast path) or routes it.
    async fn deliver_reply(self: &Arc<Self>, origin: Option<&Arc<SessionInfo>>, reply: Element) {
        if let Some(s) = origin {
            if reply.attr("to") == Some(&s.jid.to_string()) {
                let _ = s.send(reply);
                return;
            }
        }
        self.route(reply).await;
    }

    /// Answers a stanza with an error (RFC 6120 §8.3). Errors are never answered with errors,
    /// and presence gets none (RFC 6121 §4.3.3), so two entities cannot bounce forever.
    pub async fn bounce(self: &Arc<Self>, stanza: &Element, err: StanzaError) {
        if stanza.attr("type") == Some("error") || stanza.name() == "presence" {
            return;
        }
        if stanza.name() == "message"
            && matches!(stanza.attr("type"), Some("groupchat") | Some("headline"))
        {
            return;
        }
        let Some(to) = stanza.attr("from").and_then(|f| Jid::parse(f).ok()) else {
            return;
        };
        let mut reply = error_reply(stanza, &err);
        if reply.attr("from").is_none() {
            reply.set_attr("from", to.domain().to_string());
        }
        if self.is_local_host(to.domain()) {
            if let Some(s) = self.sessions.get_full(&to) {
                let _ = s.send(reply);
            }
            return;
        }
        self.route(reply).await;
    }
}
