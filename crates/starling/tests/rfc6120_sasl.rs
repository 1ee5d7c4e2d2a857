//! RFC 6120 §6 SASL over real sockets: SCRAM-SHA-1 (RFC 5802), SCRAM-SHA-256 (RFC 7677),
//! SCRAM-SHA-512, their -PLUS variants with both channel-binding types advertised by XEP-0440
//! (`tls-exporter`, RFC 9266; `tls-server-end-point`, RFC 5929 §4), PLAIN (RFC 4616) over TLS
//! only (§13.8), failures (§6.5.10 not-authorized, the same for a wrong password and an
//! unknown user), and downgrade protection (RFC 5802 §6: the `y` flag).

mod support;

use support::*;

async fn server_with_alice() -> TestServer {
    let srv = TestServer::start().await;
    srv.add_user("alice", "correct horse").await;
    srv
}

/// Logs in with `mech` after STARTTLS and checks the bound JID.
async fn login_with(mech: Mech) {
    let srv = server_with_alice().await;
    let mut c = srv.connect().await;
    let jid = c.login("alice", "correct horse", Some("sasl"), mech).await;
    assert_eq!(jid, "alice@localhost/sasl");
}

#[tokio::test]
async fn s6_scram_sha_1() {
    login_with(Mech::SCRAM_SHA_1).await;
}

#[tokio::test]
async fn s6_scram_sha_256() {
    login_with(Mech::SCRAM_SHA_256).await;
}

#[tokio::test]
async fn s6_scram_sha_512() {
    login_with(Mech::SCRAM_SHA_512).await;
}

#[tokio::test]
async fn s6_plain_over_tls() {
    login_with(Mech::Plain).await;
}

/// XEP-0440: both binding types are advertised on a TLS 1.3 connection, with the -PLUS
/// mechanisms.
#[tokio::test]
async fn xep0440_channel_binding_types_advertised() {
    let srv = server_with_alice().await;
    let mut c = srv.connect().await;
    let f = c.negotiate_tls().await;
    assert!(c.tls.as_ref().is_some_and(|t| t.tls13), "expected TLS 1.3");
    let types = channel_binding_types(&f);
    assert!(types.contains(&"tls-exporter".to_owned()), "{f}");
    assert!(types.contains(&"tls-server-end-point".to_owned()), "{f}");
    let mechs = c.mechanisms();
    for m in [
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-512-PLUS",
    ] {
        assert!(mechs.contains(&m.to_owned()), "{m} not offered: {mechs:?}");
    }
}

#[tokio::test]
async fn s6_scram_sha_1_plus_tls_exporter() {
    login_with(Mech::ScramPlus(Hash::Sha1, Cb::Exporter)).await;
}

#[tokio::test]
async fn s6_scram_sha_1_plus_tls_server_end_point() {
    login_with(Mech::ScramPlus(Hash::Sha1, Cb::EndPoint)).await;
}

#[tokio::test]
async fn s6_scram_sha_256_plus_tls_exporter() {
    login_with(Mech::ScramPlus(Hash::Sha256, Cb::Exporter)).await;
}

#[tokio::test]
async fn s6_scram_sha_256_plus_tls_server_end_point() {
    login_with(Mech::ScramPlus(Hash::Sha256, Cb::EndPoint)).await;
}

#[tokio::test]
async fn s6_scram_sha_512_plus_tls_exporter() {
    login_with(Mech::ScramPlus(Hash::Sha512, Cb::Exporter)).await;
}

#[tokio::test]
async fn s6_scram_sha_512_plus_tls_server_end_point() {
    login_with(Mech::ScramPlus(Hash::Sha512, Cb::EndPoint)).await;
}

/// Negotiates TLS and tries once; returns the `<failure/>`.
async fn failing_auth(
    srv: &TestServer,
    user: &str,
    password: &str,
    mech: Mech,
    opts: SaslOptions,
) -> starling_xml::Element {
    let mut c = srv.connect().await;
    c.negotiate_tls().await;
    match c.authenticate_with(user, password, mech, opts).await {
        Ok(()) => c.fail(&format!("{} as {user} should have failed", mech.name())),
        Err(f) => f,
    }
}

/// §6.5.10: a wrong password and an unknown user get the same answer, not-authorized, so
/// accounts cannot be enumerated.
#[tokio::test]
async fn s6_5_10_wrong_password_and_unknown_user_answer_alike() {
    let srv = server_with_alice().await;
    for mech in [Mech::SCRAM_SHA_256, Mech::Plain] {
        let wrong = failing_auth(&srv, "alice", "wrong", mech, SaslOptions::default()).await;
        let unknown = failing_auth(&srv, "nobody", "wrong", mech, SaslOptions::default()).await;
        assert!(wrong.has_child("not-authorized", NS_SASL), "{wrong}");
        assert_eq!(
            wrong.to_xml(),
            unknown.to_xml(),
            "{}: unknown user and wrong password must look the same",
            mech.name()
        );
    }
}

/// RFC 5802 §6 / §9: a client that supports channel binding but thinks the server does not
/// sends `y`; since the server offered -PLUS, that is a downgrade and must fail.
#[tokio::test]
async fn rfc5802_y_flag_when_plus_offered_fails() {
    let srv = server_with_alice().await;
    let opts = SaslOptions {
        gs2_header: Some("y,,".into()),
        cb_data: None,
    };
    let f = failing_auth(&srv, "alice", "correct horse", Mech::SCRAM_SHA_256, opts).await;
    assert_eq!(f.name(), "failure", "{f}");
}

/// RFC 5802 §6: channel-binding data that does not match the connection (a man in the
/// middle) fails, even with the right password.
#[tokio::test]
async fn rfc5802_wrong_channel_binding_data_fails() {
    let srv = server_with_alice().await;
    for cb in [Cb::Exporter, Cb::EndPoint] {
        let opts = SaslOptions {
            gs2_header: None,
            cb_data: Some(vec![0x42; 32]),
        };
        let f = failing_auth(
            &srv,
            "alice",
            "correct horse",
            Mech::ScramPlus(Hash::Sha256, cb),
            opts,
        )
        .await;
        assert!(f.has_child("not-authorized", NS_SASL), "{}: {f}", cb.name());
    }
}

/// §6.4.2 / §6.5.4: a mechanism not offered is refused with invalid-mechanism, and the stream
/// stays open for another try.
#[tokio::test]
async fn s6_5_4_unknown_mechanism_is_invalid_mechanism() {
    let srv = server_with_alice().await;
    let mut c = srv.connect().await;
    c.negotiate_tls().await;
    c.send_raw(&format!("<auth xmlns='{NS_SASL}' mechanism='DIGEST-MD5'/>"))
        .await;
    let f = c.expect("failure", NS_SASL).await;
    assert!(f.has_child("invalid-mechanism", NS_SASL), "{f}");
    c.authenticate("alice", "correct horse", Mech::SCRAM_SHA_1)
        .await
        .unwrap_or_else(|f| c.fail(&format!("second try failed: {f}")));
}

/// §6.4.4 / §6.5.1: the client may abort; the server answers `<failure><aborted/>`.
#[tokio::test]
async fn s6_4_4_abort() {
    let srv = server_with_alice().await;
    let mut c = srv.connect().await;
    c.negotiate_tls().await;
    // SCRAM-SHA-256 client-first "n,,n=alice,r=abcdefghijklmnop".
    let first = sasl_b64("n,,n=alice,r=abcdefghijklmnop");
    c.send_raw(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>"
    ))
    .await;
    c.expect("challenge", NS_SASL).await;
    c.send_raw(&format!("<abort xmlns='{NS_SASL}'/>")).await;
    let f = c.expect("failure", NS_SASL).await;
    assert!(f.has_child("aborted", NS_SASL), "{f}");
}

fn sasl_b64(s: &str) -> String {
    support::sasl::b64(s.as_bytes())
}

/// §13.8 / §6: with `require_tls = false` SASL is offered on plain TCP, but PLAIN is not
/// (it would send the password in clear); SCRAM works there.
#[tokio::test]
async fn s13_8_plain_not_offered_without_tls() {
    let srv = TestServer::start_with(|c| c.c2s.require_tls = false).await;
    srv.add_user("alice", "correct horse").await;
    let mut c = srv.connect().await;
    let f = c.open_stream().await;
    let st = f
        .get_child("starttls", NS_TLS)
        .unwrap_or_else(|| c.fail("STARTTLS should still be offered"));
    assert!(!st.has_child("required", NS_TLS), "not required: {f}");
    let mechs = c.mechanisms();
    assert!(
        !mechs.contains(&"PLAIN".to_owned()),
        "PLAIN offered in clear: {mechs:?}"
    );
    assert!(mechs.contains(&"SCRAM-SHA-256".to_owned()), "{mechs:?}");
    assert!(mechs.contains(&"SCRAM-SHA-1".to_owned()), "{mechs:?}");
    assert!(
        !mechs.iter().any(|m| m.ends_with("-PLUS")),
        "no -PLUS without TLS: {mechs:?}"
    );
    // And PLAIN sent anyway is refused.
    c.send_raw(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{}</auth>",
        sasl_b64("\0alice\0correct horse")
    ))
    .await;
    let fail = c.expect("failure", NS_SASL).await;
    assert_eq!(fail.name(), "failure");
    // SCRAM in clear works and binds.
    c.authenticate("alice", "correct horse", Mech::SCRAM_SHA_256)
        .await
        .unwrap_or_else(|f| c.fail(&format!("SCRAM over plain TCP failed: {f}")));
    c.open_stream().await;
    let jid = c.bind(Some("clear")).await.expect("bind");
    assert_eq!(jid, "alice@localhost/clear");
}

/// §6.4.6 / §6.4.7: after success the stream restarts with a new id and offers bind; no
/// SASL again.
#[tokio::test]
async fn s6_4_6_restart_after_success_offers_bind_not_sasl() {
    let srv = server_with_alice().await;
    let mut c = srv.connect().await;
    c.negotiate_tls().await;
    let before = c.header.clone().expect("header");
    c.authenticate("alice", "correct horse", Mech::SCRAM_SHA_256)
        .await
        .unwrap_or_else(|f| c.fail(&format!("auth failed: {f}")));
    let f = c.open_stream().await;
    let after = c.header.clone().expect("header");
    assert_ne!(
        before.attr("id"),
        after.attr("id"),
        "new stream id after SASL"
    );
    assert!(f.has_child("bind", NS_BIND), "{f}");
    assert!(!f.has_child("mechanisms", NS_SASL), "{f}");
}

/// §6.4.2 / §6.5.2: an `<auth/>` payload that is not base64 is incorrect-encoding.
#[tokio::test]
async fn s6_5_2_bad_base64_is_incorrect_encoding() {
    let srv = server_with_alice().await;
    let mut c = srv.connect().await;
    c.negotiate_tls().await;
    c.send_raw(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>not*base64!</auth>"
    ))
    .await;
    let f = c.expect("failure", NS_SASL).await;
    assert!(f.has_child("incorrect-encoding", NS_SASL), "{f}");
}

/// RFC 5802 §5.1: ',' and '=' in a user name travel as "=2C" and "=3D"; the server must
/// undo that (RFC 7622 allows both characters in a localpart).
#[tokio::test]
async fn rfc5802_saslname_escaping() {
    let srv = TestServer::start().await;
    srv.add_user("x=y,z", "pw").await;
    for mech in [
        Mech::SCRAM_SHA_1,
        Mech::ScramPlus(Hash::Sha256, Cb::Exporter),
        Mech::Plain,
    ] {
        let mut c = srv.connect().await;
        let jid = c.login("x=y,z", "pw", Some("esc"), mech).await;
        assert_eq!(jid, "x=y,z@localhost/esc", "{}", mech.name());
    }
}

/// §6.3.8 / RFC 4616: an authorization identity equal to the user's own bare JID is fine.
#[tokio::test]
async fn s6_3_8_plain_with_own_authzid() {
    let srv = server_with_alice().await;
    let mut c = srv.connect().await;
    c.negotiate_tls().await;
    c.send_raw(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{}</auth>",
        sasl_b64("alice@localhost\0alice\0correct horse")
    ))
    .await;
    c.expect("success", NS_SASL).await;
}

/// §6.3.8 / §6.5.6: asking to act as someone else is invalid-authzid, whether the other
/// identity is another user here or the same localpart at another domain.
#[tokio::test]
async fn s6_5_6_plain_with_foreign_authzid_is_invalid_authzid() {
    let srv = server_with_alice().await;
    srv.add_user("bob", "pw").await;
    for authzid in ["bob@localhost", "alice@elsewhere.example"] {
        let mut c = srv.connect().await;
        c.negotiate_tls().await;
        c.send_raw(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{}</auth>",
            sasl_b64(&format!("{authzid}\0alice\0correct horse"))
        ))
        .await;
        let f = c.next_stanza().await;
        assert!(
            f.is("failure", NS_SASL) && f.has_child("invalid-authzid", NS_SASL),
            "authzid {authzid}: expected <failure><invalid-authzid/></failure>, got {f}"
        );
    }
}

/// §6.4.2: a mechanism with an initial response may still be started without one (an empty
/// `<auth/>`); the server answers with an empty challenge ("=") and takes the response.
#[tokio::test]
async fn s6_4_2_auth_without_initial_response() {
    let srv = server_with_alice().await;
    let mut c = srv.connect().await;
    c.negotiate_tls().await;
    c.send_raw(&format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'/>"))
        .await;
    let ch = c.expect("challenge", NS_SASL).await;
    assert!(
        matches!(ch.text().trim(), "" | "="),
        "expected an empty challenge: {ch}"
    );
    c.send_raw(&format!(
        "<response xmlns='{NS_SASL}'>{}</response>",
        sasl_b64("\0alice\0correct horse")
    ))
    .await;
    c.expect("success", NS_SASL).await;
}

/// §6.4.2: an initial response of "=" is an empty one, not a missing one.
#[tokio::test]
async fn s6_4_2_initial_response_equals_sign_is_empty() {
    let srv = server_with_alice().await;
    let mut c = srv.connect().await;
    c.negotiate_tls().await;
    c.send_raw(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>=</auth>"
    ))
    .await;
    // An empty PLAIN message is malformed: a failure, not a challenge.
    let f = c.next_stanza().await;
    assert!(f.is("failure", NS_SASL), "expected <failure/>, got {f}");
}
