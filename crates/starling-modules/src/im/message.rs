//! Message delivery to local accounts (RFC 6121 §8.5): to a bare JID by type (§8.5.2: the
//! available resources of highest non-negative priority for chat and normal, every
//! non-negative one for headline, never groupchat, nowhere for errors), to a full JID
//! (§8.5.3: that resource, or the bare-JID rules when it is gone), and the offline hand-off
//! (§8.5.2.2.1): when no resource takes a chat/normal message,
//! [`super::EVENT_MESSAGE_OFFLINE`] is fired, and the sender gets `service-unavailable` if
//! nobody stores it.
//!
//! A session whose queue refuses a message (gone, overloaded) counts as unavailable: the
//! message moves on to the next candidate, then offline, so nothing accepted is lost.

use std::sync::Arc;

use async_trait::async_trait;
use starling_core::{
    events, Flow, Module, Registrar, Server, SessionInfo, StanzaEvent, StanzaHook,
};
use starling_proto::{error_reply, StanzaError, StanzaErrorCondition};
use starling_xml::Element;

use super::{account_exists, available_sessions, EVENT_MESSAGE_OFFLINE, PRIORITY_DELIVERY};

pub struct MessageModule;

#[derive(Clone, Copy)]
enum Which {
    ToBare,
    ToFull,
}

struct Hook(Which);

impl Module for MessageModule {
    fn name(&self) -> &'static str {
        "message"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.hook(
            events::MESSAGE_BARE,
            PRIORITY_DELIVERY,
            Arc::new(Hook(Which::ToBare)),
        );
        reg.hook(
            events::MESSAGE_FULL,
            PRIORITY_DELIVERY,
            Arc::new(Hook(Which::ToFull)),
        );
    }
}

#[async_trait]
impl StanzaHook for Hook {
    async fn on_stanza(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        match self.0 {
            Which::ToBare => to_bare(server, ev).await,
            Which::ToFull => to_full(server, ev).await,
        }
        Flow::Handled
    }
}

/// The message types of RFC 6121 §5.2.2; anything else is handled as `normal`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Chat,
    Normal,
    Groupchat,
    Headline,
    Error,
}

fn type_of(stanza: &Element) -> Type {
    match stanza.attr("type") {
        Some("chat") => Type::Chat,
        Some("groupchat") => Type::Groupchat,
        Some("headline") => Type::Headline,
        Some("error") => Type::Error,
        _ => Type::Normal,
    }
}

/// §8.5.3: to a full JID.
async fn to_full(server: &Arc<Server>, ev: &mut StanzaEvent) {
    if let Some(s) = server.sessions.get_full(&ev.to) {
        match s.send(ev.stanza.clone()) {
            Ok(()) => return,
            // Refused: as if the resource were not there (§8.5.3.2).
            Err(e) => ev.stanza = e.into_stanza(),
        }
    }
    match type_of(&ev.stanza) {
        // §8.5.3.2.1: chat and normal fall back to the bare JID rules.
        Type::Chat | Type::Normal => to_bare(server, ev).await,
        Type::Groupchat => reject(server, &ev.stanza).await,
        // Headlines and errors for a gone resource are dropped.
        Type::Headline | Type::Error => {}
    }
}

/// §8.5.2: to a bare JID (or a full JID whose resource is gone).
async fn to_bare(server: &Arc<Server>, ev: &mut StanzaEvent) {
    let account = ev.to.bare();
    let ty = type_of(&ev.stanza);
    if ty == Type::Error {
        // §8.5.2.1.1, §8.5.2.2.1 (and §8.5.1 with no such account): an error to a bare JID
        // is silently ignored, whatever resources are available.
        return;
    }
    if !account_exists(server, &account).await {
        // §8.5.1: no such account.
        reject(server, &ev.stanza).await;
        return;
    }
    // Each priority is read once: other tasks change them meanwhile, and the sort needs one
    // consistent order. Negative priority: the resource does not want messages sent to the
    // bare JID.
    let mut candidates: Vec<(i8, Arc<SessionInfo>)> = available_sessions(server, &account)
        .into_iter()
        .map(|s| (s.priority(), s))
        .filter(|(p, _)| *p >= 0)
        .collect();
    match ty {
        // Ignored above.
        Type::Error => {}
        // §8.5.2.1.1: a groupchat message to a bare JID is an error.
        Type::Groupchat => reject(server, &ev.stanza).await,
        // §8.5.2.1.1: headlines to every non-negative resource, or nowhere (§8.5.2.2.1).
        Type::Headline => {
            for (_, s) in candidates {
                let _ = s.send(ev.stanza.clone());
            }
        }
        Type::Chat | Type::Normal => {
            // Highest priority first; ties all get it (§8.5.2.1.1).
            candidates.sort_by_key(|(p, _)| std::cmp::Reverse(*p));
            if deliver_best(&candidates, &ev.stanza) {
                return;
            }
            if server.hooks.fire(EVENT_MESSAGE_OFFLINE, server, ev).await == Flow::Continue {
                // §8.5.2.2.1: neither delivered nor stored.
                reject(server, &ev.stanza).await;
            }
        }
    }
}

/// Delivers to every candidate sharing the highest priority; if all of them refuse, to the
/// next priority level, and so on. True when at least one session took it.
fn deliver_best(sorted: &[(i8, Arc<SessionInfo>)], stanza: &Element) -> bool {
    let mut i = 0;
    while i < sorted.len() {
        let level = sorted[i].0;
        let mut delivered = false;
        while i < sorted.len() && sorted[i].0 == level {
            delivered |= sorted[i].1.send(stanza.clone()).is_ok();
            i += 1;
        }
        if delivered {
            return true;
        }
    }
    false
}

/// Answers with `service-unavailable`, whatever the message type (the router's generic
/// bounce skips groupchat and headline; RFC 6121 §8.5 asks for an error here).
async fn reject(server: &Arc<Server>, stanza: &Element) {
    if stanza.attr("type") == Some("error") || stanza.attr("from").is_none() {
        return;
    }
    let reply = error_reply(
        stanza,
        &StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
    );
    server.route(reply).await;
}
