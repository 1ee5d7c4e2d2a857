//! Roster management (RFC 6121 §2): roster get (§2.2) with versioning (XEP-0237 §4), roster
//! set to add or update an item (§2.3, errors of §2.3.3), item removal with the subscription
//! cancellations of §2.5.2, and roster pushes to interested resources (§2.1.6). The stream
//! features `rosterver` (XEP-0237 §3) and `pre-approval` (RFC 6121 §3.4) are advertised here.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use starling_core::{
    FeatureStage, IqHandler, IqRequest, IqResult, IqTarget, Module, Registrar, Server,
};
use starling_proto::{Jid, StanzaError, StanzaErrorCondition};
use starling_store::{RosterItem, StoreError, Subscription};
use starling_xml::{ns, Element};

use super::subscription::{has_from, has_to};
use super::{account_of, announce_unavailable, presence, AccountLocks, NS_ROSTER};

/// Longest item name or group name we keep (RFC 6121 §2.3.3 lets the server set a limit).
const MAX_NAME_BYTES: usize = 1023;
/// Most groups one item may carry.
const MAX_GROUPS: usize = 64;

pub struct RosterModule {
    locks: Arc<AccountLocks>,
}

impl RosterModule {
    pub(crate) fn new(locks: Arc<AccountLocks>) -> Self {
        RosterModule { locks }
    }
}

impl Module for RosterModule {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        // Another account's roster is answered too, with <forbidden/> (RFC 6121 §2.1.5).
        reg.iq_get_set(
            &[IqTarget::OwnAccount, IqTarget::OtherAccount],
            "query",
            NS_ROSTER,
            self,
        );
        reg.stream_feature(
            FeatureStage::PostAuth,
            Element::new("ver", "urn:xmpp:features:rosterver"),
        );
        reg.stream_feature(
            FeatureStage::PostAuth,
            Element::new("sub", "urn:xmpp:features:pre-approval"),
        );
    }
}

#[async_trait]
impl IqHandler for RosterModule {
    async fn handle_iq(&self, server: &Arc<Server>, req: IqRequest) -> IqResult {
        if req.target != IqTarget::OwnAccount {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        }
        let account = req.to.bare();
        if account_of(&account).is_none() {
            return Err(StanzaError::new(StanzaErrorCondition::BadRequest));
        }
        if req.is_set {
            self.set(server, &account, &req.payload).await
        } else {
            get(server, &account, &req).await
        }
    }
}

/// §2.2 roster get; XEP-0237 §4: an unchanged version gets an empty result.
async fn get(server: &Arc<Server>, account: &Jid, req: &IqRequest) -> IqResult {
    let (host, user) = account_of(account).ok_or(StanzaErrorCondition::BadRequest)?;
    if req.payload.children().next().is_some() {
        return Err(StanzaError::new(StanzaErrorCondition::BadRequest)
            .with_text("a roster get carries no items"));
    }
    // Mark first: a change made while we read is then pushed, never missed (§2.1.6).
    if let Some(s) = &req.origin {
        s.presence.lock().interested = true;
    }
    let roster = server
        .store
        .roster_snapshot(host, user)
        .await
        .map_err(internal)?;
    let (ver, items) = (roster.version, &roster.items);
    let client_ver = req.payload.attr("ver");
    if client_ver == Some(ver.to_string().as_str()) {
        return Ok(None);
    }
    let mut query = Element::new("query", NS_ROSTER);
    if client_ver.is_some() {
        query.set_attr("ver", ver.to_string());
    }
    for item in items {
        query.append_child(item_element(item));
    }
    Ok(Some(query))
}

impl RosterModule {
    /// §2.3 add/update and §2.5 delete.
    async fn set(&self, server: &Arc<Server>, account: &Jid, query: &Element) -> IqResult {
        let mut items = query.children().filter(|c| c.is("item", NS_ROSTER));
        let (Some(item), None) = (items.next(), items.next()) else {
            return Err(StanzaError::new(StanzaErrorCondition::BadRequest)
                .with_text("a roster set carries exactly one item"));
        };
        let contact = item_jid(item)?;
        if item.attr("subscription") == Some("remove") {
            return self.remove(server, account, &contact).await;
        }
        // The client never sets 'subscription' or 'ask' (§2.1.2.5, §2.3.2): ignored.
        let name = match item.attr("name") {
            Some(n) if n.len() > MAX_NAME_BYTES => {
                return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)
                    .with_text("name too long"))
            }
            Some("") | None => None,
            Some(n) => Some(n.to_string()),
        };
        let groups = item_groups(item)?;
        let (host, user) = account_of(account).ok_or(StanzaErrorCondition::BadRequest)?;
        let guard = self.locks.lock(account).await;
        let existing = server
            .store
            .roster_item(host, user, &contact.to_string())
            .await
            .map_err(internal)?;
        let new = match existing {
            Some(old) => RosterItem {
                name,
                groups,
                ..old
            },
            None => RosterItem {
                jid: contact.to_string(),
                name,
                subscription: Subscription::None,
                ask_out: false,
                approved: false,
                groups,
            },
        };
        let ver = server
            .store
            .put_roster_item(host, user, &new)
            .await
            .map_err(internal)?;
        push(server, account, ver, item_element(&new));
        drop(guard);
        Ok(None)
    }

    /// §2.5.2: removing an item cancels both subscription directions and pending requests.
    async fn remove(&self, server: &Arc<Server>, account: &Jid, contact: &Jid) -> IqResult {
        let (host, user) = account_of(account).ok_or(StanzaErrorCondition::BadRequest)?;
        let key = contact.to_string();
        let guard = self.locks.lock(account).await;
        let existing = server
            .store
            .roster_item(host, user, &key)
            .await
            .map_err(internal)?;
        let pending_in = server
            .store
            .remove_pending_in(host, user, &key)
            .await
            .map_err(internal)?;
        let Some(old) = existing else {
            drop(guard);
            if pending_in {
                // No item, but a request waiting: removing it declines the request.
                server
                    .route(presence(account, contact, Some("unsubscribed")))
                    .await;
                return Ok(None);
            }
            return Err(StanzaError::new(StanzaErrorCondition::ItemNotFound));
        };
        let ver = server
            .store
            .remove_roster_item(host, user, &key)
            .await
            .map_err(internal)?;
        let removed = Element::new("item", NS_ROSTER)
            .with_attr("jid", key.as_str())
            .with_attr("subscription", "remove");
        push(server, account, ver, removed);
        drop(guard);

        if has_to(old.subscription) || old.ask_out {
            server
                .route(presence(account, contact, Some("unsubscribe")))
                .await;
        }
        if has_from(old.subscription) {
            // The contact stops seeing us: tell it each resource is gone (§3.2.2).
            announce_unavailable(server, account, contact).await;
        }
        if has_from(old.subscription) || pending_in {
            server
                .route(presence(account, contact, Some("unsubscribed")))
                .await;
        }
        Ok(None)
    }
}

/// The item's `jid`: present, valid, and bare (§2.1.1).
fn item_jid(item: &Element) -> Result<Jid, StanzaError> {
    let raw = item.attr("jid").ok_or_else(|| {
        StanzaError::new(StanzaErrorCondition::BadRequest).with_text("item without jid")
    })?;
    let jid = Jid::parse(raw).map_err(|e| {
        StanzaError::new(StanzaErrorCondition::JidMalformed).with_text(e.to_string())
    })?;
    if jid.is_full() {
        return Err(StanzaError::new(StanzaErrorCondition::BadRequest)
            .with_text("roster items are bare JIDs"));
    }
    Ok(jid)
}

/// §2.3.3: empty or overlong group names are not acceptable, a repeated group a bad request.
fn item_groups(item: &Element) -> Result<Vec<String>, StanzaError> {
    let mut seen = HashSet::new();
    let mut groups = Vec::new();
    for g in item.children().filter(|c| c.is("group", NS_ROSTER)) {
        let name = g.text();
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)
                .with_text("group names are 1 to 1023 bytes"));
        }
        if !seen.insert(name.clone()) {
            return Err(StanzaError::new(StanzaErrorCondition::BadRequest)
                .with_text("the same group twice"));
        }
        groups.push(name);
    }
    if groups.len() > MAX_GROUPS {
        return Err(
            StanzaError::new(StanzaErrorCondition::NotAcceptable).with_text("too many groups")
        );
    }
    Ok(groups)
}

/// The wire form of a roster item (§2.1.2): `ask` for pending-out, `approved` for a
/// pre-approval (§3.4), groups as children.
pub(crate) fn item_element(item: &RosterItem) -> Element {
    let mut el = Element::new("item", NS_ROSTER)
        .with_attr("jid", item.jid.as_str())
        .with_opt_attr("name", item.name.as_deref())
        .with_attr("subscription", item.subscription.as_str());
    if item.ask_out {
        el.set_attr("ask", "subscribe");
    }
    if item.approved {
        el.set_attr("approved", "true");
    }
    for g in &item.groups {
        el.append_child(Element::new("group", NS_ROSTER).with_text(g.as_str()));
    }
    el
}

/// A roster push (§2.1.6) of one item to every interested resource of the account, with a
/// fresh id and the new version (XEP-0237 §5).
pub(crate) fn push(server: &Server, account: &Jid, ver: u64, item: Element) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let query = Element::new("query", NS_ROSTER)
        .with_attr("ver", ver.to_string())
        .with_child(item);
    for s in server.sessions.get_bare(account) {
        if !s.presence.lock().interested {
            continue;
        }
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr(
                "id",
                format!("push{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            )
            .with_attr("from", account.to_string())
            .with_attr("to", s.jid.to_string())
            .with_child(query.clone());
        // A session whose queue is full is being closed; it re-reads the roster on return.
        let _ = s.send(iq);
    }
}

pub(crate) fn internal(e: StoreError) -> StanzaError {
    tracing::warn!(error = %e, "roster storage failed");
    StanzaError::new(StanzaErrorCondition::InternalServerError)
}
