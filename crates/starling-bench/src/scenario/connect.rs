//! `connect`: logs N sessions in as real clients do (TLS, SASL, bind, roster get, initial
//! presence), `--concurrency` at a time, and holds them idle. Reports the login rate and
//! latency, then the server's memory: with `--rss-at`, logins pause at each checkpoint, wait
//! for the server to settle and record its RSS, giving the RSS-vs-sessions curve and its
//! slope (bytes per idle session).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::{
    close_all, idle, per_sec, server_group, server_rss_kb, summary_head, summary_tail, Meter,
};
use crate::conn::login::{login, LoginOpts};
use crate::ctx::Ctx;
use crate::error::BenchError;
use crate::report::Report;
use crate::stats::Histogram;

#[derive(Clone, Debug, Default)]
pub struct ConnectOpts {
    pub users: u64,
    /// How long all sessions stay connected after the last login.
    pub hold: Duration,
    /// Session counts at which to pause and record the server's RSS.
    pub rss_at: Vec<u64>,
}

/// How long the server gets to settle before an RSS reading.
const SETTLE: Duration = Duration::from_secs(2);

/// Least-squares slope of y over x; None with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

pub async fn run(ctx: &Arc<Ctx>, opts: &ConnectOpts) -> Result<Report, BenchError> {
    if opts.users == 0 {
        return Err(BenchError::Usage("--users: must be at least 1".into()));
    }
    if let Some(bad) = opts.rss_at.iter().find(|&&n| n == 0 || n > opts.users) {
        return Err(BenchError::Usage(format!(
            "--rss-at: {bad} is not between 1 and --users ({})",
            opts.users
        )));
    }
    let mut checkpoints = opts.rss_at.clone();
    checkpoints.sort_unstable();
    checkpoints.dedup();

    ctx.progress.phase("connect", false);
    let meter = Meter::start(ctx);
    let concurrency = ctx.common.concurrency;
    let permits = Arc::new(Semaphore::new(concurrency));
    let latency = Arc::new(Histogram::new());
    let live = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut holders = JoinSet::new();
    let mut curve: Vec<(u64, u64)> = Vec::new();
    let mut paused = Duration::ZERO;
    let mut next_cp = checkpoints.iter().copied().peekable();

    // Waits until every login in flight is done (all permits free), then records RSS.
    let checkpoint = |permits: Arc<Semaphore>| async move {
        let n = u32::try_from(concurrency).unwrap_or(u32::MAX);
        if let Ok(all) = permits.acquire_many(n).await {
            drop(all);
        }
    };

    for i in 0..opts.users {
        while next_cp.peek() == Some(&i) {
            next_cp.next();
            let t = Instant::now();
            checkpoint(permits.clone()).await;
            if ctx.common.pid.is_some() {
                tokio::time::sleep(SETTLE).await;
                if let Some(rss) = server_rss_kb(ctx) {
                    curve.push((live.load(Relaxed), rss));
                }
            }
            paused += t.elapsed();
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (ctx2, latency, live, stop) =
            (ctx.clone(), latency.clone(), live.clone(), stop_rx.clone());
        holders.spawn(async move {
            let ctx = ctx2;
            let r = login(&ctx, ctx.common.first + i, LoginOpts::default()).await;
            match r {
                Ok(mut s) => {
                    latency.record(s.took);
                    ctx.progress.ok.fetch_add(1, Relaxed);
                    live.fetch_add(1, Relaxed);
                    // Counted before the permit goes: a checkpoint sees every login done.
                    drop(permit);
                    s.conn.shrink();
                    let kept = idle(&ctx, s.conn, stop).await;
                    if kept.is_none() {
                        live.fetch_sub(1, Relaxed);
                    }
                    kept
                }
                Err(e) => {
                    ctx.failures.conn(&e);
                    ctx.progress.failed.fetch_add(1, Relaxed);
                    drop(permit);
                    None
                }
            }
        });
    }
    checkpoint(permits.clone()).await;
    let login_phase = meter.finish();
    let login_elapsed = login_phase.elapsed.saturating_sub(paused);
    let logins = latency.count();

    // Memory with every session in: after settling, then the peak while holding.
    let mut rss_after = None;
    if ctx.common.pid.is_some() {
        tokio::time::sleep(SETTLE).await;
        rss_after = server_rss_kb(ctx);
        if let (Some(rss), true) = (rss_after, next_cp.peek() == Some(&opts.users)) {
            curve.push((live.load(Relaxed), rss));
        }
    }
    ctx.progress.phase("hold", false);
    ctx.progress.ok.store(live.load(Relaxed), Relaxed);
    let mut rss_max = rss_after.unwrap_or(0);
    let hold_end = Instant::now() + opts.hold;
    while Instant::now() < hold_end {
        tokio::time::sleep(Duration::from_secs(1).min(hold_end - Instant::now())).await;
        if let Some(r) = server_rss_kb(ctx) {
            rss_max = rss_max.max(r);
        }
        ctx.progress.ok.store(live.load(Relaxed), Relaxed);
    }
    let held = live.load(Relaxed);
    let _ = stop_tx.send(true);
    let mut conns = Vec::with_capacity(held as usize);
    while let Some(r) = holders.join_next().await {
        if let Ok(Some(c)) = r {
            conns.push(c);
        }
    }
    let disconnects = logins.saturating_sub(conns.len() as u64);
    close_all(conns).await;

    let mut report = Report::default();
    let s = &mut report.summary;
    *s = summary_head(ctx, "connect", opts.users);
    s.set("logins", logins);
    s.set("logins_per_sec", per_sec(logins, login_elapsed));
    s.set("login_elapsed_s", login_elapsed.as_secs_f64());
    s.percentiles("login_ms", &latency.percentiles());
    s.set("hold_s", opts.hold.as_secs_f64());
    s.set("sessions_held", held);
    s.set("disconnects", disconnects);
    let mut server = server_group(ctx, &login_phase);
    if let Some(g) = server.as_mut() {
        if let (Some(cpu), true) = (login_phase.server_cpu, logins > 0) {
            g.set(
                "cpu_ms_per_login",
                cpu.as_secs_f64() * 1000.0 / logins as f64,
            );
        }
        if let Some(after) = rss_after {
            g.set("rss_kb_after", after);
            g.set("rss_kb_max", rss_max.max(after));
            if let (Some(before), true) = (login_phase.rss_kb_before, logins > 0) {
                g.set(
                    "rss_bytes_per_session",
                    (after as f64 - before as f64) * 1024.0 / logins as f64,
                );
            }
        }
        let mut points: Vec<(f64, f64)> = Vec::new();
        if let Some(before) = login_phase.rss_kb_before {
            points.push((0.0, before as f64 * 1024.0));
        }
        points.extend(curve.iter().map(|&(n, kb)| (n as f64, kb as f64 * 1024.0)));
        if let Some(sl) = slope(&points) {
            g.set("rss_slope_bytes_per_session", sl);
        }
    }
    s.set(
        "rss_curve",
        curve
            .iter()
            .map(|&(n, kb)| json!({"sessions": n, "rss_kb": kb}))
            .collect::<Vec<_>>(),
    );
    if disconnects > 0 {
        report
            .problems
            .push(format!("{disconnects} sessions were dropped while idle"));
    }
    // Login-phase CPU and time: the hold is not part of what is measured.
    summary_tail(ctx, &mut report, &login_phase, server);
    report
        .summary
        .set("elapsed_s", login_phase.elapsed.as_secs_f64());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn slope_of_a_line() {
        let pts = [(0.0, 100.0), (1000.0, 2100.0), (10_000.0, 20_100.0)];
        let s = slope(&pts).expect("slope");
        assert!((s - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 5.0)]), None);
    }
}
