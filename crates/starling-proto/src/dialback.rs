//! Server Dialback (XEP-0220): key generation (§2.4, the XEP-0185 recipe), and the
//! `<db:result/>` and `<db:verify/>` elements (§2.1–§2.4) with their `type` answers.
//! Pure: no I/O, tested on bytes.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use starling_xml::Element;
use subtle::ConstantTimeEq;

/// Namespace of `<db:result/>` and `<db:verify/>`.
pub const NS_DIALBACK: &str = "jabber:server:dialback";
/// The stream feature advertising dialback (XEP-0220 §2.1.1).
pub const NS_DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";

/// The dialback key (XEP-0220 §2.4): `HMAC-SHA256(hex(SHA256(secret)), "Receiving Originating
/// StreamID")`, in lowercase hex.
pub fn key(secret: &str, receiving: &str, originating: &str, stream_id: &str) -> String {
    let hashed = hex(&Sha256::digest(secret.as_bytes()));
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(hashed.as_bytes()) else {
        // HMAC takes keys of any length; this branch cannot run.
        return String::new();
    };
    mac.update(receiving.as_bytes());
    mac.update(b" ");
    mac.update(originating.as_bytes());
    mac.update(b" ");
    mac.update(stream_id.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Compares a received key with the expected one in constant time.
pub fn key_matches(expected: &str, received: &str) -> bool {
    expected.len() == received.len() && bool::from(expected.as_bytes().ct_eq(received.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Which dialback element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `<db:result/>`: a request to authorize a domain pair, or its answer.
    Result,
    /// `<db:verify/>`: a key check with the authoritative server, or its answer.
    Verify,
}

/// The `type` of an answer (XEP-0220 §2.1.3, §2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Valid,
    Invalid,
    Error,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Valid => "valid",
            Answer::Invalid => "invalid",
            Answer::Error => "error",
        }
    }
}

/// A parsed dialback element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialback {
    pub kind: Kind,
    pub from: String,
    pub to: String,
    /// The stream id (`<db:verify/>` only).
    pub id: Option<String>,
    /// The key of a request; `None` in an answer.
    pub key: Option<String>,
    /// The answer's type; `None` in a request.
    pub answer: Option<Answer>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialbackError {
    #[error("not a dialback element")]
    NotDialback,
    #[error("dialback element without '{0}'")]
    Missing(&'static str),
    #[error("dialback element with unknown type {0:?}")]
    BadType(String),
}

impl Dialback {
    /// A request: `<db:result from to>key</db:result>` or `<db:verify from to id>key</…>`.
    pub fn request(kind: Kind, from: &str, to: &str, id: Option<&str>, key: &str) -> Dialback {
        Dialback {
            kind,
            from: from.into(),
            to: to.into(),
            id: id.map(Into::into),
            key: Some(key.into()),
            answer: None,
        }
    }

    /// The answer to this request: addresses swapped, same id, the key dropped.
    pub fn answer(&self, answer: Answer) -> Dialback {
        Dialback {
            kind: self.kind,
            from: self.to.clone(),
            to: self.from.clone(),
            id: self.id.clone(),
            key: None,
            answer: Some(answer),
        }
    }

    pub fn parse(el: &Element) -> Result<Dialback, DialbackError> {
        if el.ns() != NS_DIALBACK {
            return Err(DialbackError::NotDialback);
        }
        let kind = match el.name() {
            "result" => Kind::Result,
            "verify" => Kind::Verify,
            _ => return Err(DialbackError::NotDialback),
        };
        let from = el.attr("from").ok_or(DialbackError::Missing("from"))?;
        let to = el.attr("to").ok_or(DialbackError::Missing("to"))?;
        let id = el.attr("id").map(str::to_owned);
        if kind == Kind::Verify && id.is_none() {
            return Err(DialbackError::Missing("id"));
        }
        let answer = match el.attr("type") {
            None => None,
            Some("valid") => Some(Answer::Valid),
            Some("invalid") => Some(Answer::Invalid),
            Some("error") => Some(Answer::Error),
            Some(other) => return Err(DialbackError::BadType(other.into())),
        };
        let text = el.text();
        let key = (answer.is_none()).then(|| text.trim().to_owned());
        if answer.is_none() && key.as_deref().unwrap_or("").is_empty() {
            return Err(DialbackError::Missing("key"));
        }
        Ok(Dialback {
            kind,
            from: from.into(),
            to: to.into(),
            id,
            key,
            answer,
        })
    }

    /// The element, in the dialback namespace. On server streams the TCP transport writes
    /// it as `<db:result/>`/`<db:verify/>` with `xmlns:db` on the stream header (COMPAT, see
    /// `starling-net` `tcp.rs`); [`Dialback::parse`] takes either form.
    pub fn to_element(&self) -> Element {
        let name = match self.kind {
            Kind::Result => "result",
            Kind::Verify => "verify",
        };
        let mut el = Element::new(name, NS_DIALBACK)
            .with_attr("from", self.from.as_str())
            .with_attr("to", self.to.as_str())
            .with_opt_attr("id", self.id.as_deref())
            .with_opt_attr("type", self.answer.map(Answer::as_str));
        if let Some(k) = &self.key {
            el.append_text(k.clone());
        }
        el
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use starling_xml::{parse_document, Limits};

    #[test]
    fn key_follows_xep_0185() {
        // Computed independently (Python hmac/hashlib) from the recipe of XEP-0220 §2.4.
        assert_eq!(
            key(
                "s3cr3tf0rd14lb4ck",
                "example.net",
                "example.com",
                "D60000229F"
            ),
            "008c689ff366b50c63d69a3e2d2c0e0e1f8404b0118eb688a0102c87cb691bdc"
        );
        // Each input matters.
        let k = key("s", "a", "b", "id");
        assert_ne!(k, key("s", "b", "a", "id"));
        assert_ne!(k, key("s", "a", "b", "id2"));
        assert_ne!(k, key("t", "a", "b", "id"));
        assert!(key_matches(&k, &k.clone()));
        assert!(!key_matches(&k, &k[1..]));
    }

    #[test]
    fn parses_requests_and_answers() {
        let doc = b"<db:result xmlns:db='jabber:server:dialback' from='a.test' to='b.test'> k3y </db:result>";
        let el = parse_document(doc, "jabber:server", &Limits::default()).unwrap();
        let r = Dialback::parse(&el).unwrap();
        assert_eq!(r.kind, Kind::Result);
        assert_eq!(r.key.as_deref(), Some("k3y"));
        assert_eq!(r.answer, None);
        let a = r.answer(Answer::Invalid);
        assert_eq!(
            a.to_element().to_xml(),
            "<result xmlns='jabber:server:dialback' from='b.test' to='a.test' type='invalid'/>"
        );

        let doc = b"<verify xmlns='jabber:server:dialback' from='b.test' to='a.test' id='S1' type='valid'/>";
        let el = parse_document(doc, "jabber:server", &Limits::default()).unwrap();
        let v = Dialback::parse(&el).unwrap();
        assert_eq!(
            (v.kind, v.answer, v.id.as_deref()),
            (Kind::Verify, Some(Answer::Valid), Some("S1"))
        );

        let req = Dialback::request(Kind::Verify, "b.test", "a.test", Some("S1"), "abc");
        assert_eq!(
            req.to_element().to_xml(),
            "<verify xmlns='jabber:server:dialback' from='b.test' to='a.test' id='S1'>abc</verify>"
        );
        assert_eq!(Dialback::parse(&req.to_element()).unwrap(), req);
    }

    #[test]
    fn refuses_incomplete_elements() {
        let no_key = Element::new("result", NS_DIALBACK)
            .with_attr("from", "a")
            .with_attr("to", "b");
        assert_eq!(Dialback::parse(&no_key), Err(DialbackError::Missing("key")));
        let no_id = Element::new("verify", NS_DIALBACK)
            .with_attr("from", "a")
            .with_attr("to", "b")
            .with_text("k");
        assert_eq!(Dialback::parse(&no_id), Err(DialbackError::Missing("id")));
        let other = Element::new("result", "jabber:server");
        assert_eq!(Dialback::parse(&other), Err(DialbackError::NotDialback));
        let bad = no_key.clone().with_attr("type", "maybe");
        assert!(matches!(
            Dialback::parse(&bad),
            Err(DialbackError::BadType(_))
        ));
    }
}
