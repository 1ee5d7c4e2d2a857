//! XEP-0077 in-band registration over a real stream: account removal (§3.2) answers the
//! request before closing the stream, and errors do not echo the password back (§3.3).

mod support;

use support::*;

const NS_REGISTER: &str = "jabber:iq:register";

/// §3.2: the client gets its IQ result, then the stream ends with `<not-authorized/>`; the
/// account is gone.
#[tokio::test]
async fn s3_2_remove_answers_then_closes_the_stream() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.login("alice", "secret", "desk").await;
    let reply = c
        .request(
            &format!("<iq type='set' id='del'><query xmlns='{NS_REGISTER}'><remove/></query></iq>"),
            "del",
        )
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply}");
    c.expect_stream_error("not-authorized").await;

    let mut again = srv.connect().await;
    again.negotiate_tls().await;
    let failure = again
        .authenticate("alice", "secret", Mech::SCRAM_SHA_256)
        .await
        .expect_err("the account is gone");
    assert!(failure.has_child("not-authorized", NS_SASL), "{failure}");
}

/// §3.3: a refused password change does not send the new password back in the error.
#[tokio::test]
async fn s3_3_errors_do_not_echo_the_password() {
    let srv = TestServer::start_with(|c| c.registration.allow_password_change = false).await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.login("alice", "secret", "desk").await;
    let reply = c
        .request(
            &format!(
                "<iq type='set' id='pw'><query xmlns='{NS_REGISTER}'>\
                 <username>alice</username><password>n3w-s3cret</password></query></iq>"
            ),
            "pw",
        )
        .await;
    assert_eq!(reply.attr("type"), Some("error"), "{reply}");
    assert!(!reply.to_xml().contains("n3w-s3cret"), "{reply}");
}
