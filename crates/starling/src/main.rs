//! `starling`: the server (`serve`), its configuration check (`check-config`), the admin
//! CLI (`ctl`) and the load tool (`bench`, the same as `starling-bench`), in one binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use starling::admin::{self, socket, AdminError, Command, Target};
use starling::datalock::DataLock;
use starling_core::Config;

/// jemalloc instead of glibc malloc: 20–30% less CPU per login, 10–15% less per message,
/// +1–2% memory per idle session (docs/perf-notes-memory.md, "Allocator"). Tuning at run
/// time through `_RJEM_MALLOC_CONF`, e.g. `background_thread:true,dirty_decay_ms:1000`.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "starling", version, about = "Starling XMPP server")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (defaults: host localhost, data in ./data).
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and explain what it sets up.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Administer a server: register, register_identified, unregister, change_password,
    /// registered_users, connected_users, kick_session, status.
    Ctl {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The command and its arguments, e.g. `register_identified alice localhost secret`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Load-test an XMPP server (this or another): `starling bench connect --users 1000`;
    /// `starling bench --help` for the scenarios.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// `starling bench ARGS…` is `starling-bench ARGS…`: every argument after `bench` goes to the
/// load tool unparsed (its own runtime, options and exit codes).
fn bench(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let mut argv = vec![std::ffi::OsString::from("starling bench")];
    argv.extend(args);
    starling_bench::cli::main_with_args("starling bench", argv)
}

fn load(path: &Option<PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

fn main() -> ExitCode {
    // Before clap: `--help` and the like after `bench` belong to the load tool.
    if std::env::args_os().nth(1).is_some_and(|a| a == "bench") {
        return bench(std::env::args_os().skip(2));
    }
    let cli = Cli::parse();
    if let Cmd::Bench { args } = cli.command {
        return bench(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("starling: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Cmd::Serve { config } => serve(config).await,
            Cmd::CheckConfig { config } => check_config(config),
            Cmd::Ctl { config, words } => ctl(config, words).await,
            Cmd::Bench { .. } => Ok(ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("starling: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = load(&config)?;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.level.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .init();
    let (soft, hard) = starling_net::raise_fd_limit();
    tracing::info!("file descriptor limit: {soft} (hard {hard})");
    let running = starling::app::start(config).await?;
    wait_for_signal().await?;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

fn check_config(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = load(&path)?;
    let name = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(defaults)".into());
    println!("{name}: configuration is valid");
    println!("  hosts:            {}", config.hosts.join(", "));
    println!("  data folder:      {}", config.data_dir.display());
    println!("  storage:          {}", config.storage_url());
    let on = |v: &str| {
        if v.is_empty() {
            "off".to_string()
        } else {
            v.to_string()
        }
    };
    println!("  c2s (STARTTLS):   {}", on(&config.c2s.listen));
    println!("  c2s (Direct TLS): {}", on(&config.c2s.direct_tls_listen));
    println!(
        "  WebSocket:        {} (path {})",
        on(&config.http.listen),
        config.http.websocket_path
    );
    println!("  HTTPS:            {}", on(&config.http.tls_listen));
    println!("  TLS required:     {}", config.c2s.require_tls);
    if config.tls.certs.is_empty() {
        println!(
            "  certificates:     none configured; a self-signed one is generated in {}",
            config.data_dir.join("tls").display()
        );
    }
    let mut problems = 0;
    for pair in &config.tls.certs {
        for file in [&pair.cert, &pair.key] {
            if let Err(e) = std::fs::File::open(file) {
                println!("  problem: cannot read {}: {e}", file.display());
                problems += 1;
            }
        }
        println!(
            "  certificate:      {} (key {})",
            pair.cert.display(),
            pair.key.display()
        );
    }
    println!(
        "  registration:     {}",
        if config.registration.enabled {
            "open (XEP-0077)"
        } else {
            "closed (admin CLI only)"
        }
    );
    if !config.component.services.is_empty() {
        let domains: Vec<&str> = config
            .component
            .services
            .iter()
            .map(|s| s.domain.as_str())
            .collect();
        println!(
            "  components:       {} on {} (XEP-0114)",
            domains.join(", "),
            on(&config.component.listen)
        );
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn ctl(path: Option<PathBuf>, words: Vec<String>) -> anyhow::Result<ExitCode> {
    let config = load(&path)?;
    let cmd = match Command::parse(&words) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let outcome = match socket::call(&config.admin_socket(), &cmd).await {
        Ok(outcome) => outcome,
        Err(socket::ClientError::NotRunning) if !cmd.needs_server() => {
            // Account commands work on the store while the server is stopped, and only then:
            // a running server caches what it read and must be the store's only writer.
            let _lock = match DataLock::acquire(&config.data_dir) {
                Ok(lock) => lock,
                Err(e) => {
                    eprintln!(
                        "the server is running ({e}) but its admin socket {} does not answer; \
                         retry, or stop the server to change accounts offline",
                        config.admin_socket().display()
                    );
                    return Ok(ExitCode::FAILURE);
                }
            };
            let store = starling_store::open(&config.storage_url())
                .await
                .with_context(|| format!("cannot open storage {}", config.storage_url()))?;
            admin::execute(
                Target::StoreOnly {
                    store: &store,
                    hosts: &config.hosts,
                },
                cmd,
            )
            .await
        }
        Err(socket::ClientError::NotRunning) => Err(AdminError::Failed(format!(
            "the server is not running (no admin socket at {})",
            config.admin_socket().display()
        ))),
        Err(socket::ClientError::Io(e)) => Err(AdminError::Failed(format!(
            "cannot reach the server at {}: {e}",
            config.admin_socket().display()
        ))),
    };
    match outcome {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
