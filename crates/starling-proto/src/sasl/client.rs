//! The client side of SASL (RFC 6120 §6) as sans-I/O pieces: SCRAM-SHA-1/256/512 without
//! channel binding (RFC 5802 §3, §5, §7 with the gs2 header `n,,`; RFC 7677), PLAIN
//! (RFC 4616), and a cache of SaltedPassword values keyed by (mechanism, password, salt,
//! iterations), which lets a client skip PBKDF2 on the next login as real clients do
//! (RFC 5802 §5.1: "the client MAY cache the SaltedPassword").
//!
//! The PBKDF2 step is left to the caller ([`ScramClient::salt_params`] says what to derive,
//! [`salted_password`] derives it), so a caller can look it up in the cache or run it off its
//! event loop.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};

use super::creds::{ct_eq, HashAlg};
use super::Mechanism;

/// Length of the client's nonce (RFC 5802 §5.1): 24 alphanumerics carry about 140 bits.
const CLIENT_NONCE_LEN: usize = 24;

/// Why the client gives up on an exchange (the server's own `<failure/>` is the caller's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("{0} is not a client mechanism here (SCRAM without -PLUS, or PLAIN)")]
    Unsupported(Mechanism),
    #[error("malformed server message: {0}")]
    Malformed(&'static str),
    #[error("the server's nonce does not extend ours")]
    NonceMismatch,
    #[error("the server reported an error: {0}")]
    ServerError(String),
    #[error("the server's signature is wrong (it does not know the password)")]
    BadServerSignature,
    #[error("called out of order")]
    OutOfOrder,
}

type Result<T> = std::result::Result<T, ClientError>;

/// What SaltedPassword the exchange needs: Hi(password, salt, iterations) for this mechanism.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaltParams {
    pub mechanism: Mechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

enum State {
    Start,
    AwaitServerFirst,
    NeedSalted {
        server_first: String,
        nonce: String,
        params: SaltParams,
    },
    AwaitServerFinal {
        server_signature: Vec<u8>,
    },
    Done,
}

/// One SCRAM exchange, client side, without channel binding.
pub struct ScramClient {
    mech: Mechanism,
    alg: HashAlg,
    client_nonce: String,
    client_first_bare: String,
    state: State,
}

/// Shows the mechanism only: no nonces or keys in logs.
impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("mech", &self.mech)
            .finish()
    }
}

impl ScramClient {
    /// A new exchange for `username` with a fresh random nonce. The password is not needed
    /// here: it only enters through the SaltedPassword.
    pub fn new(mech: Mechanism, username: &str) -> Result<Self> {
        let nonce = Alphanumeric.sample_string(&mut rand::thread_rng(), CLIENT_NONCE_LEN);
        Self::with_nonce(mech, username, &nonce)
    }

    /// Same with a given nonce (test vectors).
    pub fn with_nonce(mech: Mechanism, username: &str, nonce: &str) -> Result<Self> {
        let alg = match mech.hash_alg() {
            Some(alg) if !mech.is_plus() => alg,
            _ => return Err(ClientError::Unsupported(mech)),
        };
        Ok(ScramClient {
            mech,
            alg,
            client_nonce: nonce.to_owned(),
            client_first_bare: format!("n={},r={nonce}", encode_saslname(username)),
            state: State::Start,
        })
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// client-first-message: gs2 header `n,,` (no channel binding, no authzid) + bare part.
    pub fn client_first(&mut self) -> Vec<u8> {
        self.state = State::AwaitServerFirst;
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Reads server-first-message (`r=…,s=…,i=…`) and returns what SaltedPassword is needed.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<SaltParams> {
        if !matches!(self.state, State::AwaitServerFirst) {
            return Err(ClientError::OutOfOrder);
        }
        self.state = State::Done;
        let text = std::str::from_utf8(msg).map_err(|_| ClientError::Malformed("not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for (i, attr) in text.split(',').enumerate() {
            let (k, v) = attr
                .split_once('=')
                .ok_or(ClientError::Malformed("attribute without '='"))?;
            match k {
                // A mandatory extension we do not know (RFC 5802 §5.1).
                "m" if i == 0 => return Err(ClientError::Malformed("mandatory extension")),
                "e" => return Err(ClientError::ServerError(v.to_owned())),
                "r" => nonce = Some(v),
                "s" => {
                    salt = Some(
                        B64.decode(v)
                            .map_err(|_| ClientError::Malformed("salt is not base64"))?,
                    )
                }
                "i" => {
                    iterations = Some(
                        v.parse::<u32>()
                            .map_err(|_| ClientError::Malformed("bad iteration count"))?,
                    )
                }
                _ => {}
            }
        }
        let nonce = nonce.ok_or(ClientError::Malformed("no nonce"))?;
        let salt = salt.ok_or(ClientError::Malformed("no salt"))?;
        let iterations = iterations.ok_or(ClientError::Malformed("no iteration count"))?;
        if iterations == 0 {
            return Err(ClientError::Malformed("zero iterations"));
        }
        if nonce.len() <= self.client_nonce.len() || !nonce.starts_with(&self.client_nonce) {
            return Err(ClientError::NonceMismatch);
        }
        let params = SaltParams {
            mechanism: self.mech,
            salt,
            iterations,
        };
        self.state = State::NeedSalted {
            server_first: text.to_owned(),
            nonce: nonce.to_owned(),
            params: params.clone(),
        };
        Ok(params)
    }

    /// The parameters asked for by the last [`Self::server_first`], if still pending.
    pub fn salt_params(&self) -> Option<&SaltParams> {
        match &self.state {
            State::NeedSalted { params, .. } => Some(params),
            _ => None,
        }
    }

    /// client-final-message (`c=biws,r=…,p=…`) from SaltedPassword = Hi(password, salt, i).
    pub fn client_final(&mut self, salted_password: &[u8]) -> Result<Vec<u8>> {
        let State::NeedSalted {
            server_first,
            nonce,
            ..
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ClientError::OutOfOrder);
        };
        let alg = self.alg;
        // c= is base64 of the gs2 header "n,," (no channel-binding data): "biws".
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_key = alg.hmac(salted_password, b"Client Key");
        let stored_key = alg.hash(&client_key);
        let client_signature = alg.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = alg.hmac(salted_password, b"Server Key");
        self.state = State::AwaitServerFinal {
            server_signature: alg.hmac(&server_key, auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final-message (`v=…`): only a server that knows our credentials can
    /// compute it (RFC 5802 §3), so success without it is not success.
    pub fn verify_server_final(&mut self, msg: &[u8]) -> Result<()> {
        let State::AwaitServerFinal { server_signature } =
            std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ClientError::OutOfOrder);
        };
        let text = std::str::from_utf8(msg).map_err(|_| ClientError::Malformed("not UTF-8"))?;
        let first = text.split(',').next().unwrap_or("");
        if let Some(e) = first.strip_prefix("e=") {
            return Err(ClientError::ServerError(e.to_owned()));
        }
        let v = first
            .strip_prefix("v=")
            .ok_or(ClientError::Malformed("no verifier"))?;
        let v = B64
            .decode(v)
            .map_err(|_| ClientError::Malformed("verifier is not base64"))?;
        if ct_eq(&v, &server_signature) {
            Ok(())
        } else {
            Err(ClientError::BadServerSignature)
        }
    }
}

/// SaltedPassword = Hi(password, salt, i) (RFC 5802 §3): the expensive step (PBKDF2).
pub fn salted_password(params: &SaltParams, password: &str) -> Result<Vec<u8>> {
    let alg = params
        .mechanism
        .hash_alg()
        .ok_or(ClientError::Unsupported(params.mechanism))?;
    Ok(alg.hi(password.as_bytes(), &params.salt, params.iterations))
}

/// PLAIN's message (RFC 4616 §2): `[authzid] NUL authcid NUL passwd`.
pub fn plain_message(authzid: Option<&str>, username: &str, password: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(username.len() + password.len() + 2);
    m.extend_from_slice(authzid.unwrap_or("").as_bytes());
    m.push(0);
    m.extend_from_slice(username.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    m
}

/// `saslname` (RFC 5802 §7): ',' and '=' travel as "=2C" and "=3D".
fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// A cache key: SHA-256 over (mechanism, password, salt, iterations), so a cache written to
/// disk holds no password in clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn new(params: &SaltParams, password: &str) -> Self {
        let mut h = Sha256::new();
        h.update(params.mechanism.name().as_bytes());
        h.update([0]);
        // Lengths make the encoding unambiguous.
        h.update((password.len() as u64).to_be_bytes());
        h.update(password.as_bytes());
        h.update((params.salt.len() as u64).to_be_bytes());
        h.update(&params.salt);
        h.update(params.iterations.to_be_bytes());
        CacheKey(h.finalize().into())
    }

    fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(CacheKey(out))
    }
}

/// SaltedPassword values by [`CacheKey`], shared between tasks. The text form (one
/// `hex-key base64-value` line per entry) is for a cache file; reading and writing the file
/// is the caller's job.
#[derive(Default)]
pub struct SaltedPasswordCache {
    map: Mutex<HashMap<CacheKey, Vec<u8>>>,
}

/// Shows the size only: the values are secrets.
impl std::fmt::Debug for SaltedPasswordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaltedPasswordCache")
            .field("entries", &self.len())
            .finish()
    }
}

impl SaltedPasswordCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Vec<u8>>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &CacheKey) -> Option<Vec<u8>> {
        self.lock().get(key).cloned()
    }

    pub fn insert(&self, key: CacheKey, salted: Vec<u8>) {
        self.lock().insert(key, salted);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached SaltedPassword for these parameters, or derives and caches it.
    pub fn get_or_derive(&self, params: &SaltParams, password: &str) -> Result<Vec<u8>> {
        let key = CacheKey::new(params, password);
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let v = salted_password(params, password)?;
        self.insert(key, v.clone());
        Ok(v)
    }

    /// One `hex-key base64-value` line per entry.
    pub fn to_text(&self) -> String {
        let map = self.lock();
        let mut out = String::with_capacity(map.len() * 110);
        for (k, v) in map.iter() {
            out.push_str(&k.to_hex());
            out.push(' ');
            out.push_str(&B64.encode(v));
            out.push('\n');
        }
        out
    }

    /// Adds the entries of a text form; malformed lines are skipped (a cache can always be
    /// rebuilt). Returns how many were added.
    pub fn load_text(&self, text: &str) -> usize {
        let mut map = self.lock();
        let mut n = 0;
        for line in text.lines() {
            let Some((k, v)) = line.split_once(' ') else {
                continue;
            };
            let (Some(k), Ok(v)) = (CacheKey::from_hex(k), B64.decode(v.trim())) else {
                continue;
            };
            map.insert(k, v);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sasl::{
        ChannelBindings, SaslFailure, SaslServer, SaslStep, ScramCredentials, StoredCredentials,
    };

    fn creds(password: &str) -> StoredCredentials {
        StoredCredentials::from_password(password, 4096)
    }

    /// Runs the client against the server; Ok(()) when both agree it succeeded.
    fn run(
        mech: Mechanism,
        user: &str,
        password: &str,
        stored: &StoredCredentials,
        cache: &SaltedPasswordCache,
    ) -> std::result::Result<(), String> {
        let mut server = SaslServer::new(mech, &ChannelBindings::default(), false);
        let mut client = ScramClient::new(mech, user).unwrap();
        match server.start(Some(&client.client_first())) {
            SaslStep::NeedCredentials { username } => assert_eq!(username, user),
            other => return Err(format!("{other:?}")),
        }
        let SaslStep::Challenge(first) = server.provide_credentials(Some(stored)) else {
            return Err("no challenge".into());
        };
        let params = client.server_first(&first).map_err(|e| e.to_string())?;
        assert_eq!(client.salt_params(), Some(&params));
        let salted = cache.get_or_derive(&params, password).unwrap();
        let fin = client.client_final(&salted).unwrap();
        match server.respond(&fin) {
            SaslStep::Success {
                additional_data: Some(data),
                ..
            } => client.verify_server_final(&data).map_err(|e| e.to_string()),
            SaslStep::Failure(f) => Err(f.to_string()),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn scram_sha1_and_sha256_against_our_server() {
        let stored = creds("secret");
        let cache = SaltedPasswordCache::new();
        for mech in [
            Mechanism::ScramSha1,
            Mechanism::ScramSha256,
            Mechanism::ScramSha512,
        ] {
            run(mech, "alice", "secret", &stored, &cache).unwrap();
        }
        assert_eq!(cache.len(), 3);
        // A second login hits the cache and still succeeds.
        run(Mechanism::ScramSha256, "alice", "secret", &stored, &cache).unwrap();
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn wrong_password_is_refused_by_the_server() {
        let stored = creds("secret");
        let cache = SaltedPasswordCache::new();
        for mech in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
            assert_eq!(
                run(mech, "alice", "wrong", &stored, &cache),
                Err(SaslFailure::NotAuthorized.to_string())
            );
        }
    }

    #[test]
    fn a_server_without_our_credentials_is_caught() {
        let mut client = ScramClient::with_nonce(Mechanism::ScramSha256, "u", "abc").unwrap();
        let _ = client.client_first();
        let salt = B64.encode(b"saltsalt");
        client
            .server_first(format!("r=abcXYZ,s={salt},i=4096").as_bytes())
            .unwrap();
        let _ = client.client_final(b"0123456789abcdef0123456789abcdef");
        let forged = format!("v={}", B64.encode([0u8; 32]));
        assert_eq!(
            client.verify_server_final(forged.as_bytes()),
            Err(ClientError::BadServerSignature)
        );
    }

    #[test]
    fn server_first_is_checked() {
        let mut c = ScramClient::with_nonce(Mechanism::ScramSha1, "u", "abc").unwrap();
        let _ = c.client_first();
        assert_eq!(
            c.server_first(b"r=zzzXYZ,s=c2FsdA==,i=4096"),
            Err(ClientError::NonceMismatch)
        );
        let mut c = ScramClient::with_nonce(Mechanism::ScramSha1, "u", "abc").unwrap();
        let _ = c.client_first();
        assert_eq!(
            c.server_first(b"e=unknown-user"),
            Err(ClientError::ServerError("unknown-user".into()))
        );
        let mut c = ScramClient::with_nonce(Mechanism::ScramSha1, "u", "abc").unwrap();
        let _ = c.client_first();
        assert!(c.server_first(b"r=abcd,s=***,i=1").is_err());
        assert!(ScramClient::new(Mechanism::ScramSha256Plus, "u").is_err());
        assert!(ScramClient::new(Mechanism::Plain, "u").is_err());
    }

    /// RFC 7677 §3: the SCRAM-SHA-256 example exchange, client side.
    #[test]
    fn rfc7677_vector() {
        let mut c = ScramClient::with_nonce(Mechanism::ScramSha256, "user", "rOprNGfwEbeRWgbNEkqO")
            .unwrap();
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let params = c
            .server_first(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        let salted = salted_password(&params, "pencil").unwrap();
        assert_eq!(
            c.client_final(&salted).unwrap(),
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
                .to_vec()
        );
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
    }

    #[test]
    fn usernames_are_saslname_encoded() {
        let mut c = ScramClient::with_nonce(Mechanism::ScramSha1, "a,b=c", "n").unwrap();
        assert_eq!(c.client_first(), b"n,,n=a=2Cb=3Dc,r=n");
    }

    #[test]
    fn plain_against_our_server() {
        let stored = creds("secret");
        for (password, ok) in [("secret", true), ("nope", false)] {
            let mut server = SaslServer::new(Mechanism::Plain, &ChannelBindings::default(), false);
            let msg = plain_message(None, "alice", password);
            assert!(matches!(
                server.start(Some(&msg)),
                SaslStep::NeedCredentials { .. }
            ));
            let step = server.provide_credentials(Some(&stored));
            assert_eq!(matches!(step, SaslStep::Success { .. }), ok, "{step:?}");
        }
    }

    #[test]
    fn cache_text_round_trip() {
        let cache = SaltedPasswordCache::new();
        let params = SaltParams {
            mechanism: Mechanism::ScramSha1,
            salt: b"salt".to_vec(),
            iterations: 16,
        };
        let v = cache.get_or_derive(&params, "pw").unwrap();
        let other = SaltedPasswordCache::new();
        assert_eq!(other.load_text(&cache.to_text()), 1);
        assert_eq!(other.load_text("garbage\nzz 12\n"), 0);
        assert_eq!(other.get(&CacheKey::new(&params, "pw")), Some(v.clone()));
        // Every part of the key matters.
        assert_eq!(other.get(&CacheKey::new(&params, "pw2")), None);
        let sha256 = SaltParams {
            mechanism: Mechanism::ScramSha256,
            ..params.clone()
        };
        assert_eq!(other.get(&CacheKey::new(&sha256, "pw")), None);
        // And the value is the real SaltedPassword.
        let alg = HashAlg::Sha1;
        let direct = ScramCredentials::derive(alg, "pw", b"salt", 16);
        assert_eq!(alg.hash(&alg.hmac(&v, b"Client Key")), direct.stored_key);
    }
}
