//! The admin CLI through the real binary (ARCHITECTURE.md §5, one admin command tree):
//! `starling ctl` against a server started with `starling serve` (through its admin socket)
//! and against the store while it is stopped; mongooseimctl-style output lines and exit codes
//! (0 done, 1 failed, 2 wrong call); `check-config` naming an unknown key; and SIGTERM
//! closing every client stream with `<system-shutdown/>` (RFC 6120 §4.9.3.22).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::*;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_starling");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

async fn run(args: &[&str]) -> Out {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(BIN).args(args).kill_on_drop(true).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("starling {args:?} did not finish"))
    .expect("run starling");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A config file and data folder for the binary; the c2s port is fixed (picked free).
struct Setup {
    dir: TempDir,
    config: PathBuf,
    c2s: SocketAddr,
}

impl Setup {
    fn new() -> Setup {
        let dir = TempDir::new("cli");
        let port = free_port();
        let config = dir.path().join("starling.toml");
        // data_dir relative to the config file (as the loader documents).
        std::fs::write(
            &config,
            format!(
                "hosts = [\"localhost\"]\ndata_dir = \"data\"\n\
                 [c2s]\nlisten = \"127.0.0.1:{port}\"\ndirect_tls_listen = \"\"\n\
                 [http]\nlisten = \"\"\n[s2s]\nlisten = \"\"\n[log]\nlevel = \"info\"\n"
            ),
        )
        .expect("write config");
        Setup {
            c2s: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            config,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn ctl(&self, args: &[&str]) -> Out {
        let config = self.config.to_str().expect("utf-8 path");
        let mut all = vec!["ctl", "--config", config];
        all.extend_from_slice(args);
        run(&all).await
    }

    /// Starts `starling serve` and waits (bounded) until it accepts clients and admin calls.
    async fn serve(&self) -> ServerProcess {
        let log_path = self.dir.path().join("serve.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn starling serve");
        let mut p = ServerProcess {
            child,
            log: log_path,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("starling serve exited with {status}:\n{}", p.log());
            }
            let admin_ready = self.data().join("admin.sock").exists();
            if admin_ready && tokio::net::TcpStream::connect(self.c2s).await.is_ok() {
                return p;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("starling serve not ready after 30 s:\n{}", p.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn client(&self) -> XmppClient {
        XmppClient::connect_tcp(self.c2s, HOST).await
    }
}

struct ServerProcess {
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGTERM through kill(1) (the workspace forbids `unsafe`, so no libc::kill here).
    async fn terminate(&self) {
        let pid = self.pid().to_string();
        let out = run_tool("kill", &["-TERM", &pid]).await;
        assert!(out.status.success(), "kill -TERM {pid} failed");
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("the server did not exit:\n{}", self.log()),
        }
    }
}

async fn run_tool(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

async fn try_login(
    setup: &Setup,
    user: &str,
    password: &str,
    resource: &str,
) -> Result<XmppClient, String> {
    let mut c = setup.client().await;
    c.negotiate_tls().await;
    match c.authenticate(user, password, Mech::SCRAM_SHA_256).await {
        Ok(()) => {}
        Err(f) => return Err(f.to_xml()),
    }
    c.open_stream().await;
    c.bind(Some(resource))
        .await
        .map_err(|e| format!("bind failed: {e}"))?;
    Ok(c)
}

/// Every account command against a running server, with the outputs and exit codes.
#[tokio::test]
async fn ctl_account_lifecycle_against_running_server() {
    let setup = Setup::new();
    let server = setup.serve().await;

    let o = setup.ctl(&["status"]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("running"), "{o}");

    let o = setup
        .ctl(&["register_identified", "alice", "localhost", "first-pw"])
        .await;
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(
        lines(&o.stdout),
        ["User alice@localhost successfully registered"],
        "{o}"
    );

    let o = setup
        .ctl(&["register_identified", "alice", "localhost", "other"])
        .await;
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(
        lines(&o.stderr),
        ["User alice@localhost already registered"],
        "{o}"
    );

    let o = setup.ctl(&["register", "localhost", "random-pw"]).await;
    assert_eq!(o.code, 0, "{o}");
    let random = lines(&o.stdout)
        .first()
        .and_then(|l| l.strip_prefix("User "))
        .and_then(|l| l.strip_suffix(" successfully registered"))
        .unwrap_or_else(|| panic!("unexpected output: {o}"))
        .to_owned();
    assert!(
        random.ends_with("@localhost") && random.len() > "@localhost".len(),
        "{o}"
    );

    let o = setup.ctl(&["registered_users", "localhost"]).await;
    assert_eq!(o.code, 0, "{o}");
    let users = lines(&o.stdout);
    assert!(users.contains(&"alice@localhost"), "{o}");
    assert!(users.contains(&random.as_str()), "{o}");
    assert_eq!(users.len(), 2, "{o}");

    // The random account works.
    let user = random.trim_end_matches("@localhost").to_owned();
    let c = try_login(&setup, &user, "random-pw", "r").await;
    assert!(c.is_ok(), "login as the random user: {:?}", c.err());

    let o = setup
        .ctl(&["change_password", "alice", "localhost", "second-pw"])
        .await;
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("alice@localhost"), "{o}");
    let old = try_login(&setup, "alice", "first-pw", "cli").await;
    assert!(old.is_err(), "the old password still works");
    let mut alice = try_login(&setup, "alice", "second-pw", "cli")
        .await
        .unwrap_or_else(|f| panic!("the new password does not work: {f}\n{}", server.log()));

    let o = setup.ctl(&["connected_users"]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(lines(&o.stdout).contains(&"alice@localhost/cli"), "{o}");

    let o = setup.ctl(&["kick_session", "alice@localhost/cli"]).await;
    assert_eq!(o.code, 0, "{o}");
    let e = alice.next_stanza().await;
    assert!(
        e.is("error", starling_xml::ns::STREAM),
        "expected a stream error, got {e}"
    );
    alice.expect_closed().await;
    let o = setup.ctl(&["connected_users"]).await;
    assert!(!o.stdout.contains("alice@localhost/cli"), "{o}");

    let o = setup.ctl(&["kick_session", "alice@localhost/cli"]).await;
    assert_eq!(o.code, 1, "kicking a session that is gone: {o}");

    // A host the server does not serve.
    let o = setup
        .ctl(&["register_identified", "carol", "example.org", "pw"])
        .await;
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stderr.contains("example.org"), "{o}");
    assert!(o.stdout.is_empty(), "{o}");

    let o = setup.ctl(&["unregister", "alice", "localhost"]).await;
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(
        lines(&o.stdout),
        ["User alice@localhost successfully unregistered"],
        "{o}"
    );
    let o = setup.ctl(&["registered_users", "localhost"]).await;
    assert!(!lines(&o.stdout).contains(&"alice@localhost"), "{o}");
    assert!(try_login(&setup, "alice", "second-pw", "cli")
        .await
        .is_err());

    let o = setup.ctl(&["unregister", "alice", "localhost"]).await;
    assert_eq!(o.code, 1, "unregistering twice: {o}");
    drop(server);
}

/// A wrong call is exit 2 with the expected shape; an unknown command lists the commands.
#[tokio::test]
async fn ctl_wrong_call_exits_2_with_usage() {
    let setup = Setup::new();
    let o = setup
        .ctl(&["register_identified", "alice", "localhost"])
        .await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.stderr.contains(
            "register_identified takes 3 arguments: register_identified USER HOST PASSWORD"
        ),
        "{o}"
    );
    assert!(o.stdout.is_empty(), "{o}");

    let o = setup.ctl(&["frobnicate"]).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("frobnicate"), "{o}");
    assert!(
        o.stderr.contains("register_identified USER HOST PASSWORD"),
        "{o}"
    );

    let o = setup.ctl(&[]).await;
    assert_eq!(o.code, 2, "{o}");
}

/// With the server stopped, account commands work on the store; the server started later
/// sees the account. Commands needing a running server say it is not running.
#[tokio::test]
async fn ctl_register_with_server_stopped() {
    let setup = Setup::new();
    let o = setup
        .ctl(&["register_identified", "dave", "localhost", "pw"])
        .await;
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(
        lines(&o.stdout),
        ["User dave@localhost successfully registered"],
        "{o}"
    );

    let o = setup
        .ctl(&["register_identified", "dave", "localhost", "pw"])
        .await;
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(
        lines(&o.stderr),
        ["User dave@localhost already registered"],
        "{o}"
    );

    let o = setup
        .ctl(&["register_identified", "erin", "example.org", "pw"])
        .await;
    assert_eq!(o.code, 1, "unknown host with the server stopped: {o}");
    assert!(o.stderr.contains("example.org"), "{o}");

    let o = setup.ctl(&["connected_users"]).await;
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stderr.contains("not running"), "{o}");

    let o = setup.ctl(&["registered_users", "localhost"]).await;
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(lines(&o.stdout), ["dave@localhost"], "{o}");

    let server = setup.serve().await;
    let c = try_login(&setup, "dave", "pw", "later").await;
    assert!(
        c.is_ok(),
        "login after offline registration: {:?}\n{}",
        c.err(),
        server.log()
    );
}

/// A running server is its data folder's only user: a second server on the same folder is
/// refused, and `ctl` does not write to the store behind the server's back when the admin
/// socket does not answer (the server caches what it read).
#[tokio::test]
async fn one_server_per_data_folder_and_no_offline_writes_while_it_runs() {
    let setup = Setup::new();
    let server = setup.serve().await;

    let second = run(&["serve", "--config", setup.config.to_str().expect("utf-8")]).await;
    assert_eq!(second.code, 1, "{second}");
    assert!(second.stderr.contains("in use"), "{second}");
    assert!(second.stderr.contains("starling.lock"), "{second}");

    std::fs::remove_file(setup.data().join("admin.sock")).expect("remove admin socket");
    let o = setup
        .ctl(&["register_identified", "mallory", "localhost", "pw"])
        .await;
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stderr.contains("the server is running"), "{o}");
    drop(server);
}

/// `check-config` accepts a good file and names the unknown key of a bad one.
#[tokio::test]
async fn check_config_names_unknown_key() {
    let setup = Setup::new();
    let config = setup.config.to_str().expect("utf-8");
    let o = run(&["check-config", "--config", config]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("configuration is valid"), "{o}");

    let bad = setup.dir.path().join("bad.toml");
    std::fs::write(&bad, "hosts = [\"localhost\"]\n[c2s]\nlisten_port = 5222\n").expect("write");
    let o = run(&["check-config", "--config", bad.to_str().expect("utf-8")]).await;
    assert_ne!(o.code, 0, "{o}");
    assert!(
        o.stderr.contains("listen_port"),
        "the unknown key is not named: {o}"
    );
    assert!(o.stderr.contains("bad.toml"), "the file is not named: {o}");

    let missing = Path::new(setup.dir.path()).join("missing.toml");
    let o = run(&["check-config", "--config", missing.to_str().expect("utf-8")]).await;
    assert_ne!(o.code, 0, "{o}");
    assert!(o.stderr.contains("missing.toml"), "{o}");
}

/// SIGTERM: every client stream is closed with `<system-shutdown/>` (RFC 6120 §4.9.3.22)
/// and the process exits successfully.
#[tokio::test]
async fn sigterm_closes_streams_with_system_shutdown() {
    let setup = Setup::new();
    let o = setup
        .ctl(&["register_identified", "alice", "localhost", "pw"])
        .await;
    assert_eq!(o.code, 0, "{o}");
    let mut server = setup.serve().await;
    let mut c = try_login(&setup, "alice", "pw", "term")
        .await
        .unwrap_or_else(|f| panic!("login: {f}\n{}", server.log()));
    server.terminate().await;
    c.expect_stream_error("system-shutdown").await;
    let status = server.wait_exit().await;
    assert!(status.success(), "exit status {status}:\n{}", server.log());
}

/// SIGTERM also ends streams that are still negotiating (here: TLS done, not yet
/// authenticated) with `<system-shutdown/>`, not with a dropped connection.
#[tokio::test]
async fn sigterm_closes_negotiating_streams_with_system_shutdown() {
    let setup = Setup::new();
    let mut server = setup.serve().await;
    let mut c = setup.client().await;
    c.negotiate_tls().await;
    server.terminate().await;
    c.expect_stream_error("system-shutdown").await;
    let status = server.wait_exit().await;
    assert!(status.success(), "exit status {status}:\n{}", server.log());
}
