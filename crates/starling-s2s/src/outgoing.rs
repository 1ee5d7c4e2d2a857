//! Outgoing server streams (RFC 6120 §4, §10.4; XEP-0288 bidi): one stream per (local domain,
//! remote domain), created on the first stanza the router hands over (`route/remote`), stanzas
//! queued (bounded by `s2s.max_queued_stanzas` and `max_queued_bytes`) while it is set up,
//! bounced with remote-server-not-found or remote-server-timeout (RFC 6120 §8.3.3.15/16) when
//! it cannot be, closed after `s2s.idle_timeout_secs` without traffic. A peer that stops
//! reading fills the queue, and the stream is then closed and what it held bounced: memory
//! stays bounded. An authenticated incoming bidi stream can take the pool's place for its
//! pair ([`adopt`]); a bidi stream we opened also carries the peer's stanzas to us.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use starling_core::c2s::wirelog::WireLog;
use starling_core::{Server, StanzaEvent, Transport};
use starling_proto::dialback::{Answer, Dialback};
use starling_proto::s2s::change_content_ns;
use starling_proto::{StanzaError, StreamError, StreamErrorCondition};
use starling_xml::{ns, Element, StreamEvent};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::initiate::{self, describe_stream_error, Failure, Initiator, Purpose};
use crate::link::{
    log_element, shutdown_requested, stanza_addresses, Direction, End, S2sTransport,
};
use crate::{bounce_condition, S2s};

/// How long one write to an established stream may take before the peer counts as stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Stanzas written per flush at most.
const BATCH: usize = 64;

pub(crate) type Key = (String, String);

struct Handle {
    id: u64,
    tx: mpsc::Sender<(Element, usize)>,
    bytes: Arc<AtomicUsize>,
    /// Told when the queue overflowed: the stream closes and bounces what is left.
    kill: Arc<Notify>,
}

/// The outgoing streams of a server.
#[derive(Default)]
pub struct Pool {
    map: Mutex<HashMap<Key, Handle>>,
    next: AtomicU64,
}

enum Action {
    Done,
    Start(u64, Queue, Arc<Notify>),
    Overflow(Element),
}

/// Queues a stanza for `remote` on the stream from `local`, starting the stream when there
/// is none.
pub async fn send(
    s2s: &Arc<S2s>,
    server: &Arc<Server>,
    local: &str,
    remote: &str,
    mut stanza: Element,
) {
    if server.is_shutting_down() {
        // No new streams while stopping.
        bounce(server, stanza, true).await;
        return;
    }
    change_content_ns(&mut stanza, ns::CLIENT, ns::SERVER);
    let size = stanza.size_hint();
    let (max_stanzas, max_bytes) = (s2s.cfg.max_queued_stanzas, s2s.cfg.max_queued_bytes);
    let key = (local.to_owned(), remote.to_owned());
    let action = {
        let mut map = s2s.pool.map.lock();
        let mut stanza = Some(stanza);
        let mut action = Action::Done;
        if let Some(h) = map.get(&key) {
            let el = stanza.take().unwrap_or_else(|| Element::new("x", ""));
            if h.bytes.load(Ordering::Acquire) + size > max_bytes {
                h.kill.notify_one();
                map.remove(&key);
                action = Action::Overflow(el);
            } else {
                match h.tx.try_send((el, size)) {
                    Ok(()) => {
                        h.bytes.fetch_add(size, Ordering::AcqRel);
                    }
                    Err(mpsc::error::TrySendError::Full((el, _))) => {
                        h.kill.notify_one();
                        map.remove(&key);
                        action = Action::Overflow(el);
                    }
                    Err(mpsc::error::TrySendError::Closed((el, _))) => {
                        // The stream just ended: start a new one below.
                        map.remove(&key);
                        stanza = Some(el);
                    }
                }
            }
        }
        if let Some(el) = stanza {
            let (handle, queue) = new_handle(&s2s.pool, max_stanzas);
            queue.bytes.fetch_add(size, Ordering::AcqRel);
            let _ = handle.tx.try_send((el, size));
            let (id, kill) = (handle.id, handle.kill.clone());
            map.insert(key, handle);
            action = Action::Start(id, queue, kill);
        }
        action
    };
    match action {
        Action::Done => {}
        Action::Overflow(el) => {
            // The stream's task logs the failure (one line) as it ends.
            debug!("s2s to {remote}: queue full ({max_stanzas} stanzas or {max_bytes} bytes)");
            bounce(server, el, true).await;
        }
        Action::Start(id, queue, kill) => {
            tokio::spawn(run(
                s2s.clone(),
                server.clone(),
                key_owned(local, remote),
                id,
                queue,
                kill,
            ));
        }
    }
}

fn new_handle(pool: &Pool, max_stanzas: usize) -> (Handle, Queue) {
    let (tx, rx) = mpsc::channel(max_stanzas.max(1));
    let bytes = Arc::new(AtomicUsize::new(0));
    let handle = Handle {
        id: pool.next.fetch_add(1, Ordering::Relaxed),
        tx,
        bytes: bytes.clone(),
        kill: Arc::new(Notify::new()),
    };
    (handle, Queue { rx, bytes })
}

/// The outgoing side of an incoming bidi stream (XEP-0288): its pool entry and queue.
pub(crate) struct Adopted {
    pub key: Key,
    pub id: u64,
    pub queue: Queue,
    pub kill: Arc<Notify>,
}

/// Makes an authenticated incoming bidi stream the way to send from `local` to `remote`,
/// unless a stream already serves that pair.
pub(crate) fn adopt(s2s: &S2s, local: &str, remote: &str) -> Option<Adopted> {
    let key = key_owned(local, remote);
    let mut map = s2s.pool.map.lock();
    if map.get(&key).is_some_and(|h| !h.tx.is_closed()) {
        return None;
    }
    let (handle, queue) = new_handle(&s2s.pool, s2s.cfg.max_queued_stanzas);
    let (id, kill) = (handle.id, handle.kill.clone());
    map.insert(key.clone(), handle);
    Some(Adopted {
        key,
        id,
        queue,
        kill,
    })
}

/// Gives up an adopted pool entry; the stanzas it still held are routed again (a new
/// stream, or their bounce) unless `bounce_them`, when they bounce with remote-server-timeout.
pub(crate) async fn release(s2s: &S2s, server: &Arc<Server>, mut a: Adopted, bounce_them: bool) {
    forget(s2s, &a.key, a.id);
    for mut el in a.queue.drain() {
        if bounce_them {
            bounce(server, el, true).await;
        } else {
            change_content_ns(&mut el, ns::SERVER, ns::CLIENT);
            server.route(el).await;
        }
    }
}

fn key_owned(local: &str, remote: &str) -> Key {
    (local.to_owned(), remote.to_owned())
}

/// The receiving end of a stream's queue.
pub(crate) struct Queue {
    rx: mpsc::Receiver<(Element, usize)>,
    bytes: Arc<AtomicUsize>,
}

impl Queue {
    /// Waits for the next stanza (`None`: the pool dropped the queue).
    pub async fn next(&mut self) -> Option<Element> {
        let (el, size) = self.rx.recv().await?;
        self.bytes.fetch_sub(size, Ordering::AcqRel);
        Some(el)
    }

    fn take(&mut self) -> Option<Element> {
        let (el, size) = self.rx.try_recv().ok()?;
        self.bytes.fetch_sub(size, Ordering::AcqRel);
        Some(el)
    }

    /// Closes the queue and returns what was left in it.
    pub fn drain(&mut self) -> Vec<Element> {
        self.rx.close();
        let mut out = Vec::new();
        while let Some(el) = self.take() {
            out.push(el);
        }
        out
    }
}

/// Forgets the stream in the pool (when it is still this one), so new stanzas start another.
fn forget(s2s: &S2s, key: &Key, id: u64) {
    let mut map = s2s.pool.map.lock();
    if map.get(key).is_some_and(|h| h.id == id) {
        map.remove(key);
    }
}

async fn bounce(server: &Arc<Server>, mut stanza: Element, timeout: bool) {
    change_content_ns(&mut stanza, ns::SERVER, ns::CLIENT);
    server
        .bounce(&stanza, StanzaError::new(bounce_condition(timeout)))
        .await;
}

/// Writes `first` and what else is queued (up to a batch), then flushes within the write
/// timeout. `Err((why, timeout))` when the peer cannot be written to.
pub(crate) async fn write_batch<T: Transport>(
    t: &mut T,
    log: &WireLog,
    queue: &mut Queue,
    first: Element,
    remote: &str,
) -> Result<(), (String, bool)> {
    log_element(log, &first, false);
    t.send_element(&first);
    for _ in 1..BATCH {
        let Some(el) = queue.take() else { break };
        log_element(log, &el, false);
        t.send_element(&el);
    }
    match tokio::time::timeout(WRITE_TIMEOUT, t.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((format!("writing to {remote}: {e}"), false)),
        Err(_) => Err((format!("{remote} does not read (write timed out)"), true)),
    }
}

/// One outgoing stream: set up, then write what is queued until idle, failure or shutdown.
async fn run(
    s2s: Arc<S2s>,
    server: Arc<Server>,
    key: Key,
    id: u64,
    mut queue: Queue,
    kill: Arc<Notify>,
) {
    let _counted = server.stream_guard();
    let (local, remote) = (key.0.clone(), key.1.clone());
    let link = s2s.links.open(Direction::Out, &local, &remote);
    let setup = async {
        let t = initiate::connect(&s2s, &local, &remote).await?;
        let mut out = Initiator::new(
            t,
            &local,
            &remote,
            s2s.log_stanzas,
            s2s.negotiation_timeout(),
        );
        link.info.update(|l| {
            l.state = "negotiating";
        });
        let method = out.negotiate(&s2s, Purpose::Stanzas).await?;
        Ok::<_, Failure>((out, method))
    };
    let mut shutdown = server.shutdown_signal();
    let result = tokio::select! {
        r = setup => r,
        _ = shutdown_requested(&mut shutdown) => Err(Failure::Stream("server shutting down".into())),
    };
    let (mut out, method) = match result {
        Ok(ok) => ok,
        Err(failure) => {
            warn!("s2s to {remote} failed: {failure}");
            forget(&s2s, &key, id);
            for el in queue.drain() {
                bounce(&server, el, failure.is_timeout()).await;
            }
            return;
        }
    };
    let tls = out.t.tls_label();
    let bidi = out.bidi;
    link.info.update(|l| {
        l.auth = method;
        l.tls = tls.clone();
        l.state = "established";
        l.bidi = bidi;
    });
    info!(
        "s2s to {remote} established from {local} ({}, {tls}{})",
        method.map_or("?", |m| m.as_str()),
        if bidi { ", bidi" } else { "" }
    );
    let end = established(&s2s, &server, &mut out, &mut queue, &kill, &mut shutdown).await;
    forget(&s2s, &key, id);
    let left = queue.drain();
    match end {
        Ending::Idle => {
            out.close().await;
            debug!(%local, %remote, "s2s stream closed (idle)");
            // Stanzas that raced with closing get a new stream (or their bounce).
            for mut el in left {
                change_content_ns(&mut el, ns::SERVER, ns::CLIENT);
                server.route(el).await;
            }
        }
        Ending::PeerError(why) => {
            info!("s2s to {remote} closed: {why}");
            out.close().await;
            for el in left {
                bounce(&server, el, true).await;
            }
        }
        Ending::PeerClosed => {
            out.close_answer().await;
            for el in left {
                bounce(&server, el, true).await;
            }
        }
        Ending::Shutdown => {
            out.close().await;
            for el in left {
                bounce(&server, el, true).await;
            }
        }
        Ending::Refused(err) => {
            warn!(
                "s2s to {remote} closed: {} sent a stanza we refuse: {}",
                remote,
                initiate::stream_error_text(&err)
            );
            let el = err.to_element();
            log_element(&out.log, &el, false);
            out.t.send_element(&el);
            out.close().await;
            for el in left {
                bounce(&server, el, true).await;
            }
        }
        Ending::Failed(why, timeout) => {
            warn!("s2s to {remote} failed: {why}");
            for el in left {
                bounce(&server, el, timeout).await;
            }
            if !timeout {
                // A peer that does not read would only stall a closing handshake: dropped.
                out.close().await;
            }
        }
    }
}

enum Ending {
    Idle,
    Shutdown,
    PeerClosed,
    /// The peer closed with a stream error.
    PeerError(String),
    /// The peer sent something we close the stream for (bidi: a stanza it may not send).
    Refused(StreamError),
    /// Why, and whether it is a timeout.
    Failed(String, bool),
}

async fn established<T: S2sTransport>(
    s2s: &S2s,
    server: &Arc<Server>,
    out: &mut Initiator<T>,
    queue: &mut Queue,
    kill: &Notify,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Ending {
    let idle = s2s.idle_timeout();
    let mut last = Instant::now();
    loop {
        tokio::select! {
            first = queue.next() => {
                let Some(el) = first else { return Ending::Idle };
                // A peer that does not read blocks the flush: the queue overflowing meanwhile
                // ends the stream at once instead of after the write timeout.
                let written = tokio::select! {
                    r = write_batch(&mut out.t, &out.log, queue, el, &out.remote) => r,
                    _ = kill.notified() => Err((format!("queue to {} full: the peer does not read", out.remote), true)),
                };
                if let Err((why, timeout)) = written {
                    return Ending::Failed(why, timeout);
                }
                last = Instant::now();
            }
            ev = out.t.recv() => match ev {
                Ok(Some(StreamEvent::Stanza(el))) => {
                    log_element(&out.log, &el, true);
                    if el.is("error", ns::STREAM) {
                        return Ending::PeerError(format!("{} sent a stream error: {}", out.remote, describe_stream_error(&el)));
                    }
                    if let Err(end) = from_peer(server, out, el).await {
                        return end;
                    }
                    last = Instant::now();
                }
                Ok(Some(StreamEvent::Close)) | Ok(None) => return Ending::PeerClosed,
                Ok(Some(StreamEvent::Open { .. })) => {
                    return Ending::Failed(format!("{} restarted the stream", out.remote), false);
                }
                Err(e) => return Ending::Failed(format!("reading from {}: {e}", out.remote), false),
            },
            _ = tokio::time::sleep_until(last + idle) => return Ending::Idle,
            _ = kill.notified() => {
                return Ending::Failed(format!("queue to {} full: the peer does not read", out.remote), true);
            }
            _ = shutdown_requested(shutdown) => return Ending::Shutdown,
        }
    }
}

/// An element the receiving server sent on our stream. With bidi (XEP-0288 §2.2) it may send
/// stanzas from its domain to ours (the inverse of the pair we authenticated), which go to the
/// router; anything else from another domain is invalid-from. Dialback requests for more
/// domain pairs are not supported here: answered with an error (XEP-0220 §2.1.3).
async fn from_peer<T: S2sTransport>(
    server: &Arc<Server>,
    out: &mut Initiator<T>,
    mut el: Element,
) -> Result<(), Ending> {
    let is_stanza = el.ns() == ns::SERVER && matches!(el.name(), "message" | "presence" | "iq");
    if let (true, Ok(db)) = (out.bidi, Dialback::parse(&el)) {
        if db.answer.is_none() {
            let mut answer = db.answer(Answer::Error).to_element();
            answer.append_child(
                Element::new("error", ns::SERVER)
                    .with_attr("type", "cancel")
                    .with_child(Element::new(
                        "feature-not-implemented",
                        "urn:ietf:params:xml:ns:xmpp-stanzas",
                    )),
            );
            log_element(&out.log, &answer, false);
            out.t.send_element(&answer);
            let _ = tokio::time::timeout(WRITE_TIMEOUT, out.t.flush()).await;
        }
        return Ok(());
    }
    if !out.bidi || !is_stanza {
        debug!(remote = %out.remote, "ignoring {} on an outgoing stream", el.name());
        return Ok(());
    }
    let (from, to) = stanza_addresses(&el).map_err(refused)?;
    if from.domain() != out.remote {
        return Err(Ending::Refused(
            StreamError::new(StreamErrorCondition::InvalidFrom).with_text(format!(
                "{} is not authenticated on this stream",
                from.domain()
            )),
        ));
    }
    if to.domain() != out.local {
        return Err(Ending::Refused(
            StreamError::new(StreamErrorCondition::HostUnknown)
                .with_text(format!("this stream is for {}", out.local)),
        ));
    }
    change_content_ns(&mut el, ns::SERVER, ns::CLIENT);
    server
        .route_event(StanzaEvent {
            stanza: el,
            from,
            to,
            origin: None,
        })
        .await;
    Ok(())
}

fn refused(end: End) -> Ending {
    match end {
        End::Error(e) => Ending::Refused(e),
        _ => Ending::PeerClosed,
    }
}
