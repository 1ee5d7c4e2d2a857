//! XEP-0199 XMPP Ping: to the server (§4.2) and to bare JIDs, answered by the server on the
//! account's behalf; to a full JID, delivered to that client.

mod support;

use starling_core::testing::TestClient;
use starling_proto::StanzaErrorCondition;
use support::*;

const PING: &str = "<ping xmlns='urn:xmpp:ping'/>";

#[tokio::test]
async fn ping_server_and_accounts() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    for (id, to) in [
        ("p1", Some("localhost")),
        ("p2", None),
        ("p3", Some(JULIET)),
        ("p4", Some(ROMEO)),
    ] {
        let r = iq_get(&mut juliet, id, to, PING).await;
        assert_result(&r);
        assert_eq!(r.children().count(), 0, "empty result: {r}");
        assert_eq!(r.attr("to"), Some(J_FULL));
    }
    let r = iq_get(&mut juliet, "p5", Some("nobody@localhost"), PING).await;
    assert_condition(&r, StanzaErrorCondition::ServiceUnavailable);
}

#[tokio::test]
async fn ping_to_a_full_jid_reaches_that_client() {
    let server = server().await;
    let juliet = TestClient::connect(&server, J_FULL).await;
    let mut romeo = TestClient::connect(&server, R_FULL).await;
    send_xml(
        &juliet,
        &format!("<iq type='get' id='pf' to='{R_FULL}'>{PING}</iq>"),
    )
    .await;
    let got = romeo.recv().await;
    assert_eq!(got.attr("id"), Some("pf"));
    assert_eq!(got.attr("from"), Some(J_FULL));
}
