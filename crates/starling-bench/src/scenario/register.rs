//! `register`: creates the benchmark accounts, by XEP-0077 in-band registration (after TLS,
//! before authentication) or by running a shell command per user (`--via-cli`, e.g.
//! `ejabberdctl register {user} {domain} {password}`). An account that already exists
//! (`<conflict/>`, or a command saying so) counts as present, not as a failure.

use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{per_sec, server_group, summary_head, summary_tail, Meter};
use crate::conn::dial;
use crate::conn::login::wait_iq;
use crate::conn::stanza::Text;
use crate::ctx::Ctx;
use crate::error::{BenchError, ConnError};
use crate::report::Report;
use crate::stats::Histogram;
use crate::template;

#[derive(Clone, Debug, Default)]
pub struct RegisterOpts {
    pub users: u64,
    /// A shell command template with `{user}`, `{domain}`, `{password}`; None: in-band.
    pub via_cli: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Registered,
    Existed,
}

async fn in_band(ctx: &Ctx, index: u64) -> Result<Outcome, ConnError> {
    let (mut conn, _features) = dial::connect(ctx).await?;
    let user = ctx.common.username(index);
    conn.push(|o| {
        let _ = write!(
            o,
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'>\
             <username>{}</username><password>{}</password></query></iq>",
            Text(&user),
            Text(&ctx.common.password)
        );
    });
    conn.flush().await?;
    let r = match wait_iq(&mut conn, "reg", "in-band registration").await {
        Ok(_) => Ok(Outcome::Registered),
        Err(ConnError::Iq { condition, .. }) if condition == "conflict" => Ok(Outcome::Existed),
        Err(e) => Err(e),
    };
    conn.close().await;
    r
}

async fn via_cli(ctx: &Ctx, template: &str, index: u64) -> Result<Outcome, ConnError> {
    let c = &ctx.common;
    let cmd = template::expand(template, &c.username(index), &c.domain, &c.password);
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ConnError::Protocol(format!("cannot run sh: {e}")))?;
    if out.status.success() {
        return Ok(Outcome::Registered);
    }
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let lower = text.to_lowercase();
    if ["already", "exists", "conflict"]
        .iter()
        .any(|w| lower.contains(w))
    {
        return Ok(Outcome::Existed);
    }
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    Err(ConnError::Protocol(format!(
        "command failed ({}): {first}",
        out.status
    )))
}

pub async fn run(ctx: &Arc<Ctx>, opts: &RegisterOpts) -> Result<Report, BenchError> {
    if opts.users == 0 {
        return Err(BenchError::Usage("--users: must be at least 1".into()));
    }
    ctx.progress.phase("register", false);
    let meter = Meter::start(ctx);
    let permits = Arc::new(Semaphore::new(ctx.common.concurrency));
    let latency = Arc::new(Histogram::new());
    let mut set = JoinSet::new();
    let (mut registered, mut existed) = (0u64, 0u64);
    let mut tally = |r: Result<Option<Outcome>, tokio::task::JoinError>| match r {
        Ok(Some(Outcome::Registered)) => registered += 1,
        Ok(Some(Outcome::Existed)) => existed += 1,
        _ => {}
    };
    for i in 0..opts.users {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (ctx, latency, template) = (ctx.clone(), latency.clone(), opts.via_cli.clone());
        set.spawn(async move {
            let index = ctx.common.first + i;
            let started = Instant::now();
            let work = async {
                match &template {
                    Some(t) => via_cli(&ctx, t, index).await,
                    None => in_band(&ctx, index).await,
                }
            };
            let r = match tokio::time::timeout(ctx.common.timeout, work).await {
                Ok(r) => r,
                Err(_) => Err(ConnError::Timeout("registration")),
            };
            drop(permit);
            match r {
                Ok(o) => {
                    latency.record(started.elapsed());
                    ctx.progress.ok.fetch_add(1, Relaxed);
                    Some(o)
                }
                Err(e) => {
                    ctx.failures.conn(&e);
                    ctx.progress.failed.fetch_add(1, Relaxed);
                    None
                }
            }
        });
        while let Some(r) = set.try_join_next() {
            tally(r);
        }
    }
    while let Some(r) = set.join_next().await {
        tally(r);
    }
    let m = meter.finish();
    let mut report = Report::default();
    let s = &mut report.summary;
    *s = summary_head(ctx, "register", opts.users);
    s.set(
        "method",
        if opts.via_cli.is_some() {
            "cli"
        } else {
            "in-band"
        },
    );
    s.set("registered", registered);
    s.set("already_registered", existed);
    s.set(
        "registrations_per_sec",
        per_sec(registered + existed, m.elapsed),
    );
    s.percentiles("register_ms", &latency.percentiles());
    let mut server = server_group(ctx, &m);
    if let (Some(g), Some(cpu)) = (server.as_mut(), m.server_cpu) {
        if registered > 0 {
            g.set(
                "cpu_ms_per_registration",
                cpu.as_secs_f64() * 1000.0 / registered as f64,
            );
        }
    }
    summary_tail(ctx, &mut report, &m, server);
    Ok(report)
}
