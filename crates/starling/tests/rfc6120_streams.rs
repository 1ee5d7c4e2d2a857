//! RFC 6120 streams over a real socket: the stream header and features (§4.3, §4.7, §5.3.1
//! STARTTLS required), stream errors (§4.9.3: host-unknown, invalid-namespace,
//! unsupported-version, not-well-formed, restricted-xml, policy-violation, invalid-from,
//! not-authorized), the XML restrictions (§11.1), the stanza size limit (§13.12), the closing
//! handshake (§4.4), whitespace keepalives (§4.6.1), and the IQ rules (§8.2.3, §8.4).

mod support;

use starling_xml::ns;
use support::*;

fn header(to: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{to}' version='1.0' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

/// §4.3.2, §4.7, §5.3.1: our header is answered with a header (from = the host, a stream id,
/// version 1.0) and features that require STARTTLS and offer no SASL before TLS.
#[tokio::test]
async fn s4_3_header_answered_with_features_requiring_starttls() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.open().await;
    let h = c.expect_open().await;
    assert!(h.is("stream", ns::STREAM), "{h}");
    assert_eq!(h.attr("from"), Some(HOST), "{h}");
    assert_eq!(h.attr("version"), Some("1.0"), "{h}");
    let id = h.attr("id").unwrap_or_default().to_owned();
    assert!(
        id.len() >= 16,
        "stream id should be unpredictable (§4.7.3): {h}"
    );
    let f = c.expect_features().await;
    let st = f
        .get_child("starttls", NS_TLS)
        .unwrap_or_else(|| c.fail("no <starttls/> in features"));
    assert!(
        st.has_child("required", NS_TLS),
        "STARTTLS must be required: {f}"
    );
    assert!(
        !f.has_child("mechanisms", NS_SASL),
        "no SASL mechanisms before TLS when TLS is required: {f}"
    );
    assert!(!f.has_child("bind", NS_BIND), "{f}");

    // §5.4.3.3: after TLS the stream restarts: a new id, SASL offered, STARTTLS not again.
    c.starttls().await;
    let h2_features = c.open_stream().await;
    let h2 = c.header.clone().expect("header");
    assert_ne!(
        h2.attr("id"),
        Some(id.as_str()),
        "a new stream id after STARTTLS"
    );
    assert!(!h2_features.has_child("starttls", NS_TLS), "{h2_features}");
    let mechs = mechanisms(Some(&h2_features));
    assert!(mechs.contains(&"SCRAM-SHA-256".to_owned()), "{mechs:?}");
    assert!(
        mechs.contains(&"PLAIN".to_owned()),
        "PLAIN is fine over TLS: {mechs:?}"
    );
}

/// §4.9.3.6: a `to` we do not serve: our header (from a host we serve), then host-unknown,
/// then the stream is closed.
#[tokio::test]
async fn s4_9_3_6_unknown_host() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.send_raw(&header("unknown.example")).await;
    let h = c.expect_open().await;
    assert_ne!(h.attr("from"), Some("unknown.example"), "{h}");
    c.expect_stream_error("host-unknown").await;
}

/// §4.9.3.10 / §4.8.1: the stream element in another namespace.
#[tokio::test]
async fn s4_9_3_10_wrong_stream_namespace() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.send_raw(
        "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' \
         xmlns='jabber:client' xmlns:stream='http://wrong.example/streams'>",
    )
    .await;
    c.expect_open().await;
    c.expect_stream_error("invalid-namespace").await;
}

/// §4.9.3.10 / §4.8.2: a content namespace this port does not serve (jabber:server on c2s).
#[tokio::test]
async fn s4_9_3_10_wrong_content_namespace() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.send_raw(
        "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' \
         xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>",
    )
    .await;
    c.expect_open().await;
    c.expect_stream_error("invalid-namespace").await;
}

/// §4.7.5, §4.9.3.25: a major version we do not support.
#[tokio::test]
async fn s4_9_3_25_unsupported_version() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.send_raw(
        "<?xml version='1.0'?><stream:stream to='localhost' version='2.0' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    )
    .await;
    let h = c.expect_open().await;
    assert_eq!(
        h.attr("version"),
        Some("1.0"),
        "we say what we support: {h}"
    );
    c.expect_stream_error("unsupported-version").await;
}

/// §4.9.3.13: XML that is not well-formed (mismatched end tag).
#[tokio::test]
async fn s4_9_3_13_not_well_formed() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.open_stream().await;
    c.send_raw("<message><body>hi</message>").await;
    c.expect_stream_error("not-well-formed").await;
}

/// §11.1, §4.9.3.18: a document type declaration is restricted XML.
#[tokio::test]
async fn s11_1_doctype_is_restricted_xml() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.send_raw(
        "<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY x 'y'>]><stream:stream \
         to='localhost' version='1.0' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams'>",
    )
    .await;
    // §4.9.1.1: even an error before the header comes after a header of ours.
    c.expect_open().await;
    c.expect_stream_error("restricted-xml").await;
}

/// §11.1: comments are restricted XML.
#[tokio::test]
async fn s11_1_comment_is_restricted_xml() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.open_stream().await;
    c.send_raw("<!-- a comment -->").await;
    c.expect_stream_error("restricted-xml").await;
}

/// §11.1: processing instructions (other than the XML declaration) are restricted XML.
#[tokio::test]
async fn s11_1_processing_instruction_is_restricted_xml() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.open_stream().await;
    c.send_raw("<?evil instruction?>").await;
    c.expect_stream_error("restricted-xml").await;
}

/// §13.12 (and §4.9.3.16): a stanza larger than the configured limit ends the stream with
/// policy-violation while it is still arriving; the server does not wait for its end.
#[tokio::test]
async fn s13_12_oversized_stanza_is_policy_violation_before_it_ends() {
    let srv = TestServer::start_with(|c| c.c2s.max_stanza_bytes = 20_000).await;
    let mut c = srv.connect().await;
    c.open_stream().await;
    // 30000 bytes of one unfinished stanza; the end tag never comes.
    let mut big = String::from("<message to='someone@localhost'><body>");
    big.push_str(&"a".repeat(30_000 - big.len()));
    for chunk in big.as_bytes().chunks(1000) {
        // The server may stop reading and close: later writes may fail, which is fine.
        if c.try_send_raw(std::str::from_utf8(chunk).expect("ascii"))
            .await
            .is_err()
        {
            break;
        }
    }
    c.expect_stream_error("policy-violation").await;
}

/// §5.3.1 / §6.4.1 with §5: `<auth/>` before STARTTLS where TLS is required is answered with
/// `<failure><encryption-required/></failure>` (RFC 6120 §6.5.3).
#[tokio::test]
async fn s5_3_1_auth_before_starttls_is_encryption_required() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.connect().await;
    c.open_stream().await;
    // PLAIN `\0alice\0secret`.
    c.send_raw(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>"
    ))
    .await;
    let f = c.expect("failure", NS_SASL).await;
    assert!(f.has_child("encryption-required", NS_SASL), "{f}");
    // The stream stays usable: STARTTLS still works.
    c.starttls().await;
    c.open_stream().await;
}

/// §4.9.3.12: stanzas before authentication are not-authorized.
#[tokio::test]
async fn s4_9_3_12_stanza_before_authentication_is_not_authorized() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.negotiate_tls().await;
    c.send_raw("<message to='alice@localhost'><body>hi</body></message>")
        .await;
    c.expect_stream_error("not-authorized").await;
}

/// §4.4: the client closes the stream; the server answers with its own closing tag and
/// closes the connection (before authentication).
#[tokio::test]
async fn s4_4_closing_handshake_before_auth() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.open_stream().await;
    c.close().await;
    c.expect_closed().await;
}

/// §4.4: the same on a bound session over TLS.
#[tokio::test]
async fn s4_4_closing_handshake_bound_session() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.login("alice", "secret", "desk").await;
    c.close().await;
    c.expect_closed().await;
}

/// §4.4 with RFC 8446 §6.1 (TLS 1.3 closure alerts): after the closing tags the TLS layer
/// is closed properly: the server sends `close_notify` before closing the TCP connection
/// (otherwise the end of the stream cannot be told from a truncation attack).
#[tokio::test]
async fn s4_4_closing_handshake_closes_tls_with_close_notify() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.login("alice", "secret", "desk").await;
    c.close().await;
    c.expect_closed().await;
    if let Some(e) = &c.eof_error {
        c.fail(&format!("the TLS connection did not end cleanly: {e}"));
    }
}

/// §8.1.2.1, §4.9.3.9: a client may not claim another JID in `from`.
#[tokio::test]
async fn s8_1_2_1_forged_from_is_invalid_from() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.login("alice", "secret", "desk").await;
    c.send_stanza(
        "<message from='mallory@localhost/x' to='alice@localhost/desk' type='chat'>\
         <body>forged</body></message>",
    )
    .await;
    c.expect_stream_error("invalid-from").await;
}

/// §8.1.2.1: `from` equal to the client's own full or bare JID is accepted and stamped.
#[tokio::test]
async fn s8_1_2_1_own_from_is_accepted() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.login("alice", "secret", "desk").await;
    let full = c.full();
    c.send_stanza(&format!(
        "<message from='alice@localhost' to='{full}' type='chat' id='m1'>\
         <body>self</body></message>"
    ))
    .await;
    let m = c
        .wait_for("the message to ourselves", |e| e.name() == "message")
        .await;
    assert_eq!(m.attr("from"), Some(full.as_str()), "{m}");
}

/// §8.2.3: an IQ must have an id; the server answers with bad-request.
#[tokio::test]
async fn s8_2_3_iq_without_id_is_bad_request() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.login("alice", "secret", "desk").await;
    c.send_stanza("<iq type='get' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    let e = c
        .wait_for("an IQ error", |e| {
            e.name() == "iq" && e.attr("type") == Some("error")
        })
        .await;
    assert_stanza_error(&e, "bad-request", "modify");
}

/// §8.2.3: an IQ get or set carries exactly one payload.
#[tokio::test]
async fn s8_2_3_iq_with_two_payloads_is_bad_request() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.login("alice", "secret", "desk").await;
    let e = c
        .request(
            "<iq type='get' id='two' to='localhost'><query xmlns='jabber:iq:version'/>\
             <ping xmlns='urn:xmpp:ping'/></iq>",
            "two",
        )
        .await;
    assert_stanza_error(&e, "bad-request", "modify");
}

/// §8.4: an IQ in a namespace nobody serves gets service-unavailable, with the same id, from
/// the entity it was sent to.
#[tokio::test]
async fn s8_4_unknown_iq_namespace_is_service_unavailable() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.login("alice", "secret", "desk").await;
    let e = c
        .request(
            "<iq type='get' id='u1' to='localhost'><query xmlns='urn:example:nobody'/></iq>",
            "u1",
        )
        .await;
    assert_stanza_error(&e, "service-unavailable", "cancel");
    assert_eq!(e.attr("from"), Some(HOST), "{e}");
    assert_eq!(e.attr("to"), Some(c.full().as_str()), "{e}");
}

/// §4.6.1: whitespace between elements keeps the stream alive and changes nothing, before
/// and after authentication.
#[tokio::test]
async fn s4_6_1_whitespace_keepalives_are_accepted() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.connect().await;
    c.open_stream().await;
    c.send_raw(" \n \t ").await;
    c.starttls().await;
    c.open_stream().await;
    c.send_raw("\n").await;
    c.authenticate("alice", "secret", Mech::SCRAM_SHA_256)
        .await
        .unwrap_or_else(|f| panic!("auth failed: {f}"));
    c.open_stream().await;
    c.send_raw("  ").await;
    c.bind(Some("desk")).await.expect("bind");
    for _ in 0..3 {
        c.send_raw(" ").await;
    }
    let before = c.barrier().await;
    assert!(before.is_empty(), "nothing expected: {before:?}");
}

/// §7.1 / §4.9.3.12: before a resource is bound, a stanza other than bind is refused.
#[tokio::test]
async fn s7_1_stanza_before_bind_is_refused() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.connect().await;
    c.negotiate_tls().await;
    c.authenticate("alice", "secret", Mech::SCRAM_SHA_256)
        .await
        .unwrap_or_else(|f| panic!("auth failed: {f}"));
    c.open_stream().await;
    c.send_raw("<message to='alice@localhost'><body>too early</body></message>")
        .await;
    c.expect_stream_error("not-authorized").await;
}

/// §8.3.3.8: a `to` that is not a valid JID is answered with jid-malformed (type modify).
#[tokio::test]
async fn s8_3_3_8_malformed_to_is_jid_malformed() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.login("alice", "secret", "desk").await;
    c.send_stanza("<message to='a@b@c/d' type='chat' id='bad-to'><body>x</body></message>")
        .await;
    let e = c
        .wait_for("the error for the malformed address", |e| {
            e.attr("id") == Some("bad-to")
        })
        .await;
    assert_stanza_error(&e, "jid-malformed", "modify");
}

/// §13.12: a stanza below the limit passes (the limit counts the stanza, not the stream).
#[tokio::test]
async fn s13_12_stanza_below_limit_is_accepted() {
    let srv = TestServer::start_with(|c| c.c2s.max_stanza_bytes = 20_000).await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.login("alice", "secret", "desk").await;
    let full = c.full();
    let body = "b".repeat(15_000);
    for i in 0..3 {
        // Three in a row: together well over the limit, each below it.
        c.send_stanza(&format!(
            "<message to='{full}' type='chat' id='big{i}'><body>{body}</body></message>"
        ))
        .await;
    }
    for i in 0..3 {
        let id = format!("big{i}");
        let m = c
            .wait_for("our own large message", |e| {
                e.attr("id") == Some(id.as_str())
            })
            .await;
        assert_eq!(
            m.child_text("body", ns::CLIENT).map(|b| b.len()),
            Some(15_000)
        );
    }
}

/// §5.4.3.3: the parser starts over after TLS; plaintext sent after `<starttls/>` (in the
/// same packet, as an attacker on the path would inject it) must not reach the encrypted
/// stream (the STARTTLS command-injection class of bugs, CVE-2011-0411).
#[tokio::test]
async fn s5_4_3_3_plaintext_after_starttls_is_discarded() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.connect().await;
    c.open_stream().await;
    c.send_raw(&format!(
        "<starttls xmlns='{NS_TLS}'/><auth xmlns='{NS_SASL}' mechanism='PLAIN'>\
         AGFsaWNlAHNlY3JldA==</auth>"
    ))
    .await;
    c.complete_starttls().await;
    // Had the injected <auth/> survived, the server would answer it with <success/> (or
    // fail the stream); instead it waits for our new header, and our own SCRAM exchange
    // gets the first answer (a challenge).
    let f = c.open_stream().await;
    assert!(f.has_child("mechanisms", NS_SASL), "{f}");
    c.authenticate("alice", "secret", Mech::SCRAM_SHA_256)
        .await
        .unwrap_or_else(|f| panic!("auth failed: {f}"));
}

/// §4.9.1.2: after a stream restart (here: SASL success, §6.4.6) an error before the client's
/// new header still comes after a new header of ours.
#[tokio::test]
async fn s4_9_1_2_error_after_restart_follows_a_new_header() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "secret").await;
    let mut c = srv.connect().await;
    c.negotiate_tls().await;
    if let Err(f) = c.authenticate("alice", "secret", Mech::Plain).await {
        c.fail(&format!("authentication failed: {f}"));
    }
    c.send_raw("<!-- not a stream header -->").await;
    c.expect_open().await;
    c.expect_stream_error("restricted-xml").await;
}

/// §4.9.1.2 likewise after STARTTLS (§5.4.3.3).
#[tokio::test]
async fn s4_9_1_2_error_after_starttls_follows_a_new_header() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.open_stream().await;
    c.starttls().await;
    c.send_raw("<!-- not a stream header -->").await;
    c.expect_open().await;
    c.expect_stream_error("restricted-xml").await;
}
