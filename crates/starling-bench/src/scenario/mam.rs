//! `mam`: fills each user's message archive by chatting (pairs 2i ↔ 2i+1, M messages per
//! archive, as fast as delivered) unless `--no-fill` reuses earlier archives, then pages
//! through every user's whole archive with XEP-0313 (`urn:xmpp:mam:2`) queries and XEP-0059
//! result set management (`<max/>`, `<after/>`). Reports queries/s, query latency and the
//! messages fetched.
//!
//! One probe query runs first: a server without MAM answers it with an error, which is
//! reported as such and fails the run; nothing is simulated.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::chat::{make_pairs, pad, run_pairs, PairRun};
use super::{close_all, login_all, per_sec, server_group, summary_head, summary_tail, Meter};
use crate::conn::login::{LoginOpts, Session};
use crate::conn::stanza::{answer_iq, error_condition, Text, NS_MAM, NS_RSM};
use crate::conn::Conn;
use crate::ctx::Ctx;
use crate::error::{BenchError, ConnError};
use crate::report::Report;
use crate::stats::Histogram;

#[derive(Clone, Debug)]
pub struct MamOpts {
    pub users: u64,
    /// Messages per archive to add before querying (0 with `fill` off).
    pub messages: u64,
    /// RSM page size.
    pub page: u32,
    /// Fill archives first.
    pub fill: bool,
    /// Times each user pages through its whole archive.
    pub passes: u32,
}

impl Default for MamOpts {
    fn default() -> Self {
        MamOpts {
            users: 2,
            messages: 100,
            page: 50,
            fill: true,
            passes: 1,
        }
    }
}

/// One page: (messages received, RSM `<last/>`, complete).
async fn query_page(
    conn: &mut Conn,
    qid: &str,
    page: u32,
    after: Option<&str>,
) -> Result<(u64, Option<String>, bool), ConnError> {
    conn.push(|o| {
        let _ = write!(
            o,
            "<iq type='set' id='{qid}'><query xmlns='urn:xmpp:mam:2' queryid='{qid}'>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>{page}</max>"
        );
        if let Some(a) = after {
            let _ = write!(o, "<after>{}</after>", Text(a));
        }
        o.push_str("</set></query></iq>");
    });
    conn.flush().await?;
    let mut got = 0u64;
    loop {
        let e = conn.next_stanza().await?;
        if e.name() == "message" {
            if e.get_child("result", NS_MAM)
                .is_some_and(|r| r.attr("queryid") == Some(qid))
            {
                got += 1;
            }
            continue;
        }
        if e.name() == "iq" && e.attr("id") == Some(qid) {
            if e.attr("type") != Some("result") {
                return Err(ConnError::Protocol(format!(
                    "MAM query refused: {} (does the server support urn:xmpp:mam:2?)",
                    error_condition(&e)
                )));
            }
            let fin = e.get_child("fin", NS_MAM);
            let complete = fin.is_some_and(|f| f.attr("complete") == Some("true"));
            let last = fin
                .and_then(|f| f.get_child("set", NS_RSM))
                .and_then(|s| s.child_text("last", NS_RSM))
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty());
            return Ok((got, last, complete));
        }
        if answer_iq(conn, &e) {
            conn.flush().await?;
        }
    }
}

struct Totals {
    queries: AtomicU64,
    fetched: AtomicU64,
    missing: AtomicU64,
    latency: Histogram,
}

/// Pages through one user's archive `passes` times.
async fn page_through(
    ctx: &Ctx,
    t: &Totals,
    s: &mut Session,
    page: u32,
    passes: u32,
    expected: u64,
) -> Result<(), ConnError> {
    let mut n = 0u64;
    for pass in 0..passes {
        let mut after: Option<String> = None;
        let mut fetched = 0u64;
        loop {
            n += 1;
            let qid = format!("q{n}");
            let started = Instant::now();
            let (got, last, complete) = tokio::time::timeout(
                ctx.common.timeout,
                query_page(&mut s.conn, &qid, page, after.as_deref()),
            )
            .await
            .unwrap_or(Err(ConnError::Timeout("MAM query")))?;
            t.latency.record(started.elapsed());
            t.queries.fetch_add(1, Relaxed);
            ctx.progress.ok.fetch_add(1, Relaxed);
            t.fetched.fetch_add(got, Relaxed);
            ctx.progress.received.fetch_add(got, Relaxed);
            fetched += got;
            if complete || got == 0 || last.is_none() {
                break;
            }
            after = last;
        }
        if pass == 0 && fetched < expected {
            t.missing.fetch_add(expected - fetched, Relaxed);
        }
    }
    Ok(())
}

pub async fn run(ctx: &Arc<Ctx>, opts: &MamOpts) -> Result<Report, BenchError> {
    if opts.users == 0 || opts.page == 0 || opts.passes == 0 {
        return Err(BenchError::Usage(
            "--users, --page and --passes: must be at least 1".into(),
        ));
    }
    if opts.fill && opts.users % 2 == 1 {
        return Err(BenchError::Usage(
            "--users: filling archives pairs users up, so it must be even".into(),
        ));
    }
    let users: Vec<u64> = (0..opts.users).collect();
    let logins = login_all(ctx, &users, LoginOpts::default(), "login").await;
    let mut sessions: Vec<Session> = logins.sessions.into_iter().flatten().collect();
    let mut report = Report::default();

    // Probe: is there a MAM service at all?
    let probe = match sessions.first_mut() {
        Some(s) => tokio::time::timeout(
            ctx.common.timeout,
            query_page(&mut s.conn, "probe", 1, None),
        )
        .await
        .unwrap_or(Err(ConnError::Timeout("MAM query")))
        .err(),
        None => Some(ConnError::Protocol("no user could log in".into())),
    };

    let per_direction = opts.messages.div_ceil(2);
    let mut archived_sent = 0;
    let mut fill_lost = 0;
    if probe.is_none() && opts.fill && per_direction > 0 {
        let mut slots: Vec<Option<Session>> = Vec::new();
        let mut by_index: Vec<Option<Session>> = (0..opts.users).map(|_| None).collect();
        for s in sessions.drain(..) {
            let i = (s.index - ctx.common.first) as usize;
            by_index[i] = Some(s);
        }
        slots.extend(by_index);
        let pairs = make_pairs(slots).await;
        let run = PairRun {
            rate: 0.0,
            window: 8,
            duration: None,
            limit: Some(per_direction),
            grace: Duration::from_secs(10),
            pad: pad(0),
        };
        let (intact, t, _lat, _m) = run_pairs(ctx, pairs, run, "fill").await;
        archived_sent = t.sent;
        fill_lost = t.sent.saturating_sub(t.delivered);
        sessions = intact.into_iter().flat_map(|(a, b)| [a, b]).collect();
        // Archiving may be asynchronous on the server.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let totals = Arc::new(Totals {
        queries: AtomicU64::new(0),
        fetched: AtomicU64::new(0),
        missing: AtomicU64::new(0),
        latency: Histogram::new(),
    });
    ctx.progress.phase("query", false);
    let meter = Meter::start(ctx);
    let mut kept = Vec::new();
    if let Some(e) = &probe {
        ctx.failures.conn(e);
        kept = sessions;
    } else {
        let expected = if opts.fill { per_direction * 2 } else { 0 };
        let permits = Arc::new(Semaphore::new(ctx.common.concurrency));
        let mut set = JoinSet::new();
        for mut s in sessions {
            let (ctx, totals, permits) = (ctx.clone(), totals.clone(), permits.clone());
            let (page, passes) = (opts.page, opts.passes);
            set.spawn(async move {
                let _p = permits.acquire().await;
                match page_through(&ctx, &totals, &mut s, page, passes, expected).await {
                    Ok(()) => Some(s),
                    Err(e) => {
                        ctx.failures.conn(&e);
                        ctx.progress.failed.fetch_add(1, Relaxed);
                        None
                    }
                }
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Some(s)) = r {
                kept.push(s);
            }
        }
    }
    let m = meter.finish();
    close_all(kept.into_iter().map(|s| s.conn).collect()).await;

    let queries = totals.queries.load(Relaxed);
    let fetched = totals.fetched.load(Relaxed);
    let missing = totals.missing.load(Relaxed);
    let s = &mut report.summary;
    *s = summary_head(ctx, "mam", opts.users);
    s.set("logins", logins.ok);
    s.set(
        "messages_per_archive",
        if opts.fill { per_direction * 2 } else { 0 },
    );
    s.set("archive_messages_sent", archived_sent);
    s.set("archive_messages_lost", fill_lost);
    s.set("page", opts.page);
    s.set("passes", opts.passes);
    s.set("queries", queries);
    s.set("queries_per_sec", per_sec(queries, m.elapsed));
    s.percentiles("query_ms", &totals.latency.percentiles());
    s.set("messages_fetched", fetched);
    s.set("messages_fetched_per_sec", per_sec(fetched, m.elapsed));
    s.set("messages_missing", missing);
    let mut server = server_group(ctx, &m);
    if let (Some(g), Some(cpu), true) = (server.as_mut(), m.server_cpu, queries > 0) {
        g.set(
            "cpu_ms_per_query",
            cpu.as_secs_f64() * 1000.0 / queries as f64,
        );
    }
    if let Some(e) = probe {
        report.problems.push(e.reason());
    }
    if fill_lost > 0 {
        report
            .problems
            .push(format!("{fill_lost} messages lost while filling archives"));
    }
    if missing > 0 {
        report.problems.push(format!(
            "{missing} archived messages missing from the query results"
        ));
    }
    summary_tail(ctx, &mut report, &m, server);
    Ok(report)
}
