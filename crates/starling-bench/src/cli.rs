//! The command line: options common to every scenario (accepted before or after the
//! scenario's name), one subcommand per scenario, and printing of the report (a table, then
//! one JSON line). Exit codes: 0 clean run, 1 failures or losses (reason on stderr), 2 bad
//! usage (a one-line error naming the option).

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use starling_proto::sasl::Mechanism;

use crate::ctx::{Common, Transport};
use crate::error::BenchError;
use crate::scenario::{chat, connect, mam, muc, presence, register, Scenario};

const AFTER_HELP: &str = "\
TLS: certificates are NOT verified (any certificate is accepted, handshake signatures are not
checked): this tool is for loopback test servers with self-signed certificates.

SCRAM: the first login of an account pays PBKDF2 (4096 iterations) on this client too; the
SaltedPassword is then cached in memory and in --scram-cache, so later runs against the same
accounts skip it, as real clients do. Servers that pick a new salt per login (plain-text
password storage) defeat the cache: use --mechanism PLAIN there if the client CPU matters.

Output: live progress on stderr; at the end a table on stdout and ONE JSON line (fields in
crates/starling-bench/README.md). Exit code 0: no failures and no losses; 1: failures or
losses; 2: bad usage.

Examples:
  starling-bench register --users 1000
  starling-bench connect --users 20000 --rss-at 1000,10000,19500 --source 127.0.0.2-127.0.0.9 --pid $PID
  starling-bench chat --pairs 500 --rate 5000 --duration 20s
  starling-bench --transport ws --ws-url ws://127.0.0.1:5280/xmpp-websocket chat --pairs 10 --rate max";

#[derive(Parser, Debug)]
#[command(
    name = "starling-bench",
    version,
    about = "Load generator for XMPP servers (Starling, ejabberd, Prosody)",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TransportArg {
    /// TCP, <starttls/>, then TLS (RFC 6120 §5).
    Starttls,
    /// Direct TLS with ALPN xmpp-client (XEP-0368).
    Tls,
    /// WebSocket (RFC 7395) at --ws-url.
    Ws,
}

/// A parsed `--source`.
#[derive(Clone, Debug)]
struct SourceList(Vec<IpAddr>);

/// A parsed comma list of numbers.
#[derive(Clone, Debug)]
struct U64List(Vec<u64>);

#[derive(Args, Debug)]
struct CommonArgs {
    /// Server address for starttls/tls [default: 127.0.0.1:5222, or 127.0.0.1:5223 with
    /// --transport tls].
    #[arg(long, global = true, value_name = "HOST:PORT")]
    server: Option<String>,
    /// XMPP domain (stream 'to', JIDs, TLS SNI).
    #[arg(long, global = true, default_value = "localhost")]
    domain: String,
    #[arg(long, global = true, value_enum, default_value = "starttls")]
    transport: TransportArg,
    /// WebSocket URL for --transport ws (ws:// or wss://).
    #[arg(
        long,
        global = true,
        default_value = "ws://127.0.0.1:5280/xmpp-websocket",
        value_name = "URL"
    )]
    ws_url: String,
    /// SASL mechanism [default: the best offered of SCRAM-SHA-256, SCRAM-SHA-1, PLAIN].
    #[arg(long, global = true, value_parser = parse_mechanism, value_name = "MECH")]
    mechanism: Option<Mechanism>,
    /// Users are {prefix}{i}.
    #[arg(long, global = true, default_value = "bench", value_name = "PREFIX")]
    user_prefix: String,
    /// First user number.
    #[arg(long, global = true, default_value_t = 0, value_name = "N")]
    first: u64,
    #[arg(long, global = true, default_value = "benchpass")]
    password: String,
    /// Logins (or requests) in flight.
    #[arg(long, global = true, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    concurrency: u32,
    /// Source addresses to spread connections over, round-robin: 127.0.0.2-127.0.0.9 or a
    /// comma list (one address has only ~28k ephemeral ports).
    #[arg(long, global = true, value_parser = parse_source_list, value_name = "ADDRS")]
    source: Option<SourceList>,
    /// The server's process id: its CPU and RSS are sampled from /proc.
    #[arg(long, global = true, value_name = "PID")]
    pid: Option<u32>,
    /// How long the measured phase of chat, presence and muc runs (e.g. 10s, 500ms, 2m).
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration, value_name = "TIME")]
    duration: Duration,
    /// Longest one login or request may take.
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration, value_name = "TIME")]
    timeout: Duration,
    /// Resource to bind.
    #[arg(long, global = true, default_value = "bench")]
    resource: String,
    /// SCRAM SaltedPassword cache file, or "off" [default:
    /// $XDG_CACHE_HOME/starling-bench/scram-cache or ~/.cache/starling-bench/scram-cache].
    #[arg(long, global = true, value_name = "PATH")]
    scram_cache: Option<PathBuf>,
    /// Worker threads of this tool [default: one per core].
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..), value_name = "N")]
    threads: Option<u16>,
    /// No live progress on stderr.
    #[arg(long, global = true)]
    no_progress: bool,
    /// Print only the JSON summary line.
    #[arg(long, global = true)]
    json_only: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create accounts: XEP-0077 in-band registration, or a shell command per user.
    Register {
        #[arg(long, value_name = "N")]
        users: u64,
        /// Shell command template with {user} {domain} {password}, e.g.
        /// 'ejabberdctl register {user} {domain} {password}'.
        #[arg(long, value_name = "CMD")]
        via_cli: Option<String>,
    },
    /// Log N sessions in (TLS, SASL, bind, roster, presence) and hold them idle.
    Connect {
        #[arg(long, value_name = "N")]
        users: u64,
        /// Hold all sessions this long after the last login.
        #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "TIME")]
        hold: Duration,
        /// Pause at these session counts, let the server settle ~2 s and record its RSS
        /// (needs --pid), e.g. 1000,10000,19500.
        #[arg(long, value_parser = parse_u64_list, value_name = "LIST")]
        rss_at: Option<U64List>,
    },
    /// One-to-one chat between pairs (2i <-> 2i+1) with delivery latency.
    Chat {
        #[arg(long, value_name = "N")]
        pairs: u64,
        /// Aggregate messages/s, or 0/max: as fast as delivered within --window.
        #[arg(long, default_value = "max", value_parser = parse_rate, value_name = "R")]
        rate: f64,
        /// Unacknowledged messages per direction with --rate max.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
        window: u32,
        /// Wait this long for stragglers after sending stops; later ones are lost.
        #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "TIME")]
        grace: Duration,
        /// Extra bytes of body per message.
        #[arg(long, default_value_t = 0, value_name = "BYTES")]
        body_size: usize,
    },
    /// Mutual subscriptions among N users (K contacts each), then logout/login cycles.
    Presence {
        #[arg(long, value_name = "N")]
        users: u64,
        #[arg(long, default_value_t = 10, value_name = "K")]
        contacts: u64,
    },
    /// Multi-user chat (XEP-0045): R rooms of N occupants exchanging groupchat messages.
    Muc {
        #[arg(long, value_name = "R")]
        rooms: u64,
        /// Occupants per room.
        #[arg(long, value_name = "N")]
        occupants: u64,
        /// [default: conference.DOMAIN]
        #[arg(long, value_name = "JID")]
        muc_service: Option<String>,
        /// Aggregate messages/s sent, or 0/max: as fast as reflected within --window.
        #[arg(long, default_value = "max", value_parser = parse_rate, value_name = "R")]
        rate: f64,
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
        window: u32,
        #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "TIME")]
        grace: Duration,
        #[arg(long, default_value = "bench-room", value_name = "PREFIX")]
        room_prefix: String,
    },
    /// Message archive (XEP-0313) queries paged with RSM through each user's archive.
    Mam {
        #[arg(long, value_name = "N")]
        users: u64,
        /// Messages per archive to add first (by chatting in pairs).
        #[arg(long, default_value_t = 100, value_name = "M")]
        messages: u64,
        /// Results per page.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
        page: u32,
        /// Query the archives as they are (from an earlier run).
        #[arg(long)]
        no_fill: bool,
        /// Times each user pages through its archive.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
        passes: u32,
    },
}

/// `10s`, `500ms`, `2m`, `1h`, `1.5s`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (like 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        u => return Err(format!("unknown unit {u:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

/// `max` or `0`: as fast as possible (0.0); else a positive number of messages/s.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(0.0);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a rate (messages/s, or max)")),
    }
}

fn parse_mechanism(s: &str) -> Result<Mechanism, String> {
    match Mechanism::from_name(&s.to_ascii_uppercase()) {
        Some(m @ (Mechanism::ScramSha256 | Mechanism::ScramSha1 | Mechanism::Plain)) => Ok(m),
        _ => Err(format!(
            "{s:?} is not one of SCRAM-SHA-256, SCRAM-SHA-1, PLAIN"
        )),
    }
}

fn parse_source_list(s: &str) -> Result<SourceList, String> {
    crate::source::parse_sources(s).map(SourceList)
}

fn parse_u64_list(s: &str) -> Result<U64List, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u64>()
                .map_err(|_| format!("{p:?} is not a whole number"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(U64List)
}

fn common(a: &CommonArgs) -> Common {
    let transport = match a.transport {
        TransportArg::Starttls => Transport::StartTls,
        TransportArg::Tls => Transport::Tls,
        TransportArg::Ws => Transport::Ws,
    };
    let server = a.server.clone().unwrap_or_else(|| {
        if transport == Transport::Tls {
            "127.0.0.1:5223".into()
        } else {
            "127.0.0.1:5222".into()
        }
    });
    let scram_cache = match &a.scram_cache {
        Some(p) if p.as_os_str() == "off" || p.as_os_str() == "none" => None,
        Some(p) => Some(p.clone()),
        None => crate::scram_cache::default_path(),
    };
    Common {
        transport,
        server,
        ws_url: a.ws_url.clone(),
        domain: a.domain.clone(),
        mechanism: a.mechanism,
        user_prefix: a.user_prefix.clone(),
        first: a.first,
        password: a.password.clone(),
        concurrency: a.concurrency as usize,
        sources: a.source.clone().map(|s| s.0).unwrap_or_default(),
        pid: a.pid,
        duration: a.duration,
        timeout: a.timeout,
        progress: !a.no_progress && !a.json_only,
        scram_cache,
        scram: Default::default(),
        resource: a.resource.clone(),
    }
}

fn scenario(cmd: Cmd) -> Scenario {
    match cmd {
        Cmd::Register { users, via_cli } => {
            Scenario::Register(register::RegisterOpts { users, via_cli })
        }
        Cmd::Connect {
            users,
            hold,
            rss_at,
        } => Scenario::Connect(connect::ConnectOpts {
            users,
            hold,
            rss_at: rss_at.map(|l| l.0).unwrap_or_default(),
        }),
        Cmd::Chat {
            pairs,
            rate,
            window,
            grace,
            body_size,
        } => Scenario::Chat(chat::ChatOpts {
            pairs,
            rate,
            window,
            grace,
            body_size,
        }),
        Cmd::Presence { users, contacts } => {
            Scenario::Presence(presence::PresenceOpts { users, contacts })
        }
        Cmd::Muc {
            rooms,
            occupants,
            muc_service,
            rate,
            window,
            grace,
            room_prefix,
        } => Scenario::Muc(muc::MucOpts {
            rooms,
            occupants,
            service: muc_service.unwrap_or_default(),
            rate,
            window,
            grace,
            room_prefix,
        }),
        Cmd::Mam {
            users,
            messages,
            page,
            no_fill,
            passes,
        } => Scenario::Mam(mam::MamOpts {
            users,
            messages,
            page,
            fill: !no_fill,
            passes,
        }),
    }
}

/// The whole program: parses `args` (the first is the program name), runs, prints, and
/// returns the exit code. `bin_name` is what usage lines call the program.
pub fn main_with_args(bin_name: &'static str, args: Vec<OsString>) -> ExitCode {
    let cmd = Cli::command().name(bin_name).bin_name(bin_name);
    let cli = match cmd
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // One line naming the option (clap's first line), not the whole usage block.
            let text = e.render().to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad usage");
            eprintln!("{bin_name}: {} (see --help)", line.trim());
            return ExitCode::from(2);
        }
    };
    let json_only = cli.common.json_only;
    let threads = cli.common.threads.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        usize::from,
    );
    let common = common(&cli.common);
    let scenario = scenario(cli.cmd);
    crate::raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{bin_name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(crate::run(common, &scenario));
    // Tasks still closing connections must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(report) => {
            if !json_only {
                println!("{} summary:", scenario.name());
                print!("{}", report.summary.to_table());
            }
            println!("{}", report.summary.to_json());
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                for p in &report.problems {
                    eprintln!("{bin_name}: FAILED: {p}");
                }
                ExitCode::FAILURE
            }
        }
        Err(BenchError::Usage(msg)) => {
            eprintln!("{bin_name}: {msg}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{bin_name}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn rates_and_lists() {
        assert_eq!(parse_rate("max"), Ok(0.0));
        assert_eq!(parse_rate("250.5"), Ok(250.5));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("inf").is_err());
        assert_eq!(
            parse_u64_list("1000, 10000,19500").map(|l| l.0),
            Ok(vec![1000, 10000, 19500])
        );
        assert!(parse_u64_list("1,x").is_err());
        assert_eq!(parse_mechanism("scram-sha-1"), Ok(Mechanism::ScramSha1));
        assert!(parse_mechanism("SCRAM-SHA-512-PLUS").is_err());
    }

    #[test]
    fn options_after_the_scenario_name() {
        let cli = Cli::try_parse_from([
            "starling-bench",
            "chat",
            "--pairs",
            "3",
            "--rate",
            "100",
            "--server",
            "127.0.0.1:15222",
            "--transport",
            "tls",
            "--json-only",
        ])
        .expect("parses");
        let c = common(&cli.common);
        assert_eq!(c.server, "127.0.0.1:15222");
        assert_eq!(c.transport, Transport::Tls);
        assert!(!c.progress);
        assert!(matches!(scenario(cli.cmd), Scenario::Chat(o) if o.pairs == 3 && o.rate == 100.0));
        let cli = Cli::try_parse_from(["x", "--transport", "tls", "connect", "--users", "1"])
            .expect("parses");
        assert_eq!(common(&cli.common).server, "127.0.0.1:5223");
    }

    #[test]
    fn bad_values_name_the_option() {
        let e = Cli::try_parse_from(["x", "chat", "--pairs", "1", "--rate", "fast"])
            .expect_err("bad rate");
        assert!(e.to_string().contains("--rate"), "{e}");
        let e = Cli::try_parse_from(["x", "connect", "--users", "1", "--source", "nope"])
            .expect_err("bad source");
        assert!(e.to_string().contains("--source"), "{e}");
    }
}
