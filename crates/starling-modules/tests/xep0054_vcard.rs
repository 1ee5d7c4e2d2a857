//! XEP-0054 vcard-temp: own vCard get/set (§3.1, §3.2), other users' vCards (§3.3), the
//! empty vCard for none, `forbidden` for setting someone else's, and the size cap.

mod support;

use starling_core::testing::TestClient;
use starling_proto::StanzaErrorCondition;
use starling_xml::Element;
use support::*;

const VCARD: &str = "vcard-temp";

/// Asks for the vCard of `to` (no 'to': the user's own) and returns the reply.
async fn vcard_get(c: &mut TestClient, id: &str, to: Option<&str>) -> Element {
    iq_get(c, id, to, "<vCard xmlns='vcard-temp'/>").await
}

#[tokio::test]
async fn empty_until_published_then_visible_to_others() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let mut romeo = TestClient::connect(&server, R_FULL).await;

    let r = vcard_get(&mut juliet, "g1", None).await;
    let v = r.get_child("vCard", VCARD).expect("vCard");
    assert_eq!(v.children().count(), 0, "{r}");

    let r = iq(
        &mut juliet,
        "<iq type='set' id='s1'><vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN>\
         <N><FAMILY>Capulet</FAMILY><GIVEN>Juliet</GIVEN></N>\
         <PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO></vCard></iq>",
    )
    .await;
    assert_result(&r);
    assert_eq!(r.children().count(), 0);

    for (client, to) in [(&mut juliet, None), (&mut romeo, Some(JULIET))] {
        let r = vcard_get(client, "g2", to).await;
        let v = r.get_child("vCard", VCARD).expect("vCard");
        assert_eq!(v.child_text("FN", VCARD).as_deref(), Some("Juliet Capulet"));
        let n = v.get_child("N", VCARD).expect("N");
        assert_eq!(n.child_text("GIVEN", VCARD).as_deref(), Some("Juliet"));
        let photo = v.get_child("PHOTO", VCARD).expect("PHOTO");
        assert_eq!(
            photo.child_text("BINVAL", VCARD).as_deref(),
            Some("iVBORw0KGgo=")
        );
    }

    // Romeo's is still empty; publishing an empty vCard clears Juliet's.
    let r = vcard_get(&mut juliet, "g3", Some(ROMEO)).await;
    assert_eq!(
        r.get_child("vCard", VCARD)
            .expect("vCard")
            .children()
            .count(),
        0
    );
    iq(
        &mut juliet,
        "<iq type='set' id='s2'><vCard xmlns='vcard-temp'/></iq>",
    )
    .await;
    let stored = server
        .store
        .kv_get("localhost", "juliet", "vcard")
        .await
        .expect("kv");
    assert_eq!(stored, None);
}

#[tokio::test]
async fn only_the_owner_sets_and_only_accounts_have_one() {
    let server = server().await;
    let mut romeo = TestClient::connect(&server, R_FULL).await;
    let r = iq(
        &mut romeo,
        "<iq type='set' id='s' to='juliet@localhost'><vCard xmlns='vcard-temp'><FN>x</FN></vCard></iq>",
    )
    .await;
    assert_condition(&r, StanzaErrorCondition::Forbidden);
    let r = vcard_get(&mut romeo, "g", Some("nobody@localhost")).await;
    assert_condition(&r, StanzaErrorCondition::ServiceUnavailable);
}

#[tokio::test]
async fn oversized_vcards_are_refused() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let big = "A".repeat(300 * 1024);
    let set = stanza("iq")
        .with_attr("type", "set")
        .with_attr("id", "big")
        .with_child(
            Element::new("vCard", VCARD).with_child(Element::new("DESC", VCARD).with_text(big)),
        );
    send(&juliet, set).await;
    let r = juliet.recv().await;
    assert_eq!(
        condition(&r),
        Some(StanzaErrorCondition::NotAcceptable),
        "{}",
        r.name()
    );
}
