//! XEP-0092 Software Version of the server (§2), without the operating system (§6).

mod support;

use starling_core::testing::TestClient;
use starling_proto::StanzaErrorCondition;
use support::*;

const VERSION: &str = "jabber:iq:version";
const QUERY: &str = "<query xmlns='jabber:iq:version'/>";

#[tokio::test]
async fn software_version_without_os() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let r = iq_get(&mut juliet, "v", Some("localhost"), QUERY).await;
    let q = r.get_child("query", VERSION).expect("query");
    assert_eq!(q.child_text("name", VERSION).as_deref(), Some("Starling"));
    assert_eq!(
        q.child_text("version", VERSION).as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(!q.has_child("os", VERSION));
    // Not answered for accounts: the client's version is the client's business.
    let r = iq_get(&mut juliet, "v2", Some(ROMEO), QUERY).await;
    assert_condition(&r, StanzaErrorCondition::ServiceUnavailable);
}
