//! The scenarios (one file each) and what they share: concurrent logins, phase measurement
//! (wall time, server and client CPU, server RSS) and the common part of every summary.

pub mod chat;
pub mod connect;
pub mod mam;
pub mod muc;
pub mod presence;
pub mod register;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::conn::login::{login, LoginOpts, Session};
use crate::conn::stanza::answer_iq;
use crate::conn::{Conn, Event};
use crate::ctx::Ctx;
use crate::report::{Report, Summary};
use crate::sample::{self, ProcSample};
use crate::stats::Histogram;

/// One scenario with its own options.
#[derive(Clone, Debug)]
pub enum Scenario {
    Register(register::RegisterOpts),
    Connect(connect::ConnectOpts),
    Chat(chat::ChatOpts),
    Presence(presence::PresenceOpts),
    Muc(muc::MucOpts),
    Mam(mam::MamOpts),
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Register(_) => "register",
            Scenario::Connect(_) => "connect",
            Scenario::Chat(_) => "chat",
            Scenario::Presence(_) => "presence",
            Scenario::Muc(_) => "muc",
            Scenario::Mam(_) => "mam",
        }
    }
}

/// Samples taken at the start of a measured phase.
pub struct Meter {
    started: Instant,
    own: ProcSample,
    server: Option<ProcSample>,
    pid: Option<u32>,
    listen_drops: Option<u64>,
}

/// What a measured phase cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measured {
    pub elapsed: Duration,
    pub client_cpu: Duration,
    pub server_cpu: Option<Duration>,
    pub rss_kb_before: Option<u64>,
    pub rss_kb_after: Option<u64>,
    /// Connection attempts dropped by full accept queues during the phase.
    pub listen_drops: Option<u64>,
}

impl Meter {
    pub fn start(ctx: &Ctx) -> Meter {
        let pid = ctx.common.pid;
        Meter {
            started: Instant::now(),
            own: sample::own(),
            server: pid.and_then(|pid| sample::Server { pid }.sample()),
            pid,
            listen_drops: sample::listen_drops(),
        }
    }

    pub fn finish(&self) -> Measured {
        let elapsed = self.started.elapsed();
        let own = sample::own();
        let server = self.pid.and_then(|pid| sample::Server { pid }.sample());
        Measured {
            elapsed,
            client_cpu: own.cpu.saturating_sub(self.own.cpu),
            server_cpu: match (self.server, server) {
                (Some(a), Some(b)) => Some(b.cpu.saturating_sub(a.cpu)),
                _ => None,
            },
            rss_kb_before: self.server.map(|s| s.rss_kb),
            rss_kb_after: server.map(|s| s.rss_kb),
            listen_drops: match (self.listen_drops, sample::listen_drops()) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            },
        }
    }
}

/// Current server RSS, when `--pid` was given.
pub fn server_rss_kb(ctx: &Ctx) -> Option<u64> {
    ctx.common
        .pid
        .and_then(|pid| sample::Server { pid }.sample())
        .map(|s| s.rss_kb)
}

/// The `server` group of a summary: CPU and RSS of the measured phase; scenarios add their
/// derived figures to it.
pub fn server_group(ctx: &Ctx, m: &Measured) -> Option<Summary> {
    let pid = ctx.common.pid?;
    let mut g = Summary::new();
    g.set("pid", pid);
    if let Some(cpu) = m.server_cpu {
        g.set("cpu_s", cpu.as_secs_f64());
        g.set(
            "cpu_pct",
            100.0 * cpu.as_secs_f64() / m.elapsed.as_secs_f64().max(1e-9),
        );
    }
    if let Some(v) = m.rss_kb_before {
        g.set("rss_kb_before", v);
    }
    if let Some(v) = m.rss_kb_after {
        g.set("rss_kb_after", v);
    }
    Some(g)
}

/// The fields every summary starts with.
pub fn summary_head(ctx: &Ctx, scenario: &'static str, users: u64) -> Summary {
    let c = &ctx.common;
    let mut s = Summary::new();
    s.set("scenario", scenario)
        .set("target", c.target_name())
        .set("transport", c.transport.name())
        .set("domain", c.domain.as_str())
        .set("users", users)
        .set("concurrency", c.concurrency as u64);
    s
}

/// The fields every summary ends with; fills `report.problems` with the failures.
pub fn summary_tail(ctx: &Ctx, report: &mut Report, m: &Measured, server: Option<Summary>) {
    let s = &mut report.summary;
    if let Some(mech) = ctx.mechanism_used() {
        s.set("mechanism", mech.name());
    }
    s.set("elapsed_s", m.elapsed.as_secs_f64());
    if let Some(g) = server {
        s.group("server", g);
    }
    s.set("client_cpu_s", m.client_cpu.as_secs_f64());
    s.set(
        "client_cpu_pct",
        100.0 * m.client_cpu.as_secs_f64() / m.elapsed.as_secs_f64().max(1e-9),
    );
    if let Some(kb) = sample::own_peak_rss_kb() {
        s.set("client_rss_kb_peak", kb);
    }
    if let Some(d) = m.listen_drops {
        s.set("tcp_listen_drops", d);
    }
    s.set("scram_cache_hits", ctx.scram_hits.load(Relaxed));
    s.set("scram_cache_misses", ctx.scram_misses.load(Relaxed));
    let failures = ctx.failures.count();
    s.set("failures", failures);
    s.set("failure_reasons", ctx.failures.reasons());
    if failures > 0 {
        report.problems.push(format!(
            "{failures} failures: {}",
            ctx.failures.reasons().join("; ")
        ));
    }
    let ok = report.problems.is_empty();
    report.summary.set("ok", ok);
}

/// Per-second rate, 0 for an empty interval.
pub fn per_sec(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        n as f64 / s
    }
}

/// Logins of a phase.
pub struct Logins {
    /// Indexed like the users asked for; None where the login failed.
    pub sessions: Vec<Option<Session>>,
    pub ok: u64,
    pub failed: u64,
    pub latency: Histogram,
    pub measured: Measured,
}

/// Logs in users `first + i` for each i in `users`, `--concurrency` at a time.
pub async fn login_all(
    ctx: &Arc<Ctx>,
    users: &[u64],
    opts: LoginOpts,
    phase: &'static str,
) -> Logins {
    ctx.progress.phase(phase, false);
    let meter = Meter::start(ctx);
    let permits = Arc::new(Semaphore::new(ctx.common.concurrency));
    let latency = Arc::new(Histogram::new());
    let mut set = JoinSet::new();
    let mut sessions: Vec<Option<Session>> = (0..users.len()).map(|_| None).collect();
    for (slot, &user) in users.iter().enumerate() {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let ctx = ctx.clone();
        let latency = latency.clone();
        set.spawn(async move {
            let r = login(&ctx, ctx.common.first + user, opts).await;
            drop(permit);
            match r {
                Ok(mut s) => {
                    latency.record(s.took);
                    ctx.progress.ok.fetch_add(1, Relaxed);
                    s.conn.shrink();
                    (slot, Some(s))
                }
                Err(e) => {
                    ctx.failures.conn(&e);
                    ctx.progress.failed.fetch_add(1, Relaxed);
                    (slot, None)
                }
            }
        });
        // Collect what is done so the set does not hold every finished task.
        while let Some(r) = set.try_join_next() {
            if let Ok((slot, s)) = r {
                sessions[slot] = s;
            }
        }
    }
    while let Some(r) = set.join_next().await {
        if let Ok((slot, s)) = r {
            sessions[slot] = s;
        }
    }
    let ok = sessions.iter().filter(|s| s.is_some()).count() as u64;
    let measured = meter.finish();
    let latency = Arc::try_unwrap(latency).unwrap_or_default();
    Logins {
        failed: users.len() as u64 - ok,
        ok,
        sessions,
        latency,
        measured,
    }
}

/// Keeps a session idle: answers server pings (XEP-0199) and roster pushes until `stop`
/// turns true. Returns the session when stopped, or None when the server dropped it.
pub async fn idle(
    ctx: &Ctx,
    mut conn: Conn,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<Conn> {
    loop {
        if *stop.borrow() {
            return Some(conn);
        }
        tokio::select! {
            r = stop.changed() => {
                if r.is_err() {
                    return Some(conn);
                }
            }
            ev = conn.next_event() => match ev {
                Ok(Event::Stanza(e)) => {
                    if answer_iq(&mut conn, &e) && conn.flush().await.is_err() {
                        ctx.failures.record("disconnected while idle".into());
                        return None;
                    }
                }
                Ok(Event::Open(_)) => {}
                Ok(Event::Close) => {
                    ctx.failures.record("the server closed an idle session".into());
                    return None;
                }
                Err(e) => {
                    ctx.failures.record(format!("idle session lost: {}", e.reason()));
                    return None;
                }
            }
        }
    }
}

/// Closes sessions, a bounded number at a time (closing 20k at once would be a load test
/// of its own).
pub async fn close_all(conns: Vec<Conn>) {
    let mut set = JoinSet::new();
    for c in conns {
        set.spawn(c.close());
        if set.len() >= 256 {
            set.join_next().await;
        }
    }
    while set.join_next().await.is_some() {}
}
