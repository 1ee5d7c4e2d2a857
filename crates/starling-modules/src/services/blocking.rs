//! XEP-0191 Blocking Command: the user's blocklist (§3.2 retrieve, §3.3 block, §3.4 unblock,
//! §3.5 unblock all) with pushes to the resources that asked for it, and its enforcement:
//! JIDs match as in §2 / XEP-0016 (full JID, bare JID, domain/resource, domain and its
//! subdomains). Inbound from a blocked entity (§3.3): presence dropped, messages and IQ get/set
//! answered `service-unavailable`, other IQs dropped. Outbound to a blocked entity (§3.3):
//! `not-acceptable` with `<blocked xmlns='urn:xmpp:blocking:errors'/>`. Blocking a contact
//! subscribed to the user's presence sends them unavailable presence; unblocking sends current
//! presence (§3.3, §3.4).
//!
//! Lists live in the map store `blocklist` (key: the normalized JID) and are cached in memory
//! per online account (and per account with a non-empty list), so the hot path reads no
//! database for online users. Cache fills take no lock: a generation counter, bumped by
//! every change, keeps a fill that raced a change from installing an old list.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use starling_core::router::ROUTE_REMOTE;
use starling_core::{
    events, Flow, IqHandler, IqRequest, IqResult, IqTarget, Module, Registrar, Server,
    SessionEvent, SessionHook, SessionInfo, StanzaEvent, StanzaHook,
};
use starling_proto::{error_reply, ErrorType, Jid, StanzaError, StanzaErrorCondition};
use starling_store::{StoreError, Subscription};
use starling_xml::{ns, Element};
use tracing::warn;

use super::util::{account_key, store_error};

pub const NS_BLOCKING: &str = "urn:xmpp:blocking";
pub const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
/// Map store of blocked JIDs (keys; values unused).
pub const STORE: &str = "blocklist";
/// Runs before delivery, offline storage and archiving.
pub const HOOK_PRIORITY: i32 = 100;
/// Most entries one blocklist may hold.
pub const MAX_ITEMS: usize = 10_000;

type List = Arc<HashSet<String>>;

/// The XEP-0191 module.
#[derive(Default)]
pub struct Blocking {
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    cache: RwLock<Cache>,
    /// Serializes list changes (rare), so each starts from the current list.
    writes: tokio::sync::Mutex<()>,
    /// Sessions that retrieved the blocklist and so receive pushes (§3.3).
    interested: Mutex<HashSet<u64>>,
    push_ids: AtomicU64,
}

#[derive(Default)]
struct Cache {
    /// Bare JID → blocked JIDs (normalized strings).
    lists: HashMap<Jid, List>,
    /// Bumped by every list change: a fill that read the store before a change must not
    /// install what it read (it may predate the change).
    generation: u64,
}

impl Module for Blocking {
    fn name(&self) -> &'static str {
        "blocking"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.host_feature(NS_BLOCKING);
        let iq = Arc::new(BlockingIq(self.state.clone()));
        reg.iq(
            false,
            &[IqTarget::OwnAccount],
            "blocklist",
            NS_BLOCKING,
            iq.clone(),
        );
        reg.iq(
            true,
            &[IqTarget::OwnAccount],
            "block",
            NS_BLOCKING,
            iq.clone(),
        );
        reg.iq(true, &[IqTarget::OwnAccount], "unblock", NS_BLOCKING, iq);
        let routed = Arc::new(RoutedHook(self.state.clone()));
        for ev in [
            events::MESSAGE_BARE,
            events::MESSAGE_FULL,
            events::PRESENCE_BARE,
            events::PRESENCE_FULL,
            events::IQ_FULL,
            // IQ get/set to a bare JID, before the handler of its payload answers it (§3.5).
            events::IQ_BARE,
            ROUTE_REMOTE,
        ] {
            reg.hook(ev, HOOK_PRIORITY, routed.clone());
        }
        let outbound = Arc::new(OutboundHook(self.state.clone()));
        for ev in [events::PRE_MESSAGE, events::PRE_PRESENCE, events::PRE_IQ] {
            reg.hook(ev, HOOK_PRIORITY, outbound.clone());
        }
        reg.session_hook(
            SessionEvent::Closed,
            0,
            Arc::new(ForgetSession(self.state.clone())),
        );
    }
}

/// True when an entry of `list` matches `jid` (XEP-0191 §2).
pub fn list_matches(list: &HashSet<String>, jid: &Jid) -> bool {
    if list.is_empty() {
        return false;
    }
    if list.contains(&jid.to_string()) {
        return true;
    }
    if let Some(node) = jid.node() {
        if jid.is_full() && list.contains(&format!("{node}@{}", jid.domain())) {
            return true;
        }
        if let Some(res) = jid.resource() {
            if list.contains(&format!("{}/{res}", jid.domain())) {
                return true;
            }
        }
    }
    // The domain matches itself and every address at it or at a subdomain of it.
    let mut domain = jid.domain();
    loop {
        if list.contains(domain) {
            return true;
        }
        match domain.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => domain = parent,
            _ => return false,
        }
    }
}

impl State {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, bare: &Jid) -> Option<List> {
        self.read().lists.get(bare).cloned()
    }

    /// Installs a changed list (the caller holds `writes` and has stored the change).
    fn install(&self, bare: &Jid, list: List) {
        let mut cache = self.write();
        cache.generation += 1;
        cache.lists.insert(bare.clone(), list);
    }

    /// The blocklist of a local account, from the cache or the store. Fills take no lock
    /// beyond the map's: concurrent misses each read the store, which is harmless.
    async fn list(&self, server: &Arc<Server>, bare: &Jid) -> Result<List, StoreError> {
        if let Some(l) = self.cached(bare) {
            return Ok(l);
        }
        let generation = self.read().generation;
        let list: List = Arc::new(load(server, bare).await?);
        // Cache only what stays bounded: online accounts and real (non-empty) lists. Mail to
        // random addresses must not grow the cache.
        if !list.is_empty() || server.sessions.is_online(bare) {
            let mut cache = self.write();
            if cache.generation == generation {
                cache
                    .lists
                    .entry(bare.clone())
                    .or_insert_with(|| list.clone());
            }
        }
        Ok(list)
    }

    /// Whether `owner` (a local bare JID) blocks `other`. Storage failures fail open: a
    /// database hiccup must not silently swallow everyone's mail.
    async fn blocks(&self, server: &Arc<Server>, owner: &Jid, other: &Jid) -> bool {
        match self.list(server, owner).await {
            Ok(list) => list_matches(&list, other),
            Err(e) => {
                warn!(error = %e, jid = %owner, "cannot read blocklist; not enforcing it");
                false
            }
        }
    }

    fn next_push_id(&self) -> String {
        format!(
            "block-push-{}",
            self.push_ids.fetch_add(1, Ordering::Relaxed) + 1
        )
    }
}

async fn load(server: &Arc<Server>, bare: &Jid) -> Result<HashSet<String>, StoreError> {
    let Some((host, user)) = account_key(bare) else {
        return Ok(HashSet::new());
    };
    let entries = server.store.map_all(host, user, STORE).await?;
    Ok(entries.into_iter().map(|(k, _)| k).collect())
}

/// What a blocker's server still sends to a blocked entity: answers (errors, such as the
/// §3.5 service-unavailable itself, and IQ results) and the end of a subscription (a roster
/// removal's unsubscribe/unsubscribed, RFC 6121 §2.5.2), which reveal nothing new.
fn passes_own_block(stanza: &Element) -> bool {
    match (stanza.name(), stanza.attr("type")) {
        (_, Some("error")) | ("iq", Some("result")) => true,
        ("presence", Some(t)) => matches!(t, "unavailable" | "unsubscribe" | "unsubscribed"),
        _ => false,
    }
}

fn is_local_account(server: &Server, jid: &Jid) -> bool {
    jid.node().is_some() && server.is_local_host(jid.domain())
}

/// Inbound handling for a stanza from an entity the recipient blocked (§3.3).
async fn refuse_inbound(server: &Arc<Server>, stanza: &Element) {
    let answer = match stanza.name() {
        "message" => true,
        "iq" => matches!(stanza.attr("type"), Some("get") | Some("set")),
        _ => false,
    };
    if answer {
        // `bounce` never answers errors, groupchat or headline messages.
        server
            .bounce(
                stanza,
                StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
            )
            .await;
    }
}

/// Routed stanzas: the local recipient blocked the sender (IQs to a bare JID included, before
/// their handler runs), or a local sender blocked the recipient (presence broadcasts, probe
/// answers and other server-generated traffic; not replies, see [`passes_own_block`]).
struct RoutedHook(Arc<State>);

#[async_trait]
impl StanzaHook for RoutedHook {
    async fn on_stanza(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        let to_bare = ev.to.bare();
        let from_bare = ev.from.bare();
        if to_bare == from_bare {
            return Flow::Continue;
        }
        if is_local_account(server, &to_bare) && self.0.blocks(server, &to_bare, &ev.from).await {
            refuse_inbound(server, &ev.stanza).await;
            return Flow::Handled;
        }
        // Going offline is never hidden from anyone (blocking itself sends it), and replies
        // the server makes for the user go out too.
        if is_local_account(server, &from_bare)
            && !passes_own_block(&ev.stanza)
            && self.0.blocks(server, &from_bare, &ev.to).await
        {
            return Flow::Handled;
        }
        Flow::Continue
    }
}

/// Stanzas a local session sends: refused when the user blocked the recipient (§3.3), and IQs
/// to a local bare JID whose owner blocked the sender (answered here, before routing; IQs
/// from other servers are caught on `iq/bare`).
struct OutboundHook(Arc<State>);

#[async_trait]
impl StanzaHook for OutboundHook {
    async fn on_stanza(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        let Some(origin) = ev.origin.clone() else {
            return Flow::Continue;
        };
        let from_bare = ev.from.bare();
        if ev.to.bare() == from_bare || ev.stanza.attr("type") == Some("error") {
            return Flow::Continue;
        }
        let ty = ev.stanza.attr("type");
        let get_set = matches!(ty, Some("get") | Some("set"));
        // Ending a subscription or answering is allowed even to a blocked entity: it only
        // takes away (the same rule as for what the server itself sends).
        if !passes_own_block(&ev.stanza) && self.0.blocks(server, &from_bare, &ev.to).await {
            if ev.stanza.name() != "iq" || get_set {
                let err = StanzaError::new(StanzaErrorCondition::NotAcceptable)
                    .with_type(ErrorType::Cancel);
                let mut reply = error_reply(&ev.stanza, &err);
                if let Some(e) = reply.get_child_mut("error", ev.stanza.ns()) {
                    e.append_child(Element::new("blocked", NS_BLOCKING_ERRORS));
                }
                let _ = origin.send(reply);
            }
            return Flow::Handled;
        }
        if ev.stanza.name() == "iq"
            && get_set
            && ev.to.is_bare()
            && is_local_account(server, &ev.to)
            && self.0.blocks(server, &ev.to, &ev.from).await
        {
            refuse_inbound(server, &ev.stanza).await;
            return Flow::Handled;
        }
        Flow::Continue
    }
}

struct ForgetSession(Arc<State>);

#[async_trait]
impl SessionHook for ForgetSession {
    async fn on_session(&self, server: &Arc<Server>, session: &Arc<SessionInfo>) {
        self.0
            .interested
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session.id);
        let bare = session.jid.bare();
        if !server.sessions.is_online(&bare) {
            self.0.write().lists.remove(&bare);
        }
    }
}

struct BlockingIq(Arc<State>);

#[async_trait]
impl IqHandler for BlockingIq {
    async fn handle_iq(&self, server: &Arc<Server>, req: IqRequest) -> IqResult {
        let bare = req.to.clone();
        match (req.is_set, req.payload.name()) {
            (false, _) => {
                let list = self.0.list(server, &bare).await.map_err(store_error)?;
                if let Some(origin) = &req.origin {
                    self.0
                        .interested
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(origin.id);
                }
                let mut jids: Vec<&String> = list.iter().collect();
                jids.sort();
                Ok(Some(items_element("blocklist", jids)))
            }
            (true, "block") => self.block(server, &bare, &req.payload).await,
            (true, _) => self.unblock(server, &bare, &req.payload).await,
        }
    }
}

fn items_element<'a>(name: &str, jids: impl IntoIterator<Item = &'a String>) -> Element {
    let mut el = Element::new(name, NS_BLOCKING);
    for j in jids {
        el.append_child(Element::new("item", NS_BLOCKING).with_attr("jid", j.as_str()));
    }
    el
}

/// The JIDs of `<item jid='…'/>` children, normalized.
fn parse_items(payload: &Element) -> Result<Vec<Jid>, StanzaError> {
    let mut out = Vec::new();
    for item in payload.children().filter(|c| c.is("item", NS_BLOCKING)) {
        let jid = item
            .attr("jid")
            .and_then(|j| Jid::parse(j).ok())
            .ok_or_else(|| StanzaError::new(StanzaErrorCondition::JidMalformed))?;
        if !out.contains(&jid) {
            out.push(jid);
        }
    }
    Ok(out)
}

impl BlockingIq {
    async fn block(&self, server: &Arc<Server>, bare: &Jid, payload: &Element) -> IqResult {
        let items = parse_items(payload)?;
        if items.is_empty() {
            return Err(StanzaError::new(StanzaErrorCondition::BadRequest)
                .with_text("<block/> needs at least one <item/>"));
        }
        let Some((host, user)) = account_key(bare) else {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        };
        let added: Vec<String> = items.iter().map(Jid::to_string).collect();
        {
            let _guard = self.0.writes.lock().await;
            let mut set = match self.0.cached(bare) {
                Some(l) => (*l).clone(),
                None => load(server, bare).await.map_err(store_error)?,
            };
            let new: Vec<&String> = added.iter().filter(|j| !set.contains(*j)).collect();
            if set.len() + new.len() > MAX_ITEMS {
                return Err(StanzaError::new(StanzaErrorCondition::PolicyViolation)
                    .with_text(format!("a blocklist holds at most {MAX_ITEMS} entries")));
            }
            for j in new {
                server
                    .store
                    .map_set(host, user, STORE, j, Some(""))
                    .await
                    .map_err(store_error)?;
                set.insert(j.clone());
            }
            self.0.install(bare, Arc::new(set));
        }
        self.push(server, bare, items_element("block", &added));
        // §3.3: contacts allowed to see the user's presence now see the user go offline.
        let probe: HashSet<String> = added.iter().cloned().collect();
        for contact in affected_contacts(server, bare, &probe).await {
            for s in server.sessions.get_bare(bare) {
                if s.is_available() {
                    let p = Element::new("presence", ns::CLIENT)
                        .with_attr("from", s.jid.to_string())
                        .with_attr("to", contact.to_string())
                        .with_attr("type", "unavailable");
                    server.route(p).await;
                }
            }
        }
        Ok(None)
    }

    async fn unblock(&self, server: &Arc<Server>, bare: &Jid, payload: &Element) -> IqResult {
        let items = parse_items(payload)?;
        let Some((host, user)) = account_key(bare) else {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        };
        let (removed, remaining) = {
            let _guard = self.0.writes.lock().await;
            let mut set = match self.0.cached(bare) {
                Some(l) => (*l).clone(),
                None => load(server, bare).await.map_err(store_error)?,
            };
            let removed: HashSet<String> = if items.is_empty() {
                server
                    .store
                    .map_clear(host, user, STORE)
                    .await
                    .map_err(store_error)?;
                std::mem::take(&mut set)
            } else {
                let mut removed = HashSet::new();
                for j in items.iter().map(Jid::to_string) {
                    if set.remove(&j) {
                        server
                            .store
                            .map_set(host, user, STORE, &j, None)
                            .await
                            .map_err(store_error)?;
                        removed.insert(j);
                    }
                }
                removed
            };
            let set = Arc::new(set);
            self.0.install(bare, set.clone());
            (removed, set)
        };
        let push_items: Vec<String> = items.iter().map(Jid::to_string).collect();
        self.push(server, bare, items_element("unblock", &push_items));
        // §3.4: contacts allowed to see the user's presence get it again, unless another
        // entry still blocks them.
        for contact in affected_contacts(server, bare, &removed).await {
            if list_matches(&remaining, &contact) {
                continue;
            }
            for s in server.sessions.get_bare(bare) {
                let last = {
                    let p = s.presence.lock();
                    if p.available {
                        p.last.clone()
                    } else {
                        None
                    }
                };
                if let Some(mut p) = last {
                    p.set_attr("from", s.jid.to_string());
                    p.set_attr("to", contact.to_string());
                    p.remove_attr("id");
                    server.route(p).await;
                }
            }
        }
        Ok(None)
    }

    /// Sends a block/unblock push to the user's resources that retrieved the list (§3.3).
    fn push(&self, server: &Arc<Server>, bare: &Jid, payload: Element) {
        let interested = self
            .0
            .interested
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for s in server.sessions.get_bare(bare) {
            if !interested.contains(&s.id) {
                continue;
            }
            let iq = Element::new("iq", ns::CLIENT)
                .with_attr("type", "set")
                .with_attr("id", self.0.next_push_id())
                .with_attr("from", bare.to_string())
                .with_attr("to", s.jid.to_string())
                .with_child(payload.clone());
            let _ = s.send(iq);
        }
    }
}

/// Addresses to notify about a (un)block of `entries`: roster contacts subscribed to the
/// user's presence (`from`/`both`) that an entry matches, and full-JID entries of such
/// contacts. Nothing when the user has no available resource to report on.
async fn affected_contacts(
    server: &Arc<Server>,
    bare: &Jid,
    entries: &HashSet<String>,
) -> Vec<Jid> {
    if entries.is_empty()
        || !server
            .sessions
            .get_bare(bare)
            .iter()
            .any(|s| s.is_available())
    {
        return Vec::new();
    }
    let Some((host, user)) = account_key(bare) else {
        return Vec::new();
    };
    let roster = match server.store.roster_snapshot(host, user).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, jid = %bare, "cannot read roster for blocking presence");
            return Vec::new();
        }
    };
    let subscribed: Vec<Jid> = roster
        .items
        .iter()
        .filter(|i| matches!(i.subscription, Subscription::From | Subscription::Both))
        .filter_map(|i| Jid::parse(&i.jid).ok())
        .collect();
    let mut out = Vec::new();
    for contact in &subscribed {
        if list_matches(entries, contact) {
            out.push(contact.clone());
        }
    }
    for entry in entries.iter().filter_map(|e| Jid::parse(e).ok()) {
        if entry.is_full() && subscribed.contains(&entry.bare()) {
            out.push(entry);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn jid(s: &str) -> Jid {
        Jid::parse(s).expect("test JID")
    }

    #[test]
    fn matching_follows_section_2() {
        let full = set(&["romeo@montague.lit/orchard"]);
        assert!(list_matches(&full, &jid("romeo@montague.lit/orchard")));
        assert!(!list_matches(&full, &jid("romeo@montague.lit/garden")));
        assert!(!list_matches(&full, &jid("romeo@montague.lit")));

        let bare = set(&["romeo@montague.lit"]);
        assert!(list_matches(&bare, &jid("romeo@montague.lit/orchard")));
        assert!(list_matches(&bare, &jid("romeo@montague.lit")));
        assert!(!list_matches(&bare, &jid("benvolio@montague.lit")));

        let dres = set(&["montague.lit/bot"]);
        assert!(list_matches(&dres, &jid("montague.lit/bot")));
        assert!(list_matches(&dres, &jid("romeo@montague.lit/bot")));
        assert!(!list_matches(&dres, &jid("montague.lit")));

        let domain = set(&["montague.lit"]);
        assert!(list_matches(&domain, &jid("montague.lit")));
        assert!(list_matches(&domain, &jid("romeo@montague.lit/orchard")));
        assert!(list_matches(&domain, &jid("chat.montague.lit")));
        assert!(list_matches(&domain, &jid("room@chat.montague.lit/nick")));
        assert!(!list_matches(&domain, &jid("capulet.lit")));
        assert!(!list_matches(&domain, &jid("notmontague.lit")));

        assert!(!list_matches(&set(&[]), &jid("anyone@anywhere.lit")));
    }
}
