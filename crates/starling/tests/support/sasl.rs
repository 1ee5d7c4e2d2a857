//! The client side of the SASL mechanisms the tests use, written from the RFCs and not from
//! the server's code: SCRAM-SHA-1/256/512 and their -PLUS variants (RFC 5802 §3, §5, §7;
//! RFC 7677; channel binding RFC 5929 / RFC 9266) and PLAIN (RFC 4616).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::distributions::{Alphanumeric, DistString};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha512,
}

/// Channel-binding types of XEP-0440 / RFC 5802 `p=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cb {
    /// RFC 9266.
    Exporter,
    /// RFC 5929 §4.
    EndPoint,
}

impl Cb {
    pub fn name(self) -> &'static str {
        match self {
            Cb::Exporter => "tls-exporter",
            Cb::EndPoint => "tls-server-end-point",
        }
    }
}

/// A SASL mechanism as the client runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mech {
    Plain,
    Scram(Hash),
    ScramPlus(Hash, Cb),
}

impl Mech {
    pub const SCRAM_SHA_1: Mech = Mech::Scram(Hash::Sha1);
    pub const SCRAM_SHA_256: Mech = Mech::Scram(Hash::Sha256);
    pub const SCRAM_SHA_512: Mech = Mech::Scram(Hash::Sha512);

    /// The IANA name sent in `<auth mechanism=…>`.
    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::Scram(Hash::Sha1) => "SCRAM-SHA-1",
            Mech::Scram(Hash::Sha256) => "SCRAM-SHA-256",
            Mech::Scram(Hash::Sha512) => "SCRAM-SHA-512",
            Mech::ScramPlus(Hash::Sha1, _) => "SCRAM-SHA-1-PLUS",
            Mech::ScramPlus(Hash::Sha256, _) => "SCRAM-SHA-256-PLUS",
            Mech::ScramPlus(Hash::Sha512, _) => "SCRAM-SHA-512-PLUS",
        }
    }
}

impl Hash {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Hash::Sha1 => run::<Hmac<Sha1>>(key, data),
            Hash::Sha256 => run::<Hmac<Sha256>>(key, data),
            Hash::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    /// Hi() of RFC 5802 §2.2 is PBKDF2 with HMAC and an output of one hash length.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut out = vec![0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out
            }
            Hash::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            Hash::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// RFC 5802 §5.1 `saslname`: ',' and '=' escaped.
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

pub fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

pub fn unb64(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() || compact == "=" {
        return Ok(Vec::new());
    }
    B64.decode(compact.as_bytes())
        .map_err(|e| format!("bad base64 {text:?}: {e}"))
}

/// One SCRAM exchange, client side.
pub struct ScramClient {
    hash: Hash,
    password: String,
    gs2_header: String,
    cb_data: Vec<u8>,
    nonce: String,
    client_first_bare: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// `gs2_header` is "n,,", "y,," or "p=<cb-name>,,"; `cb_data` the channel-binding data
    /// for "p=" (empty otherwise).
    pub fn new(hash: Hash, user: &str, password: &str, gs2_header: &str, cb_data: &[u8]) -> Self {
        let nonce = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
        ScramClient {
            hash,
            password: password.to_owned(),
            gs2_header: gs2_header.to_owned(),
            cb_data: cb_data.to_vec(),
            client_first_bare: format!("n={},r={nonce}", saslname(user)),
            nonce,
            server_signature: None,
        }
    }

    /// client-first-message (RFC 5802 §7).
    pub fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.client_first_bare).into_bytes()
    }

    /// client-final-message for this server-first-message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let sf = std::str::from_utf8(server_first).map_err(|e| format!("server-first: {e}"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in sf.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(unb64(v)?),
                Some(("i", v)) => {
                    iterations = Some(v.parse::<u32>().map_err(|e| format!("i={v}: {e}"))?)
                }
                Some(("m", _)) => return Err("server-first has a mandatory extension".into()),
                _ => {}
            }
        }
        let nonce = nonce.ok_or_else(|| format!("no r= in server-first {sf:?}"))?;
        let salt = salt.ok_or_else(|| format!("no s= in server-first {sf:?}"))?;
        let iterations = iterations.ok_or_else(|| format!("no i= in server-first {sf:?}"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(format!(
                "server nonce {nonce:?} does not extend ours {:?}",
                self.nonce
            ));
        }
        let mut cbind = self.gs2_header.as_bytes().to_vec();
        cbind.extend_from_slice(&self.cb_data);
        let without_proof = format!("c={},r={nonce}", b64(&cbind));
        let auth_message = format!("{},{sf},{without_proof}", self.client_first_bare);
        let h = self.hash;
        let salted = h.hi(self.password.as_bytes(), &salt, iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.digest(&client_key);
        let client_signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key");
        self.server_signature = Some(h.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", b64(&proof)).into_bytes())
    }

    /// Checks server-final-message `v=ServerSignature` (RFC 5802 §3: the client authenticates
    /// the server).
    pub fn verify_server_final(&self, data: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(data).map_err(|e| format!("server-final: {e}"))?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("server-final carries an error: {e}"));
        }
        let v = text
            .strip_prefix("v=")
            .ok_or_else(|| format!("server-final {text:?} has no v="))?;
        let v = v.split(',').next().unwrap_or_default();
        let expected = self
            .server_signature
            .as_ref()
            .ok_or("server-final before client-final")?;
        if unb64(v)? != *expected {
            return Err(format!("server signature {v:?} does not verify"));
        }
        Ok(())
    }
}

/// RFC 4616 PLAIN message with an empty authzid.
pub fn plain_message(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}
