//! What an idle client session costs in memory (docs/perf-notes-memory.md): the size of the
//! task a c2s connection runs as, which tokio allocates whole for the connection's lifetime.

use std::future::Future;

use starling_net::TcpTransport;

fn future_size<A, B, F: Future>(_: impl Fn(A, B) -> F) -> usize {
    std::mem::size_of::<F>()
}

#[test]
fn c2s_task_is_small() {
    let task = future_size(starling_core::c2s::run::<TcpTransport>);
    let transport = std::mem::size_of::<TcpTransport>();
    eprintln!("c2s task future: {task} bytes; TcpTransport: {transport} bytes");
    // 5.3 KB before negotiation and stanza handling were boxed (their state is needed only
    // while they run), 2,696 B since; a regression here is paid by every idle connection.
    assert!(task <= 2_800, "the c2s task grew to {task} bytes");
}
