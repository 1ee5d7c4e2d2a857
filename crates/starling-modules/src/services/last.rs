//! XEP-0012 Last Activity: to the server, its uptime (§5); to a local account's bare JID,
//! answered by the server (§4): 0 while the user has an available resource, else the seconds
//! since the last logout with the status text of that moment. Only the user and contacts
//! subscribed to the user's presence may ask; others get `forbidden` (§4, §8).
//!
//! At logout (the account's last session closing) we store `"<unix time>\n<status>"` in the
//! key-value store `last`; the status is that of the session's last broadcast unavailable
//! presence, remembered as it passes (the presence module forgets it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use starling_core::{
    events, Flow, IqHandler, IqRequest, IqResult, IqTarget, Module, Registrar, Server,
    SessionEvent, SessionHook, SessionInfo, StanzaEvent, StanzaHook,
};
use starling_proto::{StanzaError, StanzaErrorCondition};
use starling_store::Subscription;
use starling_xml::{ns, Element};
use tracing::warn;

use super::util::{account_key, answer_gets, ensure_account, store_error, unix_now, ALL_TARGETS};

pub const NS_LAST: &str = "jabber:iq:last";
/// Key-value store holding `"<unix time>\n<status>"` of the last logout.
pub const STORE: &str = "last";

/// Runs before the presence module, which ends the chain for broadcast presence.
const PRESENCE_HOOK_PRIORITY: i32 = 10;

/// The XEP-0012 module.
#[derive(Default)]
pub struct LastActivity {
    /// Status text of the unavailable presence each session last broadcast.
    statuses: Arc<Mutex<HashMap<u64, String>>>,
}

impl Module for LastActivity {
    fn name(&self) -> &'static str {
        "last"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        answer_gets(reg, &ALL_TARGETS, "query", NS_LAST, Arc::new(LastHandler));
        reg.hook(
            events::PRE_PRESENCE,
            PRESENCE_HOOK_PRIORITY,
            Arc::new(NoteStatus(self.statuses.clone())),
        );
        reg.session_hook(
            SessionEvent::Closed,
            0,
            Arc::new(RecordLogout(self.statuses.clone())),
        );
    }
}

fn answer(seconds: u64, status: &str) -> Element {
    Element::new("query", NS_LAST)
        .with_attr("seconds", seconds.to_string())
        .with_text(status)
}

struct LastHandler;

#[async_trait]
impl IqHandler for LastHandler {
    async fn handle_iq(&self, server: &Arc<Server>, req: IqRequest) -> IqResult {
        if req.target == IqTarget::Host {
            return Ok(Some(answer(server.started.elapsed().as_secs(), "")));
        }
        ensure_account(server, &req).await?;
        let Some((host, user)) = account_key(&req.to) else {
            return Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
        };
        if req.target == IqTarget::OtherAccount {
            let item = server
                .store
                .roster_item(host, user, &req.from.bare().to_string())
                .await
                .map_err(store_error)?;
            let subscribed = item
                .is_some_and(|i| matches!(i.subscription, Subscription::From | Subscription::Both));
            if !subscribed {
                return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
            }
        }
        if server
            .sessions
            .get_bare(&req.to)
            .iter()
            .any(|s| s.is_available())
        {
            return Ok(Some(answer(0, "")));
        }
        let stored = server
            .store
            .kv_get(host, user, STORE)
            .await
            .map_err(store_error)?;
        match stored.as_deref().and_then(parse_record) {
            Some((at, status)) => Ok(Some(answer(unix_now().saturating_sub(at), status))),
            // Never logged out since we started keeping track: nothing to tell.
            None => Err(StanzaError::new(StanzaErrorCondition::ItemNotFound)),
        }
    }
}

fn parse_record(value: &str) -> Option<(u64, &str)> {
    let (at, status) = value.split_once('\n').unwrap_or((value, ""));
    Some((at.trim().parse().ok()?, status))
}

/// Remembers the status of a session's broadcast unavailable presence (forgets it when the
/// session becomes available again).
struct NoteStatus(Arc<Mutex<HashMap<u64, String>>>);

#[async_trait]
impl StanzaHook for NoteStatus {
    async fn on_stanza(&self, _server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        let (Some(origin), None) = (&ev.origin, ev.stanza.attr("to")) else {
            return Flow::Continue;
        };
        let mut statuses = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match ev.stanza.attr("type") {
            Some("unavailable") => {
                let status = ev
                    .stanza
                    .child_text("status", ns::CLIENT)
                    .unwrap_or_default();
                statuses.insert(origin.id, status);
            }
            None => {
                statuses.remove(&origin.id);
            }
            _ => {}
        }
        Flow::Continue
    }
}

/// Records the logout time when an account's last session closes.
struct RecordLogout(Arc<Mutex<HashMap<u64, String>>>);

#[async_trait]
impl SessionHook for RecordLogout {
    async fn on_session(&self, server: &Arc<Server>, session: &Arc<SessionInfo>) {
        let status = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session.id)
            .unwrap_or_default();
        let bare = session.jid.bare();
        if !server.sessions.get_bare(&bare).is_empty() {
            return; // another resource is still connected: not a logout of the account
        }
        let Some((host, user)) = account_key(&bare) else {
            return;
        };
        // A session closed because its account was deleted must not leave data behind.
        match server.store.account_exists(host, user).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warn!(error = %e, jid = %bare, "cannot record last activity");
                return;
            }
        }
        let record = format!("{}\n{}", unix_now(), status);
        if let Err(e) = server.store.kv_set(host, user, STORE, Some(&record)).await {
            warn!(error = %e, jid = %bare, "cannot record last activity");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse() {
        assert_eq!(parse_record("12\nGone fishing"), Some((12, "Gone fishing")));
        assert_eq!(parse_record("12\n"), Some((12, "")));
        assert_eq!(parse_record("12"), Some((12, "")));
        assert_eq!(parse_record("x\ny"), None);
        assert_eq!(parse_record("3\na\nb"), Some((3, "a\nb")));
    }
}
