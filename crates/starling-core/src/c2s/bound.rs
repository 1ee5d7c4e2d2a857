//! A bound client session (RFC 6120 §8): stanzas from the client are checked, stamped and
//! routed; stanzas for the client are batched into one write per wake-up.

use std::sync::Arc;
use std::time::Duration;

use starling_proto::{StreamError, StreamErrorCondition};
use starling_xml::{Element, StreamEvent};
use tokio::time::Instant;
use tracing::info;

use super::{transport_end, C2s, End};
use crate::hooks::SessionEvent;
use crate::registry::{SessionInfo, SessionReceiver};
use crate::transport::Transport;

/// Stanzas written per wake-up before we flush, so one busy sender cannot starve reads.
const MAX_BATCH: usize = 64;
/// A peer that takes longer than this to accept a write is not reading: the stream ends and
/// what it did not take is routed elsewhere.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A session with no traffic for this long gives its spare buffers back (parser state; the
/// transport's read and write buffers are released after every read and flush already).
const IDLE_SHRINK: Duration = Duration::from_secs(1);

impl<T: Transport> C2s<T> {
    pub(super) async fn run_bound(
        &mut self,
        session: Arc<SessionInfo>,
        mut rx: SessionReceiver,
    ) -> End {
        let mut shutdown = self.server.shutdown_signal();
        // A shutdown that began while this session was binding has already fired: end at
        // once, the same way.
        if *shutdown.borrow_and_update() {
            session.close(StreamError::new(StreamErrorCondition::SystemShutdown));
        }
        let keepalive = Duration::from_secs(self.server.config.c2s.keepalive_secs.max(1));
        let idle_after = IDLE_SHRINK.min(keepalive);
        // Stanzas written since the last successful flush.
        let mut batch: Vec<Element> = Vec::new();
        // One timer for the whole session, moved lazily: traffic only records when it
        // happened, and the timer, when it fires, either acts (shrink, keepalive) or is set
        // again from that time. A timeout per loop would register and cancel a timer entry
        // for every stanza in and out.
        let mut last_io = Instant::now();
        let mut shrunk = false;
        let timer = tokio::time::sleep_until(last_io + idle_after);
        tokio::pin!(timer);
        let end = loop {
            tokio::select! {
                biased;
                reason = session.closed() => break End::Error(reason),
                _ = shutdown.changed() => break End::Error(StreamError::new(StreamErrorCondition::SystemShutdown)),
                next = rx.recv() => {
                    let Some(first) = next else { break End::Eof };
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Some(el) => batch.push(el),
                            None => break,
                        }
                    }
                    for el in &batch {
                        self.send(el).await;
                    }
                    // A peer that does not read blocks the write; an overload close (its
                    // queue filled meanwhile) or the timeout ends the wait.
                    let flushed = tokio::select! {
                        r = tokio::time::timeout(WRITE_TIMEOUT, self.t.flush()) => r,
                        reason = session.closed() => break End::Error(reason),
                        _ = shutdown.changed() => break End::Error(StreamError::new(StreamErrorCondition::SystemShutdown)),
                    };
                    last_io = Instant::now();
                    shrunk = false;
                    match flushed {
                        // Not kept for the next wake-up: an idle session holds no batch.
                        Ok(Ok(())) => batch = Vec::new(),
                        // The batch may not have arrived: it is routed again below.
                        Ok(Err(_)) => break End::Eof,
                        Err(_) => break End::Error(StreamError::new(StreamErrorCondition::PolicyViolation)
                            .with_text("the client does not read its stream")),
                    }
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if now >= last_io + keepalive {
                        // RFC 6120 §4.6.1: keep NATs open.
                        self.t.send_keepalive();
                        if !matches!(tokio::time::timeout(WRITE_TIMEOUT, self.t.flush()).await, Ok(Ok(()))) {
                            break End::Eof;
                        }
                        last_io = Instant::now();
                        self.t.shrink();
                        shrunk = true;
                    } else if !shrunk && now >= last_io + idle_after {
                        // Idle: give buffers back now rather than at the keepalive.
                        self.t.shrink();
                        shrunk = true;
                    }
                    let next = if shrunk { last_io + keepalive } else { last_io + idle_after };
                    timer.as_mut().reset(next);
                }
                ev = self.t.recv() => {
                    last_io = Instant::now();
                    shrunk = false;
                    match ev {
                    Ok(Some(StreamEvent::Stanza(el))) => {
                        // Boxed: routing and hooks have a large state, needed only while a
                        // stanza is handled (the session task's size is its idle cost).
                        if let Err(end) = Box::pin(self.handle_stanza(&session, el)).await {
                            break end;
                        }
                    }
                    Ok(Some(StreamEvent::Close)) => break End::Closed,
                    Ok(Some(StreamEvent::Open { .. })) => {
                        break End::Error(StreamError::new(StreamErrorCondition::InvalidXml)
                            .with_text("unexpected stream restart"))
                    }
                    Ok(None) => break End::Eof,
                    Err(e) => break transport_end(e),
                    }
                }
            }
        };
        self.server.sessions.unbind(&session);
        info!(jid = %session.jid, "session closed");
        // Messages queued and not written, or written in a batch whose flush failed, are
        // routed again: with this resource unbound they reach another resource (a replacing
        // session, after a conflict) or offline storage, so a dead or overloaded connection
        // loses nothing that was accepted. Other stanzas queued before a close (the result of
        // the request that caused it, say) go out ahead of the stream error while the peer
        // still reads: not to a reader that stopped reading, nor into a dead connection.
        rx.close();
        while let Some(el) = rx.try_recv() {
            batch.push(el);
        }
        let peer_reads = match &end {
            End::Closed => true,
            End::Error(e) => e.condition != StreamErrorCondition::PolicyViolation,
            End::Eof => false,
        };
        for el in batch {
            if el.name() == "message" {
                Box::pin(self.server.route(el)).await;
            } else if peer_reads {
                self.send(&el).await;
            }
        }
        Box::pin(
            self.server
                .hooks
                .fire_session(SessionEvent::Closed, &self.server, &session),
        )
        .await;
        end
    }

    async fn handle_stanza(&mut self, session: &Arc<SessionInfo>, el: Element) -> Result<(), End> {
        self.log.incoming(&el);
        let server = self.server.clone();
        server
            .accept_from_session(session, el)
            .await
            .map_err(End::Error)
    }
}
