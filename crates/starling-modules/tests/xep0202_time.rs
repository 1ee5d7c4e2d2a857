//! XEP-0202 Entity Time of the server (§3), in UTC.

mod support;

use starling_core::testing::TestClient;
use support::*;

const TIME: &str = "urn:xmpp:time";

#[tokio::test]
async fn entity_time_in_utc() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let r = iq_get(
        &mut juliet,
        "t",
        Some("localhost"),
        "<time xmlns='urn:xmpp:time'/>",
    )
    .await;
    let t = r.get_child("time", TIME).expect("time");
    assert_eq!(t.child_text("tzo", TIME).as_deref(), Some("+00:00"));
    let utc = t.child_text("utc", TIME).expect("utc");
    assert!(utc.ends_with('Z'), "{utc}");
    let parsed = chrono::DateTime::parse_from_rfc3339(&utc).expect("XEP-0082 DateTime");
    let skew = chrono::Utc::now().signed_duration_since(parsed);
    assert!(skew.num_seconds().abs() < 5, "{utc}");
}
