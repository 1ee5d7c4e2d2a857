//! XEP-0049 Private XML Storage: set and get by (name, namespace), the empty element for
//! nothing stored, `forbidden` for other accounts, `not-acceptable` for no child or a
//! reserved namespace.
#![allow(dead_code)]

// --- shared test helpers (each test file is its own crate, so they are repeated) ---
use std::sync::Arc;

use starling_core::testing::{self, TestClient};
use starling_core::{Config, Server};
use starling_proto::{StanzaError, StanzaErrorCondition};
use starling_xml::{ns, parse_document, Element, Limits};

fn xml(s: &str) -> Element {
    parse_document(s.as_bytes(), ns::CLIENT, &Limits::default()).expect("test XML")
}

async fn server_with(config: Config) -> Arc<Server> {
    let server = testing::server(config, starling_modules::default_modules()).await;
    testing::create_account(&server, "juliet@localhost", "pw").await;
    testing::create_account(&server, "romeo@localhost", "pw").await;
    server
}

async fn server() -> Arc<Server> {
    server_with(Config::default()).await
}

/// Sends an IQ and returns the reply with its id, skipping whatever else arrives first.
async fn iq(c: &mut TestClient, stanza: &str) -> Element {
    let el = xml(stanza);
    let id = el.attr("id").expect("test IQ has an id").to_string();
    c.send(el).await.expect("send");
    loop {
        let got = c.recv().await;
        if got.name() == "iq" && got.attr("id") == Some(id.as_str()) {
            return got;
        }
    }
}

fn condition(reply: &Element) -> Option<StanzaErrorCondition> {
    reply
        .get_child("error", ns::CLIENT)
        .and_then(StanzaError::from_element)
        .map(|e| e.condition)
}
// --- end of helpers ---

const PRIVATE: &str = "jabber:iq:private";

#[tokio::test]
async fn store_and_retrieve() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let r = iq(
        &mut juliet,
        "<iq type='set' id='s'><query xmlns='jabber:iq:private'>\
         <exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>\
         <storage xmlns='storage:bookmarks'><conference jid='room@muc.localhost' autojoin='true'/></storage>\
         </query></iq>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");

    let r = iq(
        &mut juliet,
        "<iq type='get' id='g'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>",
    )
    .await;
    let q = r.get_child("query", PRIVATE).expect("query");
    assert_eq!(q.children().count(), 1);
    let ex = q.get_child("exodus", "exodus:prefs").expect("exodus");
    assert_eq!(
        ex.child_text("defaultnick", "exodus:prefs").as_deref(),
        Some("Hamlet")
    );

    let r = iq(
        &mut juliet,
        "<iq type='get' id='g2'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>",
    )
    .await;
    let st = r
        .get_child("query", PRIVATE)
        .and_then(|q| q.get_child("storage", "storage:bookmarks"))
        .expect("storage");
    let conf = st
        .get_child("conference", "storage:bookmarks")
        .expect("conference");
    assert_eq!(conf.attr("jid"), Some("room@muc.localhost"));

    // Replacing keeps only the new content.
    iq(
        &mut juliet,
        "<iq type='set' id='s2'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>",
    )
    .await;
    let r = iq(
        &mut juliet,
        "<iq type='get' id='g3'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>",
    )
    .await;
    let ex = r
        .get_child("query", PRIVATE)
        .and_then(|q| q.get_child("exodus", "exodus:prefs"))
        .expect("exodus");
    assert_eq!(ex.children().count(), 0);
}

#[tokio::test]
async fn nothing_stored_returns_the_empty_element() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let r = iq(
        &mut juliet,
        "<iq type='get' id='g'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    let q = r.get_child("query", PRIVATE).expect("query");
    let p = q.get_child("prefs", "urn:example:prefs").expect("prefs");
    assert_eq!(p.children().count(), 0);
}

#[tokio::test]
async fn errors() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let cases = [
        (
            "<iq type='get' id='e1' to='romeo@localhost'><query xmlns='jabber:iq:private'><x xmlns='a:b'/></query></iq>",
            StanzaErrorCondition::Forbidden,
        ),
        (
            "<iq type='set' id='e2' to='romeo@localhost'><query xmlns='jabber:iq:private'><x xmlns='a:b'/></query></iq>",
            StanzaErrorCondition::Forbidden,
        ),
        (
            "<iq type='get' id='e3'><query xmlns='jabber:iq:private'/></iq>",
            StanzaErrorCondition::NotAcceptable,
        ),
        (
            "<iq type='set' id='e4'><query xmlns='jabber:iq:private'><message xmlns='jabber:client'/></query></iq>",
            StanzaErrorCondition::NotAcceptable,
        ),
        (
            "<iq type='set' id='e5'><query xmlns='jabber:iq:private'><q xmlns='jabber:iq:private'/></query></iq>",
            StanzaErrorCondition::NotAcceptable,
        ),
    ];
    for (stanza, want) in cases {
        let r = iq(&mut juliet, stanza).await;
        assert_eq!(condition(&r), Some(want), "{r}");
    }
    // A refused set stores nothing, even its valid part.
    let r = iq(
        &mut juliet,
        "<iq type='set' id='e6'><query xmlns='jabber:iq:private'><ok xmlns='a:b'>1</ok>\
         <bad xmlns='jabber:server'/></query></iq>",
    )
    .await;
    assert_eq!(condition(&r), Some(StanzaErrorCondition::NotAcceptable));
    let all = server
        .store
        .map_all("localhost", "juliet", "private")
        .await
        .expect("map");
    assert!(all.is_empty(), "{all:?}");
}
