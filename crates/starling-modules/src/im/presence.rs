//! Presence (RFC 6121 §4): initial presence with probes (§4.2, §4.3.1), subsequent presence
//! broadcast (§4.4), unavailable presence and session end (§4.5), directed presence (§4.6),
//! inbound presence and probe answers (§4.3.2, §4.4.3, §8.5.2.1.2, §8.5.3), and the routing
//! of subscription stanzas to the state machine in `subscription.rs` (§3).
//!
//! Hooks: `pre-presence` for what a local client sends, `presence/bare` and `presence/full`
//! for presence to a local account; the session-closed hook ends a vanished session's
//! presence. After an initial presence it fires [`super::EVENT_INITIAL_PRESENCE`], and when
//! an available resource's priority goes from negative to non-negative,
//! [`super::EVENT_PRIORITY_RAISED`].

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use starling_core::{
    events, AccountEvent, AccountHook, Flow, Module, Registrar, Server, SessionEvent, SessionHook,
    SessionInfo, StanzaEvent, StanzaHook,
};
use starling_proto::Jid;
use starling_store::RosterSnapshot;
use starling_xml::{ns, Element};
use tracing::warn;

use super::subscription::{self, has_from, has_to, Kind};
use super::{
    account_exists, account_of, available_sessions, deliver_to_available, presence,
    send_current_presence, AccountLocks, EVENT_INITIAL_PRESENCE, EVENT_PRIORITY_RAISED,
    PRIORITY_DELIVERY,
};

pub struct PresenceModule {
    locks: Arc<AccountLocks>,
}

impl PresenceModule {
    pub(crate) fn new(locks: Arc<AccountLocks>) -> Self {
        PresenceModule { locks }
    }
}

/// Which event a hook instance serves.
#[derive(Clone, Copy)]
enum Which {
    Outbound,
    ToBare,
    ToFull,
}

struct Hook {
    module: Arc<PresenceModule>,
    which: Which,
}

impl Module for PresenceModule {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        for (event, which) in [
            (events::PRE_PRESENCE, Which::Outbound),
            (events::PRESENCE_BARE, Which::ToBare),
            (events::PRESENCE_FULL, Which::ToFull),
        ] {
            let hook = Arc::new(Hook {
                module: self.clone(),
                which,
            });
            reg.hook(event, PRIORITY_DELIVERY, hook);
        }
        reg.session_hook(SessionEvent::Closed, PRIORITY_DELIVERY, self);
        reg.account_hook(
            AccountEvent::Removing,
            PRIORITY_DELIVERY,
            Arc::new(AccountGone),
        );
    }
}

/// An account being deleted (XEP-0077 §3.2, `ctl unregister`), while its roster still
/// exists: each of its resources goes unavailable, and its subscriptions are cancelled both
/// ways, so contacts neither keep showing it online nor keep a subscription to nothing.
struct AccountGone;

#[async_trait]
impl AccountHook for AccountGone {
    async fn on_account(&self, server: &Arc<Server>, account: &Jid) {
        for session in server.sessions.get_bare(account) {
            let unavailable = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable");
            go_unavailable(server, &session, unavailable, false).await;
        }
        for item in &roster_of(server, account).await.items {
            let Ok(contact) = Jid::parse(&item.jid) else {
                continue;
            };
            if has_to(item.subscription) || item.ask_out {
                server
                    .route(presence(account, &contact, Some("unsubscribe")))
                    .await;
            }
            if has_from(item.subscription) {
                server
                    .route(presence(account, &contact, Some("unsubscribed")))
                    .await;
            }
        }
    }
}

#[async_trait]
impl StanzaHook for Hook {
    async fn on_stanza(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        match self.which {
            Which::Outbound => self.module.outbound(server, ev).await,
            Which::ToBare => self.module.inbound(server, ev).await,
            Which::ToFull => self.module.inbound_full(server, ev).await,
        }
    }
}

#[async_trait]
impl SessionHook for PresenceModule {
    /// §4.5: a session that ends without unavailable presence is made unavailable for it.
    async fn on_session(&self, server: &Arc<Server>, session: &Arc<SessionInfo>) {
        // Replaced by a newer session on the same full JID (RFC 6120 §7.7.2.2) that is
        // already available: its presence stands, an unavailable now would contradict it.
        if let Some(current) = server.sessions.get_full(&session.jid) {
            if !Arc::ptr_eq(&current, session) && current.is_available() {
                session.presence.lock().available = false;
                return;
            }
        }
        let unavailable = Element::new("presence", ns::CLIENT)
            .with_attr("from", session.jid.to_string())
            .with_attr("type", "unavailable");
        go_unavailable(server, session, unavailable, false).await;
    }
}

impl PresenceModule {
    /// Presence from a local client.
    async fn outbound(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        let Some(session) = ev.origin.clone() else {
            return Flow::Continue;
        };
        let ty = ev.stanza.attr("type").map(str::to_string);
        let broadcast = ev.stanza.attr("to").is_none();
        match ty.as_deref() {
            None if broadcast => {
                go_available(server, &session, ev.stanza.clone()).await;
                Flow::Handled
            }
            Some("unavailable") if broadcast => {
                go_unavailable(server, &session, ev.stanza.clone(), true).await;
                Flow::Handled
            }
            None | Some("unavailable") => {
                directed(server, &session, &ev.to, ty.is_none()).await;
                Flow::Continue
            }
            Some(t) => match Kind::parse(t) {
                // A subscription stanza needs a contact; one without 'to' means nothing.
                Some(_) if broadcast => Flow::Handled,
                Some(kind) => {
                    let stanza = ev.stanza.clone();
                    subscription::outbound(server, &self.locks, &session, &ev.to, kind, stanza)
                        .await;
                    Flow::Handled
                }
                // Probes and errors are routed as they are.
                None => Flow::Continue,
            },
        }
    }

    /// Presence to a local bare JID.
    async fn inbound(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        let account = ev.to.bare();
        let ty = ev.stanza.attr("type").map(str::to_string);
        let kind = ty.as_deref().and_then(Kind::parse);
        let probe = ty.as_deref() == Some("probe");
        if kind.is_some() || probe {
            if !account_exists(server, &account).await {
                // §3.1.3 / §4.3.2: there is nobody to subscribe to or to probe; saying so
                // lets the sender's server clean up its roster.
                if matches!(kind, Some(Kind::Subscribe)) || probe {
                    server
                        .route(presence(&account, &ev.from.bare(), Some("unsubscribed")))
                        .await;
                }
                return Flow::Handled;
            }
            if probe {
                answer_probe(server, &account, &ev.from).await;
            } else if let Some(kind) = kind {
                let stanza = ev.stanza.clone();
                subscription::inbound(server, &self.locks, &account, &ev.from, kind, stanza).await;
            }
            return Flow::Handled;
        }
        // Available, unavailable and errors: every available resource (§8.5.2.1.2); with
        // none, the stanza is dropped (presence is never bounced).
        deliver_to_available(server, &account, &ev.stanza);
        Flow::Handled
    }

    /// Presence to a local full JID (§8.5.3).
    async fn inbound_full(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        let ty = ev.stanza.attr("type");
        if ty.is_some_and(|t| t == "probe" || Kind::parse(t).is_some()) {
            // Subscriptions and probes concern the account (§3.1.3, §4.3.2).
            return self.inbound(server, ev).await;
        }
        if let Some(s) = server.sessions.get_full(&ev.to) {
            let _ = s.send(ev.stanza.clone());
        }
        Flow::Handled
    }
}

/// The account's roster (shared with the store's cache, not copied), or an empty one
/// (logged) when the store fails: presence is best-effort and must not take the session
/// down.
async fn roster_of(server: &Server, account: &Jid) -> Arc<RosterSnapshot> {
    let Some((host, user)) = account_of(account) else {
        return Arc::default();
    };
    match server.store.roster_snapshot(host, user).await {
        Ok(r) => r,
        Err(e) => {
            warn!(%account, error = %e, "roster unreadable; presence not broadcast");
            Arc::default()
        }
    }
}

/// `<priority/>` (§4.7.2.3): an integer from -128 to 127, 0 when absent or unreadable.
fn priority_of(stanza: &Element) -> i8 {
    stanza
        .child_text("priority", ns::CLIENT)
        .and_then(|p| p.trim().parse::<i64>().ok())
        .map_or(0, |p| p.clamp(i8::MIN as i64, i8::MAX as i64) as i8)
}

/// Initial (§4.2.2) or subsequent (§4.4.2) available presence.
async fn go_available(server: &Arc<Server>, session: &Arc<SessionInfo>, mut stanza: Element) {
    let account = session.jid.bare();
    stanza.remove_attr("to");
    stanza.set_attr("from", session.jid.to_string());
    // Read and written under one lock, so exactly one presence sees each transition.
    let (initial, raised) = {
        let mut p = session.presence.lock();
        let initial = !p.available;
        let priority = priority_of(&stanza);
        let raised = !initial && p.priority < 0 && priority >= 0;
        p.available = true;
        p.priority = priority;
        p.last = Some(stanza.clone());
        (initial, raised)
    };
    let roster = roster_of(server, &account).await;
    let own = account.to_string();
    for item in &roster.items {
        if has_from(item.subscription) && item.jid != own {
            route_copy(server, &stanza, &item.jid).await;
        }
    }
    // The user's own available resources, the sender included (§4.2.2, §4.4.2).
    for s in available_sessions(server, &account) {
        let mut copy = stanza.clone();
        copy.set_attr("to", s.jid.to_string());
        let _ = s.send(copy);
    }
    if !initial {
        if raised {
            // Messages to the bare JID now reach this resource, those stored included.
            fire(server, EVENT_PRIORITY_RAISED, session, stanza, account).await;
        }
        return;
    }
    // §4.3.1: learn the current presence of every contact we are subscribed to.
    for item in &roster.items {
        if has_to(item.subscription) && item.jid != own {
            if let Ok(contact) = Jid::parse(&item.jid) {
                server
                    .route(presence(&session.jid, &contact, Some("probe")))
                    .await;
            }
        }
    }
    // The new resource learns about the account's other available resources.
    for other in available_sessions(server, &account) {
        if Arc::ptr_eq(&other, session) {
            continue;
        }
        if let Some(mut last) = other.presence.lock().last.clone() {
            last.set_attr("to", session.jid.to_string());
            let _ = session.send(last);
        }
    }
    subscription::deliver_pending(server, session).await;
    fire(server, EVENT_INITIAL_PRESENCE, session, stanza, account).await;
}

/// Fires one of the presence module's own events for a session's available presence.
async fn fire(
    server: &Arc<Server>,
    event: &str,
    session: &Arc<SessionInfo>,
    stanza: Element,
    account: Jid,
) {
    let mut ev = StanzaEvent {
        stanza,
        from: session.jid.clone(),
        to: account,
        origin: Some(session.clone()),
    };
    server.hooks.fire(event, server, &mut ev).await;
}

/// §4.5.2: unavailable to subscribers (when the session was available), to every entity
/// that got directed presence, and to the user's own available resources (`echo`: the
/// sender too, when it is still connected).
async fn go_unavailable(
    server: &Arc<Server>,
    session: &Arc<SessionInfo>,
    mut stanza: Element,
    echo: bool,
) {
    let account = session.jid.bare();
    stanza.remove_attr("to");
    stanza.set_attr("from", session.jid.to_string());
    let (was_available, directed) = {
        let mut p = session.presence.lock();
        let was = p.available;
        p.available = false;
        p.last = None;
        (was, std::mem::take(&mut p.directed))
    };
    let mut targets: BTreeSet<String> = directed.iter().map(Jid::to_string).collect();
    if was_available {
        let own = account.to_string();
        for item in &roster_of(server, &account).await.items {
            if has_from(item.subscription) && item.jid != own {
                targets.insert(item.jid.clone());
            }
        }
    }
    for t in &targets {
        route_copy(server, &stanza, t).await;
    }
    if was_available {
        for s in available_sessions(server, &account) {
            let mut copy = stanza.clone();
            copy.set_attr("to", s.jid.to_string());
            let _ = s.send(copy);
        }
    }
    if echo && was_available {
        let mut copy = stanza;
        copy.set_attr("to", session.jid.to_string());
        let _ = session.send(copy);
    }
}

/// §4.6.2: remember who got directed available presence (unless it is a subscriber, who
/// hears about us anyway), forget on directed unavailable. The router delivers it.
async fn directed(server: &Arc<Server>, session: &Arc<SessionInfo>, to: &Jid, available: bool) {
    let account = session.jid.bare();
    if to.bare() == account {
        return;
    }
    if !available {
        session.presence.lock().directed.remove(to);
        return;
    }
    let subscriber = match account_of(&account) {
        Some((host, user)) => server
            .store
            .roster_item(host, user, &to.bare().to_string())
            .await
            .ok()
            .flatten()
            .is_some_and(|i| has_from(i.subscription)),
        None => false,
    };
    if !subscriber {
        session.presence.lock().directed.insert(to.clone());
    }
}

/// §4.3.2: a subscriber gets the last presence of each available resource, or unavailable
/// when there is none; anyone else gets `unsubscribed` (which never cancels a
/// pre-approval on the prober's side).
async fn answer_probe(server: &Arc<Server>, account: &Jid, prober: &Jid) {
    let subscribed = match account_of(account) {
        Some((host, user)) => match server
            .store
            .roster_item(host, user, &prober.bare().to_string())
            .await
        {
            Ok(item) => item.is_some_and(|i| has_from(i.subscription)),
            Err(e) => {
                // Unknown: say nothing rather than cancel a subscription by mistake.
                warn!(%account, error = %e, "roster unreadable; probe ignored");
                return;
            }
        },
        None => false,
    };
    if !subscribed {
        server
            .route(presence(account, &prober.bare(), Some("unsubscribed")))
            .await;
        return;
    }
    if send_current_presence(server, account, prober).await == 0 {
        server
            .route(presence(account, prober, Some("unavailable")))
            .await;
    }
}

/// Routes a copy of a broadcast presence to one contact.
async fn route_copy(server: &Arc<Server>, stanza: &Element, to: &str) {
    let mut copy = stanza.clone();
    copy.set_attr("to", to);
    server.route(copy).await;
}
