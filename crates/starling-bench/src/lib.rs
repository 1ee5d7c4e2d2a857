//! `starling-bench`: a load generator for any XMPP server (Starling, ejabberd, Prosody) —
//! many simulated clients over STARTTLS, Direct TLS or WebSocket, scenarios for registration,
//! logins, chat, presence, MUC and MAM, with the server's CPU and memory sampled from /proc.
//! See README.md for the options and the JSON summary's fields.
//!
//! Layout: `conn/` is one client connection (transport, login), `scenario/` one file per
//! scenario, `ctx.rs` the options and shared state, `cli.rs` the command line.

pub mod cli;
pub mod conn;
pub mod ctx;
pub mod error;
pub mod pacing;
pub mod progress;
pub mod report;
pub mod sample;
pub mod scenario;
pub mod scram_cache;
pub mod source;
pub mod stats;
pub mod template;
pub mod tls;

pub use ctx::{Common, Transport};
pub use error::{BenchError, ConnError};
pub use report::{Report, Summary};
pub use scenario::Scenario;

/// Runs one scenario and returns its report (the library entry point; the CLI prints it).
pub async fn run(common: Common, scenario: &Scenario) -> Result<Report, BenchError> {
    let ctx = ctx::Ctx::new(common)?;
    if let Some(path) = &ctx.common.scram_cache {
        if let Err(e) = scram_cache::load(&ctx.scram, path) {
            eprintln!(
                "starling-bench: cannot read the SCRAM cache {}: {e}",
                path.display()
            );
        }
    }
    let cached = ctx.scram.len();
    let _printer = progress::Printer::start(ctx.progress.clone(), ctx.common.progress);
    let report = match scenario {
        Scenario::Register(o) => scenario::register::run(&ctx, o).await,
        Scenario::Connect(o) => scenario::connect::run(&ctx, o).await,
        Scenario::Chat(o) => scenario::chat::run(&ctx, o).await,
        Scenario::Presence(o) => scenario::presence::run(&ctx, o).await,
        Scenario::Muc(o) => scenario::muc::run(&ctx, o).await,
        Scenario::Mam(o) => scenario::mam::run(&ctx, o).await,
    }?;
    if let Some(path) = &ctx.common.scram_cache {
        if ctx.scram.len() != cached {
            if let Err(e) = scram_cache::save(&ctx.scram, path) {
                eprintln!(
                    "starling-bench: cannot write the SCRAM cache {}: {e}",
                    path.display()
                );
            }
        }
    }
    Ok(report)
}

/// Raises this process's RLIMIT_NOFILE soft limit to the hard limit (each session is a
/// socket); returns the new soft limit.
pub fn raise_fd_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}
