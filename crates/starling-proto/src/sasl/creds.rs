//! SCRAM credentials (RFC 5802 §3): what a server stores instead of a password — salt,
//! iteration count, StoredKey and ServerKey — for SHA-1, SHA-256 (RFC 7677) and SHA-512, and
//! the hash primitives (H, HMAC, Hi = PBKDF2) they are built from.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Iteration count for new credentials: RFC 7677 §4 asks for at least 4096.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// The hash function of a SCRAM variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha512,
}

impl HashAlg {
    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha512 => 64,
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha1 => Sha1::digest(data).to_vec(),
            HashAlg::Sha256 => Sha256::digest(data).to_vec(),
            HashAlg::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha1 => mac::<Hmac<Sha1>>(key, data),
            HashAlg::Sha256 => mac::<Hmac<Sha256>>(key, data),
            HashAlg::Sha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    /// Hi(password, salt, i) of RFC 5802 §2.2, which is PBKDF2 with HMAC and dkLen = the
    /// hash's output length.
    pub fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        match self {
            HashAlg::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            HashAlg::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            HashAlg::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail; an empty output would only make
    // every comparison fail, never succeed.
    match <M as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The SCRAM verifier of one password for one hash (RFC 5802 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    /// SaltedPassword = Hi(password, salt, i); ClientKey = HMAC(SaltedPassword, "Client Key");
    /// StoredKey = H(ClientKey); ServerKey = HMAC(SaltedPassword, "Server Key").
    ///
    /// The password is used as given (no SASLprep / OpaqueString normalization).
    pub fn derive(alg: HashAlg, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = alg.hi(password.as_bytes(), salt, iterations);
        let client_key = alg.hmac(&salted, b"Client Key");
        ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: alg.hash(&client_key),
            server_key: alg.hmac(&salted, b"Server Key"),
        }
    }

    /// Whether `password` is the one these credentials were derived from (for PLAIN and
    /// password changes); the keys are compared in constant time.
    pub fn verify_password(&self, alg: HashAlg, password: &str) -> bool {
        let other = ScramCredentials::derive(alg, password, &self.salt, self.iterations);
        // Both compared, no short-circuit, so timing does not say which one differed.
        let stored = ct_eq(&other.stored_key, &self.stored_key);
        let server = ct_eq(&other.server_key, &self.server_key);
        stored & server
    }
}

/// An account's credentials for every SCRAM hash we offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCredentials {
    pub sha1: ScramCredentials,
    pub sha256: ScramCredentials,
    pub sha512: ScramCredentials,
}

impl StoredCredentials {
    /// Derives all three with a fresh random 16-byte salt each.
    pub fn from_password(password: &str, iterations: u32) -> Self {
        let salt = || {
            let mut s = vec![0u8; 16];
            rand::thread_rng().fill_bytes(&mut s);
            s
        };
        StoredCredentials {
            sha1: ScramCredentials::derive(HashAlg::Sha1, password, &salt(), iterations),
            sha256: ScramCredentials::derive(HashAlg::Sha256, password, &salt(), iterations),
            sha512: ScramCredentials::derive(HashAlg::Sha512, password, &salt(), iterations),
        }
    }

    pub fn get(&self, alg: HashAlg) -> &ScramCredentials {
        match alg {
            HashAlg::Sha1 => &self.sha1,
            HashAlg::Sha256 => &self.sha256,
            HashAlg::Sha512 => &self.sha512,
        }
    }
}
