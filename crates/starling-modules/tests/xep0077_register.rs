//! XEP-0077 In-Band Registration: the pre-authentication form and account creation (§3.1,
//! errors conflict / not-acceptable / per-address rate limit), the stream feature only when
//! enabled (§4), and for an authenticated user `<registered/>`, password change (§3.3) and
//! cancellation (§3.2: account deleted, sessions closed with `<not-authorized/>`).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use starling_core::testing::TestClient;
use starling_core::{Config, FeatureStage, IqResult, PreAuthIq, Server};
use starling_proto::sasl::HashAlg;
use starling_proto::{StanzaErrorCondition, StreamErrorCondition};
use support::*;

const REGISTER: &str = "jabber:iq:register";
/// The pre-authentication request for the registration form.
const FORM_GET: &str = "<iq type='get' id='f'><query xmlns='jabber:iq:register'/></iq>";

fn enabled() -> Config {
    let mut c = Config::default();
    c.registration.enabled = true;
    c
}

/// Drives the registered pre-authentication handler as the stream would.
async fn pre_auth(server: &Arc<Server>, stanza: &str, peer: &str) -> IqResult {
    let handler = server
        .hooks
        .pre_auth_iq_handler(REGISTER)
        .expect("registration handler");
    handler
        .handle_pre_auth_iq(
            server,
            PreAuthIq {
                stanza: xml(stanza),
                host: "localhost".into(),
                peer: Some(peer.parse::<SocketAddr>().expect("addr")),
                secure: true,
            },
        )
        .await
}

fn register_set(user: &str, password: &str) -> String {
    format!(
        "<iq type='set' id='r'><query xmlns='jabber:iq:register'>\
         <username>{user}</username><password>{password}</password></query></iq>"
    )
}

fn err_of(r: IqResult) -> StanzaErrorCondition {
    r.expect_err("an error").condition
}

/// Whether the stream feature is offered before authentication (§4).
fn advertised(server: &Server) -> bool {
    server
        .hooks
        .features(FeatureStage::PreAuth)
        .any(|f| f.is("register", "http://jabber.org/features/iq-register"))
}

async fn exists(server: &Server, user: &str) -> bool {
    server
        .store
        .account_exists("localhost", user)
        .await
        .expect("store")
}

async fn password_works(server: &Server, user: &str, password: &str) -> bool {
    let creds = server
        .store
        .credentials("localhost", user)
        .await
        .expect("store")
        .expect("account");
    creds.sha256.verify_password(HashAlg::Sha256, password)
}

#[tokio::test]
async fn disabled_by_default() {
    let server = server().await;
    let r = pre_auth(&server, FORM_GET, "192.0.2.1:40000").await;
    assert_eq!(err_of(r), StanzaErrorCondition::ServiceUnavailable);
    let r = pre_auth(
        &server,
        &register_set("bill", "Calliope"),
        "192.0.2.1:40000",
    )
    .await;
    assert_eq!(err_of(r), StanzaErrorCondition::ServiceUnavailable);
    assert!(!advertised(&server));
}

#[tokio::test]
async fn form_then_account_creation() {
    let server = server_with(enabled()).await;
    assert!(advertised(&server));
    let form = pre_auth(&server, FORM_GET, "192.0.2.1:40000")
        .await
        .expect("form")
        .expect("payload");
    assert!(form.has_child("username", REGISTER));
    assert!(form.has_child("password", REGISTER));
    assert!(form.has_child("instructions", REGISTER));

    let r = pre_auth(
        &server,
        &register_set("Bill", "Calliope"),
        "192.0.2.1:40000",
    )
    .await;
    assert_eq!(r.expect("registered"), None);
    // The localpart is normalized (RFC 7622 §3.3).
    assert!(password_works(&server, "bill", "Calliope").await);
    assert!(!password_works(&server, "bill", "calliope").await);

    // Taken, from another address so the rate limit is not what answers.
    let r = pre_auth(&server, &register_set("bill", "other"), "192.0.2.2:40000").await;
    assert_eq!(err_of(r), StanzaErrorCondition::Conflict);
    // A taken name uses up the address's turn: probing which accounts exist is throttled
    // like registering.
    let r = pre_auth(&server, &register_set("ben", "x"), "192.0.2.2:40000").await;
    assert_eq!(err_of(r), StanzaErrorCondition::ResourceConstraint);
    // A rejected form (no password) claims no turn.
    let r = pre_auth(&server, &register_set("carl", ""), "192.0.2.3:40000").await;
    assert_eq!(err_of(r), StanzaErrorCondition::NotAcceptable);
    let r = pre_auth(&server, &register_set("carl", "x"), "192.0.2.3:40000").await;
    assert_eq!(r.expect("registered"), None);
}

#[tokio::test]
async fn one_registration_per_address_per_interval() {
    let server = server_with(enabled()).await;
    let r = pre_auth(&server, &register_set("one", "pw"), "198.51.100.7:1").await;
    assert_eq!(r.expect("registered"), None);
    let r = pre_auth(&server, &register_set("two", "pw"), "198.51.100.7:2").await;
    let e = r.expect_err("rate limited");
    assert_eq!(e.condition, StanzaErrorCondition::ResourceConstraint);
    assert_eq!(e.error_type, starling_proto::ErrorType::Wait);
    assert!(!exists(&server, "two").await);
}

#[tokio::test]
async fn incomplete_or_invalid_requests() {
    let server = server_with(enabled()).await;
    let cases = [
        (register_set("bill", ""), StanzaErrorCondition::NotAcceptable),
        (register_set("", "pw"), StanzaErrorCondition::NotAcceptable),
        (
            "<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>bill</username></query></iq>"
                .to_string(),
            StanzaErrorCondition::NotAcceptable,
        ),
        (register_set("bad user", "pw"), StanzaErrorCondition::JidMalformed),
        (register_set("a:b", "pw"), StanzaErrorCondition::JidMalformed),
        (
            "<iq type='set' id='r'><query xmlns='jabber:iq:register'><remove/></query></iq>"
                .to_string(),
            StanzaErrorCondition::UnexpectedRequest,
        ),
    ];
    for (stanza, want) in cases {
        let r = pre_auth(&server, &stanza, "203.0.113.9:1").await;
        assert_eq!(err_of(r), want, "{stanza}");
    }
}

#[tokio::test]
async fn registered_users_see_their_registration() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    for (id, to) in [("a", None), ("b", Some("localhost"))] {
        let r = iq_get(&mut juliet, id, to, "<query xmlns='jabber:iq:register'/>").await;
        let q = r.get_child("query", REGISTER).expect("query");
        assert!(q.has_child("registered", REGISTER), "{r}");
        assert_eq!(
            q.child_text("username", REGISTER).as_deref(),
            Some("juliet")
        );
        assert!(!q.has_child("password", REGISTER));
    }
}

#[tokio::test]
async fn password_change() {
    let server = server().await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let r = iq(
        &mut juliet,
        "<iq type='set' id='c' to='localhost'><query xmlns='jabber:iq:register'>\
         <username>juliet</username><password>n3w</password></query></iq>",
    )
    .await;
    assert_result(&r);
    assert!(password_works(&server, "juliet", "n3w").await);

    assert_conditions(
        &mut juliet,
        &[
            (
                "<iq type='set' id='c1'><query xmlns='jabber:iq:register'>\
             <username>romeo</username><password>x</password></query></iq>",
                StanzaErrorCondition::Forbidden,
            ),
            (
                "<iq type='set' id='c2'><query xmlns='jabber:iq:register'>\
             <username>juliet</username><password/></query></iq>",
                StanzaErrorCondition::NotAcceptable,
            ),
            (
                "<iq type='set' id='c3'><query xmlns='jabber:iq:register'>\
             <password>x</password></query></iq>",
                StanzaErrorCondition::BadRequest,
            ),
        ],
    )
    .await;
    assert!(password_works(&server, "juliet", "n3w").await);
    assert!(password_works(&server, "romeo", "pw").await);
}

#[tokio::test]
async fn password_change_can_be_disabled() {
    let mut config = Config::default();
    config.registration.allow_password_change = false;
    let server = server_with(config).await;
    let mut juliet = TestClient::connect(&server, J_FULL).await;
    let r = iq(
        &mut juliet,
        "<iq type='set' id='c'><query xmlns='jabber:iq:register'>\
         <username>juliet</username><password>n3w</password></query></iq>",
    )
    .await;
    assert_condition(&r, StanzaErrorCondition::NotAllowed);
    assert!(password_works(&server, "juliet", "pw").await);
}

#[tokio::test]
async fn cancellation_deletes_the_account_and_ends_its_sessions() {
    let server = server().await;
    let mut balcony = TestClient::connect(&server, J_FULL).await;
    let chamber = TestClient::connect(&server, "juliet@localhost/chamber").await;
    let r = iq(
        &mut balcony,
        "<iq type='set' id='bad'><query xmlns='jabber:iq:register'><remove/><username>x</username></query></iq>",
    )
    .await;
    assert_condition(&r, StanzaErrorCondition::BadRequest);

    let r = iq(
        &mut balcony,
        "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>",
    )
    .await;
    assert_result(&r);
    assert!(!exists(&server, "juliet").await);
    for s in [&balcony.session, &chamber.session] {
        let why = tokio::time::timeout(std::time::Duration::from_secs(1), s.closed())
            .await
            .expect("session told to close");
        assert_eq!(why.condition, StreamErrorCondition::NotAuthorized);
    }
}
