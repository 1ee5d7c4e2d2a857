//! The module interface and hook bus. The core fires named events derived from a stanza's
//! kind and addressing (Prosody's model: `message/bare`, `presence/full`, `pre-message`…);
//! modules register handlers with a priority, and IQ handlers keyed by payload. The core
//! never names an XEP: everything a feature needs, it registers here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use starling_proto::{Jid, StanzaError};
use starling_xml::Element;

use crate::registry::SessionInfo;
use crate::Server;

/// Event names the core fires. Modules may fire and hook their own names too.
pub mod events {
    /// A stanza a local session sent, before routing (`from` already stamped).
    pub const PRE_MESSAGE: &str = "pre-message";
    pub const PRE_PRESENCE: &str = "pre-presence";
    pub const PRE_IQ: &str = "pre-iq";
    /// Stanzas addressed to a local account's bare JID.
    pub const MESSAGE_BARE: &str = "message/bare";
    pub const PRESENCE_BARE: &str = "presence/bare";
    /// Stanzas addressed to a local full JID.
    pub const MESSAGE_FULL: &str = "message/full";
    pub const PRESENCE_FULL: &str = "presence/full";
    pub const IQ_FULL: &str = "iq/full";
    /// An IQ get/set to a local account's bare JID, before the module owning its payload
    /// answers it (a filter such as blocking can refuse it first).
    pub const IQ_BARE: &str = "iq/bare";
    /// Stanzas addressed to a local domain itself.
    pub const MESSAGE_HOST: &str = "message/host";
    pub const PRESENCE_HOST: &str = "presence/host";
}

/// Whether a handler took the stanza (stop the chain) or passes it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Handled,
}

/// A stanza travelling through the hook chain.
pub struct StanzaEvent {
    pub stanza: Element,
    /// The validated sender (a local session's full JID, or a remote entity).
    pub from: Jid,
    /// The validated recipient (for `pre-*` events with no `to`: the sender's bare JID).
    pub to: Jid,
    /// The local session that sent it, when there is one.
    pub origin: Option<Arc<SessionInfo>>,
}

#[async_trait]
pub trait StanzaHook: Send + Sync + 'static {
    async fn on_stanza(&self, server: &Arc<Server>, event: &mut StanzaEvent) -> Flow;
}

/// Session lifecycle: bound (resource bound, not yet available) and closed (gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEvent {
    Bound,
    Closed,
}

#[async_trait]
pub trait SessionHook: Send + Sync + 'static {
    async fn on_session(&self, server: &Arc<Server>, session: &Arc<SessionInfo>);
}

/// Account lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountEvent {
    /// The account is about to be deleted; its data is still there (so modules can, e.g.,
    /// tell its contacts it is gone).
    Removing,
}

#[async_trait]
pub trait AccountHook: Send + Sync + 'static {
    async fn on_account(&self, server: &Arc<Server>, account: &Jid);
}

/// Who an IQ get/set is addressed to, as seen from its sender (RFC 6120 §10.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqTarget {
    /// A local domain (`to='example.com'`).
    Host,
    /// The sender's own account (no `to`, or `to` = own bare JID).
    OwnAccount,
    /// Another local account's bare JID, answered by the server on its behalf.
    OtherAccount,
}

/// An IQ get/set for a module to answer.
pub struct IqRequest {
    /// The IQ's addresses, id and type (its payload is moved to `payload`).
    pub stanza: Element,
    /// The one child element the IQ carries (RFC 6120 §8.2.3).
    pub payload: Element,
    pub is_set: bool,
    pub from: Jid,
    /// The addressed entity, resolved: own bare JID for [`IqTarget::OwnAccount`].
    pub to: Jid,
    pub target: IqTarget,
    pub origin: Option<Arc<SessionInfo>>,
}

/// The answer to an IQ: a result payload (or an empty result), or a stanza error.
pub type IqResult = Result<Option<Element>, StanzaError>;

#[async_trait]
pub trait IqHandler: Send + Sync + 'static {
    async fn handle_iq(&self, server: &Arc<Server>, req: IqRequest) -> IqResult;
}

/// An IQ received before authentication (XEP-0077 registration is the one use).
pub struct PreAuthIq {
    pub stanza: Element,
    pub host: String,
    pub peer: Option<SocketAddr>,
    pub secure: bool,
}

#[async_trait]
pub trait PreAuthIqHandler: Send + Sync + 'static {
    async fn handle_pre_auth_iq(&self, server: &Arc<Server>, req: PreAuthIq) -> IqResult;
}

/// When a stream feature is offered (RFC 6120 §4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureStage {
    /// Before authentication (e.g. in-band registration).
    PreAuth,
    /// After authentication, beside resource binding (e.g. roster versioning).
    PostAuth,
}

/// A feature module: registers everything it does on the [`Registrar`] once at start.
pub trait Module: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn register(self: Arc<Self>, reg: &mut Registrar);
}

/// Disco identity (XEP-0030 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Identity {
    pub category: String,
    pub kind: String,
    pub name: Option<String>,
}

/// What modules advertise in service discovery; the disco module answers from it.
#[derive(Debug, Default, Clone)]
pub struct DiscoRegistry {
    pub host_identities: Vec<Identity>,
    pub host_features: Vec<String>,
    pub account_identities: Vec<Identity>,
    pub account_features: Vec<String>,
    /// Extended info forms (XEP-0128) on the server: full `<x xmlns='jabber:x:data'>` elements.
    pub host_extensions: Vec<Element>,
}

type IqKey = (bool, IqTarget, String, String);
type SessionHookEntry = (i32, Arc<dyn SessionHook>);
type AccountHookEntry = (i32, Arc<dyn AccountHook>);

struct HookEntry {
    priority: i32,
    hook: Arc<dyn StanzaHook>,
}

/// Everything modules registered; immutable once the server starts.
#[derive(Default)]
pub struct HookBus {
    hooks: HashMap<String, Vec<HookEntry>>,
    iq: HashMap<IqKey, Arc<dyn IqHandler>>,
    pre_auth_iq: HashMap<String, Arc<dyn PreAuthIqHandler>>,
    session: HashMap<SessionEvent, Vec<SessionHookEntry>>,
    account: HashMap<AccountEvent, Vec<AccountHookEntry>>,
    features: Vec<(FeatureStage, Element)>,
    pub modules: Vec<&'static str>,
}

impl HookBus {
    /// Runs the chain for `event` in priority order (higher first) until one handles it.
    pub async fn fire(&self, name: &str, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        if let Some(chain) = self.hooks.get(name) {
            for entry in chain {
                if entry.hook.on_stanza(server, ev).await == Flow::Handled {
                    return Flow::Handled;
                }
            }
        }
        Flow::Continue
    }

    pub fn has_hooks(&self, name: &str) -> bool {
        self.hooks.contains_key(name)
    }

    pub async fn fire_session(
        &self,
        event: SessionEvent,
        server: &Arc<Server>,
        session: &Arc<SessionInfo>,
    ) {
        if let Some(list) = self.session.get(&event) {
            for (_, h) in list {
                h.on_session(server, session).await;
            }
        }
    }

    pub async fn fire_account(&self, event: AccountEvent, server: &Arc<Server>, account: &Jid) {
        if let Some(list) = self.account.get(&event) {
            for (_, h) in list {
                h.on_account(server, account).await;
            }
        }
    }

    pub fn iq_handler(
        &self,
        is_set: bool,
        target: IqTarget,
        payload: &Element,
    ) -> Option<Arc<dyn IqHandler>> {
        self.iq
            .get(&(
                is_set,
                target,
                payload.ns().to_string(),
                payload.name().to_string(),
            ))
            .cloned()
    }

    pub fn pre_auth_iq_handler(&self, ns: &str) -> Option<Arc<dyn PreAuthIqHandler>> {
        self.pre_auth_iq.get(ns).cloned()
    }

    pub fn features(&self, stage: FeatureStage) -> impl Iterator<Item = &Element> {
        self.features
            .iter()
            .filter(move |(s, _)| *s == stage)
            .map(|(_, e)| e)
    }
}

/// Handed to each module's `register`.
#[derive(Default)]
pub struct Registrar {
    pub(crate) bus: HookBus,
    pub(crate) disco: DiscoRegistry,
    pub(crate) config: Arc<crate::Config>,
}

impl Registrar {
    /// The configuration the server is built with, for modules whose offers depend on it
    /// (e.g. the in-band registration stream feature only when registration is enabled).
    pub fn config(&self) -> &crate::Config {
        &self.config
    }

    pub fn hook(&mut self, event: &str, priority: i32, hook: Arc<dyn StanzaHook>) {
        let chain = self.bus.hooks.entry(event.to_string()).or_default();
        chain.push(HookEntry { priority, hook });
        chain.sort_by_key(|e| std::cmp::Reverse(e.priority));
    }

    /// Answers IQs of this type whose payload is `<name xmlns=ns>` sent to these targets.
    pub fn iq(
        &mut self,
        is_set: bool,
        targets: &[IqTarget],
        name: &str,
        ns: &str,
        handler: Arc<dyn IqHandler>,
    ) {
        for t in targets {
            self.bus.iq.insert(
                (is_set, *t, ns.to_string(), name.to_string()),
                handler.clone(),
            );
        }
    }

    /// Answers get and set alike.
    pub fn iq_get_set(
        &mut self,
        targets: &[IqTarget],
        name: &str,
        ns: &str,
        handler: Arc<dyn IqHandler>,
    ) {
        self.iq(false, targets, name, ns, handler.clone());
        self.iq(true, targets, name, ns, handler);
    }

    pub fn pre_auth_iq(&mut self, ns: &str, handler: Arc<dyn PreAuthIqHandler>) {
        self.bus.pre_auth_iq.insert(ns.to_string(), handler);
    }

    pub fn session_hook(&mut self, event: SessionEvent, priority: i32, hook: Arc<dyn SessionHook>) {
        let list = self.bus.session.entry(event).or_default();
        list.push((priority, hook));
        list.sort_by_key(|e| std::cmp::Reverse(e.0));
    }

    pub fn account_hook(&mut self, event: AccountEvent, priority: i32, hook: Arc<dyn AccountHook>) {
        let list = self.bus.account.entry(event).or_default();
        list.push((priority, hook));
        list.sort_by_key(|e| std::cmp::Reverse(e.0));
    }

    pub fn stream_feature(&mut self, stage: FeatureStage, feature: Element) {
        self.bus.features.push((stage, feature));
    }

    pub fn host_feature(&mut self, var: &str) {
        if !self.disco.host_features.iter().any(|f| f == var) {
            self.disco.host_features.push(var.to_string());
        }
    }

    pub fn account_feature(&mut self, var: &str) {
        if !self.disco.account_features.iter().any(|f| f == var) {
            self.disco.account_features.push(var.to_string());
        }
    }

    pub fn host_identity(&mut self, category: &str, kind: &str, name: Option<&str>) {
        self.disco.host_identities.push(Identity {
            category: category.into(),
            kind: kind.into(),
            name: name.map(Into::into),
        });
    }

    pub fn account_identity(&mut self, category: &str, kind: &str, name: Option<&str>) {
        self.disco.account_identities.push(Identity {
            category: category.into(),
            kind: kind.into(),
            name: name.map(Into::into),
        });
    }

    /// What has been advertised so far (a module registered last, such as entity
    /// capabilities, can hash the complete set).
    pub fn disco(&self) -> &DiscoRegistry {
        &self.disco
    }

    pub fn host_extension(&mut self, form: Element) {
        self.disco.host_extensions.push(form);
    }
}
