//! A client that stops reading must cost neither memory nor messages: its queue is bounded
//! (`c2s.max_queued_stanzas`), it is disconnected, and every message sent to it is still
//! delivered, either already in its socket or from offline storage (XEP-0160) at its next
//! login.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use starling_xml::{Element, StreamEvent};
use support::*;

/// Records the id of a message.
fn message_ids(el: &Element, ids: &mut HashSet<String>) {
    if el.name() == "message" {
        if let Some(id) = el.attr("id") {
            ids.insert(id.to_string());
        }
    }
}

#[tokio::test]
async fn slow_reader_is_disconnected_and_loses_no_message() {
    let srv = TestServer::start_with(|c| c.c2s.max_queued_stanzas = 16).await;
    srv.add_user("slow", "pw").await;
    srv.add_user("fast", "pw").await;
    let mut slow = srv.connect().await;
    slow.login_available("slow", "pw", Some("desk"), Mech::SCRAM_SHA_256)
        .await;
    slow.barrier().await;
    let mut fast = srv.login("fast", "pw", "f").await;

    // Large bodies fill the kernel's socket buffers after a few messages, then the
    // server's queue for the slow session overflows.
    let body = "x".repeat(40_000);
    const N: usize = 300;
    for i in 0..N {
        fast.send_stanza(&format!(
            "<message to='slow@localhost' type='chat' id='m{i}'><body>{i} {body}</body></message>"
        ))
        .await;
    }
    // Every message has been routed once the server answers this.
    fast.barrier().await;

    // The slow client now reads what reached its socket, until the server has closed it.
    let mut got = HashSet::new();
    loop {
        match slow.next_event_within(Duration::from_secs(40)).await {
            Ok(Some(StreamEvent::Stanza(el))) => message_ids(&el, &mut got),
            Ok(Some(StreamEvent::Close)) | Ok(None) => break,
            Ok(Some(StreamEvent::Open { .. })) => slow.fail("unexpected stream header"),
            Err(()) => slow.fail("the server kept the stream of a client that does not read"),
        }
    }
    let first = got.len();
    assert!(first < N, "the slow session was never disconnected");

    // Everything else waits in offline storage.
    let mut again = srv.connect().await;
    again
        .login_available("slow", "pw", Some("desk"), Mech::SCRAM_SHA_256)
        .await;
    // Stored messages stream in behind the login: read until they stop coming.
    while got.len() < N {
        match again.next_event_within(Duration::from_secs(5)).await {
            Ok(Some(StreamEvent::Stanza(el))) => message_ids(&el, &mut got),
            _ => break,
        }
    }
    let missing: Vec<usize> = (0..N).filter(|i| !got.contains(&format!("m{i}"))).collect();
    assert!(
        missing.is_empty(),
        "{} messages reached the old socket, {} in all; lost: {missing:?}",
        first,
        got.len()
    );
}
