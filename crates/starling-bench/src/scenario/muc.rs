//! `muc`: R rooms of N occupants each (XEP-0045). Each room's first occupant joins first and,
//! when the room is new (status 201), accepts the default configuration with an empty
//! submitted form (an instant room, XEP-0045 §10.1.2); the others join after it. Joins ask
//! for no history. Occupants then send groupchat messages (a fixed aggregate rate paced
//! centrally, or as fast as delivered with a window of own messages not yet reflected back);
//! every copy an occupant receives counts as one delivery, the reflection to the sender
//! included, and carries its send time for the latency.
//!
//! A service discovery query (XEP-0030) to the MUC service runs first: a server without a MUC
//! service answers it with an error (joins would only be dropped: presence errors are often
//! not bounced), which is reported as such and fails the run; nothing is simulated.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::{close_all, login_all, per_sec, server_group, summary_head, summary_tail, Meter};
use crate::conn::login::{wait_iq, LoginOpts, Session};
use crate::conn::stanza::{
    answer_iq, error_condition, parse_body, resource, Attr, NS_MUC, NS_MUC_USER,
};
use crate::conn::{Conn, Event};
use crate::ctx::Ctx;
use crate::error::{BenchError, ConnError};
use crate::pacing;
use crate::report::Report;
use crate::stats::{now_ns, Histogram};

#[derive(Clone, Debug)]
pub struct MucOpts {
    pub rooms: u64,
    /// Occupants per room.
    pub occupants: u64,
    /// The MUC service; empty: `conference.{domain}`.
    pub service: String,
    /// Aggregate groupchat messages/s; 0 = as fast as reflected (window-bound).
    pub rate: f64,
    pub window: u32,
    pub grace: Duration,
    pub room_prefix: String,
}

impl Default for MucOpts {
    fn default() -> Self {
        MucOpts {
            rooms: 1,
            occupants: 2,
            service: String::new(),
            rate: 0.0,
            window: 4,
            grace: Duration::from_secs(5),
            room_prefix: "bench-room".into(),
        }
    }
}

const RUNNING: u8 = 0;
const DRAIN: u8 = 1;
const DONE: u8 = 2;

struct Shared {
    ctx: Arc<Ctx>,
    latency: Histogram,
    delivered: AtomicU64,
    /// Deliveries owed: each message sent counts once per occupant of its room.
    expected: AtomicU64,
    sent: AtomicU64,
    rate: f64,
    window: u32,
}

#[derive(Default)]
struct Ctl {
    credits: AtomicU64,
    notify: Notify,
}

const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// Asks the service what it is: Err when it is not there or is no MUC service.
async fn probe_service(conn: &mut Conn, service: &str) -> Result<(), ConnError> {
    conn.push(|o| {
        let _ = write!(
            o,
            "<iq type='get' id='disco' to='{}'><query xmlns='{NS_DISCO_INFO}'/></iq>",
            Attr(service)
        );
    });
    conn.flush().await?;
    let info = match wait_iq(conn, "disco", "disco#info").await {
        Ok(info) => info,
        Err(ConnError::Iq { condition, .. }) => {
            return Err(ConnError::Protocol(format!(
                "no MUC service at {service}: {condition}"
            )))
        }
        Err(e) => return Err(e),
    };
    let is_muc = info.get_child("query", NS_DISCO_INFO).is_some_and(|q| {
        q.children()
            .any(|f| f.name() == "feature" && f.attr("var") == Some(NS_MUC))
    });
    if is_muc {
        Ok(())
    } else {
        Err(ConnError::Protocol(format!(
            "{service} does not advertise {NS_MUC} (not a MUC service)"
        )))
    }
}

/// Joins `room`/`nick` and waits for our own presence (status 110). Returns whether the room
/// was created by this join (status 201).
async fn join(conn: &mut Conn, room: &str, nick: &str) -> Result<bool, ConnError> {
    conn.push(|o| {
        let _ = write!(
            o,
            "<presence to='{}/{}'><x xmlns='http://jabber.org/protocol/muc'>\
             <history maxstanzas='0'/></x></presence>",
            Attr(room),
            Attr(nick)
        );
    });
    conn.flush().await?;
    loop {
        let e = conn.next_stanza().await?;
        if e.name() != "presence" {
            if answer_iq(conn, &e) {
                conn.flush().await?;
            }
            continue;
        }
        let from = e.attr("from").unwrap_or("");
        if !from.starts_with(room) {
            continue;
        }
        if e.attr("type") == Some("error") {
            return Err(ConnError::Protocol(format!(
                "MUC join of {room} refused: {} (does the server have a MUC service there?)",
                error_condition(&e)
            )));
        }
        let Some(x) = e.get_child("x", NS_MUC_USER) else {
            continue;
        };
        let codes: Vec<&str> = x
            .children()
            .filter(|c| c.name() == "status")
            .filter_map(|c| c.attr("code"))
            .collect();
        if codes.contains(&"110") || resource(from) == Some(nick) {
            return Ok(codes.contains(&"201"));
        }
    }
}

/// Accepts the default configuration of a new room (an instant room).
async fn configure_instant(conn: &mut Conn, room: &str) -> Result<(), ConnError> {
    conn.push(|o| {
        let _ = write!(
            o,
            "<iq type='set' id='cfg' to='{}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'/></query></iq>",
            Attr(room)
        );
    });
    conn.flush().await?;
    wait_iq(conn, "cfg", "room configuration").await.map(|_| ())
}

fn push_groupchat(conn: &mut Conn, room: &str, seq: u64) {
    let ts = now_ns();
    conn.push(|o| {
        let _ = write!(
            o,
            "<message to='{}' type='groupchat' id='g{seq}'><body>{seq} {ts}</body></message>",
            Attr(room)
        );
    });
}

/// One occupant after joining: sends on credits (or to fill its window), counts every
/// groupchat copy it receives. Returns (sent, own reflections seen, conn if intact).
async fn occupant(
    shared: Arc<Shared>,
    ctl: Arc<Ctl>,
    mut conn: Conn,
    room: String,
    nick: String,
    in_room: u64,
    mut phase: watch::Receiver<u8>,
) -> (u64, Option<Conn>) {
    let ctx = shared.ctx.clone();
    let max_mode = shared.rate <= 0.0;
    let (mut sent, mut reflected) = (0u64, 0u64);
    loop {
        let ph = *phase.borrow_and_update();
        if ph == DONE {
            break;
        }
        if !max_mode {
            // Every credit handed out is sent, even one arriving as sending stops.
            let n = ctl.credits.swap(0, Relaxed);
            for _ in 0..n {
                push_groupchat(&mut conn, &room, sent);
                sent += 1;
            }
            ctx.progress.sent.fetch_add(n, Relaxed);
            shared.expected.fetch_add(n * in_room, Relaxed);
            shared.sent.fetch_add(n, Relaxed);
            if n > 0 && conn.flush().await.is_err() {
                ctx.failures
                    .record("MUC occupant lost while sending".into());
                return (sent, None);
            }
        }
        if ph == RUNNING && max_mode {
            while sent - reflected.min(sent) < u64::from(shared.window) {
                push_groupchat(&mut conn, &room, sent);
                sent += 1;
                ctx.progress.sent.fetch_add(1, Relaxed);
                shared.expected.fetch_add(in_room, Relaxed);
                shared.sent.fetch_add(1, Relaxed);
            }
            if conn.flush().await.is_err() {
                ctx.failures
                    .record("MUC occupant lost while sending".into());
                return (sent, None);
            }
        }
        let open = !max_mode && ph == RUNNING;
        tokio::select! {
            r = phase.changed() => if r.is_err() { break },
            // Sent at the top of the loop.
            _ = ctl.notify.notified(), if open => {}
            ev = conn.next_event() => {
                let e = match ev {
                    Ok(Event::Stanza(e)) => e,
                    Ok(_) | Err(_) => {
                        ctx.failures.record("MUC occupant lost".into());
                        return (sent, None);
                    }
                };
                if e.name() == "message" && e.attr("type") == Some("groupchat") {
                    if let Some((_, ts)) = e.get_child("body", e.ns()).and_then(|b| parse_body(&b.text())) {
                        shared.latency.record_us(now_ns().saturating_sub(ts) / 1000);
                        shared.delivered.fetch_add(1, Relaxed);
                        ctx.progress.received.fetch_add(1, Relaxed);
                        if e.attr("from").and_then(resource) == Some(nick.as_str()) {
                            reflected += 1;
                        }
                    }
                } else if e.name() == "message" && e.attr("type") == Some("error") {
                    ctx.failures.record(format!("groupchat message refused: {}", error_condition(&e)));
                    // Counted as reflected so the window does not stall.
                    reflected += 1;
                } else if answer_iq(&mut conn, &e) && conn.flush().await.is_err() {
                    return (sent, None);
                }
            }
        }
    }
    (sent, Some(conn))
}

pub async fn run(ctx: &Arc<Ctx>, opts: &MucOpts) -> Result<Report, BenchError> {
    if opts.rooms == 0 || opts.occupants == 0 {
        return Err(BenchError::Usage(
            "--rooms and --occupants: must be at least 1".into(),
        ));
    }
    if opts.rate <= 0.0 && opts.window == 0 {
        return Err(BenchError::Usage("--window: must be at least 1".into()));
    }
    let service = if opts.service.is_empty() {
        format!("conference.{}", ctx.common.domain)
    } else {
        opts.service.clone()
    };
    let total_users = opts.rooms * opts.occupants;
    let users: Vec<u64> = (0..total_users).collect();
    let mut logins = login_all(ctx, &users, LoginOpts::default(), "login").await;
    let probe = match logins.sessions.iter_mut().flatten().next() {
        Some(s) => tokio::time::timeout(ctx.common.timeout, probe_service(&mut s.conn, &service))
            .await
            .unwrap_or(Err(ConnError::Timeout("disco#info"))),
        None => Err(ConnError::Protocol("no user could log in".into())),
    };
    if let Err(e) = probe {
        ctx.failures.conn(&e);
        close_all(
            logins
                .sessions
                .into_iter()
                .flatten()
                .map(|s| s.conn)
                .collect(),
        )
        .await;
        let mut report = Report {
            summary: summary_head(ctx, "muc", total_users),
            ..Report::default()
        };
        report.summary.set("service", service.as_str());
        report.summary.set("logins", logins.ok);
        report.summary.set("joined", 0u64);
        report.problems.push(e.reason());
        summary_tail(ctx, &mut report, &logins.measured, None);
        return Ok(report);
    }

    // Joins: per room, the first occupant (creating and configuring the room if new), then
    // the others; rooms in parallel, `--concurrency` joins in flight overall.
    ctx.progress.phase("join", false);
    let mut by_room: Vec<Vec<Session>> = (0..opts.rooms).map(|_| Vec::new()).collect();
    for (i, s) in logins.sessions.into_iter().enumerate() {
        if let Some(s) = s {
            by_room[i / opts.occupants as usize].push(s);
        }
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(ctx.common.concurrency));
    let mut rooms_set = JoinSet::new();
    for (r, sessions) in by_room.into_iter().enumerate() {
        let room = format!("{}{r}@{service}", opts.room_prefix);
        let (ctx, permits) = (ctx.clone(), permits.clone());
        rooms_set.spawn(async move {
            let mut joined = Vec::new();
            let mut rest = sessions.into_iter();
            // The first occupant that manages to join opens the room for the others.
            let mut opened = false;
            for mut s in rest.by_ref() {
                let nick = ctx.common.username(s.index);
                let _p = permits.acquire().await;
                let r = tokio::time::timeout(ctx.common.timeout, async {
                    if join(&mut s.conn, &room, &nick).await? {
                        configure_instant(&mut s.conn, &room).await?;
                    }
                    Ok::<_, ConnError>(())
                })
                .await
                .unwrap_or(Err(ConnError::Timeout("MUC join")));
                match r {
                    Ok(()) => {
                        ctx.progress.ok.fetch_add(1, Relaxed);
                        joined.push((s, nick));
                        opened = true;
                        break;
                    }
                    Err(e) => {
                        ctx.failures.conn(&e);
                        ctx.progress.failed.fetch_add(1, Relaxed);
                        s.conn.close().await;
                    }
                }
            }
            if opened {
                let mut set = JoinSet::new();
                for mut s in rest {
                    let (ctx, room, permits) = (ctx.clone(), room.clone(), permits.clone());
                    set.spawn(async move {
                        let nick = ctx.common.username(s.index);
                        let _p = permits.acquire().await;
                        let r = tokio::time::timeout(
                            ctx.common.timeout,
                            join(&mut s.conn, &room, &nick),
                        )
                        .await
                        .unwrap_or(Err(ConnError::Timeout("MUC join")));
                        match r {
                            Ok(_) => {
                                ctx.progress.ok.fetch_add(1, Relaxed);
                                Some((s, nick))
                            }
                            Err(e) => {
                                ctx.failures.conn(&e);
                                ctx.progress.failed.fetch_add(1, Relaxed);
                                s.conn.close().await;
                                None
                            }
                        }
                    });
                }
                while let Some(r) = set.join_next().await {
                    if let Ok(Some(j)) = r {
                        joined.push(j);
                    }
                }
            }
            (room, joined)
        });
    }
    let mut rooms = Vec::new();
    while let Some(r) = rooms_set.join_next().await {
        if let Ok(r) = r {
            rooms.push(r);
        }
    }
    let joined_total: u64 = rooms.iter().map(|(_, j)| j.len() as u64).sum();

    // Messages.
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        latency: Histogram::new(),
        delivered: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        rate: opts.rate,
        window: opts.window,
    });
    let (phase_tx, phase_rx) = watch::channel(RUNNING);
    let mut ctls: Vec<Arc<Ctl>> = Vec::new();
    let mut set = JoinSet::new();
    ctx.progress.phase("muc", true);
    let meter = Meter::start(ctx);
    for (room, joined) in rooms {
        let in_room = joined.len() as u64;
        for (s, nick) in joined {
            let ctl = Arc::new(Ctl::default());
            ctls.push(ctl.clone());
            let fut = occupant(
                shared.clone(),
                ctl,
                s.conn,
                room.clone(),
                nick,
                in_room,
                phase_rx.clone(),
            );
            set.spawn(async move {
                let (sent, conn) = fut.await;
                (sent, in_room, conn)
            });
        }
    }
    let mut scheduled = 0;
    if joined_total > 0 {
        if opts.rate > 0.0 {
            let total = pacing::total(ctx.common.duration, opts.rate);
            let t0 = tokio::time::Instant::now();
            while scheduled < total {
                let due = pacing::due(t0.elapsed(), opts.rate, total);
                while scheduled < due {
                    let c = &ctls[pacing::sender_of(scheduled, ctls.len())];
                    c.credits.fetch_add(1, Relaxed);
                    c.notify.notify_one();
                    scheduled += 1;
                }
                if scheduled < total {
                    tokio::time::sleep_until(t0 + pacing::due_at(scheduled, opts.rate)).await;
                }
            }
        } else {
            tokio::time::sleep(ctx.common.duration).await;
        }
    }
    // Draining: occupants send the credits they still hold and keep reading (every copy
    // counts, not only their own) until every delivery owed has arrived or the grace period
    // is over.
    let _ = phase_tx.send(DRAIN);
    let deadline = tokio::time::Instant::now() + opts.grace;
    while tokio::time::Instant::now() < deadline
        && (shared.sent.load(Relaxed) < scheduled
            || shared.delivered.load(Relaxed) < shared.expected.load(Relaxed))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = phase_tx.send(DONE);
    let (mut sent, mut expected, mut conns) = (0u64, 0u64, Vec::new());
    while let Some(r) = set.join_next().await {
        if let Ok((s, in_room, c)) = r {
            sent += s;
            expected += s * in_room;
            conns.extend(c);
        }
    }
    let m = meter.finish();
    close_all(conns).await;

    let delivered = shared.delivered.load(Relaxed);
    let lost = expected.saturating_sub(delivered);
    let mut report = Report::default();
    let s = &mut report.summary;
    *s = summary_head(ctx, "muc", total_users);
    s.set("service", service.as_str());
    s.set("rooms", opts.rooms);
    s.set("occupants_per_room", opts.occupants);
    s.set("logins", logins.ok);
    s.set("joined", joined_total);
    s.set("rate_target", opts.rate);
    s.set("window", if opts.rate > 0.0 { 0 } else { opts.window });
    s.set("duration_s", ctx.common.duration.as_secs_f64());
    if opts.rate > 0.0 {
        s.set("scheduled", scheduled);
    }
    s.set("sent", sent);
    s.set("expected_deliveries", expected);
    s.set("delivered", delivered);
    s.set("lost", lost);
    s.set("sent_per_sec", per_sec(sent, ctx.common.duration));
    s.set("deliveries_per_sec", per_sec(delivered, m.elapsed));
    let latency = Arc::try_unwrap(shared)
        .map(|s| s.latency)
        .unwrap_or_default();
    s.percentiles("latency_ms", &latency.percentiles());
    let mut server = server_group(ctx, &m);
    if let (Some(g), Some(cpu), true) = (server.as_mut(), m.server_cpu, delivered > 0) {
        g.set(
            "cpu_us_per_delivery",
            cpu.as_secs_f64() * 1e6 / delivered as f64,
        );
    }
    if joined_total == 0 {
        report
            .problems
            .push(format!("no occupant could join a room at {service}"));
    }
    if lost > 0 {
        report.problems.push(format!(
            "{lost} of {expected} groupchat deliveries missing after {:?}",
            opts.grace
        ));
    }
    summary_tail(ctx, &mut report, &m, server);
    Ok(report)
}
