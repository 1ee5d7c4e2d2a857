//! SASL (RFC 6120 §6): mechanism names, failure conditions (§6.5), the base64 framing of
//! `<auth/>`/`<challenge/>`/`<response/>`/`<success/>` payloads (§6.4.2), and the server side
//! of SCRAM-SHA-1/256/512 with and without channel binding (RFC 5802, RFC 7677, RFC 5929,
//! RFC 9266) and PLAIN (RFC 4616).

pub mod client;
mod creds;
mod server;

#[cfg(test)]
mod tests;

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use starling_xml::Element;

pub use client::{ClientError, SaltParams, SaltedPasswordCache, ScramClient};
pub use creds::{HashAlg, ScramCredentials, StoredCredentials, DEFAULT_ITERATIONS};
pub use server::{SaslServer, SaslStep};

/// Namespace of the SASL negotiation elements (RFC 6120 §6.4).
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// Channel-binding data of the TLS connection a SASL exchange runs over (RFC 5929, RFC 9266).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelBindings {
    /// `tls-exporter` (RFC 9266): 32 bytes exported with label "EXPORTER-Channel-Binding"
    /// and no context; only offered on TLS 1.3.
    pub tls_exporter: Option<Vec<u8>>,
    /// `tls-server-end-point` (RFC 5929 §4): hash of the server's certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// The data for a channel-binding type name of RFC 5802's `p=` (None when unknown or
    /// not available on this connection; `tls-unique` is never supported).
    pub fn get(&self, cb_name: &str) -> Option<&[u8]> {
        match cb_name {
            "tls-exporter" => self.tls_exporter.as_deref(),
            "tls-server-end-point" => self.tls_server_end_point.as_deref(),
            _ => None,
        }
    }

    /// The channel-binding type names available, for XEP-0440 `<sasl-channel-binding/>`.
    pub fn available_types(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.tls_exporter.is_some() {
            v.push("tls-exporter");
        }
        if self.tls_server_end_point.is_some() {
            v.push("tls-server-end-point");
        }
        v
    }

    pub fn is_empty(&self) -> bool {
        self.tls_exporter.is_none() && self.tls_server_end_point.is_none()
    }
}

/// The mechanisms we implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha1,
    ScramSha1Plus,
    ScramSha256,
    ScramSha256Plus,
    ScramSha512,
    ScramSha512Plus,
    Plain,
}

impl Mechanism {
    /// Strongest first, the order to advertise them in.
    pub const ALL: [Mechanism; 7] = [
        Mechanism::ScramSha512Plus,
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha512,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA-registered name.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::ScramSha512Plus => "SCRAM-SHA-512-PLUS",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Mechanism names are upper case (RFC 4422 §3.1); we match them exactly.
    pub fn from_name(s: &str) -> Option<Self> {
        Mechanism::ALL.into_iter().find(|m| m.name() == s)
    }

    /// True for the channel-binding variants.
    pub fn is_plus(&self) -> bool {
        matches!(
            self,
            Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus | Mechanism::ScramSha512Plus
        )
    }

    /// The hash of a SCRAM mechanism; None for PLAIN.
    pub fn hash_alg(&self) -> Option<HashAlg> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(HashAlg::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(HashAlg::Sha256),
            Mechanism::ScramSha512 | Mechanism::ScramSha512Plus => Some(HashAlg::Sha512),
            Mechanism::Plain => None,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SASL failure conditions (RFC 6120 §6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslFailure {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl SaslFailure {
    pub fn as_str(&self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }

    /// `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><condition/>[<text xml:lang='en'>…
    /// </text>]</failure>` (RFC 6120 §6.4.5).
    pub fn to_element(&self, text: Option<&str>) -> Element {
        let mut e =
            Element::new("failure", NS_SASL).with_child(Element::new(self.as_str(), NS_SASL));
        if let Some(t) = text {
            e.append_child(
                Element::new("text", NS_SASL)
                    .with_attr("xml:lang", "en")
                    .with_text(t),
            );
        }
        e
    }
}

impl fmt::Display for SaslFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for SaslFailure {}

/// Decodes the character data of `<auth/>` or `<response/>` (RFC 6120 §6.4.2): a lone "="
/// (or nothing) is an empty payload; whitespace is ignored; anything that is not padded
/// base64 is incorrect-encoding (§6.5.2).
pub fn decode_b64(text: &str) -> Result<Vec<u8>, SaslFailure> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() || compact == "=" {
        return Ok(Vec::new());
    }
    B64.decode(compact.as_bytes())
        .map_err(|_| SaslFailure::IncorrectEncoding)
}

/// Encodes a `<challenge/>` or `<success/>` payload; an empty one is "=" (RFC 6120 §6.4.2).
pub fn encode_b64(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_owned()
    } else {
        B64.encode(data)
    }
}
