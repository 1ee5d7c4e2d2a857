//! A bound client session (RFC 6120 §8): stanzas from the client are checked, stamped and
//! routed; stanzas for the client are batched into one write per wake-up.

use std::sync::Arc;
use std::time::Duration;

use starling_proto::{StreamError, StreamErrorCondition};
use starling_xml::{Element, StreamEvent};
use tracing::info;

use super::{transport_end, C2s, End};
use crate::hooks::SessionEvent;
use crate::registry::{SessionCommand, SessionInfo, SessionReceiver};
use crate::transport::Transport;

/// Stanzas written per wake-up before we flush, so one busy sender cannot starve reads.
const MAX_BATCH: usize = 64;

impl<T: Transport> C2s<T> {
    pub(super) async fn run_bound(
        &mut self,
        session: Arc<SessionInfo>,
        mut rx: SessionReceiver,
    ) -> End {
        let mut shutdown = self.server.shutdown_signal();
        let keepalive = Duration::from_secs(self.server.config.c2s.keepalive_secs.max(1));
        let end = loop {
            tokio::select! {
                biased;
                reason = session.closed() => break End::Error(reason),
                _ = shutdown.changed() => break End::Error(StreamError::new(StreamErrorCondition::SystemShutdown)),
                cmd = rx.rx.recv() => {
                    let Some(SessionCommand::Stanza(first)) = cmd else { break End::Eof };
                    self.send(&first).await;
                    let mut n = 1;
                    while n < MAX_BATCH {
                        match rx.rx.try_recv() {
                            Ok(SessionCommand::Stanza(el)) => self.send(&el).await,
                            Err(_) => break,
                        }
                        n += 1;
                    }
                    if self.t.flush().await.is_err() {
                        break End::Eof;
                    }
                }
                ev = tokio::time::timeout(keepalive, self.t.recv()) => match ev {
                    Err(_) => {
                        // RFC 6120 §4.6.1: keep NATs open; idle is also the time to give
                        // buffers back.
                        self.t.send_keepalive();
                        if self.t.flush().await.is_err() {
                            break End::Eof;
                        }
                        self.t.shrink();
                    }
                    Ok(Ok(Some(StreamEvent::Stanza(el)))) => {
                        if let Err(end) = self.handle_stanza(&session, el).await {
                            break end;
                        }
                    }
                    Ok(Ok(Some(StreamEvent::Close))) => break End::Closed,
                    Ok(Ok(Some(StreamEvent::Open { .. }))) => {
                        break End::Error(StreamError::new(StreamErrorCondition::InvalidXml)
                            .with_text("unexpected stream restart"))
                    }
                    Ok(Ok(None)) => break End::Eof,
                    Ok(Err(e)) => break transport_end(e),
                }
            }
        };
        self.server.sessions.unbind(&session);
        info!(jid = %session.jid, "session closed");
        // Whatever was queued and not written is routed again: with this resource gone it
        // reaches another resource or offline storage instead of being lost.
        rx.rx.close();
        let mut leftovers = Vec::new();
        while let Ok(SessionCommand::Stanza(el)) = rx.rx.try_recv() {
            leftovers.push(el);
        }
        if matches!(end, End::Closed | End::Error(_)) {
            // Best effort for a live connection: write them before closing.
            for el in &leftovers {
                self.send(el).await;
            }
        } else {
            for el in leftovers {
                if el.name() == "message" {
                    self.server.route(el).await;
                }
            }
        }
        self.server
            .hooks
            .fire_session(SessionEvent::Closed, &self.server, &session)
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
