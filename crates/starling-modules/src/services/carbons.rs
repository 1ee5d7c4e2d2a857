//! XEP-0280 Message Carbons: a user's resources that enabled carbons get a copy of every
//! eligible chat message the account sends (§7, `<sent/>`) or receives on another resource
//! (§6, `<received/>`), wrapped in a XEP-0297 `<forwarded/>`. A message between two resources
//! of the same account is copied to nobody: the addressed resource has it and the sender
//! wrote it (§6, §7).

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use starling_core::{
    events, Flow, IqHandler, IqRequest, IqResult, IqTarget, Module, Registrar, Server,
    SessionEvent, SessionHook, SessionInfo, StanzaEvent, StanzaHook,
};
use starling_proto::Jid;
use starling_xml::{ns, Element};

pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_HINTS: &str = "urn:xmpp:hints";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// Payloads that make a non-chat message part of a conversation (§6.1): chat states
/// (XEP-0085), receipts (XEP-0184), markers (XEP-0333), corrections (XEP-0308).
const IM_PAYLOADS: [&str; 4] = [
    "http://jabber.org/protocol/chatstates",
    "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0",
    "urn:xmpp:message-correct:0",
];
/// Copies go out before delivery runs, after filters such as blocking (priority 100).
const PRIORITY: i32 = 50;

/// Which sessions enabled carbons (by session id).
#[derive(Default)]
pub struct CarbonsModule {
    enabled: Mutex<HashSet<u64>>,
}

impl CarbonsModule {
    /// The account's sessions that enabled carbons: one registry read, and usually empty,
    /// which ends the per-message work at once.
    fn enabled_sessions(&self, server: &Server, account: &Jid) -> Vec<Arc<SessionInfo>> {
        let sessions = server.sessions.get_bare(account);
        let enabled = self.enabled.lock();
        sessions
            .into_iter()
            .filter(|s| enabled.contains(&s.id))
            .collect()
    }

    /// Sends `wrapper_name` copies of `original` to `targets`.
    fn copy_to(
        targets: &[Arc<SessionInfo>],
        account: &Jid,
        original: &Element,
        wrapper_name: &str,
    ) {
        if targets.is_empty() {
            return;
        }
        let mut inner = original.clone();
        inner.set_ns(ns::CLIENT);
        let wrapped = Element::new(wrapper_name, NS_CARBONS)
            .with_child(Element::new("forwarded", NS_FORWARD).with_child(inner));
        for s in targets {
            let copy = Element::new("message", ns::CLIENT)
                .with_attr("from", account.to_string())
                .with_attr("to", s.jid.to_string())
                .with_opt_attr("type", original.attr("type"))
                .with_child(wrapped.clone());
            // A copy is best effort: the original is what must not be lost.
            let _ = s.send(copy);
        }
    }
}

/// §6.1: which messages are copied.
fn eligible(msg: &Element) -> bool {
    if msg.has_child("private", NS_CARBONS)
        || msg.has_child("no-copy", NS_HINTS)
        // Already a carbon (§6.1: never copy a copy), or a MUC private message (§6.1).
        || msg.has_child("sent", NS_CARBONS)
        || msg.has_child("received", NS_CARBONS)
        || msg.has_child("x", NS_MUC_USER)
    {
        return false;
    }
    match msg.attr("type").unwrap_or("normal") {
        "chat" => true,
        // An error only when what it answers was eligible (§6.1): a bounce carries the
        // original payload (RFC 6120 §8.3.1), judged as a normal message's would be.
        "normal" | "error" => {
            msg.has_child("body", ns::CLIENT)
                || msg.children().any(|c| IM_PAYLOADS.contains(&c.ns()))
        }
        _ => false,
    }
}

impl Module for CarbonsModule {
    fn name(&self) -> &'static str {
        "carbons"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.host_feature(NS_CARBONS);
        for name in ["enable", "disable"] {
            reg.iq(
                true,
                &[IqTarget::OwnAccount, IqTarget::Host],
                name,
                NS_CARBONS,
                self.clone(),
            );
        }
        reg.hook(events::PRE_MESSAGE, PRIORITY, Arc::new(Sent(self.clone())));
        reg.hook(
            events::MESSAGE_BARE,
            PRIORITY,
            Arc::new(Received(self.clone())),
        );
        reg.hook(
            events::MESSAGE_FULL,
            PRIORITY,
            Arc::new(Received(self.clone())),
        );
        reg.session_hook(SessionEvent::Closed, 0, self);
    }
}

#[async_trait]
impl IqHandler for CarbonsModule {
    async fn handle_iq(&self, _server: &Arc<Server>, req: IqRequest) -> IqResult {
        let Some(origin) = req.origin.as_ref() else {
            return Err(starling_proto::StanzaError::new(
                starling_proto::StanzaErrorCondition::NotAllowed,
            ));
        };
        let mut enabled = self.enabled.lock();
        if req.payload.name() == "enable" {
            enabled.insert(origin.id);
        } else {
            enabled.remove(&origin.id);
        }
        Ok(None)
    }
}

#[async_trait]
impl SessionHook for CarbonsModule {
    async fn on_session(&self, _server: &Arc<Server>, session: &Arc<SessionInfo>) {
        self.enabled.lock().remove(&session.id);
    }
}

/// §7: what one resource sends, its carbon-enabled siblings see as `<sent/>`.
struct Sent(Arc<CarbonsModule>);

#[async_trait]
impl StanzaHook for Sent {
    async fn on_stanza(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        if let Some(origin) = &ev.origin {
            let account = ev.from.bare();
            if ev.to.bare() != account && eligible(&ev.stanza) {
                let mut targets = self.0.enabled_sessions(server, &account);
                targets.retain(|s| s.id != origin.id);
                CarbonsModule::copy_to(&targets, &account, &ev.stanza, "sent");
            }
        }
        Flow::Continue
    }
}

/// §6: a message for the account is copied as `<received/>` to the carbon-enabled resources
/// that do not get it directly.
struct Received(Arc<CarbonsModule>);

#[async_trait]
impl StanzaHook for Received {
    async fn on_stanza(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        if !eligible(&ev.stanza) {
            // §8: the receiving server removes the <private/> marker before delivery.
            ev.stanza.remove_child("private", NS_CARBONS);
            return Flow::Continue;
        }
        let account = ev.to.bare();
        if ev.from.bare() == account {
            // To another resource of the sender's own account: no copies (§6, §7).
            return Flow::Continue;
        }
        let mut targets = self.0.enabled_sessions(server, &account);
        if targets.is_empty() {
            return Flow::Continue;
        }
        let all = server.sessions.get_bare(&account);
        let direct: Vec<u64> = match all.iter().find(|s| s.jid == ev.to) {
            Some(s) => vec![s.id],
            // To the bare JID (or a gone resource): RFC 6121 §8.5.2.1.1 hands it to the
            // available resources of highest non-negative priority; the others get copies.
            None => {
                let available: Vec<(i8, u64)> = all
                    .iter()
                    .filter(|s| s.is_available())
                    .map(|s| (s.priority(), s.id))
                    .filter(|(p, _)| *p >= 0)
                    .collect();
                let top = available.iter().map(|(p, _)| *p).max();
                available
                    .into_iter()
                    .filter(|(p, _)| Some(*p) == top)
                    .map(|(_, id)| id)
                    .collect()
            }
        };
        if !direct.is_empty() {
            targets.retain(|s| !direct.contains(&s.id));
            CarbonsModule::copy_to(&targets, &account, &ev.stanza, "received");
        }
        Flow::Continue
    }
}
