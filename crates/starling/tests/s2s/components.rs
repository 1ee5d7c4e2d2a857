//! Components federate (XEP-0114 external components on RFC 6120 server streams, XEP-0220
//! dialback): `bot.a.test`, an external component of a.test, exchanges messages with a user of
//! b.test. a.test authenticates the component's domain itself (streams from and to
//! `bot.a.test`, dialback: the test certificates need not name the subdomain); a domain that
//! is neither a host nor a component's stays host-unknown.

use starling_component::handshake_digest;
use starling_core::config::ComponentService;
use starling_xml::Element;

use crate::harness::*;
use crate::support::{assert_stanza_error, free_port, XmppClient};

const NS_COMPONENT: &str = "jabber:component:accept";
const BOT: &str = "bot.a.test";
const SECRET: &str = "federating-bot";

/// A component connected to `node` as `domain` (XEP-0114 §3 handshake).
async fn component(node: &Node, domain: &str) -> XmppClient {
    let addr = node
        .running
        .as_ref()
        .and_then(|r| r.component)
        .expect("component listener");
    let mut c = XmppClient::connect_tcp(addr, domain).await;
    c.send_raw(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
    ))
    .await;
    let header = c.expect_open().await;
    let id = header.attr("id").unwrap_or_default().to_owned();
    c.send_raw(&format!(
        "<handshake>{}</handshake>",
        handshake_digest(&id, SECRET)
    ))
    .await;
    let ok = c.next_stanza().await;
    if !ok.is("handshake", NS_COMPONENT) {
        c.fail(&format!("expected <handshake/>, got {ok}"));
    }
    c
}

fn component_body(el: &Element, body: &str) -> bool {
    el.name() == "message" && el.child_text("body", NS_COMPONENT).as_deref() == Some(body)
}

/// a.test with the component `bot.a.test` configured, b.test routing both a.test and
/// `bot.a.test` (and `nobot.a.test`) to it; self-signed certificates, dialback.
async fn servers(bidi: bool) -> (Node, Node) {
    let (pa, pb) = (free_port(), free_port());
    let a = Node::start("a.test", pa, &[("b.test", pb)], |c| {
        c.s2s.bidi = bidi;
        c.component.listen = "127.0.0.1:0".into();
        c.component.services = vec![ComponentService {
            domain: BOT.into(),
            secret: SECRET.into(),
        }];
    })
    .await;
    let routes = [("a.test", pa), (BOT, pa), ("nobot.a.test", pa)];
    let b = Node::start("b.test", pb, &routes, |c| c.s2s.bidi = bidi).await;
    (a, b)
}

async fn component_exchanges_messages_with_a_remote_user(bidi: bool) {
    let (a, b) = servers(bidi).await;
    b.add_user("bob").await;
    let mut bob = b.login("bob", "phone").await;
    let mut bot = component(&a, BOT).await;

    // The component writes first: a.test opens a stream from bot.a.test to b.test.
    bot.send_raw(&format!(
        "<message from='echo@{BOT}' to='bob@b.test' type='chat' id='c1'>\
         <body>hello from a component</body></message>"
    ))
    .await;
    let m = bob
        .wait_for("the component's message", |el| {
            message_with(el, "hello from a component")
        })
        .await;
    assert_eq!(m.attr("from"), Some("echo@bot.a.test"), "{m}");

    // bob answers: b.test sends to bot.a.test (over the bidi stream, or a stream of its own
    // that a.test accepts for the component's domain).
    bob.send_stanza(
        "<message to='echo@bot.a.test' type='chat' id='c2'><body>hello bot</body></message>",
    )
    .await;
    let m = bot
        .wait_for("bob's message", |el| component_body(el, "hello bot"))
        .await;
    assert_eq!(m.attr("from"), Some("bob@b.test/phone"), "{m}");
    assert_eq!(m.attr("to"), Some("echo@bot.a.test"), "{m}");

    let links = a.s2s_connections().await;
    assert!(links.contains("out bot.a.test b.test dialback"), "{links}");
    if !bidi {
        assert!(links.contains("in bot.a.test b.test dialback"), "{links}");
    }

    // A subdomain that is no component of a.test is not served there: bob's message bounces.
    bob.send_stanza(
        "<message to='x@nobot.a.test' type='chat' id='c3'><body>anyone?</body></message>",
    )
    .await;
    let err = bob
        .wait_for("the bounce", |el| {
            el.name() == "message" && el.attr("type") == Some("error")
        })
        .await;
    assert_stanza_error(&err, "remote-server-not-found", "cancel");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn component_domain_federates_over_bidi_streams() {
    component_exchanges_messages_with_a_remote_user(true).await;
}

#[tokio::test]
async fn component_domain_federates_with_a_stream_each_way() {
    component_exchanges_messages_with_a_remote_user(false).await;
}
