//! XEP-0160 offline messages (with XEP-0203 delay stamps), in process.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use starling_core::{Config, Flow, Module, Registrar, Server, StanzaEvent, StanzaHook};
use starling_modules::im;
use starling_proto::StanzaErrorCondition;
use starling_xml::Element;
use support::*;
use tokio::sync::Notify;

const DELAY: &str = "urn:xmpp:delay";

#[tokio::test]
async fn stored_and_delivered_with_delay_at_next_initial_presence() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    send(&romeo, message(JULIET, "chat", "one")).await;
    send(&romeo, message("juliet@localhost/gone", "normal", "two")).await;
    romeo.expect_silence().await;
    assert_eq!(offline_count(&s, JULIET).await, 2);

    let mut juliet = interested(&s, J_FULL).await;
    // Not before initial presence.
    juliet.expect_silence().await;
    send(&juliet, presence()).await;
    let got = drain(&mut juliet).await;
    let messages: Vec<&Element> = got.iter().filter(|e| e.name() == "message").collect();
    assert_eq!(messages.len(), 2, "{got:?}");
    assert_eq!(body(messages[0]).as_deref(), Some("one"));
    assert_eq!(body(messages[1]).as_deref(), Some("two"));
    for m in &messages {
        assert_eq!(m.attr("from"), Some(R_FULL));
        let delay = m.get_child("delay", DELAY).expect("XEP-0203 delay");
        assert_eq!(delay.attr("from"), Some("localhost"));
        let stamp = delay.attr("stamp").expect("stamp");
        assert!(stamp.ends_with('Z'), "{stamp}");
    }
    // Delivered once: the store is empty.
    assert_eq!(offline_count(&s, JULIET).await, 0);
}

#[tokio::test]
async fn negative_priority_resource_does_not_take_them() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let romeo = online(&s, R_FULL).await;
    send(&romeo, message(JULIET, "chat", "kept")).await;
    let mut shy = interested(&s, "juliet@localhost/shy").await;
    send(&shy, presence_prio(-1)).await;
    let got = drain(&mut shy).await;
    assert!(got.iter().all(|e| e.name() != "message"), "{got:?}");
    let mut juliet = interested(&s, J_FULL).await;
    send(&juliet, presence()).await;
    let got = drain(&mut juliet).await;
    assert!(
        got.iter()
            .any(|e| e.name() == "message" && body(e).as_deref() == Some("kept")),
        "{got:?}"
    );
}

#[tokio::test]
async fn over_the_limit_the_sender_gets_service_unavailable() {
    let mut config = Config::default();
    config.offline.max_per_user = 2;
    let s = im_server_with(config, true, &[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    for text in ["1", "2"] {
        send(&romeo, message(JULIET, "chat", text)).await;
    }
    romeo.expect_silence().await;
    send(&romeo, message(JULIET, "chat", "3")).await;
    let e = romeo.recv().await;
    assert_eq!(e.attr("type"), Some("error"), "{e}");
    assert_condition(&e, StanzaErrorCondition::ServiceUnavailable);
    assert_eq!(offline_count(&s, JULIET).await, 2);
}

#[tokio::test]
async fn chat_states_are_dropped_and_no_store_is_bounced() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    let typing = stanza("message")
        .with_attr("to", JULIET)
        .with_attr("type", "chat")
        .with_child(Element::new(
            "composing",
            "http://jabber.org/protocol/chatstates",
        ));
    send(&romeo, typing).await;
    romeo.expect_silence().await;
    let hinted =
        message(JULIET, "chat", "ephemeral").with_child(Element::new("no-store", "urn:xmpp:hints"));
    send(&romeo, hinted).await;
    let e = romeo.recv().await;
    assert_condition(&e, StanzaErrorCondition::ServiceUnavailable);
    assert_eq!(offline_count(&s, JULIET).await, 0);
}

#[tokio::test]
async fn groupchat_and_headline_are_not_stored() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let romeo = online(&s, R_FULL).await;
    for ty in ["groupchat", "headline", "error"] {
        send(&romeo, message(JULIET, ty, "x")).await;
    }
    assert_eq!(offline_count(&s, JULIET).await, 0);
}

#[tokio::test]
async fn msgoffline_is_advertised() {
    let s = im_server(&[]).await;
    assert!(s.disco.host_features.iter().any(|f| f == "msgoffline"));
}

/// XEP-0160 §3: stored messages go to the next *non-negative* available presence, which may
/// be a later presence of a resource that was available with a negative priority.
#[tokio::test]
async fn delivered_when_a_negative_resource_raises_its_priority() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let mut shy = online_with(&s, J_FULL, presence_prio(-1)).await;
    let mut romeo = online(&s, R_FULL).await;
    send(&romeo, message(JULIET, "chat", "while you hid")).await;
    romeo.expect_silence().await;
    shy.expect_silence().await;
    assert_eq!(offline_count(&s, JULIET).await, 1);

    // Still negative: nothing yet.
    send(&shy, presence_prio(-5)).await;
    let got = drain(&mut shy).await;
    assert!(got.iter().all(|e| e.name() != "message"), "{got:?}");
    assert_eq!(offline_count(&s, JULIET).await, 1);

    send(&shy, presence_prio(0)).await;
    let got = drain(&mut shy).await;
    let messages: Vec<&Element> = got.iter().filter(|e| e.name() == "message").collect();
    assert_eq!(messages.len(), 1, "{got:?}");
    assert_eq!(body(messages[0]).as_deref(), Some("while you hid"));
    assert!(messages[0].get_child("delay", DELAY).is_some());
    assert_eq!(offline_count(&s, JULIET).await, 0);
}

/// Makes `message/offline` wait (above the store's priority) until the test says go, so
/// the test can run the recipient's initial presence between the message missing every
/// resource and the store writing it.
struct Gate {
    reached: Arc<Notify>,
    go: Arc<Notify>,
}

#[async_trait]
impl StanzaHook for Gate {
    async fn on_stanza(&self, _server: &Arc<Server>, _ev: &mut StanzaEvent) -> Flow {
        self.reached.notify_one();
        self.go.notified().await;
        Flow::Continue
    }
}

struct GateModule(Arc<Gate>);

impl Module for GateModule {
    fn name(&self) -> &'static str {
        "gate"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.hook(im::EVENT_MESSAGE_OFFLINE, 10, self.0.clone());
    }
}

/// A message stored just after the recipient's initial presence took the (still empty)
/// store is delivered to that resource at once, not kept until the next login.
#[tokio::test]
async fn stored_during_initial_presence_is_still_delivered() {
    let gate = Arc::new(Gate {
        reached: Arc::new(Notify::new()),
        go: Arc::new(Notify::new()),
    });
    let mut modules = im::modules();
    modules.push(Arc::new(GateModule(gate.clone())));
    let s = server_of(Config::default(), modules, &[JULIET, ROMEO]).await;
    let romeo = online(&s, R_FULL).await;
    let mut juliet = interested(&s, J_FULL).await;

    let sending = send(&romeo, message(JULIET, "chat", "just in time"));
    let logging_in = async {
        gate.reached.notified().await;
        // The message found no resource; now Juliet comes online and her initial presence
        // finds nothing stored yet.
        send(&juliet, presence()).await;
        let before = drain(&mut juliet).await;
        assert!(before.iter().all(|e| e.name() != "message"), "{before:?}");
        gate.go.notify_one();
    };
    tokio::join!(sending, logging_in);

    let got = drain(&mut juliet).await;
    let messages: Vec<&Element> = got.iter().filter(|e| e.name() == "message").collect();
    assert_eq!(messages.len(), 1, "{got:?}");
    assert_eq!(body(messages[0]).as_deref(), Some("just in time"));
    assert_eq!(offline_count(&s, JULIET).await, 0);
}

/// XEP-0160 §4 (ejabberd's store_empty_body = unless_chat_state): a message without a body
/// is stored unless all it carries is a chat state; receipts, markers and invitations are
/// kept and delivered.
#[tokio::test]
async fn bodiless_messages_other_than_chat_states_are_stored() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let mut romeo = online(&s, R_FULL).await;
    let stored = [
        (
            "x1",
            "normal",
            "<received xmlns='urn:xmpp:receipts' id='abc'/>",
        ),
        (
            "x2",
            "chat",
            "<displayed xmlns='urn:xmpp:chat-markers:0' id='abc'/>",
        ),
        (
            "x3",
            "normal",
            "<x xmlns='jabber:x:conference' jid='room@conference.localhost'/>",
        ),
    ];
    for (id, ty, payload) in stored {
        send_xml(
            &romeo,
            &format!("<message to='{JULIET}' id='{id}' type='{ty}'>{payload}</message>"),
        )
        .await;
    }
    // A chat state, even with a thread and an origin-id, is still just a chat state.
    send_xml(
        &romeo,
        "<message to='juliet@localhost' id='x4' type='chat'><thread>t1</thread>\
         <paused xmlns='http://jabber.org/protocol/chatstates'/>\
         <origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>",
    )
    .await;
    romeo.expect_silence().await;
    assert_eq!(offline_count(&s, JULIET).await, 3);

    let mut juliet = interested(&s, J_FULL).await;
    send(&juliet, presence()).await;
    let got = drain(&mut juliet).await;
    let ids: Vec<&str> = got
        .iter()
        .filter(|e| e.name() == "message")
        .filter_map(|e| e.attr("id"))
        .collect();
    assert_eq!(ids, ["x1", "x2", "x3"], "{got:?}");
}

/// A message that already carries this server's offline stamp (stored before, then routed
/// again, as an undelivered session queue is) keeps its original stamp; another server's
/// stamp stays beside ours.
#[tokio::test]
async fn restored_message_keeps_its_original_stamp() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let old = "2001-02-03T04:05:06.000Z";
    s.route(xml(&format!(
        "<message from='{R_FULL}' to='{JULIET}' type='chat' id='again'><body>old</body>\
         <delay xmlns='{DELAY}' from='localhost' stamp='{old}'>Offline Storage</delay></message>"
    )))
    .await;
    s.route(xml(&format!(
        "<message from='{R_FULL}' to='{JULIET}' type='chat' id='relayed'><body>far</body>\
         <delay xmlns='{DELAY}' from='elsewhere.example' stamp='{old}'/></message>"
    )))
    .await;
    assert_eq!(offline_count(&s, JULIET).await, 2);

    let mut juliet = interested(&s, J_FULL).await;
    send(&juliet, presence()).await;
    let got = drain(&mut juliet).await;
    let messages: Vec<&Element> = got.iter().filter(|e| e.name() == "message").collect();
    assert_eq!(messages.len(), 2, "{got:?}");
    let stamps = |m: &Element| -> Vec<(String, String)> {
        m.children()
            .filter(|c| c.is("delay", DELAY))
            .map(|d| {
                (
                    d.attr("from").unwrap_or_default().to_string(),
                    d.attr("stamp").unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        stamps(messages[0]),
        [("localhost".to_string(), old.to_string())],
        "{}",
        messages[0]
    );
    let relayed = stamps(messages[1]);
    assert_eq!(relayed.len(), 2, "{}", messages[1]);
    assert_eq!(
        relayed[0],
        ("elsewhere.example".to_string(), old.to_string())
    );
    assert_eq!(relayed[1].0, "localhost");
    assert_ne!(relayed[1].1, old);
}

/// A client cannot plant a stamp in our host's name (it would be kept when stored): the
/// stored message carries the time it really was stored.
#[tokio::test]
async fn client_cannot_forge_our_delay_stamp() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let romeo = online(&s, R_FULL).await;
    send_xml(
        &romeo,
        &format!(
            "<message to='{JULIET}' type='chat' id='forged'><body>hi</body>\
             <delay xmlns='{DELAY}' from='localhost' stamp='2001-02-03T04:05:06Z'/></message>"
        ),
    )
    .await;
    assert_eq!(offline_count(&s, JULIET).await, 1);
    let mut juliet = interested(&s, J_FULL).await;
    send(&juliet, presence()).await;
    let got = drain(&mut juliet).await;
    let msg = got
        .iter()
        .find(|e| e.name() == "message")
        .expect("the stored message");
    let stamps: Vec<&str> = msg
        .children()
        .filter(|c| c.is("delay", DELAY))
        .filter_map(|d| d.attr("stamp"))
        .collect();
    assert_eq!(stamps.len(), 1, "{msg}");
    assert!(!stamps[0].starts_with("2001"), "{msg}");
}
