//! RFC 6121 §2 roster management and XEP-0237 roster versioning, in process.

mod support;

use starling_core::testing::TestClient;
use starling_core::FeatureStage;
use starling_proto::StanzaErrorCondition;
use starling_xml::Element;
use support::*;

#[tokio::test]
async fn empty_roster_and_version() {
    let s = im_server(&[JULIET]).await;
    let mut c = TestClient::connect(&s, "juliet@localhost/balcony").await;
    // §2.2: no 'ver' asked → none given.
    send(&c, roster_get("1", None)).await;
    let r = c.recv().await;
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(r.attr("id"), Some("1"));
    let q = r.get_child("query", ROSTER).expect("query");
    assert_eq!(q.children().count(), 0);
    assert_eq!(q.attr("ver"), None);
    // XEP-0237 §4: a client with no cached roster sends ver='' and learns the version.
    send(&c, roster_get("2", Some(""))).await;
    let r = c.recv().await;
    let ver = r
        .get_child("query", ROSTER)
        .and_then(|q| q.attr("ver"))
        .expect("ver")
        .to_string();
    // The same version again → empty result, no payload.
    send(&c, roster_get("3", Some(&ver))).await;
    let r = c.recv().await;
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(r.children().count(), 0, "{r}");
}

#[tokio::test]
async fn set_pushes_to_interested_resources_only() {
    let s = im_server(&[JULIET]).await;
    let mut balcony = interested(&s, "juliet@localhost/balcony").await;
    let mut chamber = TestClient::connect(&s, "juliet@localhost/chamber").await;
    let mut garden = interested(&s, "juliet@localhost/garden").await;

    let it = item("romeo@example.net")
        .with_attr("name", "Romeo")
        // The client's subscription and ask are ignored (§2.1.2.5).
        .with_attr("subscription", "both")
        .with_attr("ask", "subscribe")
        .with_child(group("Friends"))
        .with_child(group("Lovers"));
    send(&balcony, roster_set("s1", it)).await;

    for c in [&mut balcony, &mut garden] {
        let push = c.recv().await;
        let (ver, item) = push_item(&push);
        assert_eq!(ver, "1");
        assert_eq!(item.attr("jid"), Some("romeo@example.net"));
        assert_eq!(item.attr("name"), Some("Romeo"));
        assert_eq!(item.attr("subscription"), Some("none"));
        assert_eq!(item.attr("ask"), None);
        let groups: Vec<String> = item.children().map(Element::text).collect();
        assert_eq!(groups, ["Friends", "Lovers"]);
    }
    let result = balcony.recv().await;
    assert_eq!(result.attr("type"), Some("result"));
    assert_eq!(result.attr("id"), Some("s1"));
    chamber.expect_silence().await;
    garden.expect_silence().await;

    // Update: new name, one group; the version moves on.
    send(
        &balcony,
        roster_set(
            "s2",
            item("romeo@example.net")
                .with_attr("name", "R.")
                .with_child(group("Friends")),
        ),
    )
    .await;
    let (ver, item) = push_item(&balcony.recv().await);
    assert_eq!(ver, "2");
    assert_eq!(item.attr("name"), Some("R."));
    assert_eq!(item.children().count(), 1);
    assert_eq!(balcony.recv().await.attr("type"), Some("result"));
}

#[tokio::test]
async fn versioned_get_returns_changes_only_when_changed() {
    let s = im_server(&[JULIET]).await;
    let mut c = interested(&s, "juliet@localhost/balcony").await;
    send(&c, roster_set("a", item("nurse@localhost"))).await;
    let (ver, _) = push_item(&c.recv().await);
    c.recv().await;
    send(&c, roster_get("g1", Some(&ver))).await;
    assert_eq!(c.recv().await.children().count(), 0);
    // An older version gets the full roster with the current version.
    send(&c, roster_get("g2", Some("0"))).await;
    let r = c.recv().await;
    let q = r.get_child("query", ROSTER).expect("query");
    assert_eq!(q.attr("ver"), Some(ver.as_str()));
    assert_eq!(q.children().count(), 1);
}

#[tokio::test]
async fn remove_item_and_missing_item() {
    let s = im_server(&[JULIET]).await;
    let mut c = interested(&s, "juliet@localhost/balcony").await;
    send(&c, roster_set("a", item("nurse@localhost"))).await;
    drain(&mut c).await;
    send(&c, roster_remove("rm", "nurse@localhost")).await;
    let (_, it) = push_item(&c.recv().await);
    assert_eq!(it.attr("subscription"), Some("remove"));
    assert_eq!(it.attr("jid"), Some("nurse@localhost"));
    assert_eq!(c.recv().await.attr("type"), Some("result"));
    assert!(roster_item(&s, JULIET, "nurse@localhost").await.is_none());
    // §2.5.3: removing what is not there.
    send(&c, roster_remove("rm2", "nurse@localhost")).await;
    let e = c.recv().await;
    assert_eq!(e.attr("type"), Some("error"));
    assert_condition(&e, StanzaErrorCondition::ItemNotFound);
}

#[tokio::test]
async fn bad_sets_are_refused() {
    let s = im_server(&[JULIET]).await;
    let mut c = interested(&s, "juliet@localhost/balcony").await;
    let two = stanza("iq")
        .with_attr("type", "set")
        .with_attr("id", "two")
        .with_child(
            Element::new("query", ROSTER)
                .with_child(item("a@localhost"))
                .with_child(item("b@localhost")),
        );
    let cases = [
        (two, StanzaErrorCondition::BadRequest),
        (
            roster_set(
                "dup",
                item("a@localhost")
                    .with_child(group("X"))
                    .with_child(group("X")),
            ),
            StanzaErrorCondition::BadRequest,
        ),
        (
            roster_set("empty", item("a@localhost").with_child(group(""))),
            StanzaErrorCondition::NotAcceptable,
        ),
        (
            roster_set(
                "long",
                item("a@localhost").with_attr("name", "n".repeat(2000)),
            ),
            StanzaErrorCondition::NotAcceptable,
        ),
        (
            roster_set("full", item("a@localhost/res")),
            StanzaErrorCondition::BadRequest,
        ),
        (
            roster_set("nojid", Element::new("item", ROSTER)),
            StanzaErrorCondition::BadRequest,
        ),
        (
            roster_set("bad", item("a@b@c")),
            StanzaErrorCondition::JidMalformed,
        ),
    ];
    for (iq, want) in cases {
        let id = iq.attr("id").unwrap_or_default().to_string();
        send(&c, iq).await;
        let e = c.recv().await;
        assert_eq!(e.attr("type"), Some("error"), "{id}: {e}");
        assert_eq!(condition(&e), Some(want), "{id}: {e}");
    }
    c.expect_silence().await;
}

#[tokio::test]
async fn another_accounts_roster_is_forbidden() {
    let s = im_server(&[JULIET, ROMEO]).await;
    let mut c = TestClient::connect(&s, "juliet@localhost/balcony").await;
    send(&c, roster_get("x", None).with_attr("to", "romeo@localhost")).await;
    let e = c.recv().await;
    assert_condition(&e, StanzaErrorCondition::Forbidden);
}

#[tokio::test]
async fn stream_features_advertised() {
    let s = im_server(&[]).await;
    let features: Vec<String> = s
        .hooks
        .features(FeatureStage::PostAuth)
        .map(|f| format!("{}#{}", f.ns(), f.name()))
        .collect();
    assert!(features.contains(&"urn:xmpp:features:rosterver#ver".to_string()));
    assert!(features.contains(&"urn:xmpp:features:pre-approval#sub".to_string()));
}
