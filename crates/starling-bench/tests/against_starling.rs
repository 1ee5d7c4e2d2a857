//! starling-bench against a real Starling started in-process on port 0: `register`, `connect`
//! and `chat` over STARTTLS, Direct TLS and WebSocket through the library API, checking zero
//! failures, zero losses and that the JSON summary's numbers add up; `muc` and `mam` must
//! report Starling's refusal (it has neither yet) and fail; and the built binary's CLI (exit
//! codes, the one JSON line).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use starling_bench::scenario::{chat, connect, mam, muc, register};
use starling_bench::{Common, Report, Scenario, Transport};

const USERS: u64 = 50;

struct Server {
    running: Option<starling::app::Running>,
    dir: PathBuf,
}

impl Server {
    async fn start(tag: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("sbench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let base = format!(
            "hosts = [\"localhost\"]\ndata_dir = \"{}\"\n\
             [c2s]\nlisten = \"127.0.0.1:0\"\ndirect_tls_listen = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"\"\n\
             [registration]\nenabled = true\nmin_interval_secs = 0\n",
            dir.join("data").display()
        );
        // Federation, in trees that have it, must not take the fixed port 5269.
        let cfg = starling_core::Config::parse(&format!("{base}[s2s]\nlisten = \"\"\n"))
            .or_else(|_| starling_core::Config::parse(&base))
            .unwrap();
        let running = starling::app::start(cfg).await.unwrap();
        Server {
            running: Some(running),
            dir,
        }
    }

    fn running(&self) -> &starling::app::Running {
        self.running.as_ref().unwrap()
    }

    fn c2s(&self) -> SocketAddr {
        self.running().c2s.unwrap()
    }

    /// Options for this server over a transport; `base` carries the shared SCRAM cache.
    fn common(&self, base: &Common, transport: Transport) -> Common {
        let r = self.running();
        let mut c = base.clone();
        c.transport = transport;
        c.server = match transport {
            Transport::Tls => r.direct_tls.unwrap().to_string(),
            _ => r.c2s.unwrap().to_string(),
        };
        c.ws_url = format!("ws://{}/xmpp-websocket", r.http.unwrap());
        c
    }

    async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn base(server: &Server) -> Common {
    let mut c = Common::new(&server.c2s().to_string(), "localhost");
    c.concurrency = 10;
    c.duration = Duration::from_secs(2);
    c.timeout = Duration::from_secs(60);
    // This very test process: CPU and RSS sampling work, though client and server share it.
    c.pid = Some(std::process::id());
    c
}

async fn run(common: &Common, s: Scenario) -> (Report, Value) {
    let t = std::time::Instant::now();
    let report = starling_bench::run(common.clone(), &s).await.unwrap();
    eprintln!(
        "{} over {}: {:?}",
        s.name(),
        common.transport.name(),
        t.elapsed()
    );
    let json: Value = serde_json::from_str(&report.summary.to_json()).unwrap();
    assert_eq!(json["scenario"], s.name());
    (report, json)
}

#[track_caller]
fn assert_clean(report: &Report, json: &Value) {
    assert!(report.ok(), "{:?}\n{json}", report.problems);
    assert_eq!(json["failures"], 0, "{json}");
    assert_eq!(json["ok"], true, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_connect_and_chat_over_every_transport() {
    let server = Server::start("all").await;
    let base = base(&server);

    // Registration, then again: every account already exists.
    let reg = Scenario::Register(register::RegisterOpts {
        users: USERS,
        via_cli: None,
    });
    let (report, json) = run(&base, reg.clone()).await;
    assert_clean(&report, &json);
    assert_eq!(json["registered"], USERS, "{json}");
    assert_eq!(json["already_registered"], 0, "{json}");
    let (report, json) = run(&base, reg).await;
    assert_clean(&report, &json);
    assert_eq!(json["already_registered"], USERS, "{json}");

    for transport in [Transport::StartTls, Transport::Tls, Transport::Ws] {
        let common = server.common(&base, transport);
        let (report, json) = run(
            &common,
            Scenario::Connect(connect::ConnectOpts {
                users: USERS,
                hold: Duration::from_millis(500),
                rss_at: vec![25],
            }),
        )
        .await;
        assert_clean(&report, &json);
        assert_eq!(json["transport"], transport.name());
        assert_eq!(json["logins"], USERS, "{json}");
        assert_eq!(json["sessions_held"], USERS, "{json}");
        assert_eq!(json["login_ms"]["count"], USERS, "{json}");
        assert_eq!(json["mechanism"], "SCRAM-SHA-256", "{json}");
        assert!(json["logins_per_sec"].as_f64().unwrap() > 0.0, "{json}");
        assert!(
            json["server"]["rss_kb_after"].as_u64().unwrap() > 0,
            "{json}"
        );
        assert_eq!(json["rss_curve"][0]["sessions"], 25, "{json}");

        let (report, json) = run(
            &common,
            Scenario::Chat(chat::ChatOpts {
                pairs: 10,
                rate: 200.0,
                ..chat::ChatOpts::default()
            }),
        )
        .await;
        assert_clean(&report, &json);
        let sent = json["sent"].as_u64().unwrap();
        assert_eq!(json["scheduled"], 400, "{json}");
        assert_eq!(sent, 400, "{json}");
        assert_eq!(json["delivered"], sent, "{json}");
        assert_eq!(json["lost"], 0, "{json}");
        assert_eq!(json["latency_ms"]["count"], sent, "{json}");
        assert!(json["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{json}");
    }

    // As fast as delivered, bigger bodies: every message still arrives.
    let (report, json) = run(
        &base,
        Scenario::Chat(chat::ChatOpts {
            pairs: 5,
            rate: 0.0,
            window: 4,
            body_size: 300,
            ..chat::ChatOpts::default()
        }),
    )
    .await;
    assert_clean(&report, &json);
    assert!(json["sent"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["delivered"], json["sent"], "{json}");

    // SCRAM-SHA-1 and PLAIN by request.
    for mech in ["SCRAM-SHA-1", "PLAIN"] {
        let mut c = base.clone();
        c.mechanism = starling_proto::sasl::Mechanism::from_name(mech);
        let (report, json) = run(
            &c,
            Scenario::Connect(connect::ConnectOpts {
                users: 4,
                ..Default::default()
            }),
        )
        .await;
        assert_clean(&report, &json);
        assert_eq!(json["mechanism"], mech);
    }

    // A wrong password fails every login, with the SASL condition as the reason.
    let mut wrong = base.clone();
    wrong.password = "not-the-password".into();
    let (report, json) = run(
        &wrong,
        Scenario::Connect(connect::ConnectOpts {
            users: 2,
            ..Default::default()
        }),
    )
    .await;
    assert!(!report.ok());
    assert_eq!(json["failures"], 2, "{json}");
    assert!(
        json["failure_reasons"][0]
            .as_str()
            .unwrap()
            .contains("not-authorized"),
        "{json}"
    );

    // No MUC and no MAM in Starling yet: said so, and the run fails.
    let (report, json) = run(
        &base,
        Scenario::Muc(muc::MucOpts {
            rooms: 1,
            occupants: 2,
            ..muc::MucOpts::default()
        }),
    )
    .await;
    assert!(!report.ok(), "{json}");
    assert_eq!(json["joined"], 0, "{json}");
    assert!(
        json["failure_reasons"][0]
            .as_str()
            .unwrap()
            .contains("no MUC service"),
        "{json}"
    );
    let (report, json) = run(
        &base,
        Scenario::Mam(mam::MamOpts {
            users: 2,
            messages: 4,
            ..mam::MamOpts::default()
        }),
    )
    .await;
    assert!(!report.ok(), "{json}");
    assert_eq!(json["queries"], 0, "{json}");
    assert!(
        json["failure_reasons"][0]
            .as_str()
            .unwrap()
            .contains("MAM query refused"),
        "{json}"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_one_json_line_and_exits_by_outcome() {
    let server = Server::start("cli").await;
    let bin = env!("CARGO_BIN_EXE_starling-bench");
    let addr = server.c2s().to_string();
    let cache = server.dir.join("scram-cache");
    let cli = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args)
            .args(["--server", &addr, "--no-progress", "--scram-cache"])
            .arg(&cache);
        cmd
    };

    let out = cli(&["register", "--users", "4"]).output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    // Second run of `connect`: the SCRAM cache file makes every SaltedPassword a hit.
    for round in 0..2 {
        let out = cli(&[
            "connect",
            "--users",
            "4",
            "--json-only",
            "--concurrency",
            "2",
        ])
        .output()
        .await
        .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        let json: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(json["logins"], 4, "{json}");
        assert_eq!(json["failures"], 0, "{json}");
        if round == 1 {
            assert_eq!(json["scram_cache_hits"], 4, "{json}");
            assert_eq!(json["scram_cache_misses"], 0, "{json}");
        }
    }

    // The table, then the JSON line last.
    let out = cli(&["chat", "--pairs", "2", "--rate", "50", "--duration", "1s"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("delivered"), "{stdout}");
    let json: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(json["delivered"], json["sent"], "{json}");

    // Failures: exit code 1 and the reason on stderr.
    let out = cli(&["connect", "--users", "1", "--password", "nope"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-authorized"));

    // Bad usage: exit code 2, one line naming the option.
    let out = cli(&["chat", "--pairs", "1", "--rate", "fast"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--rate"), "{stderr}");
    let out = cli(&["connect", "--users", "3", "--rss-at", "9"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rss-at"));

    server.stop().await;
}
