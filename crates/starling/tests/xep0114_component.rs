//! XEP-0114 (Jabber Component Protocol) over real sockets: a component opens a
//! `jabber:component:accept` stream, gets a stream id, authenticates with
//! `<handshake>hex(SHA-1(id + secret))</handshake>` (§3) and then exchanges stanzas with local
//! users through the router (echo@bot.localhost answers alice; IQs to the bare domain reach
//! it; the host lists it in disco#items, XEP-0030 §4). Refusals as stream errors: a wrong
//! secret (not-authorized), an unknown domain (host-unknown), a `from` outside its domain
//! (invalid-from), a second connection for a connected domain (conflict; the first stays),
//! a stanza over the size limit (policy-violation), no handshake in time
//! (connection-timeout); past the connection limit new connections are closed at once, as on
//! c2s. A configured component that is not connected bounces stanzas with
//! service-unavailable (never sent to another server); a component's stanza to another domain
//! takes the router's remote path (federation is off here, so it comes back as
//! remote-server-not-found). `starling ctl components` lists the configured domains and
//! which are connected (peer address, age).

mod support;

use sha1::{Digest, Sha1};
use starling_core::config::ComponentService;
use starling_xml::Element;
use support::*;

const NS_COMPONENT: &str = "jabber:component:accept";
const BOT: &str = "bot.localhost";
const OFFLINE_BOT: &str = "idle.localhost";
const SECRET: &str = "s3cret-for-the-bot";
const PW: &str = "secret";

async fn server_with_components() -> TestServer {
    server_with_components_and(|_| {}).await
}

async fn server_with_components_and(f: impl FnOnce(&mut starling_core::Config)) -> TestServer {
    TestServer::start_with(|c| {
        // No federation here: nothing must take a fixed port.
        c.s2s.listen = String::new();
        c.component.listen = "127.0.0.1:0".into();
        c.component.max_stanza_bytes = 10_000;
        c.component.services = vec![
            ComponentService {
                domain: BOT.into(),
                secret: SECRET.into(),
            },
            ComponentService {
                domain: OFFLINE_BOT.into(),
                secret: "other".into(),
            },
        ];
        f(c);
    })
    .await
}

fn digest(id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(id.as_bytes());
    h.update(secret.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens a component stream to `domain`; returns the client and our stream header's id.
async fn open_component(srv: &TestServer, domain: &str) -> (XmppClient, Option<String>) {
    let mut c = XmppClient::connect_tcp(srv.component(), domain).await;
    c.send_raw(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
    ))
    .await;
    let header = c.expect_open().await;
    (c, header.attr("id").map(str::to_owned))
}

/// A component authenticated for `domain` with `secret`.
async fn component(srv: &TestServer, domain: &str, secret: &str) -> XmppClient {
    let (mut c, id) = open_component(srv, domain).await;
    let Some(id) = id else {
        c.fail("the server's component stream header has no id");
    };
    if c.header.as_ref().and_then(|h| h.attr("from")) != Some(domain) {
        c.fail("the server's header must be from the component's domain");
    }
    c.send_raw(&format!("<handshake>{}</handshake>", digest(&id, secret)))
        .await;
    let ok = c.next_stanza().await;
    if !ok.is("handshake", NS_COMPONENT) || ok.children().count() != 0 {
        c.fail(&format!("expected an empty <handshake/>, got {ok}"));
    }
    c
}

async fn online(srv: &TestServer, user: &str) -> XmppClient {
    srv.add_user(user, PW).await;
    let mut c = srv.login(user, PW, "desk").await;
    c.send_stanza("<presence/>").await;
    c
}

fn body(el: &Element, ns: &str) -> Option<String> {
    el.child_text("body", ns)
}

#[tokio::test]
async fn component_and_user_exchange_messages_and_iqs() {
    let srv = server_with_components().await;
    let mut bot = component(&srv, BOT, SECRET).await;
    let mut alice = online(&srv, "alice").await;
    let alice_jid = alice.jid.clone().expect("bound");

    alice
        .send_stanza(&format!(
            "<message to='echo@{BOT}' type='chat' id='m1'><body>hello &amp; bye</body></message>"
        ))
        .await;
    let m = bot
        .wait_for("alice's message", |el| el.name() == "message")
        .await;
    assert_eq!(
        m.ns(),
        NS_COMPONENT,
        "stanzas reach components in their namespace: {m}"
    );
    assert_eq!(m.attr("from"), Some(alice_jid.as_str()), "{m}");
    assert_eq!(m.attr("to"), Some(format!("echo@{BOT}").as_str()), "{m}");
    assert_eq!(
        body(&m, NS_COMPONENT).as_deref(),
        Some("hello & bye"),
        "{m}"
    );

    bot.send_raw(&format!(
        "<message from='echo@{BOT}/r' to='{alice_jid}' type='chat'><body>echo: hello</body></message>"
    ))
    .await;
    let r = alice
        .wait_for("the component's reply", |el| el.name() == "message")
        .await;
    assert_eq!(
        r.attr("from"),
        Some(format!("echo@{BOT}/r").as_str()),
        "{r}"
    );
    assert_eq!(
        body(&r, "jabber:client").as_deref(),
        Some("echo: hello"),
        "{r}"
    );

    // The bare domain is the component too; its answer goes back to alice's full JID.
    alice
        .send_stanza(&format!(
            "<iq type='get' id='v1' to='{BOT}'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await;
    let iq = bot.wait_for("alice's IQ", |el| el.name() == "iq").await;
    assert_eq!(iq.attr("to"), Some(BOT), "{iq}");
    bot.send_raw(&format!(
        "<iq type='result' id='v1' from='{BOT}' to='{alice_jid}'>\
         <query xmlns='jabber:iq:version'><name>echo-bot</name></query></iq>"
    ))
    .await;
    let res = alice
        .wait_for("the component's IQ result", |el| {
            el.name() == "iq" && el.attr("id") == Some("v1")
        })
        .await;
    assert_eq!(res.attr("type"), Some("result"), "{res}");

    // XEP-0030 §4: the host lists the components on its subdomains.
    let items = alice
        .request(
            "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
            "d1",
        )
        .await;
    let jids: Vec<_> = items
        .children()
        .flat_map(|q| q.children())
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert!(
        jids.contains(&BOT) && jids.contains(&OFFLINE_BOT),
        "{items}"
    );

    // A component may address the server itself; the answer comes back to it.
    bot.send_raw(&format!(
        "<iq type='get' id='p1' from='{BOT}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    let pong = bot
        .wait_for("the server's ping answer", |el| {
            el.name() == "iq" && el.attr("id") == Some("p1")
        })
        .await;
    assert_eq!(pong.attr("type"), Some("result"), "{pong}");
    assert_eq!(pong.attr("to"), Some(BOT), "{pong}");
    srv.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_is_not_authorized() {
    let srv = server_with_components().await;
    let (mut c, id) = open_component(&srv, BOT).await;
    let id = id.expect("stream id");
    c.send_raw(&format!(
        "<handshake>{}</handshake>",
        digest(&id, "not the secret")
    ))
    .await;
    c.expect_stream_error("not-authorized").await;
    // The domain was not taken by the failed attempt.
    let _ok = component(&srv, BOT, SECRET).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn unknown_domain_is_host_unknown() {
    let srv = server_with_components().await;
    let (mut c, _) = open_component(&srv, "nobody.localhost").await;
    c.expect_stream_error("host-unknown").await;
    // A served host is not a component either.
    let (mut c, _) = open_component(&srv, "localhost").await;
    c.expect_stream_error("host-unknown").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn spoofed_from_is_invalid_from() {
    let srv = server_with_components().await;
    let mut bot = component(&srv, BOT, SECRET).await;
    bot.send_raw("<message from='admin@localhost' to='alice@localhost'><body>hi</body></message>")
        .await;
    bot.expect_stream_error("invalid-from").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn second_connection_is_refused_with_conflict() {
    let srv = server_with_components().await;
    let mut first = component(&srv, BOT, SECRET).await;
    let (mut second, id) = open_component(&srv, BOT).await;
    let id = id.expect("stream id");
    second
        .send_raw(&format!("<handshake>{}</handshake>", digest(&id, SECRET)))
        .await;
    second.expect_stream_error("conflict").await;

    // The first connection still serves the domain.
    let mut alice = online(&srv, "alice").await;
    alice
        .send_stanza(&format!(
            "<message to='x@{BOT}'><body>still there?</body></message>"
        ))
        .await;
    let m = first
        .wait_for("alice's message", |el| el.name() == "message")
        .await;
    assert_eq!(body(&m, NS_COMPONENT).as_deref(), Some("still there?"));
    srv.shutdown().await;
}

#[tokio::test]
async fn disconnected_component_bounces_and_can_reconnect() {
    let srv = server_with_components().await;
    let mut alice = online(&srv, "alice").await;
    // Configured, never connected: service-unavailable from the router.
    alice
        .send_stanza(&format!(
            "<message to='bot@{OFFLINE_BOT}' id='x1' type='chat'><body>anyone?</body></message>"
        ))
        .await;
    let err = alice
        .wait_for("the bounce", |el| {
            el.name() == "message" && el.attr("type") == Some("error")
        })
        .await;
    assert_eq!(
        stanza_error(&err).map(|(c, _)| c).as_deref(),
        Some("service-unavailable"),
        "{err}"
    );

    // Connected, closed, connected again: the domain is free after a clean close.
    let mut bot = component(&srv, BOT, SECRET).await;
    bot.close().await;
    bot.expect_closed().await;
    let mut bot = component(&srv, BOT, SECRET).await;
    alice
        .send_stanza(&format!("<message to='{BOT}'><body>again</body></message>"))
        .await;
    let m = bot
        .wait_for("alice's message", |el| el.name() == "message")
        .await;
    assert_eq!(body(&m, NS_COMPONENT).as_deref(), Some("again"));
    srv.shutdown().await;
}

#[tokio::test]
async fn oversized_stanza_is_a_policy_violation() {
    let srv = server_with_components().await;
    let mut bot = component(&srv, BOT, SECRET).await;
    let big = "x".repeat(20_000);
    bot.send_raw(&format!(
        "<message from='{BOT}' to='alice@localhost'><body>{big}</body></message>"
    ))
    .await;
    bot.expect_stream_error("policy-violation").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn component_stream_ends_at_shutdown() {
    let srv = server_with_components().await;
    let mut bot = component(&srv, BOT, SECRET).await;
    srv.shutdown().await;
    bot.expect_stream_error("system-shutdown").await;
}

#[tokio::test]
async fn stanza_to_another_server_takes_the_remote_path() {
    // Federation is off in this test: the router's remote path answers
    // remote-server-not-found, and the error comes back to the component's JID.
    let srv = server_with_components().await;
    let mut bot = component(&srv, BOT, SECRET).await;
    bot.send_raw(&format!(
        "<message from='echo@{BOT}' to='someone@elsewhere.example' id='r1'><body>hi</body></message>"
    ))
    .await;
    let err = bot
        .wait_for("the bounce", |el| {
            el.name() == "message" && el.attr("type") == Some("error")
        })
        .await;
    assert_eq!(
        err.attr("to"),
        Some(format!("echo@{BOT}").as_str()),
        "{err}"
    );
    let cond = err
        .get_child("error", NS_COMPONENT)
        .and_then(|e| e.children().find(|c| c.name() != "text"))
        .map(|c| c.name().to_owned());
    assert_eq!(cond.as_deref(), Some("remote-server-not-found"), "{err}");
    srv.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_at_once() {
    let srv = server_with_components_and(|c| c.component.max_connections = 1).await;
    let _bot = component(&srv, BOT, SECRET).await;
    let mut extra = XmppClient::connect_tcp(srv.component(), OFFLINE_BOT).await;
    extra.expect_eof().await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_silent_connection_times_out() {
    let srv = server_with_components_and(|c| c.component.negotiation_timeout_secs = 1).await;
    let (mut c, _) = open_component(&srv, BOT).await;
    // No handshake: the stream ends with connection-timeout.
    c.expect_stream_error("connection-timeout").await;
    srv.shutdown().await;
}

/// `starling ctl components`: every configured component domain, sorted, with whether it is
/// connected now and, when it is, the component's address and how long ago it connected.
#[tokio::test]
async fn ctl_components_lists_configured_domains_and_connections() {
    use starling::admin::{execute, Command, Target};
    let srv = server_with_components().await;
    let list = || async {
        execute(Target::Running(&srv.server), Command::Components)
            .await
            .expect("components")
    };
    assert_eq!(
        list().await,
        format!("{BOT} not-connected\n{OFFLINE_BOT} not-connected")
    );

    let mut bot = component(&srv, BOT, SECRET).await;
    let out = list().await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let words: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(words[..2], [BOT, "connected"], "{out}");
    let peer: std::net::SocketAddr = words[2].parse().expect("a peer address");
    assert!(peer.ip().is_loopback(), "{out}");
    let age: u64 = words[3]
        .strip_suffix('s')
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("an age in seconds: {out}"));
    assert!(age < 30, "{out}");
    assert_eq!(words.len(), 4, "{out}");
    assert_eq!(lines[1], format!("{OFFLINE_BOT} not-connected"));

    // Gone again once the component closed its stream.
    bot.close().await;
    bot.expect_closed().await;
    let mut out = list().await;
    for _ in 0..50 {
        if out.starts_with(&format!("{BOT} not-connected")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        out = list().await;
    }
    assert_eq!(
        out,
        format!("{BOT} not-connected\n{OFFLINE_BOT} not-connected")
    );
    srv.shutdown().await;
}
