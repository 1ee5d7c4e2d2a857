//! `starling-bench`: the load generator's command line (see `cli.rs`).

/// jemalloc, as the server uses: the client's share of a login's CPU includes its allocator,
/// and glibc malloc cost this tool ~8% of its CPU (docs/perf-notes-login.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    starling_bench::cli::main_with_args("starling-bench", std::env::args_os().collect())
}
