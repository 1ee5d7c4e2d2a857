//! The session registry: which resources of which account are connected to this node, and the
//! per-session state the router needs (RFC 6121 §8.5: availability and priority).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use starling_proto::{Jid, StreamError};
use starling_xml::Element;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// What a session task receives from the rest of the server: a stanza and its size as
/// counted against the queue's byte budget.
#[derive(Debug)]
struct Queued {
    stanza: Element,
    size: usize,
    /// A bulk delivery's share of the queue, freed when the stanza is taken.
    _bulk: Option<OwnedSemaphorePermit>,
}

/// Bulk deliveries hold at most this many queue slots (and at most half the queue).
const MAX_BULK_IN_QUEUE: usize = 64;

/// A session's queue: a bounded FIFO (in stanzas and bytes) with one consumer, the session
/// task. It allocates only while it holds stanzas and gives the memory back when drained: an
/// idle session costs none (a tokio mpsc channel allocates its shared state and a block of 32
/// slots up front and keeps them, about 4 KB per session at the size of `Queued`).
#[derive(Debug)]
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes the session task, the only waiter.
    ready: Notify,
    capacity: usize,
    /// Bytes queued and not yet taken by the session task.
    queued_bytes: AtomicUsize,
}

impl Queue {
    /// Takes the first stanza, freeing its share of the byte budget (and its bulk permit).
    fn pop(&self) -> Option<Element> {
        let mut state = self.state.lock();
        let item = state.items.pop_front()?;
        if state.items.is_empty() {
            // Drained: give the memory back (idle sessions must be cheap).
            state.items = VecDeque::new();
        }
        drop(state);
        self.queued_bytes.fetch_sub(item.size, Ordering::AcqRel);
        Some(item.stanza)
    }
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Queued>,
    /// The receiver closed: nothing more is accepted.
    closed: bool,
}

/// Presence-related state of one session (RFC 6121 §4).
#[derive(Debug, Default, Clone)]
pub struct PresenceState {
    /// Initial presence sent and not yet unavailable.
    pub available: bool,
    pub priority: i8,
    /// The last broadcast presence stanza.
    pub last: Option<Element>,
    /// Requested the roster: receives roster pushes (RFC 6121 §2.1.6).
    pub interested: bool,
    /// Entities this session sent directed presence to (RFC 6121 §4.6.3).
    pub directed: HashSet<Jid>,
}

/// A bound client session as the rest of the server sees it.
#[derive(Debug)]
pub struct SessionInfo {
    pub id: u64,
    pub jid: Jid,
    pub transport: &'static str,
    pub peer: Option<SocketAddr>,
    pub secure: bool,
    pub started: SystemTime,
    queue: Arc<Queue>,
    /// Bulk deliveries hold a bounded share of the queue, so live traffic always has room.
    bulk: Arc<Semaphore>,
    /// The most bytes the queue holds (one stanza always fits).
    max_queued_bytes: usize,
    kill: Notify,
    kill_reason: Mutex<Option<StreamError>>,
    pub presence: Mutex<PresenceState>,
}

/// Why a stanza could not be handed to a session.
#[derive(Debug)]
pub enum DeliveryError {
    /// The session is gone (closed between lookup and delivery).
    Gone(Element),
    /// The session's queue is full: it reads too slowly and is being disconnected.
    Overloaded(Element),
}

impl DeliveryError {
    pub fn into_stanza(self) -> Element {
        match self {
            DeliveryError::Gone(e) | DeliveryError::Overloaded(e) => e,
        }
    }
}

impl SessionInfo {
    /// Queues a stanza for the session. A full queue (in stanzas or bytes) means a slow
    /// reader: the session is told to close (policy-violation) and the caller gets the
    /// stanza back to store or bounce, so nothing accepted is dropped silently.
    pub fn send(&self, stanza: Element) -> Result<(), DeliveryError> {
        let size = stanza.size_hint();
        if !self.reserve_bytes(size) {
            return Err(DeliveryError::Overloaded(self.overloaded(stanza)));
        }
        self.queue(
            Queued {
                stanza,
                size,
                _bulk: None,
            },
            size,
        )
    }

    /// Queues a stanza of a bulk delivery (offline messages at login), waiting while bulk
    /// stanzas hold their share of the queue: a long backlog neither trips the slow-reader
    /// policy nor crowds out live traffic. Bulk stanzas count toward the byte budget but do
    /// not trip it (their number is what bounds them). Never call it from the session's own
    /// task.
    pub async fn send_when_ready(&self, stanza: Element) -> Result<(), DeliveryError> {
        let Ok(permit) = self.bulk.clone().acquire_owned().await else {
            return Err(DeliveryError::Gone(stanza));
        };
        let size = stanza.size_hint();
        self.queue.queued_bytes.fetch_add(size, Ordering::AcqRel);
        self.queue(
            Queued {
                stanza,
                size,
                _bulk: Some(permit),
            },
            size,
        )
    }

    /// Counts `size` against the byte budget; false (nothing counted) when it would go over.
    /// One stanza always fits in an empty queue, whatever its size.
    fn reserve_bytes(&self, size: usize) -> bool {
        let before = self.queue.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before > 0 && before + size > self.max_queued_bytes {
            self.queue.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn overloaded(&self, stanza: Element) -> Element {
        self.close(
            StreamError::new(starling_proto::StreamErrorCondition::PolicyViolation)
                .with_text("too many unread stanzas"),
        );
        stanza
    }

    fn queue(&self, item: Queued, size: usize) -> Result<(), DeliveryError> {
        let q = &self.queue;
        let mut state = q.state.lock();
        let refused = if state.closed {
            Some(false)
        } else if state.items.len() >= q.capacity {
            Some(true)
        } else {
            None
        };
        match refused {
            None => {
                state.items.push_back(item);
                drop(state);
                q.ready.notify_one();
                Ok(())
            }
            Some(full) => {
                drop(state);
                q.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                if full {
                    Err(DeliveryError::Overloaded(self.overloaded(item.stanza)))
                } else {
                    Err(DeliveryError::Gone(item.stanza))
                }
            }
        }
    }

    /// Asks the session to end its stream with this error (kick, conflict, overload).
    pub fn close(&self, reason: StreamError) {
        let mut slot = self.kill_reason.lock();
        if slot.is_none() {
            *slot = Some(reason);
        }
        drop(slot);
        self.kill.notify_one();
    }

    /// Resolves when someone called [`SessionInfo::close`]; yields the reason.
    pub async fn closed(&self) -> StreamError {
        loop {
            if let Some(r) = self.kill_reason.lock().clone() {
                return r;
            }
            self.kill.notified().await;
        }
    }

    pub fn is_available(&self) -> bool {
        self.presence.lock().available
    }

    pub fn priority(&self) -> i8 {
        self.presence.lock().priority
    }
}

/// The receiving half kept by the session task; taking a stanza frees its share of the
/// queue's budget.
pub struct SessionReceiver {
    queue: Arc<Queue>,
}

impl SessionReceiver {
    /// The next stanza; `None` once the queue is closed and empty. Cancel-safe: a stanza
    /// stays queued until a call returns it.
    pub async fn recv(&mut self) -> Option<Element> {
        let q = &*self.queue;
        loop {
            // Created before looking, so a stanza queued in between still wakes us (a
            // notification with no waiter is kept for the next one).
            let ready = q.ready.notified();
            if let Some(el) = q.pop() {
                return Some(el);
            }
            if q.state.lock().closed {
                return None;
            }
            ready.await;
        }
    }

    /// A stanza if one is queued now.
    pub fn try_recv(&mut self) -> Option<Element> {
        self.queue.pop()
    }

    /// Refuses further stanzas; those already queued can still be taken.
    pub fn close(&mut self) {
        self.queue.state.lock().closed = true;
    }

    /// Whether the queue holds its memory (for tests: a drained queue holds none).
    #[cfg(test)]
    fn holds_memory(&self) -> bool {
        self.queue.state.lock().items.capacity() > 0
    }
}

impl Drop for SessionReceiver {
    /// Like a dropped channel receiver: later sends fail, queued stanzas are dropped.
    fn drop(&mut self) {
        let items = {
            let mut state = self.queue.state.lock();
            state.closed = true;
            std::mem::take(&mut state.items)
        };
        drop(items);
    }
}

#[derive(Default)]
pub struct SessionRegistry {
    by_bare: RwLock<HashMap<Jid, Vec<Arc<SessionInfo>>>>,
    next_id: AtomicU64,
}

pub struct NewSession {
    pub jid: Jid,
    pub transport: &'static str,
    pub peer: Option<SocketAddr>,
    pub secure: bool,
    /// Stanzas the queue holds at most.
    pub queue: usize,
    /// Bytes the queue holds at most (one stanza always fits).
    pub queue_bytes: usize,
}

impl SessionRegistry {
    /// Binds a full JID. A session already bound to the same full JID is returned so the
    /// caller can end it with `<conflict/>` (RFC 6120 §7.7.2.2: the newer session wins).
    pub fn bind(
        &self,
        new: NewSession,
    ) -> (Arc<SessionInfo>, SessionReceiver, Option<Arc<SessionInfo>>) {
        let capacity = new.queue.max(16);
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState::default()),
            ready: Notify::new(),
            capacity,
            queued_bytes: AtomicUsize::new(0),
        });
        let info = Arc::new(SessionInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            jid: new.jid,
            transport: new.transport,
            peer: new.peer,
            secure: new.secure,
            started: SystemTime::now(),
            queue: queue.clone(),
            bulk: Arc::new(Semaphore::new((capacity / 2).min(MAX_BULK_IN_QUEUE))),
            max_queued_bytes: new.queue_bytes,
            kill: Notify::new(),
            kill_reason: Mutex::new(None),
            presence: Mutex::new(PresenceState::default()),
        });
        let mut map = self.by_bare.write();
        let list = map.entry(info.jid.bare()).or_default();
        let replaced = list
            .iter()
            .position(|s| s.jid == info.jid)
            .map(|i| list.remove(i));
        list.push(info.clone());
        (info, SessionReceiver { queue }, replaced)
    }

    /// Removes a session (only that exact session: a replacement bound to the same JID stays).
    pub fn unbind(&self, session: &Arc<SessionInfo>) -> bool {
        let mut map = self.by_bare.write();
        let bare = session.jid.bare();
        let Some(list) = map.get_mut(&bare) else {
            return false;
        };
        let before = list.len();
        list.retain(|s| !Arc::ptr_eq(s, session));
        let removed = list.len() != before;
        if list.is_empty() {
            map.remove(&bare);
        }
        removed
    }

    pub fn get_full(&self, jid: &Jid) -> Option<Arc<SessionInfo>> {
        let map = self.by_bare.read();
        map.get(&jid.bare())?
            .iter()
            .find(|s| s.jid == *jid)
            .cloned()
    }

    /// All sessions of an account.
    pub fn get_bare(&self, bare: &Jid) -> Vec<Arc<SessionInfo>> {
        let map = self.by_bare.read();
        map.get(bare).cloned().unwrap_or_default()
    }

    pub fn is_online(&self, bare: &Jid) -> bool {
        self.by_bare.read().contains_key(bare)
    }

    pub fn all(&self) -> Vec<Arc<SessionInfo>> {
        self.by_bare.read().values().flatten().cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.by_bare.read().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(jid: &str) -> NewSession {
        NewSession {
            jid: Jid::parse(jid).expect("jid"),
            transport: "tcp",
            peer: None,
            secure: true,
            queue: 16,
            queue_bytes: 1 << 20,
        }
    }

    #[test]
    fn bind_replaces_same_full_jid_only() {
        let reg = SessionRegistry::default();
        let (a, _ra, none) = reg.bind(new("u@h/a"));
        assert!(none.is_none());
        let (_b, _rb, _) = reg.bind(new("u@h/b"));
        let (a2, _ra2, old) = reg.bind(new("u@h/a"));
        assert!(Arc::ptr_eq(&old.expect("replaced"), &a));
        assert_eq!(reg.count(), 2);
        // Unbinding the replaced session must not remove its successor.
        assert!(!reg.unbind(&a));
        assert!(Arc::ptr_eq(
            &reg.get_full(&Jid::parse("u@h/a").expect("jid"))
                .expect("bound"),
            &a2
        ));
    }

    #[tokio::test]
    async fn full_queue_closes_and_returns_the_stanza() {
        let reg = SessionRegistry::default();
        let (s, _rx, _) = reg.bind(new("u@h/a"));
        for _ in 0..16 {
            s.send(Element::new("message", "jabber:client"))
                .expect("room in queue");
        }
        let err = s
            .send(Element::new("message", "jabber:client"))
            .expect_err("full");
        assert!(matches!(err, DeliveryError::Overloaded(_)));
        let reason = s.closed().await;
        assert_eq!(
            reason.condition,
            starling_proto::StreamErrorCondition::PolicyViolation
        );
    }

    #[tokio::test]
    async fn bulk_delivery_leaves_half_the_queue_to_live_traffic() {
        let reg = SessionRegistry::default();
        let (s, mut rx, _) = reg.bind(new("u@h/a"));
        // Half of the 16 slots go to bulk; the ninth bulk stanza waits for a dequeue.
        for _ in 0..8 {
            s.send_when_ready(Element::new("message", "jabber:client"))
                .await
                .expect("bulk room");
        }
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            s.send_when_ready(Element::new("message", "jabber:client")),
        )
        .await;
        assert!(
            waiting.is_err(),
            "bulk must not take more than half the queue"
        );
        // Live traffic still fits, without tripping the slow-reader policy.
        for _ in 0..8 {
            s.send(Element::new("presence", "jabber:client"))
                .expect("live room");
        }
        // Dequeuing one bulk stanza frees its share.
        rx.recv().await.expect("queued");
        s.send_when_ready(Element::new("message", "jabber:client"))
            .await
            .expect("room after dequeue");
    }

    #[tokio::test]
    async fn byte_budget_overloads_before_the_stanza_count_does() {
        let reg = SessionRegistry::default();
        let (s, mut rx, _) = reg.bind(NewSession {
            queue_bytes: 10_000,
            ..new("u@h/a")
        });
        let big = Element::new("message", "jabber:client").with_text("x".repeat(6_000));
        // One stanza always fits, even alone over the budget's half.
        s.send(big.clone()).expect("first fits");
        let err = s.send(big.clone()).expect_err("over the byte budget");
        assert!(matches!(err, DeliveryError::Overloaded(_)));
        // Taking the stanza frees its bytes.
        assert!(rx.recv().await.is_some());
        assert_eq!(s.queue.queued_bytes.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn queue_holds_no_memory_when_drained_and_refuses_after_close() {
        let reg = SessionRegistry::default();
        let (s, mut rx, _) = reg.bind(new("u@h/a"));
        assert!(
            !rx.holds_memory(),
            "a new session's queue allocates nothing"
        );
        // A waiting receiver is woken by a send.
        let sender = s.clone();
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            (rx, first)
        });
        tokio::task::yield_now().await;
        sender
            .send(Element::new("message", "jabber:client"))
            .expect("queued");
        let (mut rx, first) = waiter.await.expect("receiver task");
        assert!(first.is_some());
        for _ in 0..3 {
            s.send(Element::new("message", "jabber:client"))
                .expect("queued");
        }
        assert!(rx.holds_memory());
        while rx.try_recv().is_some() {}
        assert!(!rx.holds_memory(), "a drained queue gives its memory back");
        assert_eq!(s.queue.queued_bytes.load(Ordering::Acquire), 0);
        // Closed: queued stanzas can still be taken, new ones are refused, then the end.
        s.send(Element::new("message", "jabber:client"))
            .expect("queued");
        rx.close();
        let err = s
            .send(Element::new("message", "jabber:client"))
            .expect_err("closed");
        assert!(matches!(err, DeliveryError::Gone(_)));
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_none());
        drop(rx);
        assert!(matches!(
            s.send(Element::new("message", "jabber:client")),
            Err(DeliveryError::Gone(_))
        ));
    }
}
