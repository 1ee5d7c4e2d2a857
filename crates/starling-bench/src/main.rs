//! `starling-bench`: the load generator's command line (see `cli.rs`).

fn main() -> std::process::ExitCode {
    starling_bench::cli::main_with_args("starling-bench", std::env::args_os().collect())
}
