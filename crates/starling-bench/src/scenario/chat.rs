//! `chat`: users pair up (2i ↔ 2i+1) and send each other `<message type='chat'/>` whose body
//! carries a sequence number and the send time (ns on this tool's monotonic clock); the
//! receiver computes the delivery latency. Either at a fixed aggregate rate, paced centrally
//! over all senders (message k is due at k/R, handed round-robin to the senders), or as fast
//! as the server delivers with at most `--window` unacknowledged messages per direction.
//!
//! One task per pair owns both sessions, so "acknowledged" is simply "seen by the partner"
//! without any channel between tasks. Messages not delivered within the grace period after
//! sending stops are lost.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::{
    close_all, login_all, per_sec, server_group, summary_head, summary_tail, Measured, Meter,
};
use crate::conn::login::{LoginOpts, Session};
use crate::conn::stanza::{answer_iq, error_condition, parse_body};
use crate::conn::{Conn, Event};
use crate::ctx::Ctx;
use crate::error::{BenchError, ConnError};
use crate::pacing;
use crate::report::Report;
use crate::stats::{now_ns, Histogram};

#[derive(Clone, Debug)]
pub struct ChatOpts {
    pub pairs: u64,
    /// Aggregate messages/s over all senders; 0 = as fast as delivered (window-bound).
    pub rate: f64,
    /// Unacknowledged messages per direction at rate 0.
    pub window: u32,
    /// How long to wait for stragglers after sending stops.
    pub grace: Duration,
    /// Extra body bytes per message.
    pub body_size: usize,
}

impl Default for ChatOpts {
    fn default() -> Self {
        ChatOpts {
            pairs: 1,
            rate: 0.0,
            window: 8,
            grace: Duration::from_secs(5),
            body_size: 0,
        }
    }
}

/// How a set of pairs runs.
#[derive(Clone, Debug)]
pub(crate) struct PairRun {
    pub rate: f64,
    pub window: u32,
    /// Send for this long (None: until `limit`).
    pub duration: Option<Duration>,
    /// Messages per direction, then stop (used to fill archives).
    pub limit: Option<u64>,
    pub grace: Duration,
    /// Appended to each body.
    pub pad: Arc<str>,
}

/// Totals over all pairs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    pub scheduled: u64,
    pub sent: u64,
    pub delivered: u64,
    pub reordered: u64,
    pub bounced: u64,
    pub broken_pairs: u64,
}

const RUNNING: u8 = 0;
const DRAIN: u8 = 1;
const DONE: u8 = 2;

/// Credits from the pacer to one pair: messages due per direction.
#[derive(Default)]
struct PairCtl {
    credits: [AtomicU64; 2],
    notify: Notify,
}

#[derive(Default, Clone, Copy)]
struct PairStats {
    sent: [u64; 2],
    delivered: [u64; 2],
    reordered: u64,
    bounced: u64,
}

struct Shared {
    ctx: Arc<Ctx>,
    latency: Histogram,
    run: PairRun,
}

fn push_message(ctx: &Ctx, conn: &mut Conn, to: u64, seq: u64, pad: &str) {
    let ts = now_ns();
    conn.push(|o| {
        let _ = write!(
            o,
            "<message to='{}{to}@{}' type='chat' id='{seq}'><body>{seq} {ts}{pad}</body></message>",
            ctx.prefix_xml, ctx.domain_xml
        );
    });
}

enum Step {
    Phase(bool),
    /// A stanza (or the end) for the receiver of direction d (0: a→b, received by b).
    Event(usize, Result<Event, ConnError>),
    Credits,
}

async fn pair_task(
    shared: Arc<Shared>,
    ctl: Arc<PairCtl>,
    mut a: Session,
    mut b: Session,
    mut phase: watch::Receiver<u8>,
) -> (Option<(Session, Session)>, PairStats) {
    let ctx = &shared.ctx;
    let run = &shared.run;
    let max_mode = run.rate <= 0.0;
    let to = [b.index, a.index];
    let mut st = PairStats::default();
    let mut expected = [0u64; 2];
    let mut broken: Option<String> = None;
    loop {
        let ph = *phase.borrow_and_update();
        if ph == DONE {
            break;
        }
        if !max_mode {
            // Every credit handed out is sent, even one that arrives as sending stops: the
            // schedule is the pacer's, not this task's.
            let mut any = false;
            for (d, &peer) in to.iter().enumerate() {
                let n = ctl.credits[d].swap(0, Relaxed);
                let conn = if d == 0 { &mut a.conn } else { &mut b.conn };
                for _ in 0..n {
                    push_message(ctx, conn, peer, st.sent[d], &run.pad);
                    st.sent[d] += 1;
                }
                ctx.progress.sent.fetch_add(n, Relaxed);
                any |= n > 0;
            }
            if any {
                if let Err(e) = flush_both(&mut a.conn, &mut b.conn).await {
                    broken = Some(e.reason());
                    break;
                }
            }
        }
        let all_delivered = (0..2).all(|d| st.delivered[d] >= st.sent[d]);
        if ph == DRAIN && all_delivered {
            break;
        }
        if let Some(limit) = run.limit {
            if all_delivered && st.sent.iter().all(|&s| s >= limit) {
                break;
            }
        }
        if ph == RUNNING && max_mode {
            for (d, &peer) in to.iter().enumerate() {
                let conn = if d == 0 { &mut a.conn } else { &mut b.conn };
                while st.sent[d] - st.delivered[d].min(st.sent[d]) < u64::from(run.window)
                    && run.limit.is_none_or(|l| st.sent[d] < l)
                {
                    push_message(ctx, conn, peer, st.sent[d], &run.pad);
                    st.sent[d] += 1;
                    ctx.progress.sent.fetch_add(1, Relaxed);
                }
            }
            if let Err(e) = flush_both(&mut a.conn, &mut b.conn).await {
                broken = Some(e.reason());
                break;
            }
        }
        let credits_open = !max_mode && ph == RUNNING;
        let step = tokio::select! {
            r = phase.changed() => Step::Phase(r.is_ok()),
            ev = a.conn.next_event() => Step::Event(1, ev),
            ev = b.conn.next_event() => Step::Event(0, ev),
            _ = ctl.notify.notified(), if credits_open => Step::Credits,
        };
        match step {
            Step::Phase(true) => {}
            Step::Phase(false) => break,
            // Sent at the top of the loop.
            Step::Credits => {}
            Step::Event(d, ev) => {
                let conn = if d == 0 { &mut b.conn } else { &mut a.conn };
                let e = match ev {
                    Ok(Event::Stanza(e)) => e,
                    Ok(Event::Open(_)) => continue,
                    Ok(Event::Close) => {
                        broken = Some("the server closed the stream".into());
                        break;
                    }
                    Err(e) => {
                        broken = Some(e.reason());
                        break;
                    }
                };
                if e.name() == "message" {
                    if e.attr("type") == Some("error") {
                        st.bounced += 1;
                        ctx.failures
                            .record(format!("message bounced: {}", error_condition(&e)));
                        continue;
                    }
                    let Some((seq, ts)) = e
                        .get_child("body", e.ns())
                        .and_then(|b| parse_body(&b.text()))
                    else {
                        continue;
                    };
                    shared.latency.record_us(now_ns().saturating_sub(ts) / 1000);
                    st.delivered[d] += 1;
                    ctx.progress.received.fetch_add(1, Relaxed);
                    if seq != expected[d] {
                        st.reordered += 1;
                    }
                    expected[d] = seq + 1;
                } else if answer_iq(conn, &e) {
                    if let Err(e) = conn.flush().await {
                        broken = Some(e.reason());
                        break;
                    }
                }
            }
        }
    }
    if let Some(reason) = broken {
        ctx.failures.record(format!("chat session lost: {reason}"));
        return (None, st);
    }
    (Some((a, b)), st)
}

async fn flush_both(a: &mut Conn, b: &mut Conn) -> Result<(), ConnError> {
    if a.has_output() {
        a.flush().await?;
    }
    if b.has_output() {
        b.flush().await?;
    }
    Ok(())
}

/// Hands out message credits at `rate` for `duration`; returns how many were scheduled.
async fn pacer(ctls: Arc<Vec<Arc<PairCtl>>>, rate: f64, duration: Duration) -> u64 {
    let senders = ctls.len() * 2;
    let total = pacing::total(duration, rate);
    let t0 = tokio::time::Instant::now();
    let mut issued = 0u64;
    while issued < total {
        let due = pacing::due(t0.elapsed(), rate, total);
        while issued < due {
            let s = pacing::sender_of(issued, senders);
            let c = &ctls[s / 2];
            c.credits[s % 2].fetch_add(1, Relaxed);
            c.notify.notify_one();
            issued += 1;
        }
        if issued >= total {
            break;
        }
        tokio::time::sleep_until(t0 + pacing::due_at(issued, rate)).await;
    }
    issued
}

/// Runs pairs; returns the sessions of pairs still intact, the totals, the latency
/// histogram and what the run cost.
pub(crate) async fn run_pairs(
    ctx: &Arc<Ctx>,
    pairs: Vec<(Session, Session)>,
    run: PairRun,
    phase_name: &'static str,
) -> (Vec<(Session, Session)>, Totals, Histogram, Measured) {
    ctx.progress.phase(phase_name, true);
    let meter = Meter::start(ctx);
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        latency: Histogram::new(),
        run: run.clone(),
    });
    let (phase_tx, phase_rx) = watch::channel(RUNNING);
    let ctls: Arc<Vec<Arc<PairCtl>>> = Arc::new((0..pairs.len()).map(|_| Arc::default()).collect());
    let mut set = JoinSet::new();
    for (i, (a, b)) in pairs.into_iter().enumerate() {
        set.spawn(pair_task(
            shared.clone(),
            ctls[i].clone(),
            a,
            b,
            phase_rx.clone(),
        ));
    }
    let mut totals = Totals::default();
    let mut intact = Vec::new();
    let mut collect = |r: Result<(Option<(Session, Session)>, PairStats), _>| {
        if let Ok((s, st)) = r {
            let st: PairStats = st;
            totals.sent += st.sent[0] + st.sent[1];
            totals.delivered += st.delivered[0] + st.delivered[1];
            totals.reordered += st.reordered;
            totals.bounced += st.bounced;
            match s {
                Some(p) => intact.push(p),
                None => totals.broken_pairs += 1,
            }
        }
    };
    // Sending.
    match run.duration {
        Some(d) if run.rate > 0.0 => {
            totals.scheduled = pacer(ctls.clone(), run.rate, d).await;
        }
        Some(d) => tokio::time::sleep(d).await,
        None => {
            // Until every pair reached its limit (pairs end by themselves), within a bound.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            while let Ok(Some(r)) = tokio::time::timeout_at(deadline, set.join_next()).await {
                collect(r);
            }
        }
    }
    // Draining: no new messages, wait for what is in flight.
    let _ = phase_tx.send(DRAIN);
    let deadline = tokio::time::Instant::now() + run.grace;
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(r)) => collect(r),
            Ok(None) => break,
            Err(_) => {
                let _ = phase_tx.send(DONE);
                while let Some(r) = set.join_next().await {
                    collect(r);
                }
                break;
            }
        }
    }
    let measured = meter.finish();
    let latency = Arc::try_unwrap(shared)
        .map(|s| s.latency)
        .unwrap_or_default();
    (intact, totals, latency, measured)
}

/// Pairs (2i, 2i+1) of logged-in sessions; sessions whose partner failed are closed.
pub(crate) async fn make_pairs(sessions: Vec<Option<Session>>) -> Vec<(Session, Session)> {
    let mut pairs = Vec::new();
    let mut orphans = Vec::new();
    let mut it = sessions.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        match (a, b) {
            (Some(a), Some(b)) => pairs.push((a, b)),
            (Some(s), None) | (None, Some(s)) => orphans.push(s.conn),
            (None, None) => {}
        }
    }
    close_all(orphans).await;
    pairs
}

pub(crate) fn pad(body_size: usize) -> Arc<str> {
    if body_size == 0 {
        Arc::from("")
    } else {
        Arc::from(format!(" {}", "x".repeat(body_size.saturating_sub(1))))
    }
}

pub async fn run(ctx: &Arc<Ctx>, opts: &ChatOpts) -> Result<Report, BenchError> {
    if opts.pairs == 0 {
        return Err(BenchError::Usage("--pairs: must be at least 1".into()));
    }
    if opts.rate <= 0.0 && opts.window == 0 {
        return Err(BenchError::Usage("--window: must be at least 1".into()));
    }
    let users: Vec<u64> = (0..opts.pairs * 2).collect();
    let logins = login_all(ctx, &users, LoginOpts::default(), "login").await;
    let pairs = make_pairs(logins.sessions).await;
    let n_pairs = pairs.len() as u64;
    let run = PairRun {
        rate: opts.rate,
        window: opts.window,
        duration: Some(ctx.common.duration),
        limit: None,
        grace: opts.grace,
        pad: pad(opts.body_size),
    };
    let (intact, t, latency, m) = if pairs.is_empty() {
        (
            Vec::new(),
            Totals::default(),
            Histogram::new(),
            Measured::default(),
        )
    } else {
        run_pairs(ctx, pairs, run, "chat").await
    };
    close_all(
        intact
            .into_iter()
            .flat_map(|(a, b)| [a.conn, b.conn])
            .collect(),
    )
    .await;

    let lost = t.sent.saturating_sub(t.delivered);
    let mut report = Report::default();
    let s = &mut report.summary;
    *s = summary_head(ctx, "chat", opts.pairs * 2);
    s.set("pairs", opts.pairs);
    s.set("pairs_running", n_pairs);
    s.set("logins", logins.ok);
    s.percentiles("login_ms", &logins.latency.percentiles());
    s.set("rate_target", opts.rate);
    s.set("window", if opts.rate > 0.0 { 0 } else { opts.window });
    s.set("duration_s", ctx.common.duration.as_secs_f64());
    if opts.rate > 0.0 {
        s.set("scheduled", t.scheduled);
    }
    s.set("sent", t.sent);
    s.set("delivered", t.delivered);
    s.set("lost", lost);
    s.set("reordered", t.reordered);
    s.set("bounced", t.bounced);
    s.set("sent_per_sec", per_sec(t.sent, ctx.common.duration));
    s.set("delivered_per_sec", per_sec(t.delivered, m.elapsed));
    s.percentiles("latency_ms", &latency.percentiles());
    let mut server = server_group(ctx, &m);
    if let (Some(g), Some(cpu)) = (server.as_mut(), m.server_cpu) {
        if t.delivered > 0 {
            g.set(
                "cpu_us_per_message",
                cpu.as_secs_f64() * 1e6 / t.delivered as f64,
            );
        }
    }
    if n_pairs == 0 {
        report.problems.push("no pair could log in".into());
    }
    if lost > 0 {
        report.problems.push(format!(
            "{lost} of {} messages not delivered within {:?}",
            t.sent, opts.grace
        ));
    }
    summary_tail(ctx, &mut report, &m, server);
    Ok(report)
}
