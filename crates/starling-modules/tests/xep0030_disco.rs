//! XEP-0030 Service Discovery: disco#info and disco#items of the server and of accounts
//! (§3, §4), node handling (§3.2 item-not-found), and the XEP-0115 `NODE#VER` node.

mod support;

use starling_core::testing::TestClient;
use starling_proto::StanzaErrorCondition;
use starling_xml::Element;
use support::*;

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

/// Sends a disco `get` of namespace `ns` (to `to`, or with no 'to'; about `node`, or none) and
/// returns the reply.
async fn disco(
    c: &mut TestClient,
    id: &str,
    to: Option<&str>,
    ns: &str,
    node: Option<&str>,
) -> Element {
    let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
    iq_get(c, id, to, &format!("<query xmlns='{ns}'{node}/>")).await
}

/// The `<query/>` of namespace `ns` in a reply that must be a result.
#[track_caller]
fn result_query<'a>(r: &'a Element, ns: &str) -> &'a Element {
    assert_result(r);
    r.get_child("query", ns).expect("query")
}

#[tokio::test]
async fn server_info_lists_identity_and_every_service() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let r = disco(&mut juliet, "d1", Some("localhost"), INFO, None).await;
    let q = result_query(&r, INFO);
    assert_eq!(r.attr("from"), Some("localhost"));
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
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    for ns in [INFO, ITEMS] {
        let r = disco(&mut juliet, "n1", Some("localhost"), ns, Some("nope")).await;
        assert_condition(&r, StanzaErrorCondition::ItemNotFound);
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
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let plain = disco(&mut juliet, "p", Some("localhost"), INFO, None).await;
    let r = disco(&mut juliet, "c", Some("localhost"), INFO, Some(&node)).await;
    let q = result_query(&r, INFO);
    assert_eq!(q.attr("node"), Some(node.as_str()));
    let pq = plain.get_child("query", INFO).expect("query");
    assert_eq!(features(q), features(pq));
    assert_eq!(identities(q), identities(pq));

    let wrong = format!("{}#AAAA", c.attr("node").expect("node"));
    let r = disco(&mut juliet, "w", Some("localhost"), INFO, Some(&wrong)).await;
    assert_condition(&r, StanzaErrorCondition::ItemNotFound);
}

#[tokio::test]
async fn account_info_for_self_and_other_accounts() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    // No 'to': the user's own account.
    for (id, to) in [
        ("own", None),
        ("own2", Some(JULIET)),
        ("other", Some(ROMEO)),
    ] {
        let r = disco(&mut juliet, id, to, INFO, None).await;
        let q = result_query(&r, INFO);
        assert_eq!(
            identities(q),
            vec![("account".to_string(), "registered".to_string(), None)]
        );
        assert!(features(q).iter().any(|f| f == INFO));
    }
    let r = disco(&mut juliet, "ghost", Some("nobody@localhost"), INFO, None).await;
    assert_condition(&r, StanzaErrorCondition::ServiceUnavailable);
    let r = disco(&mut juliet, "nd", Some(ROMEO), INFO, Some("x")).await;
    assert_condition(&r, StanzaErrorCondition::ItemNotFound);
}

#[tokio::test]
async fn items_are_empty_lists() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    for (id, to) in [("h", "localhost"), ("a", ROMEO), ("o", JULIET)] {
        let r = disco(&mut juliet, id, Some(to), ITEMS, None).await;
        assert_eq!(result_query(&r, ITEMS).children().count(), 0);
    }
    let r = disco(&mut juliet, "g", Some("ghost@localhost"), ITEMS, None).await;
    assert_condition(&r, StanzaErrorCondition::ServiceUnavailable);
    // disco#info set is not a thing: service-unavailable from the router.
    let r = iq(
        &mut juliet,
        &format!("<iq type='set' id='s' to='localhost'><query xmlns='{INFO}'/></iq>"),
    )
    .await;
    assert_condition(&r, StanzaErrorCondition::ServiceUnavailable);
}
