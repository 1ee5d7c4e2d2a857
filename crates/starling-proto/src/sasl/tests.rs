//! SASL tests: RFC 5802 §5 and RFC 7677 §3 vectors, a small SCRAM client for full exchanges
//! (every hash, both channel-binding types), downgrade and failure cases, PLAIN, base64.
#![allow(clippy::unwrap_used)]

use super::*;

const PASSWORD: &str = "pencil";

fn creds_with_salt(password: &str, salt: &[u8], iterations: u32) -> StoredCredentials {
    StoredCredentials {
        sha1: ScramCredentials::derive(HashAlg::Sha1, password, salt, iterations),
        sha256: ScramCredentials::derive(HashAlg::Sha256, password, salt, iterations),
        sha512: ScramCredentials::derive(HashAlg::Sha512, password, salt, iterations),
    }
}

fn b64(s: &str) -> Vec<u8> {
    B64.decode(s).unwrap()
}

/// A minimal SCRAM client (RFC 5802 §3), enough to drive the server.
struct Client {
    alg: HashAlg,
    password: String,
    gs2_header: String,
    cb_data: Vec<u8>,
    client_first_bare: String,
    server_signature: Vec<u8>,
}

impl Client {
    fn new(alg: HashAlg, user: &str, password: &str, gs2_header: &str, cb_data: &[u8]) -> Self {
        Client {
            alg,
            password: password.into(),
            gs2_header: gs2_header.into(),
            cb_data: cb_data.to_vec(),
            client_first_bare: format!("n={user},r=cLiEnTnOnCe0123456789"),
            server_signature: Vec::new(),
        }
    }

    fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.client_first_bare).into_bytes()
    }

    fn final_message(&mut self, server_first: &[u8]) -> Vec<u8> {
        let sf = std::str::from_utf8(server_first).unwrap();
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for attr in sf.split(',') {
            let (k, v) = attr.split_once('=').unwrap();
            match k {
                "r" => nonce = v,
                "s" => salt = b64(v),
                "i" => iterations = v.parse().unwrap(),
                _ => {}
            }
        }
        assert!(nonce.starts_with("cLiEnTnOnCe0123456789"));
        let mut cbind = self.gs2_header.as_bytes().to_vec();
        cbind.extend_from_slice(&self.cb_data);
        let without_proof = format!("c={},r={nonce}", B64.encode(&cbind));
        let auth_message = format!("{},{sf},{without_proof}", self.client_first_bare);
        let alg = self.alg;
        let salted = alg.hi(self.password.as_bytes(), &salt, iterations);
        let client_key = alg.hmac(&salted, b"Client Key");
        let stored_key = alg.hash(&client_key);
        let client_sig = alg.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_sig)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = alg.hmac(&salted, b"Server Key");
        self.server_signature = alg.hmac(&server_key, auth_message.as_bytes());
        format!("{without_proof},p={}", B64.encode(proof)).into_bytes()
    }
}

/// Runs a whole SCRAM exchange; returns the server's last step.
fn exchange(
    mech: Mechanism,
    bindings: &ChannelBindings,
    plus_offered: bool,
    client: &mut Client,
    creds: Option<&StoredCredentials>,
) -> SaslStep {
    let mut server = SaslServer::new(mech, bindings, plus_offered);
    match server.start(Some(&client.first())) {
        SaslStep::NeedCredentials { .. } => {}
        other => return other,
    }
    let SaslStep::Challenge(server_first) = server.provide_credentials(creds) else {
        panic!("expected a challenge");
    };
    server.respond(&client.final_message(&server_first))
}

fn tls() -> ChannelBindings {
    ChannelBindings {
        tls_exporter: Some(vec![7; 32]),
        tls_server_end_point: Some(vec![9; 32]),
    }
}

#[test]
fn rfc5802_sha1_vector() {
    let creds = creds_with_salt(PASSWORD, &b64("QSXCR+Q6sek8bf92"), 4096);
    let mut s = SaslServer::new(Mechanism::ScramSha1, &ChannelBindings::default(), false)
        .with_server_nonce("3rfcNHYJY1ZVvWVs7j");
    assert_eq!(
        s.start(Some(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")),
        SaslStep::NeedCredentials {
            username: "user".into()
        }
    );
    assert_eq!(
        s.provide_credentials(Some(&creds)),
        SaslStep::Challenge(
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096".to_vec()
        )
    );
    assert_eq!(
        s.respond(
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        ),
        SaslStep::Success {
            username: "user".into(),
            additional_data: Some(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=".to_vec()),
        }
    );
    // The exchange is over: anything more is a protocol error.
    assert_eq!(
        s.respond(b""),
        SaslStep::Failure(SaslFailure::MalformedRequest)
    );
}

#[test]
fn rfc7677_sha256_vector() {
    let creds = creds_with_salt(PASSWORD, &b64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
    let mut s = SaslServer::new(Mechanism::ScramSha256, &ChannelBindings::default(), false)
        .with_server_nonce("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    assert_eq!(
        s.start(Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")),
        SaslStep::NeedCredentials {
            username: "user".into()
        }
    );
    assert_eq!(
        s.provide_credentials(Some(&creds)),
        SaslStep::Challenge(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,\
              i=4096"
                .to_vec()
        )
    );
    assert_eq!(
        s.respond(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        ),
        SaslStep::Success {
            username: "user".into(),
            additional_data: Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()),
        }
    );
}

#[test]
fn full_exchanges_every_hash_and_binding() {
    let creds = StoredCredentials::from_password(PASSWORD, 64);
    let cases: &[(Mechanism, &str, &[u8])] = &[
        (Mechanism::ScramSha1, "n,,", b""),
        (Mechanism::ScramSha256, "n,,", b""),
        (Mechanism::ScramSha512, "n,,", b""),
        (Mechanism::ScramSha512Plus, "p=tls-exporter,,", &[7; 32]),
        (
            Mechanism::ScramSha512Plus,
            "p=tls-server-end-point,,",
            &[9; 32],
        ),
        (Mechanism::ScramSha256Plus, "p=tls-exporter,,", &[7; 32]),
        (
            Mechanism::ScramSha1Plus,
            "p=tls-server-end-point,,",
            &[9; 32],
        ),
        (
            Mechanism::ScramSha256Plus,
            "p=tls-exporter,a=user@example.com,",
            &[7; 32],
        ),
    ];
    for &(mech, gs2, cb) in cases {
        let alg = mech.hash_alg().unwrap();
        let mut client = Client::new(alg, "user", PASSWORD, gs2, cb);
        let step = exchange(mech, &tls(), true, &mut client, Some(&creds));
        let want_v = format!("v={}", B64.encode(&client.server_signature));
        assert_eq!(
            step,
            SaslStep::Success {
                username: "user".into(),
                additional_data: Some(want_v.into_bytes()),
            },
            "{mech} {gs2}"
        );
    }
}

#[test]
fn channel_binding_flag_rules() {
    let creds = StoredCredentials::from_password(PASSWORD, 16);
    let no_tls = ChannelBindings::default();
    let run = |mech, bindings: &ChannelBindings, plus_offered, gs2: &str, cb: &[u8]| {
        let mut c = Client::new(mech_alg(mech), "user", PASSWORD, gs2, cb);
        exchange(mech, bindings, plus_offered, &mut c, Some(&creds))
    };
    let fail = SaslStep::Failure;
    // 'y' while we offered -PLUS: a downgrade (RFC 5802 §6).
    assert_eq!(
        run(Mechanism::ScramSha256, &tls(), true, "y,,", b""),
        fail(SaslFailure::NotAuthorized)
    );
    // 'y' when we offered none: fine.
    assert!(matches!(
        run(Mechanism::ScramSha256, &no_tls, false, "y,,", b""),
        SaslStep::Success { .. }
    ));
    // Channel binding requested with a non-PLUS mechanism, or refused with a PLUS one.
    assert_eq!(
        run(
            Mechanism::ScramSha256,
            &tls(),
            true,
            "p=tls-exporter,,",
            &[7; 32]
        ),
        fail(SaslFailure::MalformedRequest)
    );
    assert_eq!(
        run(Mechanism::ScramSha256Plus, &tls(), true, "n,,", b""),
        fail(SaslFailure::MalformedRequest)
    );
    assert_eq!(
        run(Mechanism::ScramSha256Plus, &tls(), true, "y,,", b""),
        fail(SaslFailure::MalformedRequest)
    );
    // A binding type we have no data for, or do not support.
    let endpoint_only = ChannelBindings {
        tls_exporter: None,
        tls_server_end_point: Some(vec![9; 32]),
    };
    assert_eq!(
        run(
            Mechanism::ScramSha256Plus,
            &endpoint_only,
            true,
            "p=tls-exporter,,",
            &[7; 32]
        ),
        fail(SaslFailure::NotAuthorized)
    );
    assert_eq!(
        run(
            Mechanism::ScramSha256Plus,
            &tls(),
            true,
            "p=tls-unique,,",
            &[1; 12]
        ),
        fail(SaslFailure::NotAuthorized)
    );
    // The client's view of the channel differs from ours (a MITM terminating TLS).
    assert_eq!(
        run(
            Mechanism::ScramSha256Plus,
            &tls(),
            true,
            "p=tls-exporter,,",
            &[8; 32]
        ),
        fail(SaslFailure::NotAuthorized)
    );
    assert!(matches!(
        run(
            Mechanism::ScramSha256Plus,
            &endpoint_only,
            true,
            "p=tls-server-end-point,,",
            &[9; 32]
        ),
        SaslStep::Success { .. }
    ));
}

fn mech_alg(m: Mechanism) -> HashAlg {
    m.hash_alg().unwrap()
}

#[test]
fn wrong_password_and_unknown_user() {
    let creds = StoredCredentials::from_password(PASSWORD, 16);
    let mut c = Client::new(HashAlg::Sha256, "user", "wrong", "n,,", b"");
    assert_eq!(
        exchange(Mechanism::ScramSha256, &tls(), true, &mut c, Some(&creds)),
        SaslStep::Failure(SaslFailure::NotAuthorized)
    );

    // Unknown user: a normal-looking challenge, then the same failure at the end.
    let salt_of = |user: &str| {
        let mut s = SaslServer::new(Mechanism::ScramSha1, &tls(), true);
        let first = format!("n,,n={user},r=abcdef");
        assert!(matches!(
            s.start(Some(first.as_bytes())),
            SaslStep::NeedCredentials { .. }
        ));
        let SaslStep::Challenge(sf) = s.provide_credentials(None) else {
            panic!("expected challenge")
        };
        let sf = String::from_utf8(sf).unwrap();
        assert!(sf.starts_with("r=abcdef"));
        assert!(sf.ends_with(",i=4096"));
        sf.split(',').nth(1).unwrap().to_owned()
    };
    assert_eq!(salt_of("ghost"), salt_of("ghost"));
    assert_ne!(salt_of("ghost"), salt_of("phantom"));
    let mut c = Client::new(HashAlg::Sha1, "ghost", PASSWORD, "n,,", b"");
    assert_eq!(
        exchange(Mechanism::ScramSha1, &tls(), true, &mut c, None),
        SaslStep::Failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn malformed_scram_messages() {
    let m = SaslFailure::MalformedRequest;
    let firsts: &[(&[u8], SaslFailure)] = &[
        (b"x,,n=user,r=abc", m),
        (b"n,n=user,r=abc", m),
        (b"n", m),
        (b"n,,m=ext,n=user,r=abc", m),
        (b"n,,n=user", m),
        (b"n,,n=,r=abc", m),
        (b"n,,n=user,r=", m),
        (b"n,,n=us=2Xer,r=abc", m),
        (b"n,,n=user=,r=abc", m),
        (b"n,,r=abc,n=user", m),
        (b"n,x=1,n=user,r=abc", m),
        (b"n,,n=user,r=ab c", m),
        (b"\xff\xfe", m),
        (
            b"n,a=other@example.com,n=user,r=abc",
            SaslFailure::InvalidAuthzid,
        ),
        (
            b"n,a=user@example.com/res,n=user,r=abc",
            SaslFailure::InvalidAuthzid,
        ),
    ];
    for (msg, want) in firsts {
        let mut s = SaslServer::new(Mechanism::ScramSha256, &tls(), false);
        assert_eq!(
            s.start(Some(msg)),
            SaslStep::Failure(*want),
            "{}",
            String::from_utf8_lossy(msg)
        );
    }

    // Extensions after the nonce are ignored (RFC 5802 §5.1).
    let mut s = SaslServer::new(Mechanism::ScramSha256, &tls(), false);
    assert!(matches!(
        s.start(Some(b"n,,n=user,r=abc,x=ext")),
        SaslStep::NeedCredentials { .. }
    ));

    // Client-final problems.
    let creds = StoredCredentials::from_password(PASSWORD, 16);
    let setup = || {
        let mut s = SaslServer::new(Mechanism::ScramSha256, &tls(), false).with_server_nonce("SRV");
        s.start(Some(b"n,,n=user,r=abc"));
        s.provide_credentials(Some(&creds));
        s
    };
    let proof = B64.encode([0u8; 32]);
    let finals: Vec<(String, SaslFailure)> = vec![
        ("c=biws,r=abcSRV".into(), m),
        (format!("r=abcSRV,c=biws,p={proof}"), m),
        (format!("c=biws,r=abcSRV,p={}", B64.encode([0u8; 20])), m),
        (format!("c=biws,r=abcSRV,p=!!{proof}"), m),
        (format!("c=???,r=abcSRV,p={proof}"), m),
        // Wrong nonce, wrong channel binding, wrong proof.
        (
            format!("c=biws,r=abcXXX,p={proof}"),
            SaslFailure::NotAuthorized,
        ),
        (
            format!("c=eSws,r=abcSRV,p={proof}"),
            SaslFailure::NotAuthorized,
        ),
        (
            format!("c=biws,r=abcSRV,p={proof}"),
            SaslFailure::NotAuthorized,
        ),
    ];
    for (msg, want) in finals {
        assert_eq!(
            setup().respond(msg.as_bytes()),
            SaslStep::Failure(want),
            "{msg}"
        );
    }
}

#[test]
fn usernames_and_authzid() {
    let mut s = SaslServer::new(Mechanism::ScramSha1, &tls(), false);
    assert_eq!(
        s.start(Some(b"n,a=Us=2Cer@Example.com,n=Us=2Cer,r=abc")),
        SaslStep::NeedCredentials {
            username: "us,er".into()
        }
    );
    let mut s = SaslServer::new(Mechanism::ScramSha1, &tls(), false);
    assert_eq!(
        s.start(Some(b"n,a=user,n=USER,r=abc")),
        SaslStep::NeedCredentials {
            username: "user".into()
        }
    );
    assert_eq!(s.authzid(), Some("user"));
    assert_eq!(s.mechanism(), Mechanism::ScramSha1);
}

#[test]
fn no_initial_response_gets_empty_challenge() {
    let creds = StoredCredentials::from_password(PASSWORD, 16);
    let mut c = Client::new(HashAlg::Sha256, "user", PASSWORD, "n,,", b"");
    let mut s = SaslServer::new(Mechanism::ScramSha256, &tls(), false);
    assert_eq!(s.start(None), SaslStep::Challenge(Vec::new()));
    assert!(matches!(
        s.respond(&c.first()),
        SaslStep::NeedCredentials { .. }
    ));
    let SaslStep::Challenge(sf) = s.provide_credentials(Some(&creds)) else {
        panic!("expected challenge")
    };
    // The server nonce is long and random.
    let nonce = std::str::from_utf8(&sf).unwrap().split(',').next().unwrap();
    assert!(nonce.len() >= "r=cLiEnTnOnCe0123456789".len() + 24);
    assert!(matches!(
        s.respond(&c.final_message(&sf)),
        SaslStep::Success { .. }
    ));
}

#[test]
fn out_of_order_calls_are_malformed() {
    let mal = SaslStep::Failure(SaslFailure::MalformedRequest);
    let mut s = SaslServer::new(Mechanism::ScramSha256, &tls(), false);
    assert_eq!(s.respond(b"n,,n=user,r=abc"), mal);
    let mut s = SaslServer::new(Mechanism::ScramSha256, &tls(), false);
    assert_eq!(s.provide_credentials(None), mal);
    let mut s = SaslServer::new(Mechanism::ScramSha256, &tls(), false);
    s.start(Some(b"n,,n=user,r=abc"));
    assert_eq!(s.start(Some(b"n,,n=user,r=abc")), mal);
    let mut s = SaslServer::new(Mechanism::ScramSha256, &tls(), false);
    s.start(Some(b"n,,n=user,r=abc"));
    assert_eq!(s.respond(b"c=biws,r=abc,p=AAAA"), mal);
}

#[test]
fn broken_stored_iterations_are_a_temporary_failure() {
    let mut creds = StoredCredentials::from_password(PASSWORD, 16);
    creds.sha256.iterations = 0;
    let mut s = SaslServer::new(Mechanism::ScramSha256, &tls(), false);
    s.start(Some(b"n,,n=user,r=abc"));
    assert_eq!(
        s.provide_credentials(Some(&creds)),
        SaslStep::Failure(SaslFailure::TemporaryAuthFailure)
    );
}

#[test]
fn plain() {
    let creds = StoredCredentials::from_password(PASSWORD, 16);
    let run = |msg: &[u8], creds: Option<&StoredCredentials>| {
        let mut s = SaslServer::new(Mechanism::Plain, &tls(), true);
        match s.start(Some(msg)) {
            SaslStep::NeedCredentials { username } => {
                assert_eq!(username, "user");
                s.provide_credentials(creds)
            }
            other => other,
        }
    };
    let ok = SaslStep::Success {
        username: "user".into(),
        additional_data: None,
    };
    assert_eq!(run(b"\0user\0pencil", Some(&creds)), ok);
    assert_eq!(run(b"\0User\0pencil", Some(&creds)), ok);
    assert_eq!(run(b"user@example.com\0user\0pencil", Some(&creds)), ok);
    let na = SaslStep::Failure(SaslFailure::NotAuthorized);
    assert_eq!(run(b"\0user\0Pencil", Some(&creds)), na);
    assert_eq!(run(b"\0user\0pencil", None), na);
    let mal = SaslStep::Failure(SaslFailure::MalformedRequest);
    for bad in [
        &b"user\0pencil"[..],
        b"\0\0pencil",
        b"\0user\0",
        b"\0user\0a\0b",
        b"\0us\xffer\0p",
    ] {
        assert_eq!(run(bad, Some(&creds)), mal, "{bad:?}");
    }
    assert_eq!(
        run(b"admin@example.com\0user\0pencil", Some(&creds)),
        SaslStep::Failure(SaslFailure::InvalidAuthzid)
    );
    // Without an initial response: empty challenge, then the message as a response.
    let mut s = SaslServer::new(Mechanism::Plain, &tls(), true);
    assert_eq!(s.start(None), SaslStep::Challenge(Vec::new()));
    assert!(matches!(
        s.respond(b"\0user\0pencil"),
        SaslStep::NeedCredentials { .. }
    ));
    assert_eq!(s.provide_credentials(Some(&creds)), ok);
    let mut s = SaslServer::new(Mechanism::Plain, &tls(), true);
    s.start(None);
    assert_eq!(s.respond(b""), mal);
}

#[test]
fn credentials() {
    let c = StoredCredentials::from_password(PASSWORD, 32);
    for alg in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha512] {
        let sc = c.get(alg);
        assert_eq!(sc.salt.len(), 16);
        assert_eq!(sc.iterations, 32);
        assert_eq!(sc.stored_key.len(), alg.output_len());
        assert_eq!(sc.server_key.len(), alg.output_len());
        assert!(sc.verify_password(alg, PASSWORD));
        assert!(!sc.verify_password(alg, "pencil2"));
    }
    assert_ne!(c.sha1.salt, c.sha256.salt);
    assert_ne!(
        StoredCredentials::from_password(PASSWORD, 32),
        StoredCredentials::from_password(PASSWORD, 32)
    );
    // RFC 5802 §5: the SCRAM-SHA-1 example's StoredKey/ServerKey from "pencil".
    let sc = ScramCredentials::derive(HashAlg::Sha1, PASSWORD, &b64("QSXCR+Q6sek8bf92"), 4096);
    let again = ScramCredentials::derive(HashAlg::Sha1, PASSWORD, &sc.salt, 4096);
    assert_eq!(sc, again);
}

#[test]
fn base64_framing() {
    assert_eq!(decode_b64("="), Ok(Vec::new()));
    assert_eq!(decode_b64(""), Ok(Vec::new()));
    assert_eq!(decode_b64(" \n"), Ok(Vec::new()));
    assert_eq!(decode_b64("biws"), Ok(b"n,,".to_vec()));
    assert_eq!(decode_b64("bi\r\nws "), Ok(b"n,,".to_vec()));
    assert_eq!(decode_b64("AGZvbwBiYXI="), Ok(b"\0foo\0bar".to_vec()));
    assert_eq!(decode_b64("biw"), Err(SaslFailure::IncorrectEncoding));
    assert_eq!(decode_b64("b!ws"), Err(SaslFailure::IncorrectEncoding));
    assert_eq!(decode_b64("=="), Err(SaslFailure::IncorrectEncoding));
    assert_eq!(encode_b64(b""), "=");
    assert_eq!(encode_b64(b"n,,"), "biws");
}

#[test]
fn mechanisms_and_failures() {
    for m in Mechanism::ALL {
        assert_eq!(Mechanism::from_name(m.name()), Some(m));
        assert_eq!(m.is_plus(), m.name().ends_with("-PLUS"));
    }
    assert_eq!(Mechanism::ALL[0], Mechanism::ScramSha512Plus);
    assert_eq!(Mechanism::ALL[6], Mechanism::Plain);
    assert_eq!(Mechanism::ScramSha1Plus.name(), "SCRAM-SHA-1-PLUS");
    assert_eq!(Mechanism::from_name("scram-sha-1"), None);
    assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
    assert_eq!(
        SaslFailure::NotAuthorized.to_element(None).to_xml(),
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
    );
    assert_eq!(
        SaslFailure::TemporaryAuthFailure
            .to_element(Some("try later"))
            .to_xml(),
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure/>\
         <text xml:lang='en'>try later</text></failure>"
    );
    let b = tls();
    assert_eq!(
        b.available_types(),
        vec!["tls-exporter", "tls-server-end-point"]
    );
    assert!(ChannelBindings::default().is_empty());
}
