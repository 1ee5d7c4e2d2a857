//! `presence`: N users, each with K contacts among the N (a circulant graph: offsets ±1..K/2,
//! plus the opposite user when K is odd), first made mutual subscriptions once, idempotently
//! (RFC 6121 §3: only pairs not already `both` in the roster do the subscribe/subscribed
//! dance), then cycles of logging users out and back in: each relogin makes the server
//! broadcast unavailable and available presence to the K contacts and answer the probes of
//! the user's own presence. Reports presence stanzas received per second and the server CPU
//! per relogin.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::{close_all, login_all, per_sec, server_group, summary_head, summary_tail, Meter};
use crate::conn::login::{login, roster_items, LoginOpts, Session};
use crate::conn::stanza::{answer_iq, localpart, NS_ROSTER};
use crate::conn::{Conn, Event};
use crate::ctx::Ctx;
use crate::error::BenchError;
use crate::report::Report;
use crate::stats::Histogram;

#[derive(Clone, Debug, Default)]
pub struct PresenceOpts {
    pub users: u64,
    pub contacts: u64,
}

/// How long subscriptions may take to become mutual.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Contacts of user `i` (0-based) among `n`: `i±1 … i±k/2`, and `i+n/2` when k is odd.
pub fn contacts_of(i: u64, n: u64, k: u64) -> Vec<u64> {
    let mut v = Vec::with_capacity(k as usize);
    for d in 1..=k / 2 {
        v.push((i + d) % n);
        v.push((i + n - d) % n);
    }
    if !k.is_multiple_of(2) {
        v.push((i + n / 2) % n);
    }
    v
}

/// Checks that a K-regular contact graph of N users exists in our construction.
pub fn check_graph(n: u64, k: u64) -> Result<(), String> {
    if k == 0 || k >= n {
        return Err(format!(
            "--contacts: must be between 1 and --users − 1 ({})",
            n.saturating_sub(1)
        ));
    }
    if !k.is_multiple_of(2) && !n.is_multiple_of(2) {
        return Err("--contacts: an odd number of contacts needs an even --users".into());
    }
    if k.is_multiple_of(2) && k / 2 > (n - 1) / 2 {
        return Err("--contacts: too many for --users".into());
    }
    Ok(())
}

enum Cmd {
    Relogin(oneshot::Sender<Result<Duration, String>>),
    Stop(oneshot::Sender<Option<Conn>>),
}

struct Shared {
    ctx: Arc<Ctx>,
    /// (user, contact) pairs not yet `both`.
    pending: AtomicU64,
    presence: AtomicU64,
}

fn index_of(ctx: &Ctx, jid: &str) -> Option<u64> {
    localpart(jid)?
        .strip_prefix(ctx.common.user_prefix.as_str())?
        .parse()
        .ok()
}

fn push_presence(ctx: &Ctx, conn: &mut Conn, to: u64, kind: &str) {
    conn.push(|o| {
        let _ = write!(
            o,
            "<presence to='{}{to}@{}' type='{kind}'/>",
            ctx.prefix_xml, ctx.domain_xml
        );
    });
}

/// Contacts whose roster item is not `both` yet.
fn missing(ctx: &Ctx, s: &Session, contacts: &[u64]) -> HashSet<u64> {
    let mut need: HashSet<u64> = contacts.iter().copied().collect();
    for item in &s.roster {
        if item.subscription == "both" {
            if let Some(j) = index_of(ctx, &item.jid) {
                need.remove(&j);
            }
        }
    }
    need
}

async fn user_task(
    shared: Arc<Shared>,
    mut s: Session,
    mut need: HashSet<u64>,
    mut rx: mpsc::Receiver<Cmd>,
) {
    let ctx = shared.ctx.clone();
    // Ask for what we do not have yet ("to" or "both" means our request was approved).
    for item_j in &need {
        let has_to = s.roster.iter().any(|i| {
            index_of(&ctx, &i.jid) == Some(*item_j)
                && matches!(i.subscription.as_str(), "to" | "both")
        });
        if !has_to {
            push_presence(&ctx, &mut s.conn, *item_j, "subscribe");
        }
    }
    s.roster = Vec::new();
    let mut alive = s.conn.flush().await.is_ok();
    while alive {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => break,
                Some(Cmd::Stop(reply)) => {
                    let _ = reply.send(Some(s.conn));
                    return;
                }
                Some(Cmd::Relogin(reply)) => {
                    s.conn.close().await;
                    match login(&ctx, s.index, LoginOpts::default()).await {
                        Ok(new) => {
                            let took = new.took;
                            s = new;
                            let _ = reply.send(Ok(took));
                        }
                        Err(e) => {
                            ctx.failures.conn(&e);
                            let _ = reply.send(Err(e.reason()));
                            // The user is gone; answer later commands with nothing.
                            while let Some(cmd) = rx.recv().await {
                                match cmd {
                                    Cmd::Stop(r) => { let _ = r.send(None); }
                                    Cmd::Relogin(r) => { let _ = r.send(Err("user offline".into())); }
                                }
                            }
                            return;
                        }
                    }
                }
            },
            ev = s.conn.next_event() => {
                let e = match ev {
                    Ok(Event::Stanza(e)) => e,
                    Ok(Event::Open(_)) => continue,
                    Ok(Event::Close) => { ctx.failures.record("the server closed a session".into()); alive = false; continue; }
                    Err(e) => { ctx.failures.record(format!("session lost: {}", e.reason())); alive = false; continue; }
                };
                match (e.name(), e.attr("type")) {
                    ("presence", None | Some("unavailable")) => {
                        shared.presence.fetch_add(1, Relaxed);
                        ctx.progress.received.fetch_add(1, Relaxed);
                    }
                    ("presence", Some("subscribe")) => {
                        if let Some(j) = e.attr("from").and_then(|f| index_of(&ctx, f)) {
                            push_presence(&ctx, &mut s.conn, j, "subscribed");
                        }
                    }
                    ("iq", Some("set")) if e.has_child("query", NS_ROSTER) => {
                        for item in roster_items(&e) {
                            if item.subscription == "both" {
                                if let Some(j) = index_of(&ctx, &item.jid) {
                                    if need.remove(&j) {
                                        shared.pending.fetch_sub(1, Relaxed);
                                    }
                                }
                            }
                        }
                        answer_iq(&mut s.conn, &e);
                    }
                    _ => {
                        answer_iq(&mut s.conn, &e);
                    }
                }
                if s.conn.has_output() && s.conn.flush().await.is_err() {
                    alive = false;
                }
            }
        }
    }
    // Lost: answer what comes.
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Stop(r) => {
                let _ = r.send(None);
            }
            Cmd::Relogin(r) => {
                let _ = r.send(Err("user offline".into()));
            }
        }
    }
}

pub async fn run(ctx: &Arc<Ctx>, opts: &PresenceOpts) -> Result<Report, BenchError> {
    check_graph(opts.users, opts.contacts).map_err(BenchError::Usage)?;
    let (n, k, first) = (opts.users, opts.contacts, ctx.common.first);
    let users: Vec<u64> = (0..n).collect();
    let logins = login_all(
        ctx,
        &users,
        LoginOpts {
            roster_and_presence: true,
            keep_roster: true,
        },
        "login",
    )
    .await;

    // Subscriptions.
    ctx.progress.phase("subscribe", false);
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        pending: AtomicU64::new(0),
        presence: AtomicU64::new(0),
    });
    let mut senders = Vec::new();
    let mut tasks = JoinSet::new();
    for (i, s) in logins.sessions.into_iter().enumerate() {
        let Some(s) = s else { continue };
        let (tx, rx) = mpsc::channel(4);
        let contacts: Vec<u64> = contacts_of(i as u64, n, k)
            .into_iter()
            .map(|c| c + first)
            .collect();
        // Counted before any task runs, so "nothing pending" means done.
        let need = missing(ctx, &s, &contacts);
        shared.pending.fetch_add(need.len() as u64, Relaxed);
        tasks.spawn(user_task(shared.clone(), s, need, rx));
        senders.push(tx);
    }
    let setup_start = Instant::now();
    let requested = shared.pending.load(Relaxed);
    while shared.pending.load(Relaxed) > 0 && setup_start.elapsed() < SETUP_TIMEOUT {
        ctx.progress.ok.store(shared.pending.load(Relaxed), Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unmet = shared.pending.load(Relaxed);
    let setup_s = setup_start.elapsed().as_secs_f64();

    // Relogin cycles.
    ctx.progress.phase("cycle", true);
    shared.presence.store(0, Relaxed);
    let meter = Meter::start(ctx);
    let latency = Arc::new(Histogram::new());
    let relogins = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let senders = Arc::new(senders);
    let deadline = Instant::now() + ctx.common.duration;
    let workers = ctx.common.concurrency.min((senders.len() / 2).max(1));
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (senders, latency, relogins, next, ctx) = (
            senders.clone(),
            latency.clone(),
            relogins.clone(),
            next.clone(),
            ctx.clone(),
        );
        set.spawn(async move {
            while Instant::now() < deadline && !senders.is_empty() {
                let i = (next.fetch_add(1, Relaxed) % senders.len() as u64) as usize;
                let (tx, rx) = oneshot::channel();
                if senders[i].send(Cmd::Relogin(tx)).await.is_err() {
                    continue;
                }
                match rx.await {
                    Ok(Ok(took)) => {
                        latency.record(took);
                        relogins.fetch_add(1, Relaxed);
                        ctx.progress.ok.fetch_add(1, Relaxed);
                    }
                    _ => {
                        ctx.progress.failed.fetch_add(1, Relaxed);
                    }
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    // Presence still on its way belongs to the relogins measured.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = meter.finish();
    let presence = shared.presence.load(Relaxed);
    let relogins = relogins.load(Relaxed);

    let mut conns = Vec::new();
    for tx in senders.iter() {
        let (rtx, rrx) = oneshot::channel();
        if tx.send(Cmd::Stop(rtx)).await.is_ok() {
            if let Ok(Some(c)) = rrx.await {
                conns.push(c);
            }
        }
    }
    drop(senders);
    while tasks.join_next().await.is_some() {}
    close_all(conns).await;

    let mut report = Report::default();
    let s = &mut report.summary;
    *s = summary_head(ctx, "presence", n);
    s.set("contacts", k);
    s.set("logins", logins.ok);
    s.percentiles("login_ms", &logins.latency.percentiles());
    s.set("subscriptions_requested", requested);
    s.set("subscription_setup_s", setup_s);
    s.set("subscriptions_missing", unmet);
    s.set("duration_s", ctx.common.duration.as_secs_f64());
    s.set("relogins", relogins);
    s.set("relogins_per_sec", per_sec(relogins, m.elapsed));
    s.percentiles("relogin_ms", &latency.percentiles());
    s.set("presence_received", presence);
    s.set("presence_per_sec", per_sec(presence, m.elapsed));
    s.set(
        "presence_per_relogin",
        if relogins > 0 {
            presence as f64 / relogins as f64
        } else {
            0.0
        },
    );
    let mut server = server_group(ctx, &m);
    if let (Some(g), Some(cpu), true) = (server.as_mut(), m.server_cpu, relogins > 0) {
        g.set(
            "cpu_ms_per_relogin",
            cpu.as_secs_f64() * 1000.0 / relogins as f64,
        );
    }
    if unmet > 0 {
        report.problems.push(format!(
            "{unmet} subscriptions did not become mutual within {SETUP_TIMEOUT:?}"
        ));
    }
    if relogins == 0 {
        report.problems.push("no relogin completed".into());
    }
    summary_tail(ctx, &mut report, &m, server);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_graph_is_symmetric_and_regular() {
        for (n, k) in [(10, 4), (10, 3), (6, 5), (50, 10), (3, 2)] {
            check_graph(n, k).expect("valid");
            for i in 0..n {
                let c = contacts_of(i, n, k);
                let set: HashSet<u64> = c.iter().copied().collect();
                assert_eq!(set.len() as u64, k, "n={n} k={k} i={i}: {c:?}");
                assert!(!set.contains(&i));
                for j in set {
                    assert!(contacts_of(j, n, k).contains(&i), "{i}↔{j}");
                }
            }
        }
        assert!(check_graph(9, 3).is_err());
        assert!(check_graph(5, 5).is_err());
        assert!(check_graph(5, 0).is_err());
    }
}
