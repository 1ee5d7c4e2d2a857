//! Offline message storage (XEP-0160 §3, RFC 6121 §8.5.2.2.1): a chat/normal message no
//! resource took is stored with a XEP-0203 `<delay/>` stamp, up to
//! `offline.max_per_user` per account (beyond that the sender gets `service-unavailable`),
//! and delivered at the next non-negative available presence: a resource's initial presence
//! with a non-negative priority, or one that raises a negative priority to a non-negative one.
//! Whatever carries more than a chat state is kept (receipts, markers, invitations: XEP-0160
//! §4, ejabberd's `store_empty_body = unless_chat_state`). Advertises `msgoffline`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use starling_core::{
    events, Flow, Module, Registrar, Server, SessionInfo, StanzaEvent, StanzaHook,
};
use starling_proto::Jid;
use starling_xml::{ns, parse_document, Element, Limits};
use tracing::warn;

use super::{
    account_of, available_sessions, EVENT_INITIAL_PRESENCE, EVENT_MESSAGE_OFFLINE,
    EVENT_PRIORITY_RAISED, PRIORITY_OFFLINE,
};

pub const NS_DELAY: &str = "urn:xmpp:delay";
pub const NS_HINTS: &str = "urn:xmpp:hints";
pub const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0359 origin and stanza ids.
const NS_SID: &str = "urn:xmpp:sid:0";
/// XEP-0022 message events (the legacy typing notifications).
const NS_EVENT: &str = "jabber:x:event";

pub struct OfflineModule;

struct Store;
struct Deliver;
/// Removes delay stamps a client claims in our name (see [`StripOwnDelay`]).
struct StripOwnDelay;

impl Module for OfflineModule {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.hook(EVENT_MESSAGE_OFFLINE, PRIORITY_OFFLINE, Arc::new(Store));
        reg.hook(EVENT_INITIAL_PRESENCE, PRIORITY_OFFLINE, Arc::new(Deliver));
        reg.hook(EVENT_PRIORITY_RAISED, PRIORITY_OFFLINE, Arc::new(Deliver));
        reg.hook(
            events::PRE_MESSAGE,
            PRIORITY_OFFLINE,
            Arc::new(StripOwnDelay),
        );
        reg.host_feature("msgoffline");
    }
}

/// What to do with a message for an account with no resource to take it.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Store,
    /// Nothing worth keeping (a chat state and what travels with it): dropped without an
    /// error, as a typing notification to someone offline means nothing (XEP-0085 §5.5).
    Drop,
    /// The sender asked us not to store it (XEP-0334 `<no-store/>`): it is bounced.
    Refuse,
}

/// What travels with a message without being content of its own: chat states, the thread,
/// delay stamps, processing hints, ids, legacy message events.
fn is_envelope(child: &Element) -> bool {
    matches!(
        child.ns(),
        NS_CHATSTATES | NS_DELAY | NS_HINTS | NS_SID | NS_EVENT
    ) || child.is("thread", ns::CLIENT)
}

/// Everything is stored except a message with nothing but a chat state (and its envelope):
/// receipts, markers, invitations and unknown payloads matter to the recipient later too.
fn decide(stanza: &Element) -> Decision {
    if stanza.has_child("no-store", NS_HINTS) {
        return Decision::Refuse;
    }
    if stanza.has_child("store", NS_HINTS) {
        return Decision::Store;
    }
    if stanza.children().all(is_envelope) {
        Decision::Drop
    } else {
        Decision::Store
    }
}

/// The XEP-0203 stamp: XEP-0082 UTC date-time ending in `Z`.
fn delay(host: &str) -> Element {
    Element::new("delay", NS_DELAY)
        .with_attr("from", host)
        .with_attr(
            "stamp",
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        )
        .with_text("Offline Storage")
}

#[async_trait]
impl StanzaHook for Store {
    async fn on_stanza(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        let account = ev.to.bare();
        let Some((host, user)) = account_of(&account) else {
            return Flow::Continue;
        };
        match decide(&ev.stanza) {
            Decision::Store => {}
            Decision::Drop => return Flow::Handled,
            Decision::Refuse => return Flow::Continue,
        }
        let max = server.config.offline.max_per_user;
        match server.store.count_offline(host, user).await {
            // XEP-0160 §3: storage full → the sender is told (service-unavailable).
            Ok(n) if n >= max => return Flow::Continue,
            Ok(_) => {}
            Err(e) => {
                warn!(%account, error = %e, "offline count failed");
                return Flow::Continue;
            }
        }
        let mut stored = ev.stanza.clone();
        // One stamp of ours. A message that has one was stored here before and is routed
        // again (a closed session's undelivered queue): its first stamp is when it was sent.
        // An earlier server's delay from another hop stays as it is.
        if !stored
            .children()
            .any(|c| c.is("delay", NS_DELAY) && c.attr("from") == Some(host))
        {
            stored.append_child(delay(host));
        }
        match server
            .store
            .push_offline(host, user, &stored.to_xml())
            .await
        {
            Ok(_) => {
                // A resource may have become available between this message missing every
                // resource and this write, its presence finding the store without it: it
                // must not wait for the next login.
                if let Some(session) = best_available(server, &account) {
                    take_and_deliver(server, &session, &account).await;
                }
                Flow::Handled
            }
            Err(e) => {
                warn!(%account, error = %e, "offline store failed");
                Flow::Continue
            }
        }
    }
}

#[async_trait]
impl StanzaHook for Deliver {
    /// XEP-0160 §3: stored messages go to the first resource that becomes available with a
    /// non-negative priority (initial presence) or raises its priority to one.
    async fn on_stanza(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        let Some(session) = ev.origin.clone() else {
            return Flow::Continue;
        };
        if session.priority() < 0 {
            return Flow::Continue;
        }
        take_and_deliver(server, &session, &session.jid.bare()).await;
        Flow::Continue
    }
}

/// The account's available resource of highest non-negative priority, if any (each
/// priority read once).
fn best_available(server: &Server, account: &Jid) -> Option<Arc<SessionInfo>> {
    available_sessions(server, account)
        .into_iter()
        .map(|s| (s.priority(), s))
        .filter(|(p, _)| *p >= 0)
        .max_by_key(|(p, _)| *p)
        .map(|(_, s)| s)
}

/// Takes everything stored for the account and hands it to `session`.
async fn take_and_deliver(server: &Arc<Server>, session: &Arc<SessionInfo>, account: &Jid) {
    let Some((host, user)) = account_of(account) else {
        return;
    };
    let stored = match server.store.take_offline(host, user).await {
        Ok(s) if s.is_empty() => return,
        Ok(s) => s,
        Err(e) => {
            warn!(%account, error = %e, "offline messages unreadable");
            return;
        }
    };
    // Delivered from a task of its own that waits for room in the session's queue: a
    // long backlog must not overflow it, and the session keeps writing meanwhile.
    let (server, session, account) = (server.clone(), session.clone(), account.clone());
    tokio::spawn(async move { deliver_stored(&server, &session, &account, stored).await });
}

/// A stored message keeps the delay stamp our host put on it when it is stored again, so
/// a client must not be able to send one claiming our host (XEP-0203 §3: the stamp says
/// who delayed the stanza).
#[async_trait]
impl StanzaHook for StripOwnDelay {
    async fn on_stanza(&self, server: &Arc<Server>, ev: &mut StanzaEvent) -> Flow {
        ev.stanza.retain_children(|c| {
            !(c.is("delay", NS_DELAY) && c.attr("from").is_some_and(|f| server.is_local_host(f)))
        });
        Flow::Continue
    }
}

/// Hands stored messages to the session in order. Unreadable ones (a parser limit or bug,
/// not the sender's fault) and those the session no longer takes are stored again rather than
/// lost; they stay counted against the quota.
async fn deliver_stored(
    server: &Server,
    session: &SessionInfo,
    account: &Jid,
    stored: Vec<String>,
) {
    let Some((host, user)) = account_of(account) else {
        return;
    };
    let mut keep = Vec::new();
    let mut rest = stored.into_iter();
    while let Some(xml) = rest.next() {
        let stanza = match parse_document(xml.as_bytes(), ns::CLIENT, &Limits::default()) {
            Ok(s) => s,
            Err(e) => {
                warn!(%account, error = %e, "unreadable offline message kept");
                keep.push(xml);
                continue;
            }
        };
        if session.send_when_ready(stanza).await.is_err() {
            // The session went away: keep this one and the rest for next time.
            keep.push(xml);
            keep.extend(rest);
            break;
        }
    }
    for xml in keep {
        if let Err(e) = server.store.push_offline(host, user, &xml).await {
            warn!(%account, error = %e, "offline message lost on re-store");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Element {
        Element::new("message", ns::CLIENT).with_attr("type", "chat")
    }

    #[test]
    fn stores_all_but_bare_chat_states() {
        let body = msg().with_child(Element::new("body", ns::CLIENT).with_text("hi"));
        assert_eq!(decide(&body), Decision::Store);
        let typing = msg()
            .with_child(Element::new("thread", ns::CLIENT).with_text("t"))
            .with_child(Element::new("composing", NS_CHATSTATES))
            .with_child(Element::new("origin-id", NS_SID).with_attr("id", "o"));
        assert_eq!(decide(&typing), Decision::Drop);
        assert_eq!(decide(&msg()), Decision::Drop);
        for (name, ns) in [
            ("received", "urn:xmpp:receipts"),
            ("displayed", "urn:xmpp:chat-markers:0"),
            ("x", "jabber:x:conference"),
            ("subject", ns::CLIENT),
        ] {
            let m = msg().with_child(Element::new(name, ns));
            assert_eq!(decide(&m), Decision::Store, "{name}");
        }
        let hinted = body.clone().with_child(Element::new("no-store", NS_HINTS));
        assert_eq!(decide(&hinted), Decision::Refuse);
        let forced = typing.with_child(Element::new("store", NS_HINTS));
        assert_eq!(decide(&forced), Decision::Store);
    }

    #[test]
    fn delay_stamp_is_utc_with_z() {
        let d = delay("localhost");
        let stamp = d.attr("stamp").unwrap_or_default();
        assert!(stamp.ends_with('Z'), "{stamp}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{stamp}"
        );
        assert_eq!(d.attr("from"), Some("localhost"));
    }
}
