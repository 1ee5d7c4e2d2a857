//! RFC 6121 instant messaging and presence: the roster (§2, XEP-0237 versioning), presence
//! subscriptions (§3 with the state tables of Appendix A, §3.4 pre-approval), presence
//! (§4), message delivery to local accounts (§8.5), and offline storage (XEP-0160 with
//! XEP-0203 delay stamps).
//!
//! One file per concern; [`modules`] registers them all. The roster and presence modules share
//! a per-account lock so that two subscription stanzas for the same account cannot interleave
//! their read-modify-write of a roster item.

pub mod message;
pub mod offline;
pub mod presence;
pub mod roster;
mod subscription;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use starling_core::{Module, Server, SessionInfo};
use starling_proto::Jid;
use starling_xml::{ns, Element};
use tokio::sync::{Mutex, MutexGuard};

/// Fired (by the presence module) after a session's initial presence has been broadcast and
/// probes sent; offline delivery hooks it. The event's `origin` is the session, `stanza` its
/// presence.
pub const EVENT_INITIAL_PRESENCE: &str = "presence/initial";

/// Fired (by the presence module) when a session that was already available with a negative
/// priority sends available presence with a non-negative one (RFC 6121 §4.4.2): from now on
/// it takes messages for the bare JID, so offline delivery (XEP-0160 §3: "the next
/// non-negative available presence") hooks it as well. Same fields as
/// [`EVENT_INITIAL_PRESENCE`].
pub const EVENT_PRIORITY_RAISED: &str = "presence/non-negative";

/// Fired (by the message module) for a chat/normal message to a local account with no
/// resource to take it (RFC 6121 §8.5.2.2.1). A hook that stores it returns `Handled`;
/// if nobody does, the sender gets `service-unavailable`.
pub const EVENT_MESSAGE_OFFLINE: &str = "message/offline";

/// Priority of the delivering handlers here (messages, presence). They end the chain, so
/// modules that filter or copy stanzas (blocking, carbons, archive) hook above it.
pub const PRIORITY_DELIVERY: i32 = -100;

/// Priority of the offline store on [`EVENT_MESSAGE_OFFLINE`], [`EVENT_INITIAL_PRESENCE`]
/// and [`EVENT_PRIORITY_RAISED`].
pub const PRIORITY_OFFLINE: i32 = 0;

pub const NS_ROSTER: &str = "jabber:iq:roster";

/// The RFC 6121 modules of a default server.
pub fn modules() -> Vec<Arc<dyn Module>> {
    let locks = Arc::new(AccountLocks::new());
    vec![
        Arc::new(roster::RosterModule::new(locks.clone())),
        Arc::new(presence::PresenceModule::new(locks)),
        Arc::new(message::MessageModule),
        Arc::new(offline::OfflineModule),
    ]
}

/// Serializes roster changes per account. Striped: a fixed set of locks indexed by a hash of
/// the bare JID, so no map grows with the number of accounts. Never hold one across a
/// `Server::route` (the recipient's handler may need the same stripe).
pub(crate) struct AccountLocks {
    stripes: Vec<Mutex<()>>,
}

impl AccountLocks {
    const STRIPES: usize = 64;

    pub(crate) fn new() -> Self {
        AccountLocks {
            stripes: (0..Self::STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    pub(crate) async fn lock(&self, account: &Jid) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        account.bare().hash(&mut h);
        let i = (h.finish() % Self::STRIPES as u64) as usize;
        self.stripes[i].lock().await
    }
}

/// `(host, user)` of a local account's JID, as the store wants them.
pub(crate) fn account_of(jid: &Jid) -> Option<(&str, &str)> {
    Some((jid.domain(), jid.node()?))
}

/// Whether `bare` names an existing local account (an online account exists, no query).
pub(crate) async fn account_exists(server: &Arc<Server>, bare: &Jid) -> bool {
    let Some((host, user)) = account_of(bare) else {
        return false;
    };
    if !server.is_local_host(host) {
        return false;
    }
    if server.sessions.is_online(bare) {
        return true;
    }
    match server.store.account_exists(host, user).await {
        Ok(exists) => exists,
        Err(e) => {
            tracing::warn!(account = %bare, error = %e, "account lookup failed");
            false
        }
    }
}

/// The account's sessions that sent initial presence and have not gone unavailable.
pub(crate) fn available_sessions(server: &Server, bare: &Jid) -> Vec<Arc<SessionInfo>> {
    server
        .sessions
        .get_bare(bare)
        .into_iter()
        .filter(|s| s.is_available())
        .collect()
}

/// Hands a copy of `stanza` to every available resource of the account; returns how many
/// took it.
pub(crate) fn deliver_to_available(server: &Server, bare: &Jid, stanza: &Element) -> usize {
    available_sessions(server, bare)
        .into_iter()
        .filter(|s| s.send(stanza.clone()).is_ok())
        .count()
}

/// Tells `to` that each available resource of `account` is gone: it no longer receives the
/// account's presence (RFC 6121 §3.2.2, §3.3.3).
pub(crate) async fn announce_unavailable(server: &Arc<Server>, account: &Jid, to: &Jid) {
    for s in available_sessions(server, account) {
        server
            .route(presence(&s.jid, to, Some("unavailable")))
            .await;
    }
}

/// `<presence/>` in jabber:client with the given addresses and type.
pub(crate) fn presence(from: &Jid, to: &Jid, ty: Option<&str>) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_attr("from", from.to_string())
        .with_attr("to", to.to_string())
        .with_opt_attr("type", ty)
}

/// Sends `to` the last presence of each available resource of `account` (probe answers
/// §4.3.2, and after an approval §3.1.5); returns how many resources were available.
pub(crate) async fn send_current_presence(server: &Arc<Server>, account: &Jid, to: &Jid) -> usize {
    let mut sent = 0;
    for s in available_sessions(server, account) {
        let last = s.presence.lock().last.clone();
        let mut p = last.unwrap_or_else(|| Element::new("presence", ns::CLIENT));
        p.set_attr("from", s.jid.to_string());
        p.set_attr("to", to.to_string());
        server.route(p).await;
        sent += 1;
    }
    sent
}
