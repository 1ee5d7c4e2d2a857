//! The server side of a SASL exchange as a sans-I/O state machine: SCRAM (RFC 5802 §5, §7;
//! RFC 7677; channel binding per RFC 5802 §6 with RFC 5929 `tls-server-end-point` and RFC 9266
//! `tls-exporter`) and PLAIN (RFC 4616). The caller moves the (decoded) payloads and looks up
//! credentials; this code decides.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;

use super::creds::{ct_eq, HashAlg, ScramCredentials, StoredCredentials, DEFAULT_ITERATIONS};
use super::{ChannelBindings, Mechanism, SaslFailure};
use crate::jid::Jid;

/// Length of the server's part of the SCRAM nonce (RFC 5802 §5.1 asks for it to be fresh and
/// unpredictable; 32 alphanumerics carry about 190 bits).
const SERVER_NONCE_LEN: usize = 32;

/// What the caller does next.
#[derive(Debug, PartialEq, Eq)]
pub enum SaslStep {
    /// Look up the account's credentials and call [`SaslServer::provide_credentials`].
    NeedCredentials { username: String },
    /// Send `<challenge/>` with this payload and feed the `<response/>` to
    /// [`SaslServer::respond`].
    Challenge(Vec<u8>),
    /// Authenticated as `username` (the normalized localpart); send `<success/>` with the
    /// additional data when there is some (SCRAM's server-final message, RFC 6120 §6.4.6).
    Success {
        username: String,
        additional_data: Option<Vec<u8>>,
    },
    /// Send `<failure/>` with this condition; the exchange is over.
    Failure(SaslFailure),
}

/// One SASL exchange.
pub struct SaslServer {
    mech: Mechanism,
    bindings: ChannelBindings,
    plus_offered: bool,
    state: State,
    authzid: Option<String>,
    #[cfg(test)]
    fixed_nonce: Option<String>,
}

enum State {
    /// Nothing received yet.
    Start,
    /// `<auth/>` had no initial response: we sent an empty challenge and wait for the
    /// client's first message (RFC 4422 §5, RFC 6120 §6.4.2).
    AwaitFirst,
    ScramNeedCreds(ScramFirst),
    ScramAwaitFinal(ScramPending),
    PlainNeedCreds {
        username: String,
        password: String,
    },
    Done,
}

/// What we keep from SCRAM's client-first message.
struct ScramFirst {
    alg: HashAlg,
    /// The gs2 header exactly as sent, e.g. `p=tls-exporter,,`; the client echoes it in `c=`.
    gs2_header: String,
    /// The channel-binding data the client asked for (`p=`), None for `n` and `y`.
    cb_data: Option<Vec<u8>>,
    client_first_bare: String,
    client_nonce: String,
    username: String,
}

struct ScramPending {
    first: ScramFirst,
    server_first: String,
    nonce: String,
    creds: ScramCredentials,
    /// False when running on fake credentials for an unknown user: never succeeds.
    known_user: bool,
}

type Fail<T> = Result<T, SaslFailure>;

/// Shows the mechanism and the state's name only: no nonces, keys or passwords in logs.
impl std::fmt::Debug for SaslServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Start => "start",
            State::AwaitFirst => "await-first",
            State::ScramNeedCreds(_) | State::PlainNeedCreds { .. } => "need-credentials",
            State::ScramAwaitFinal(_) => "await-final",
            State::Done => "done",
        };
        f.debug_struct("SaslServer")
            .field("mech", &self.mech)
            .field("plus_offered", &self.plus_offered)
            .field("state", &state)
            .finish()
    }
}

impl SaslServer {
    /// `plus_offered`: whether this server advertised any -PLUS mechanism on this stream (for
    /// the 'y' downgrade check of RFC 5802 §6).
    pub fn new(mech: Mechanism, bindings: &ChannelBindings, plus_offered: bool) -> Self {
        SaslServer {
            mech,
            bindings: bindings.clone(),
            plus_offered,
            state: State::Start,
            authzid: None,
            #[cfg(test)]
            fixed_nonce: None,
        }
    }

    /// Test vectors need a known server nonce.
    #[cfg(test)]
    pub(crate) fn with_server_nonce(mut self, nonce: &str) -> Self {
        self.fixed_nonce = Some(nonce.to_owned());
        self
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// The authorization identity the client asked for, when it sent one (already checked to
    /// be the authenticated user's own bare JID or localpart; the caller may check its domain).
    pub fn authzid(&self) -> Option<&str> {
        self.authzid.as_deref()
    }

    /// The (already base64-decoded) initial response of `<auth/>`. `None`: the client sent
    /// none, so an empty challenge asks for the first message; `Some(b"")`: it sent "=", an
    /// empty response (RFC 6120 §6.4.2), which no mechanism here accepts.
    pub fn start(&mut self, initial_response: Option<&[u8]>) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start => match initial_response {
                None => {
                    self.state = State::AwaitFirst;
                    SaslStep::Challenge(Vec::new())
                }
                Some(first) => self.first_message(first),
            },
            _ => SaslStep::Failure(SaslFailure::MalformedRequest),
        }
    }

    /// After `NeedCredentials`: the stored credentials, or None for an unknown user. With None
    /// the exchange continues with fake credentials derived from the username and a server
    /// secret, so the client sees the same not-authorized at the end whether the user exists
    /// or not.
    pub fn provide_credentials(&mut self, creds: Option<&StoredCredentials>) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ScramNeedCreds(first) => {
                let (creds, known_user) = match creds {
                    Some(c) => (c.get(first.alg).clone(), true),
                    None => (fake_credentials(first.alg, &first.username), false),
                };
                if creds.iterations == 0 {
                    // A broken stored record: not the client's fault.
                    return SaslStep::Failure(SaslFailure::TemporaryAuthFailure);
                }
                let nonce = format!("{}{}", first.client_nonce, self.server_nonce());
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    B64.encode(&creds.salt),
                    creds.iterations
                );
                let challenge = server_first.clone().into_bytes();
                self.state = State::ScramAwaitFinal(ScramPending {
                    first,
                    server_first,
                    nonce,
                    creds,
                    known_user,
                });
                SaslStep::Challenge(challenge)
            }
            State::PlainNeedCreds { username, password } => {
                let ok = match creds {
                    Some(c) => c.sha256.verify_password(HashAlg::Sha256, &password),
                    None => {
                        // Same PBKDF2 work as for a real account, so timing does not tell.
                        let fake = fake_credentials(HashAlg::Sha256, &username);
                        let _ = fake.verify_password(HashAlg::Sha256, &password);
                        false
                    }
                };
                if ok {
                    SaslStep::Success {
                        username,
                        additional_data: None,
                    }
                } else {
                    SaslStep::Failure(SaslFailure::NotAuthorized)
                }
            }
            _ => SaslStep::Failure(SaslFailure::MalformedRequest),
        }
    }

    /// Each (decoded) `<response/>`.
    pub fn respond(&mut self, response: &[u8]) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitFirst => self.first_message(response),
            State::ScramAwaitFinal(pending) => match scram_final(pending, response) {
                Ok(step) => step,
                Err(f) => SaslStep::Failure(f),
            },
            _ => SaslStep::Failure(SaslFailure::MalformedRequest),
        }
    }

    fn first_message(&mut self, msg: &[u8]) -> SaslStep {
        let parsed = match self.mech.hash_alg() {
            Some(alg) => self.scram_first(alg, msg).map(|first| {
                let username = first.username.clone();
                (State::ScramNeedCreds(first), username)
            }),
            None => self.plain(msg).map(|(username, password)| {
                let state = State::PlainNeedCreds {
                    username: username.clone(),
                    password,
                };
                (state, username)
            }),
        };
        match parsed {
            Ok((state, username)) => {
                self.state = state;
                SaslStep::NeedCredentials { username }
            }
            Err(f) => SaslStep::Failure(f),
        }
    }

    /// RFC 5802 §7: `gs2-cbind-flag "," [authzid] "," [reserved-mext ","] username "," nonce
    /// ["," extensions]`.
    fn scram_first(&mut self, alg: HashAlg, msg: &[u8]) -> Fail<ScramFirst> {
        let msg = std::str::from_utf8(msg).map_err(|_| SaslFailure::MalformedRequest)?;
        let (flag, rest) = msg.split_once(',').ok_or(SaslFailure::MalformedRequest)?;
        let (authz, bare) = rest.split_once(',').ok_or(SaslFailure::MalformedRequest)?;
        let gs2_header = &msg[..flag.len() + authz.len() + 2];

        let cb_data = match flag {
            // The client does not support channel binding.
            "n" if self.mech.is_plus() => return Err(SaslFailure::MalformedRequest),
            "n" => None,
            // The client supports it but thinks we do not: if we did offer a -PLUS
            // mechanism, someone stripped it from our features (RFC 5802 §6).
            "y" if self.mech.is_plus() => return Err(SaslFailure::MalformedRequest),
            "y" if self.plus_offered => return Err(SaslFailure::NotAuthorized),
            "y" => None,
            _ => {
                let cb_name = flag
                    .strip_prefix("p=")
                    .ok_or(SaslFailure::MalformedRequest)?;
                if !self.mech.is_plus() {
                    return Err(SaslFailure::MalformedRequest);
                }
                // Unknown or unavailable binding type (tls-unique is never offered).
                let data = self
                    .bindings
                    .get(cb_name)
                    .ok_or(SaslFailure::NotAuthorized)?;
                Some(data.to_vec())
            }
        };

        let authzid = if authz.is_empty() {
            None
        } else {
            let a = authz
                .strip_prefix("a=")
                .ok_or(SaslFailure::MalformedRequest)?;
            Some(decode_saslname(a)?)
        };

        let mut attrs = bare.split(',');
        let mut first = attrs.next().ok_or(SaslFailure::MalformedRequest)?;
        if first.starts_with("m=") {
            // Reserved for mandatory extensions we do not know (RFC 5802 §5.1).
            return Err(SaslFailure::MalformedRequest);
        }
        let username = first
            .strip_prefix("n=")
            .ok_or(SaslFailure::MalformedRequest)
            .and_then(decode_saslname)?;
        let username = normalize_username(&username)?;
        first = attrs.next().ok_or(SaslFailure::MalformedRequest)?;
        let client_nonce = first
            .strip_prefix("r=")
            .ok_or(SaslFailure::MalformedRequest)?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(SaslFailure::MalformedRequest);
        }
        // Optional extensions after the nonce are ignored (RFC 5802 §5.1).

        self.check_authzid(authzid, &username)?;
        Ok(ScramFirst {
            alg,
            gs2_header: gs2_header.to_owned(),
            cb_data,
            client_first_bare: bare.to_owned(),
            client_nonce: client_nonce.to_owned(),
            username,
        })
    }

    /// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`.
    fn plain(&mut self, msg: &[u8]) -> Fail<(String, String)> {
        let msg = std::str::from_utf8(msg).map_err(|_| SaslFailure::MalformedRequest)?;
        let mut parts = msg.split('\0');
        let (Some(authz), Some(authcid), Some(passwd), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SaslFailure::MalformedRequest);
        };
        if passwd.is_empty() {
            return Err(SaslFailure::MalformedRequest);
        }
        let username = normalize_username(authcid)?;
        let authzid = (!authz.is_empty()).then(|| authz.to_owned());
        self.check_authzid(authzid, &username)?;
        Ok((username, passwd.to_owned()))
    }

    /// We only let users act as themselves: the authzid must be their localpart or a bare
    /// JID with their localpart (the domain is the caller's to check, see [`Self::authzid`]).
    fn check_authzid(&mut self, authzid: Option<String>, username: &str) -> Fail<()> {
        let Some(a) = authzid else { return Ok(()) };
        let ok = a.to_lowercase() == username
            || Jid::parse(&a).is_ok_and(|j| j.is_bare() && j.node() == Some(username));
        if !ok {
            return Err(SaslFailure::InvalidAuthzid);
        }
        self.authzid = Some(a);
        Ok(())
    }

    fn server_nonce(&self) -> String {
        #[cfg(test)]
        if let Some(n) = &self.fixed_nonce {
            return n.clone();
        }
        Alphanumeric.sample_string(&mut rand::thread_rng(), SERVER_NONCE_LEN)
    }
}

/// RFC 5802 §7: `channel-binding "," nonce ["," extensions] "," proof`.
fn scram_final(p: ScramPending, msg: &[u8]) -> Fail<SaslStep> {
    let msg = std::str::from_utf8(msg).map_err(|_| SaslFailure::MalformedRequest)?;
    // The proof is the last attribute; everything before it is signed.
    let (without_proof, proof_b64) = msg
        .rsplit_once(",p=")
        .ok_or(SaslFailure::MalformedRequest)?;
    let mut attrs = without_proof.split(',');
    let cbind_b64 = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or(SaslFailure::MalformedRequest)?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(SaslFailure::MalformedRequest)?;
    let cbind = B64
        .decode(cbind_b64)
        .map_err(|_| SaslFailure::MalformedRequest)?;
    let proof = B64
        .decode(proof_b64)
        .map_err(|_| SaslFailure::MalformedRequest)?;
    let alg = p.first.alg;
    if proof.len() != alg.output_len() {
        return Err(SaslFailure::MalformedRequest);
    }
    if nonce != p.nonce {
        return Err(SaslFailure::NotAuthorized);
    }
    // c= is base64(gs2 header + channel-binding data) (RFC 5802 §7, cbind-input).
    let mut expected_cbind = p.first.gs2_header.as_bytes().to_vec();
    if let Some(data) = &p.first.cb_data {
        expected_cbind.extend_from_slice(data);
    }
    if !ct_eq(&cbind, &expected_cbind) {
        return Err(SaslFailure::NotAuthorized);
    }

    let auth_message = format!(
        "{},{},{}",
        p.first.client_first_bare, p.server_first, without_proof
    );
    let client_signature = alg.hmac(&p.creds.stored_key, auth_message.as_bytes());
    let client_key: Vec<u8> = proof
        .iter()
        .zip(&client_signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let proof_ok = ct_eq(&alg.hash(&client_key), &p.creds.stored_key);
    if !(proof_ok && p.known_user) {
        return Err(SaslFailure::NotAuthorized);
    }
    let server_signature = alg.hmac(&p.creds.server_key, auth_message.as_bytes());
    Ok(SaslStep::Success {
        username: p.first.username,
        additional_data: Some(format!("v={}", B64.encode(server_signature)).into_bytes()),
    })
}

/// `saslname` (RFC 5802 §7): ',' and '=' travel as "=2C" and "=3D"; any other '=' is an error.
fn decode_saslname(s: &str) -> Fail<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest
            .get(i + 1..i + 3)
            .ok_or(SaslFailure::MalformedRequest)?;
        out.push(match esc {
            "2C" | "2c" => ',',
            "3D" | "3d" => '=',
            _ => return Err(SaslFailure::MalformedRequest),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// SASLprep-lite for the authentication identity: lowercased like a JID localpart (the
/// account key); empty or control characters are malformed.
fn normalize_username(s: &str) -> Fail<String> {
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok(s.to_lowercase())
}

/// A per-process random secret for fake credentials.
fn server_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut s);
        s
    })
}

/// Credentials for a user that does not exist: the salt is stable per username (so repeated
/// attempts cannot tell a fake from a real account by a changing salt) and the keys are
/// unrelated to any password.
fn fake_credentials(alg: HashAlg, username: &str) -> ScramCredentials {
    let secret = server_secret();
    let tag = |label: &str| {
        let mut data = format!("{label}\0{alg:?}\0").into_bytes();
        data.extend_from_slice(username.as_bytes());
        data
    };
    let mut salt = HashAlg::Sha256.hmac(secret, &tag("salt"));
    salt.truncate(16);
    ScramCredentials {
        salt,
        iterations: DEFAULT_ITERATIONS,
        stored_key: alg.hmac(secret, &tag("stored")),
        server_key: alg.hmac(secret, &tag("server")),
    }
}
