//! What an idle client session costs in memory (docs/perf-notes-memory.md): the size of the
//! task a c2s connection runs as, which tokio allocates whole for the connection's lifetime.

use std::future::Future;
use std::sync::Arc;

use starling_core::Server;
use starling_net::TcpTransport;

fn future_size<A, B, F: Future>(_: impl Fn(A, B) -> F) -> usize {
    std::mem::size_of::<F>()
}

#[test]
fn c2s_task_is_small() {
    let task = future_size(starling_core::c2s::run::<TcpTransport>);
    let transport = std::mem::size_of::<TcpTransport>();
    eprintln!("c2s task future: {task} bytes; TcpTransport: {transport} bytes");
    let _: Option<Arc<Server>> = None;
}
