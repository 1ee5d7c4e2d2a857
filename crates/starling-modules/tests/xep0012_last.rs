//! XEP-0012 Last Activity: server uptime (§5), and for bare JIDs (§4): 0 while available,
//! seconds since logout with the unavailable status afterwards, `forbidden` for entities not
//! subscribed to the user's presence.

mod support;

use starling_core::testing::TestClient;
use starling_proto::StanzaErrorCondition;
use starling_store::Subscription;
use starling_xml::Element;
use support::*;

const LAST: &str = "jabber:iq:last";
const QUERY: &str = "<query xmlns='jabber:iq:last'/>";

fn seconds(reply: &Element) -> (u64, String) {
    let q = reply.get_child("query", LAST).expect("query");
    let s = q.attr("seconds").expect("seconds").parse().expect("number");
    (s, q.text())
}

async fn ask(c: &mut TestClient, to: &str) -> Element {
    iq_get(c, &format!("l-{to}"), Some(to), QUERY).await
}

#[tokio::test]
async fn server_uptime() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let r = ask(&mut juliet, "localhost").await;
    let (s, text) = seconds(&r);
    assert!(s < 60, "{r}");
    assert_eq!(text, "");
}

#[tokio::test]
async fn subscribers_see_online_then_logout_time_and_status() {
    let server = server().await;
    put_item(&server, JULIET, ROMEO, Subscription::From).await;
    let mut romeo = TestClient::connect(&server, "romeo@localhost/orchard").await;

    // Never logged out since accounts were created: nothing to report.
    let r = ask(&mut romeo, "juliet@localhost").await;
    assert_condition(&r, StanzaErrorCondition::ItemNotFound);

    let juliet = TestClient::connect(&server, "juliet@localhost/balcony").await;
    send_xml(&juliet, "<presence/>").await;
    let r = ask(&mut romeo, "juliet@localhost").await;
    assert_eq!(seconds(&r), (0, String::new()), "{r}");

    send_xml(
        &juliet,
        "<presence type='unavailable'><status>Heading Home</status></presence>",
    )
    .await;
    juliet.disconnect().await;
    let r = ask(&mut romeo, "juliet@localhost").await;
    let (s, text) = seconds(&r);
    assert!(s <= 2, "{r}");
    assert_eq!(text, "Heading Home");
}

#[tokio::test]
async fn a_second_resource_keeps_the_account_logged_in() {
    let server = server().await;
    let mut a = TestClient::connect(&server, "juliet@localhost/a").await;
    let b = TestClient::connect(&server, "juliet@localhost/b").await;
    send_xml(
        &b,
        "<presence type='unavailable'><status>bye</status></presence>",
    )
    .await;
    b.disconnect().await;
    // Resource a is connected but not available, and no logout happened.
    let r = ask(&mut a, "juliet@localhost").await;
    assert_condition(&r, StanzaErrorCondition::ItemNotFound);
    let stored = server
        .store
        .kv_get("localhost", "juliet", "last")
        .await
        .expect("kv");
    assert_eq!(stored, None);
}

#[tokio::test]
async fn others_are_forbidden() {
    let server = server().await;
    // Juliet is subscribed *to* Romeo, not the other way round: Romeo may not know.
    put_item(&server, JULIET, ROMEO, Subscription::To).await;
    let mut romeo = TestClient::connect(&server, "romeo@localhost/orchard").await;
    let r = ask(&mut romeo, "juliet@localhost").await;
    assert_condition(&r, StanzaErrorCondition::Forbidden);
    let r = ask(&mut romeo, "nobody@localhost").await;
    assert_condition(&r, StanzaErrorCondition::ServiceUnavailable);
}

#[tokio::test]
async fn own_account_after_an_earlier_logout() {
    let server = server().await;
    let first = TestClient::connect(&server, "juliet@localhost/balcony").await;
    first.disconnect().await;
    let mut again = TestClient::connect(&server, "juliet@localhost/balcony").await;
    let r = iq_get(&mut again, "own", None, QUERY).await;
    let (s, text) = seconds(&r);
    assert!(s <= 2, "{r}");
    assert_eq!(text, "");
}
