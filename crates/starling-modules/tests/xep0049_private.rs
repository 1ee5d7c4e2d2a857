//! XEP-0049 Private XML Storage: set and get by (name, namespace), the empty element for
//! nothing stored, `forbidden` for other accounts, `not-acceptable` for no child or a
//! reserved namespace.

mod support;

use starling_core::testing::TestClient;
use starling_proto::StanzaErrorCondition;
use starling_xml::Element;
use support::*;

const PRIVATE: &str = "jabber:iq:private";

/// Sends a private-storage IQ of type `ty` carrying `payload` in its query.
async fn private(c: &mut TestClient, ty: &str, id: &str, payload: &str) -> Element {
    iq(
        c,
        &format!(
            "<iq type='{ty}' id='{id}'><query xmlns='jabber:iq:private'>{payload}</query></iq>"
        ),
    )
    .await
}

/// The stored element `name` of namespace `ns` in a private-storage reply.
fn stored<'a>(r: &'a Element, name: &str, ns: &str) -> &'a Element {
    r.get_child("query", PRIVATE)
        .and_then(|q| q.get_child(name, ns))
        .expect(name)
}

#[tokio::test]
async fn store_and_retrieve() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let r = private(
        &mut juliet,
        "set",
        "s",
        "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>\
         <storage xmlns='storage:bookmarks'><conference jid='room@muc.localhost' autojoin='true'/></storage>",
    )
    .await;
    assert_result(&r);

    let r = private(&mut juliet, "get", "g", "<exodus xmlns='exodus:prefs'/>").await;
    let q = r.get_child("query", PRIVATE).expect("query");
    assert_eq!(q.children().count(), 1);
    let ex = q.get_child("exodus", "exodus:prefs").expect("exodus");
    assert_eq!(
        ex.child_text("defaultnick", "exodus:prefs").as_deref(),
        Some("Hamlet")
    );

    let r = private(
        &mut juliet,
        "get",
        "g2",
        "<storage xmlns='storage:bookmarks'/>",
    )
    .await;
    let st = stored(&r, "storage", "storage:bookmarks");
    let conf = st
        .get_child("conference", "storage:bookmarks")
        .expect("conference");
    assert_eq!(conf.attr("jid"), Some("room@muc.localhost"));

    // Replacing keeps only the new content.
    private(&mut juliet, "set", "s2", "<exodus xmlns='exodus:prefs'/>").await;
    let r = private(&mut juliet, "get", "g3", "<exodus xmlns='exodus:prefs'/>").await;
    assert_eq!(stored(&r, "exodus", "exodus:prefs").children().count(), 0);
}

#[tokio::test]
async fn nothing_stored_returns_the_empty_element() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let r = private(
        &mut juliet,
        "get",
        "g",
        "<prefs xmlns='urn:example:prefs'/>",
    )
    .await;
    assert_result(&r);
    let p = stored(&r, "prefs", "urn:example:prefs");
    assert_eq!(p.children().count(), 0);
}

#[tokio::test]
async fn errors() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    assert_conditions(
        &mut juliet,
        &[
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
        ],
    )
    .await;
    // A refused set stores nothing, even its valid part.
    let r = private(
        &mut juliet,
        "set",
        "e6",
        "<ok xmlns='a:b'>1</ok><bad xmlns='jabber:server'/>",
    )
    .await;
    assert_condition(&r, StanzaErrorCondition::NotAcceptable);
    let all = server
        .store
        .map_all("localhost", "juliet", "private")
        .await
        .expect("map");
    assert!(all.is_empty(), "{all:?}");
}
