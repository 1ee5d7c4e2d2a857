//! A login as a real client does it: stream (with TLS), SASL (RFC 6120 §6: SCRAM-SHA-256,
//! SCRAM-SHA-1 or PLAIN, the server's signature verified), stream restart, resource binding
//! (§7), the legacy session IQ when the server requires it (RFC 3921 §3; ejabberd and Prosody
//! may still advertise it, we send it only when it is not `<optional/>`), the roster get and
//! initial presence (RFC 6121 §2.2, §4.2). The login is complete when the roster has been
//! answered and `<presence/>` is sent.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use starling_proto::sasl::client::{plain_message, salted_password, CacheKey};
use starling_proto::sasl::{decode_b64, Mechanism, SaltParams, ScramClient};
use starling_xml::Element;

use super::dial::{self, open_stream};
use super::stanza::{
    answer_iq, error_condition, Attr, Text, NS_BIND, NS_ROSTER, NS_SASL, NS_SESSION,
};
use super::Conn;
use crate::ctx::Ctx;
use crate::error::ConnError;

/// Mechanisms we pick from when `--mechanism` is not given, best first.
const PREFERENCE: [Mechanism; 3] = [
    Mechanism::ScramSha256,
    Mechanism::ScramSha1,
    Mechanism::Plain,
];

/// What to do after binding.
#[derive(Clone, Copy, Debug)]
pub struct LoginOpts {
    /// Get the roster and send initial presence (what a client does; off for sessions that
    /// only query, which then stay "unavailable").
    pub roster_and_presence: bool,
    /// Keep the roster items (the presence scenario needs them).
    pub keep_roster: bool,
}

impl Default for LoginOpts {
    fn default() -> Self {
        LoginOpts {
            roster_and_presence: true,
            keep_roster: false,
        }
    }
}

/// A roster item: contact's bare JID and subscription state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    pub jid: String,
    pub subscription: String,
    pub ask: bool,
}

/// A logged-in session.
pub struct Session {
    pub conn: Conn,
    /// The user number (`{prefix}{index}`).
    pub index: u64,
    /// The bound full JID.
    pub jid: String,
    pub roster: Vec<RosterItem>,
    /// How long the login took.
    pub took: Duration,
}

/// Logs user `index` in, within `--timeout`.
pub async fn login(ctx: &Ctx, index: u64, opts: LoginOpts) -> Result<Session, ConnError> {
    let started = Instant::now();
    match tokio::time::timeout(ctx.common.timeout, login_inner(ctx, index, opts)).await {
        Ok(Ok(mut s)) => {
            s.took = started.elapsed();
            Ok(s)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ConnError::Timeout("login")),
    }
}

async fn login_inner(ctx: &Ctx, index: u64, opts: LoginOpts) -> Result<Session, ConnError> {
    let username = ctx.common.username(index);
    let (mut conn, features) = dial::connect(ctx).await?;
    authenticate(ctx, &mut conn, &features, &username).await?;
    conn.restart();
    let features = open_stream(&mut conn, &ctx.common.domain).await?;
    let jid = bind(&mut conn, &features, &ctx.common.resource).await?;
    if let Some(s) = features.get_child("session", NS_SESSION) {
        if !s.has_child("optional", NS_SESSION) {
            conn.send(
                "<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
            )
            .await?;
            wait_iq(&mut conn, "sess", "session").await?;
        }
    }
    let mut roster = Vec::new();
    if opts.roster_and_presence {
        conn.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
            .await?;
        let result = wait_iq(&mut conn, "roster", "roster get").await?;
        if opts.keep_roster {
            roster = roster_items(&result);
        }
        conn.send("<presence/>").await?;
    }
    Ok(Session {
        conn,
        index,
        jid,
        roster,
        took: Duration::ZERO,
    })
}

/// Items of a roster result or push (RFC 6121 §2.1.2).
pub fn roster_items(iq: &Element) -> Vec<RosterItem> {
    iq.get_child("query", NS_ROSTER)
        .map(|q| {
            q.children()
                .filter(|i| i.name() == "item")
                .filter_map(|i| {
                    Some(RosterItem {
                        jid: i.attr("jid")?.to_owned(),
                        subscription: i.attr("subscription").unwrap_or("none").to_owned(),
                        ask: i.attr("ask") == Some("subscribe"),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads until the IQ answer with this id: its result, or its error as [`ConnError::Iq`].
/// Server requests meanwhile (pings, roster pushes) are answered; anything else is dropped.
pub async fn wait_iq(conn: &mut Conn, id: &str, step: &'static str) -> Result<Element, ConnError> {
    loop {
        let e = conn.next_stanza().await?;
        if e.name() == "iq" && e.attr("id") == Some(id) {
            return match e.attr("type") {
                Some("result") => Ok(e),
                _ => Err(ConnError::Iq {
                    step,
                    condition: error_condition(&e),
                }),
            };
        }
        if answer_iq(conn, &e) {
            conn.flush().await?;
        }
    }
}

fn pick_mechanism(ctx: &Ctx, features: &Element) -> Result<Mechanism, ConnError> {
    let offered: Vec<String> = features
        .get_child("mechanisms", NS_SASL)
        .map(|m| {
            m.children()
                .filter(|c| c.name() == "mechanism")
                .map(|c| c.text().trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let is_offered = |m: &Mechanism| offered.iter().any(|o| o == m.name());
    let chosen = match ctx.common.mechanism {
        Some(m) => is_offered(&m).then_some(m),
        None => PREFERENCE.into_iter().find(is_offered),
    };
    chosen.ok_or_else(|| {
        ConnError::Protocol(format!(
            "no usable SASL mechanism ({} offered: {})",
            ctx.common.mechanism.map_or("none of ours", |m| m.name()),
            if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(" ")
            }
        ))
    })
}

/// Waits for the next SASL element (`<challenge/>`, `<success/>`, `<failure/>`).
async fn sasl_reply(conn: &mut Conn) -> Result<Element, ConnError> {
    loop {
        let e = conn.next_stanza().await?;
        if e.ns() == NS_SASL {
            if e.name() == "failure" {
                let cond = e
                    .children()
                    .find(|c| c.name() != "text")
                    .map(|c| c.name().to_owned())
                    .unwrap_or_else(|| "unknown".into());
                return Err(ConnError::SaslFailure(cond));
            }
            return Ok(e);
        }
    }
}

fn payload(e: &Element) -> Result<Vec<u8>, ConnError> {
    decode_b64(&e.text())
        .map_err(|_| ConnError::Protocol(format!("SASL <{}/> is not base64", e.name())))
}

/// The SaltedPassword: from the cache, or PBKDF2 on the blocking pool (at most one per core
/// at a time), then cached.
async fn salted(ctx: &Ctx, params: SaltParams) -> Result<Vec<u8>, ConnError> {
    let key = CacheKey::new(&params, &ctx.common.password);
    if let Some(v) = ctx.scram.get(&key) {
        ctx.scram_hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(v);
    }
    ctx.scram_misses
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _permit = ctx
        .pbkdf2
        .acquire()
        .await
        .map_err(|_| ConnError::Protocol("shutting down".into()))?;
    let password = ctx.common.password.clone();
    let v = tokio::task::spawn_blocking(move || salted_password(&params, &password))
        .await
        .map_err(|e| ConnError::Protocol(format!("PBKDF2 task: {e}")))??;
    ctx.scram.insert(key, v.clone());
    Ok(v)
}

async fn authenticate(
    ctx: &Ctx,
    conn: &mut Conn,
    features: &Element,
    username: &str,
) -> Result<(), ConnError> {
    let mech = pick_mechanism(ctx, features)?;
    ctx.record_mechanism(mech);
    if mech == Mechanism::Plain {
        let msg = B64.encode(plain_message(None, username, &ctx.common.password));
        conn.push(|o| {
            let _ = write!(
                o,
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{msg}</auth>"
            );
        });
        conn.flush().await?;
        let reply = sasl_reply(conn).await?;
        return match reply.name() {
            "success" => Ok(()),
            other => Err(ConnError::Protocol(format!("PLAIN: unexpected <{other}/>"))),
        };
    }
    let mut scram = ScramClient::new(mech, username)?;
    let first = B64.encode(scram.client_first());
    conn.push(|o| {
        let _ = write!(
            o,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{}'>{first}</auth>",
            Attr(mech.name())
        );
    });
    conn.flush().await?;
    let challenge = sasl_reply(conn).await?;
    if challenge.name() != "challenge" {
        return Err(ConnError::Protocol(format!(
            "SCRAM: expected a challenge, got <{}/>",
            challenge.name()
        )));
    }
    let params = scram.server_first(&payload(&challenge)?)?;
    let salted = salted(ctx, params).await?;
    let fin = B64.encode(scram.client_final(&salted)?);
    conn.push(|o| {
        let _ = write!(
            o,
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            Text(&fin)
        );
    });
    conn.flush().await?;
    let reply = sasl_reply(conn).await?;
    match reply.name() {
        "success" => {
            let data = payload(&reply)?;
            scram.verify_server_final(&data)?;
            Ok(())
        }
        // COMPAT: servers that send the server-final message in a challenge (RFC 6120
        // §6.4.6 allows it when success cannot carry data) want an empty response.
        "challenge" => {
            scram.verify_server_final(&payload(&reply)?)?;
            conn.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
                .await?;
            match sasl_reply(conn).await?.name() {
                "success" => Ok(()),
                other => Err(ConnError::Protocol(format!("SCRAM: unexpected <{other}/>"))),
            }
        }
        other => Err(ConnError::Protocol(format!("SCRAM: unexpected <{other}/>"))),
    }
}

async fn bind(conn: &mut Conn, features: &Element, resource: &str) -> Result<String, ConnError> {
    if !features.has_child("bind", NS_BIND) {
        return Err(ConnError::Protocol(
            "the server does not offer resource binding".into(),
        ));
    }
    conn.push(|o| {
        let _ = write!(
            o,
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{}</resource></bind></iq>",
            Text(resource)
        );
    });
    conn.flush().await?;
    let result = wait_iq(conn, "bind", "bind").await?;
    result
        .get_child("bind", NS_BIND)
        .and_then(|b| b.child_text("jid", NS_BIND))
        .map(|j| j.trim().to_owned())
        .ok_or_else(|| ConnError::Protocol("bind result without a JID".into()))
}
