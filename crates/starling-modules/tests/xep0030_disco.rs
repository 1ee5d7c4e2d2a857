//! XEP-0030 Service Discovery: disco#info and disco#items of the server and of accounts
//! (§3, §4), node handling (§3.2 item-not-found), and the XEP-0115 `NODE#VER` node.
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

const INFO: &str = "http://jabber.org/protocol/disco#info";
const ITEMS: &str = "http://jabber.org/protocol/disco#items";

fn features(query: &Element) -> Vec<String> {
    query
        .children()
        .filter(|c| c.is("feature", INFO))
        .filter_map(|c| c.attr("var").map(str::to_owned))
        .collect()
}

fn identities(query: &Element) -> Vec<(String, String, Option<String>)> {
    query
        .children()
        .filter(|c| c.is("identity", INFO))
        .map(|c| {
            (
                c.attr("category").unwrap_or_default().to_owned(),
                c.attr("type").unwrap_or_default().to_owned(),
                c.attr("name").map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn server_info_lists_identity_and_every_service() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let r = iq(
        &mut juliet,
        "<iq type='get' id='d1' to='localhost'>\
         <query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    assert_eq!(r.attr("from"), Some("localhost"));
    let q = r.get_child("query", INFO).expect("query");
    assert_eq!(q.attr("node"), None);
    assert!(identities(q).contains(&("server".into(), "im".into(), Some("Starling".into()))));
    let f = features(q);
    for var in [
        INFO,
        ITEMS,
        "urn:xmpp:ping",
        "jabber:iq:version",
        "urn:xmpp:time",
        "jabber:iq:last",
        "vcard-temp",
        "urn:xmpp:blocking",
        "jabber:iq:register",
    ] {
        assert!(f.iter().any(|x| x == var), "missing {var} in {f:?}");
    }
    // Each feature once (XEP-0030 §3.2, and XEP-0115 hashing depends on it).
    let mut sorted = f.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), f.len());
}

#[tokio::test]
async fn unknown_node_is_item_not_found() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    for ns in [INFO, ITEMS] {
        let r = iq(
            &mut juliet,
            &format!(
                "<iq type='get' id='n1' to='localhost'><query xmlns='{ns}' node='nope'/></iq>"
            ),
        )
        .await;
        assert_eq!(
            condition(&r),
            Some(StanzaErrorCondition::ItemNotFound),
            "{r}"
        );
    }
}

#[tokio::test]
async fn caps_node_answers_like_the_plain_query() {
    let server = server().await;
    let c = server
        .hooks
        .features(starling_core::FeatureStage::PostAuth)
        .find(|f| f.is("c", "http://jabber.org/protocol/caps"))
        .expect("caps feature")
        .clone();
    let node = format!(
        "{}#{}",
        c.attr("node").expect("node"),
        c.attr("ver").expect("ver")
    );
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let plain = iq(
        &mut juliet,
        "<iq type='get' id='p' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    .await;
    let r = iq(
        &mut juliet,
        &format!("<iq type='get' id='c' to='localhost'><query xmlns='{INFO}' node='{node}'/></iq>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    let q = r.get_child("query", INFO).expect("query");
    assert_eq!(q.attr("node"), Some(node.as_str()));
    let pq = plain.get_child("query", INFO).expect("query");
    assert_eq!(features(q), features(pq));
    assert_eq!(identities(q), identities(pq));

    let wrong = format!("{}#AAAA", c.attr("node").expect("node"));
    let r = iq(
        &mut juliet,
        &format!(
            "<iq type='get' id='w' to='localhost'><query xmlns='{INFO}' node='{wrong}'/></iq>"
        ),
    )
    .await;
    assert_eq!(condition(&r), Some(StanzaErrorCondition::ItemNotFound));
}

#[tokio::test]
async fn account_info_for_self_and_other_accounts() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    // No 'to': the user's own account.
    for (id, to) in [
        ("own", ""),
        ("own2", " to='juliet@localhost'"),
        ("other", " to='romeo@localhost'"),
    ] {
        let r = iq(
            &mut juliet,
            &format!("<iq type='get' id='{id}'{to}><query xmlns='{INFO}'/></iq>"),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{r}");
        let q = r.get_child("query", INFO).expect("query");
        assert_eq!(
            identities(q),
            vec![("account".to_string(), "registered".to_string(), None)]
        );
        assert!(features(q).iter().any(|f| f == INFO));
    }
    let r = iq(
        &mut juliet,
        &format!("<iq type='get' id='ghost' to='nobody@localhost'><query xmlns='{INFO}'/></iq>"),
    )
    .await;
    assert_eq!(
        condition(&r),
        Some(StanzaErrorCondition::ServiceUnavailable)
    );
    let r = iq(
        &mut juliet,
        &format!(
            "<iq type='get' id='nd' to='romeo@localhost'><query xmlns='{INFO}' node='x'/></iq>"
        ),
    )
    .await;
    assert_eq!(condition(&r), Some(StanzaErrorCondition::ItemNotFound));
}

#[tokio::test]
async fn items_are_empty_lists() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    for (id, to) in [
        ("h", "localhost"),
        ("a", "romeo@localhost"),
        ("o", "juliet@localhost"),
    ] {
        let r = iq(
            &mut juliet,
            &format!("<iq type='get' id='{id}' to='{to}'><query xmlns='{ITEMS}'/></iq>"),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{r}");
        let q = r.get_child("query", ITEMS).expect("query");
        assert_eq!(q.children().count(), 0);
    }
    let r = iq(
        &mut juliet,
        &format!("<iq type='get' id='g' to='ghost@localhost'><query xmlns='{ITEMS}'/></iq>"),
    )
    .await;
    assert_eq!(
        condition(&r),
        Some(StanzaErrorCondition::ServiceUnavailable)
    );
    // disco#info set is not a thing: service-unavailable from the router.
    let r = iq(
        &mut juliet,
        &format!("<iq type='set' id='s' to='localhost'><query xmlns='{INFO}'/></iq>"),
    )
    .await;
    assert_eq!(
        condition(&r),
        Some(StanzaErrorCondition::ServiceUnavailable)
    );
}
