//! Presence subscriptions (RFC 6121 §3): the state transition tables of Appendix A as pure
//! functions, and the server processing of outbound (§3.1.2, §3.1.5, §3.2.2, §3.3.2) and
//! inbound (§3.1.3, §3.1.6, §3.2.3, §3.3.3) subscription stanzas, with pre-approval (§3.4).
//!
//! A state is the roster item's subscription plus the pending-out flag (`ask`) plus whether a
//! pending-in request is stored (kept apart from the roster, §3.1.3). Roster changes happen
//! under the account lock; stanzas are routed only after it is released.

use std::sync::Arc;

use starling_core::{Server, SessionInfo};
use starling_proto::Jid;
use starling_store::{RosterItem, StoreError, Subscription};
use starling_xml::{ns, parse_document, Element, Limits};
use tracing::warn;

use super::roster::{item_element, push};
use super::{
    account_of, announce_unavailable, deliver_to_available, presence, send_current_presence,
    AccountLocks,
};

/// The four subscription stanza types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl Kind {
    pub(crate) fn parse(ty: &str) -> Option<Kind> {
        match ty {
            "subscribe" => Some(Kind::Subscribe),
            "subscribed" => Some(Kind::Subscribed),
            "unsubscribe" => Some(Kind::Unsubscribe),
            "unsubscribed" => Some(Kind::Unsubscribed),
            _ => None,
        }
    }
}

/// One of the nine states of RFC 6121 Appendix A.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State {
    pub sub: Subscription,
    pub ask_out: bool,
    pub pending_in: bool,
}

/// The user receives the contact's presence.
pub(crate) fn has_to(s: Subscription) -> bool {
    matches!(s, Subscription::To | Subscription::Both)
}

/// The contact receives the user's presence.
pub(crate) fn has_from(s: Subscription) -> bool {
    matches!(s, Subscription::From | Subscription::Both)
}

fn sub_of(to: bool, from: bool) -> Subscription {
    match (to, from) {
        (false, false) => Subscription::None,
        (true, false) => Subscription::To,
        (false, true) => Subscription::From,
        (true, true) => Subscription::Both,
    }
}

/// The contact now receives the user's presence: 'from' added, the request answered.
fn from_granted(s: State) -> State {
    State {
        sub: sub_of(has_to(s.sub), true),
        pending_in: false,
        ..s
    }
}

/// The contact no longer receives the user's presence: 'from' and any pending-in request end.
fn from_cancelled(s: State) -> State {
    State {
        sub: sub_of(has_to(s.sub), false),
        pending_in: false,
        ..s
    }
}

/// The user now receives the contact's presence: 'to' added, the request answered.
fn to_granted(s: State) -> State {
    State {
        sub: sub_of(true, has_from(s.sub)),
        ask_out: false,
        ..s
    }
}

/// The user no longer receives the contact's presence: 'to' and any pending-out request end.
fn to_cancelled(s: State) -> State {
    State {
        sub: sub_of(false, has_from(s.sub)),
        ask_out: false,
        ..s
    }
}

/// Appendix A.2: the user's server on an outbound subscription stanza. `None` is "no state
/// change". Subscribe and unsubscribe are routed whatever the state; subscribed and
/// unsubscribed only when the state changed (the contact's server has nothing to learn
/// otherwise; pre-approval is handled by the caller).
pub(crate) fn outbound_transition(kind: Kind, s: State) -> Option<State> {
    let new = match kind {
        // A.2.1: pending-out unless already subscribed to the contact.
        Kind::Subscribe => State {
            ask_out: !has_to(s.sub),
            ..s
        },
        // A.2.2: the user cancels its subscription (and any pending-out).
        Kind::Unsubscribe => to_cancelled(s),
        // A.2.3: approval of a pending-in request.
        Kind::Subscribed if s.pending_in => from_granted(s),
        Kind::Subscribed => s,
        // A.2.4: denial of a pending-in request or cancellation of the contact's subscription.
        Kind::Unsubscribed => from_cancelled(s),
    };
    (new != s).then_some(new)
}

/// Appendix A.3: the contact's server on an inbound subscription stanza. `Some` means the
/// state changed and the stanza is delivered; `None` is "no state change, do not deliver".
/// (A subscribe from an entity that already has a subscription is answered by the caller.)
pub(crate) fn inbound_transition(kind: Kind, s: State) -> Option<State> {
    let new = match kind {
        // A.3.1
        Kind::Subscribe if has_from(s.sub) => s,
        Kind::Subscribe => State {
            pending_in: true,
            ..s
        },
        // A.3.2
        Kind::Unsubscribe => from_cancelled(s),
        // A.3.3: only an approval we asked for counts.
        Kind::Subscribed if s.ask_out => to_granted(s),
        Kind::Subscribed => s,
        // A.3.4
        Kind::Unsubscribed => to_cancelled(s),
    };
    (new != s).then_some(new)
}

/// What the store holds about one contact of one account.
struct Loaded {
    item: Option<RosterItem>,
    pending_in: bool,
}

/// A change to write for one contact: the new state, whether a pre-approval stays, and the
/// request stanza to store with a new pending-in record.
struct Change<'a> {
    state: State,
    approved: bool,
    request: Option<&'a Element>,
}

impl Change<'_> {
    fn new(state: State, approved: bool) -> Self {
        Change {
            state,
            approved,
            request: None,
        }
    }
}

impl Loaded {
    async fn read(
        server: &Server,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<Self, StoreError> {
        let item = server.store.roster_item(host, user, contact).await?;
        let pending_in = server
            .store
            .pending_in(host, user)
            .await?
            .iter()
            .any(|(from, _)| from == contact);
        Ok(Loaded { item, pending_in })
    }

    fn state(&self) -> State {
        State {
            sub: self
                .item
                .as_ref()
                .map_or(Subscription::None, |i| i.subscription),
            ask_out: self.item.as_ref().is_some_and(|i| i.ask_out),
            pending_in: self.pending_in,
        }
    }

    fn approved(&self) -> bool {
        self.item.as_ref().is_some_and(|i| i.approved)
    }

    /// Writes the new state: the roster item (created only when it has something to hold,
    /// pushed when it changed) and the pending-in record (with the request stanza).
    async fn apply(
        &self,
        server: &Server,
        account: &Jid,
        contact: &str,
        change: Change<'_>,
    ) -> Result<(), StoreError> {
        let (host, user) =
            account_of(account).ok_or_else(|| StoreError::NotFound(account.to_string()))?;
        let new = change.state;
        let mut item = self.item.clone().unwrap_or_else(|| RosterItem {
            jid: contact.to_string(),
            name: None,
            subscription: Subscription::None,
            ask_out: false,
            approved: false,
            groups: Vec::new(),
        });
        item.subscription = new.sub;
        item.ask_out = new.ask_out;
        // A pre-approval is spent once the contact is subscribed.
        item.approved = change.approved && !has_from(new.sub);
        let worth_keeping =
            item.subscription != Subscription::None || item.ask_out || item.approved;
        if (self.item.is_some() || worth_keeping) && self.item.as_ref() != Some(&item) {
            let ver = server.store.put_roster_item(host, user, &item).await?;
            push(server, account, ver, item_element(&item));
        }
        if new.pending_in && !self.pending_in {
            let xml = change.request.map(Element::to_xml).unwrap_or_default();
            server
                .store
                .add_pending_in(host, user, contact, &xml)
                .await?;
        } else if !new.pending_in && self.pending_in {
            server.store.remove_pending_in(host, user, contact).await?;
        }
        Ok(())
    }
}

/// Under the account's lock: reads what the account holds about `contact`, lets `decide`
/// choose the change from the current state and pre-approval, and writes it. `false` when
/// the account has no store key or the store failed (logged): the stanza is then dropped.
async fn transition<'a>(
    server: &Server,
    locks: &AccountLocks,
    account: &Jid,
    contact: &Jid,
    decide: impl FnOnce(State, bool) -> Option<Change<'a>>,
) -> bool {
    let Some((host, user)) = account_of(account) else {
        return false;
    };
    let key = contact.to_string();
    let _guard = locks.lock(account).await;
    let loaded = match Loaded::read(server, host, user, &key).await {
        Ok(l) => l,
        Err(e) => {
            warn!(%account, %contact, error = %e, "roster read failed; subscription dropped");
            return false;
        }
    };
    let Some(change) = decide(loaded.state(), loaded.approved()) else {
        return true;
    };
    if let Err(e) = loaded.apply(server, account, &key, change).await {
        warn!(%account, %contact, error = %e, "roster write failed; subscription dropped");
        return false;
    }
    true
}

/// A subscription stanza from a local client (§3.1.2, §3.1.5, §3.2.2, §3.3.2, §3.4).
pub(crate) async fn outbound(
    server: &Arc<Server>,
    locks: &AccountLocks,
    session: &Arc<SessionInfo>,
    contact: &Jid,
    kind: Kind,
    mut stanza: Element,
) {
    let account = session.jid.bare();
    // Subscriptions are between bare JIDs: stamp both ends (§3.1.2).
    let contact = contact.bare();
    stanza.set_attr("from", account.to_string());
    stanza.set_attr("to", contact.to_string());
    let (mut route, mut send_presence, mut send_unavailable) = (false, false, false);
    let written = transition(server, locks, &account, &contact, |s, approved| {
        match (kind, outbound_transition(kind, s)) {
            (Kind::Subscribe | Kind::Unsubscribe, change) => {
                route = true;
                change.map(|new| Change::new(new, approved))
            }
            (Kind::Subscribed, Some(new)) => {
                route = true;
                send_presence = true;
                Some(Change::new(new, false))
            }
            // §3.4: approving before being asked is a pre-approval, kept and not routed.
            (Kind::Subscribed, None) if !has_from(s.sub) && !approved => Some(Change::new(s, true)),
            (Kind::Unsubscribed, Some(new)) => {
                route = true;
                send_unavailable = has_from(s.sub);
                Some(Change::new(new, false))
            }
            // §3.4: unsubscribed without a subscription to cancel withdraws a pre-approval.
            (Kind::Unsubscribed, None) if approved => Some(Change::new(s, false)),
            _ => None,
        }
    })
    .await;
    if !written {
        return;
    }
    if send_unavailable {
        // §3.2.2: the contact no longer receives our presence; it learns we are gone.
        announce_unavailable(server, &account, &contact).await;
    }
    if route {
        server.route(stanza).await;
    }
    if send_presence {
        // §3.1.5: the newly subscribed contact gets our current presence.
        send_current_presence(server, &account, &contact).await;
    }
}

/// A subscription stanza to a local account that exists (§3.1.3, §3.1.6, §3.2.3, §3.3.3).
pub(crate) async fn inbound(
    server: &Arc<Server>,
    locks: &AccountLocks,
    account: &Jid,
    contact: &Jid,
    kind: Kind,
    mut stanza: Element,
) {
    let account = account.bare();
    let contact = contact.bare();
    // Subscriptions are between bare JIDs (§3.1.3): a request to a full JID is treated as
    // sent to the bare JID, and the user (now, or from storage later) sees the contact's
    // bare JID whatever the sending server stamped.
    stanza.set_attr("from", contact.to_string());
    stanza.set_attr("to", account.to_string());
    let (mut deliver, mut auto_approve, mut send_unavailable) = (false, false, false);
    let written = transition(server, locks, &account, &contact, |s, approved| {
        match (kind, inbound_transition(kind, s)) {
            // §3.1.3: already subscribed: answer on the user's behalf.
            (Kind::Subscribe, _) if has_from(s.sub) => {
                auto_approve = true;
                None
            }
            // §3.4: pre-approved: the subscription is granted without asking the user.
            (Kind::Subscribe, _) if approved => {
                auto_approve = true;
                Some(Change::new(from_granted(s), false))
            }
            (Kind::Unsubscribe, Some(new)) => {
                deliver = true;
                send_unavailable = has_from(s.sub);
                Some(Change::new(new, approved))
            }
            (_, Some(new)) => {
                deliver = true;
                Some(Change {
                    state: new,
                    approved,
                    request: Some(&stanza),
                })
            }
            (_, None) => None,
        }
    })
    .await;
    if !written {
        return;
    }
    if deliver {
        // A subscribe nobody sees now waits in storage for the next initial presence.
        deliver_to_available(server, &account, &stanza);
    }
    if send_unavailable {
        // §3.3.3: the contact no longer receives the user's presence.
        announce_unavailable(server, &account, &contact).await;
    }
    if auto_approve {
        server
            .route(presence(&account, &contact, Some("subscribed")))
            .await;
        send_current_presence(server, &account, &contact).await;
    }
}

/// §3.1.3: pending requests are delivered again at each initial presence until answered.
pub(crate) async fn deliver_pending(server: &Arc<Server>, session: &Arc<SessionInfo>) {
    let account = session.jid.bare();
    let Some((host, user)) = account_of(&account) else {
        return;
    };
    let pending = match server.store.pending_in(host, user).await {
        Ok(p) => p,
        Err(e) => {
            warn!(%account, error = %e, "pending subscription requests unreadable");
            return;
        }
    };
    for (from, xml) in pending {
        let stored = parse_document(xml.as_bytes(), ns::CLIENT, &Limits::default())
            .ok()
            .filter(|e| e.name() == "presence");
        // A request stored without (or with unreadable) XML is rebuilt from its sender.
        let stanza = match (stored, Jid::parse(&from)) {
            (Some(s), _) => s,
            (None, Ok(from)) => presence(&from, &account, Some("subscribe")),
            (None, Err(_)) => continue,
        };
        let _ = session.send(stanza);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Subscription::{Both, From, None as No, To};

    /// The nine states of Appendix A.1, in its order, with their names.
    const STATES: [(&str, State); 9] = [
        ("None", st(No, false, false)),
        ("None + Pending Out", st(No, true, false)),
        ("None + Pending In", st(No, false, true)),
        ("None + Pending Out/In", st(No, true, true)),
        ("To", st(To, false, false)),
        ("To + Pending In", st(To, false, true)),
        ("From", st(From, false, false)),
        ("From + Pending Out", st(From, true, false)),
        ("Both", st(Both, false, false)),
    ];

    const fn st(sub: Subscription, ask_out: bool, pending_in: bool) -> State {
        State {
            sub,
            ask_out,
            pending_in,
        }
    }

    fn named(name: &str) -> State {
        STATES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .unwrap_or_else(|| panic!("no state {name}"))
    }

    /// Checks a table given as the new state's name per existing state ("" = no change).
    fn check(kind: Kind, f: fn(Kind, State) -> Option<State>, table: [&str; 9]) {
        for ((name, s), want) in STATES.iter().zip(table) {
            let got = f(kind, *s);
            let want = (!want.is_empty()).then(|| named(want));
            assert_eq!(got, want, "{kind:?} in state {name}");
        }
    }

    #[test]
    fn a_2_1_outbound_subscribe() {
        check(
            Kind::Subscribe,
            outbound_transition,
            [
                "None + Pending Out",
                "",
                "None + Pending Out/In",
                "",
                "",
                "",
                "From + Pending Out",
                "",
                "",
            ],
        );
    }

    #[test]
    fn a_2_2_outbound_unsubscribe() {
        check(
            Kind::Unsubscribe,
            outbound_transition,
            [
                "",
                "None",
                "",
                "None + Pending In",
                "None",
                "None + Pending In",
                "",
                "From",
                "From",
            ],
        );
    }

    #[test]
    fn a_2_3_outbound_subscribed() {
        check(
            Kind::Subscribed,
            outbound_transition,
            ["", "", "From", "From + Pending Out", "", "Both", "", "", ""],
        );
    }

    #[test]
    fn a_2_4_outbound_unsubscribed() {
        check(
            Kind::Unsubscribed,
            outbound_transition,
            [
                "",
                "",
                "None",
                "None + Pending Out",
                "",
                "To",
                "None",
                "None + Pending Out",
                "To",
            ],
        );
    }

    #[test]
    fn a_3_1_inbound_subscribe() {
        check(
            Kind::Subscribe,
            inbound_transition,
            [
                "None + Pending In",
                "None + Pending Out/In",
                "",
                "",
                "To + Pending In",
                "",
                "",
                "",
                "",
            ],
        );
    }

    #[test]
    fn a_3_2_inbound_unsubscribe() {
        check(
            Kind::Unsubscribe,
            inbound_transition,
            [
                "",
                "",
                "None",
                "None + Pending Out",
                "",
                "To",
                "None",
                "None + Pending Out",
                "To",
            ],
        );
    }

    #[test]
    fn a_3_3_inbound_subscribed() {
        check(
            Kind::Subscribed,
            inbound_transition,
            ["", "To", "", "To + Pending In", "", "", "", "Both", ""],
        );
    }

    #[test]
    fn a_3_4_inbound_unsubscribed() {
        check(
            Kind::Unsubscribed,
            inbound_transition,
            [
                "",
                "None",
                "",
                "None + Pending In",
                "None",
                "None + Pending In",
                "",
                "From",
                "From",
            ],
        );
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(Kind::parse("subscribe"), Some(Kind::Subscribe));
        assert_eq!(Kind::parse("unsubscribed"), Some(Kind::Unsubscribed));
        assert_eq!(Kind::parse("probe"), None);
    }
}
