//! JIDs (RFC 7622): parsing (§3.1), normalization of the three parts (§3.2 domainpart,
//! §3.3 localpart, §3.4 resourcepart) and display.
//!
//! PRECIS is approximated without Unicode tables: the localpart is lowercased (the case
//! mapping of UsernameCaseMapped, §3.3.2) and screened for the characters RFC 7622 §3.3.1
//! forbids; the domainpart is lowercased with ASCII labels checked as LDH (IDNA-lite); the
//! resourcepart is an OpaqueString kept as is, only control characters are refused. No NFC.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// Each part of a JID is 1 to 1023 octets once normalized (RFC 7622 §3.1).
pub const MAX_PART_BYTES: usize = 1023;

/// Why a string is not a JID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    #[error("empty localpart")]
    EmptyLocalpart,
    #[error("empty domainpart")]
    EmptyDomain,
    #[error("empty resourcepart")]
    EmptyResource,
    #[error("localpart longer than 1023 bytes")]
    LocalpartTooLong,
    #[error("domainpart longer than 1023 bytes")]
    DomainTooLong,
    #[error("resourcepart longer than 1023 bytes")]
    ResourceTooLong,
    #[error("forbidden character {0:?} in localpart")]
    InvalidLocalpart(char),
    #[error("invalid domainpart")]
    InvalidDomain,
    #[error("forbidden character {0:?} in resourcepart")]
    InvalidResource(char),
}

/// A normalized JID: `[localpart@]domainpart[/resourcepart]`.
///
/// Equality, hashing and ordering work on the normalized parts, so `Juliet@Example.COM` and
/// `juliet@example.com` are the same key in a map.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Jid {
    node: Option<String>,
    domain: String,
    resource: Option<String>,
}

impl Jid {
    /// Parses and normalizes a JID string in the order of RFC 7622 §3.1: the first '/' starts
    /// the resourcepart (which may itself contain '/' and '@'), then the first '@' of what is
    /// left ends the localpart.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        let (rest, resource) = match s.split_once('/') {
            Some((rest, res)) => (rest, Some(res)),
            None => (s, None),
        };
        let (node, domain) = match rest.split_once('@') {
            Some((node, domain)) => (Some(node), domain),
            None => (None, rest),
        };
        Jid::new(node, domain, resource)
    }

    /// Builds a JID from its parts, normalizing each; `Some("")` is an error, not "absent".
    pub fn new(node: Option<&str>, domain: &str, resource: Option<&str>) -> Result<Jid, JidError> {
        Ok(Jid {
            node: node.map(normalize_localpart).transpose()?,
            domain: normalize_domain(domain)?,
            resource: resource.map(check_resource).transpose()?,
        })
    }

    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// This JID without its resourcepart.
    pub fn bare(&self) -> Jid {
        Jid {
            node: self.node.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }

    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }

    /// True when a resourcepart is present.
    pub fn is_full(&self) -> bool {
        self.resource.is_some()
    }

    /// The bare JID of this one with the given resourcepart.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        Ok(Jid {
            node: self.node.clone(),
            domain: self.domain.clone(),
            resource: Some(check_resource(resource)?),
        })
    }

    /// Only the domainpart, as a JID (the server or service this JID belongs to).
    pub fn domain_jid(&self) -> Jid {
        Jid {
            node: None,
            domain: self.domain.clone(),
            resource: None,
        }
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(node) = &self.node {
            f.write_str(node)?;
            f.write_str("@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(res) = &self.resource {
            f.write_str("/")?;
            f.write_str(res)?;
        }
        Ok(())
    }
}

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

impl TryFrom<&str> for Jid {
    type Error = JidError;
    fn try_from(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

/// Localpart (RFC 7622 §3.3): case-mapped to lowercase; the characters of §3.3.1 (`"&'/:<>@`),
/// whitespace and controls are refused.
pub fn normalize_localpart(s: &str) -> Result<String, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyLocalpart);
    }
    if let Some(c) = s.chars().find(|&c| {
        matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@')
            || c.is_whitespace()
            || c.is_control()
    }) {
        return Err(JidError::InvalidLocalpart(c));
    }
    // PRECIS UsernameCaseMapped (RFC 8265 §3.3.2): case-mapped, then NFC.
    let out = nfc(s.to_lowercase());
    if out.len() > MAX_PART_BYTES {
        return Err(JidError::LocalpartTooLong);
    }
    Ok(out)
}

/// Unicode Normalization Form C (RFC 7622 §3: every part is NFC). ASCII, the common case, is
/// already NFC and costs nothing.
fn nfc(s: String) -> String {
    if s.is_ascii() {
        return s;
    }
    use unicode_normalization::UnicodeNormalization;
    s.nfc().collect()
}

/// Domainpart (RFC 7622 §3.2): an IPv6 literal in brackets, or dot-separated labels. One
/// trailing dot is removed (§3.2: a fully qualified name's root label is not part of the JID).
/// ASCII labels must be LDH, 1..=63 octets, without a leading or trailing hyphen; labels with
/// non-ASCII characters (U-labels) are lowercased and only screened for ASCII punctuation,
/// whitespace and controls.
pub fn normalize_domain(s: &str) -> Result<String, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    if let Some(inner) = s.strip_prefix('[') {
        let addr = inner
            .strip_suffix(']')
            .and_then(|a| a.parse::<Ipv6Addr>().ok())
            .ok_or(JidError::InvalidDomain)?;
        return Ok(format!("[{addr}]"));
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    let out = nfc(s.to_lowercase());
    if out.len() > MAX_PART_BYTES {
        return Err(JidError::DomainTooLong);
    }
    for label in out.split('.') {
        if label.is_empty() {
            return Err(JidError::InvalidDomain);
        }
        if label.is_ascii() {
            let ldh = label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ldh || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
                return Err(JidError::InvalidDomain);
            }
        } else if label.chars().any(|c| {
            (c.is_ascii() && !(c.is_ascii_alphanumeric() || c == '-'))
                || c.is_whitespace()
                || c.is_control()
        }) {
            return Err(JidError::InvalidDomain);
        }
    }
    Ok(out)
}

/// Resourcepart (RFC 7622 §3.4): an OpaqueString, compared as is; only controls are refused.
fn check_resource(s: &str) -> Result<String, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyResource);
    }
    if s.len() > MAX_PART_BYTES {
        return Err(JidError::ResourceTooLong);
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(JidError::InvalidResource(c));
    }
    // PRECIS OpaqueString (RFC 8265 §4.2.2): no case mapping, NFC.
    let out = nfc(s.to_owned());
    if out.len() > MAX_PART_BYTES {
        return Err(JidError::ResourceTooLong);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn valid_jids_and_their_normal_form() {
        // (input, node, domain, resource, display); most are RFC 7622 §3.5 examples.
        type Row<'a> = (&'a str, Option<&'a str>, &'a str, Option<&'a str>, &'a str);
        let table: &[Row] = &[
            (
                "juliet@example.com",
                Some("juliet"),
                "example.com",
                None,
                "juliet@example.com",
            ),
            (
                "juliet@example.com/foo",
                Some("juliet"),
                "example.com",
                Some("foo"),
                "juliet@example.com/foo",
            ),
            (
                "juliet@example.com/foo bar",
                Some("juliet"),
                "example.com",
                Some("foo bar"),
                "juliet@example.com/foo bar",
            ),
            (
                "juliet@example.com/foo@bar",
                Some("juliet"),
                "example.com",
                Some("foo@bar"),
                "juliet@example.com/foo@bar",
            ),
            (
                "foo\\20bar@example.com",
                Some("foo\\20bar"),
                "example.com",
                None,
                "foo\\20bar@example.com",
            ),
            (
                "fussball@example.com",
                Some("fussball"),
                "example.com",
                None,
                "fussball@example.com",
            ),
            (
                "fußball@example.com",
                Some("fußball"),
                "example.com",
                None,
                "fußball@example.com",
            ),
            (
                "π@example.com",
                Some("π"),
                "example.com",
                None,
                "π@example.com",
            ),
            (
                "Σ@example.com/foo",
                Some("σ"),
                "example.com",
                Some("foo"),
                "σ@example.com/foo",
            ),
            (
                "σ@example.com/foo",
                Some("σ"),
                "example.com",
                Some("foo"),
                "σ@example.com/foo",
            ),
            (
                "ς@example.com/foo",
                Some("ς"),
                "example.com",
                Some("foo"),
                "ς@example.com/foo",
            ),
            (
                "king@example.com/♚",
                Some("king"),
                "example.com",
                Some("♚"),
                "king@example.com/♚",
            ),
            ("example.com", None, "example.com", None, "example.com"),
            (
                "example.com/foobar",
                None,
                "example.com",
                Some("foobar"),
                "example.com/foobar",
            ),
            (
                "a.example.com/b@example.net",
                None,
                "a.example.com",
                Some("b@example.net"),
                "a.example.com/b@example.net",
            ),
            // Normalization: case of localpart and domain folded, resource kept.
            (
                "Juliet@Example.COM/Balcony",
                Some("juliet"),
                "example.com",
                Some("Balcony"),
                "juliet@example.com/Balcony",
            ),
            (
                "romeo@example.net.",
                Some("romeo"),
                "example.net",
                None,
                "romeo@example.net",
            ),
            (
                "user@host/a/b",
                Some("user"),
                "host",
                Some("a/b"),
                "user@host/a/b",
            ),
            (
                "user@[::1]/r",
                Some("user"),
                "[::1]",
                Some("r"),
                "user@[::1]/r",
            ),
            (
                "user@192.168.0.1",
                Some("user"),
                "192.168.0.1",
                None,
                "user@192.168.0.1",
            ),
            (
                "user@bücher.example",
                Some("user"),
                "bücher.example",
                None,
                "user@bücher.example",
            ),
            (
                "user@BÜCHER.example",
                Some("user"),
                "bücher.example",
                None,
                "user@bücher.example",
            ),
            ("localhost", None, "localhost", None, "localhost"),
        ];
        for (input, node, domain, resource, display) in table {
            let j = Jid::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(j.node(), *node, "{input}");
            assert_eq!(j.domain(), *domain, "{input}");
            assert_eq!(j.resource(), *resource, "{input}");
            assert_eq!(j.to_string(), *display, "{input}");
            // Display output parses back to the same JID.
            assert_eq!(Jid::parse(&j.to_string()).unwrap(), j);
        }
    }

    #[test]
    fn invalid_jids() {
        let long = "a".repeat(1024);
        let table: Vec<(String, JidError)> = vec![
            // RFC 7622 §3.5 examples of invalid JIDs (those our PRECIS approximation can
            // detect: it has no tables to refuse symbols or compatibility characters).
            (
                "\"juliet\"@example.com".into(),
                JidError::InvalidLocalpart('"'),
            ),
            (
                "foo bar@example.com".into(),
                JidError::InvalidLocalpart(' '),
            ),
            ("@example.com/".into(), JidError::EmptyLocalpart),
            ("juliet@".into(), JidError::EmptyDomain),
            ("/foobar".into(), JidError::EmptyDomain),
            // Empty parts.
            ("@example.com".into(), JidError::EmptyLocalpart),
            ("example.com/".into(), JidError::EmptyResource),
            ("".into(), JidError::EmptyDomain),
            // Domainpart shape.
            ("a@b@c".into(), JidError::InvalidDomain),
            ("juliet@exa mple.com".into(), JidError::InvalidDomain),
            ("juliet@example..com".into(), JidError::InvalidDomain),
            ("juliet@.example.com".into(), JidError::InvalidDomain),
            ("juliet@-example.com".into(), JidError::InvalidDomain),
            ("juliet@example.com..".into(), JidError::InvalidDomain),
            ("juliet@ex_ample.com".into(), JidError::InvalidDomain),
            ("juliet@.".into(), JidError::EmptyDomain),
            ("juliet@[::1".into(), JidError::InvalidDomain),
            ("juliet@[nope]".into(), JidError::InvalidDomain),
            ("juliet@bü cher.example".into(), JidError::InvalidDomain),
            // Localpart and resourcepart characters.
            (
                "ju:liet@example.com".into(),
                JidError::InvalidLocalpart(':'),
            ),
            (
                "ju<liet@example.com".into(),
                JidError::InvalidLocalpart('<'),
            ),
            (
                "ju&liet@example.com".into(),
                JidError::InvalidLocalpart('&'),
            ),
            (
                "ju'liet@example.com".into(),
                JidError::InvalidLocalpart('\''),
            ),
            (
                "ju\tliet@example.com".into(),
                JidError::InvalidLocalpart('\t'),
            ),
            (
                "juliet@example.com/a\u{7}b".into(),
                JidError::InvalidResource('\u{7}'),
            ),
            // Lengths.
            (format!("{long}@example.com"), JidError::LocalpartTooLong),
            (
                format!("juliet@example.com/{long}"),
                JidError::ResourceTooLong,
            ),
            (format!("{}com", "a.".repeat(512)), JidError::DomainTooLong),
            (format!("{}.com", "a".repeat(64)), JidError::InvalidDomain),
        ];
        for (input, want) in table {
            assert_eq!(Jid::parse(&input), Err(want), "{input:?}");
        }
        // At the limit is fine.
        let max = "a".repeat(1023);
        assert!(Jid::parse(&format!("{max}@example.com/{max}")).is_ok());
    }

    #[test]
    fn accessors_and_builders() {
        let j = Jid::parse("Romeo@Montague.lit/Orchard").unwrap();
        assert!(!j.is_bare());
        assert!(j.is_full());
        assert_eq!(j.bare().to_string(), "romeo@montague.lit");
        assert!(j.bare().is_bare());
        assert_eq!(j.domain_jid().to_string(), "montague.lit");
        assert_eq!(
            j.with_resource("garden").unwrap().to_string(),
            "romeo@montague.lit/garden"
        );
        assert_eq!(j.with_resource(""), Err(JidError::EmptyResource));
        let k: Jid = "romeo@montague.lit/Orchard".parse().unwrap();
        assert_eq!(j, k);
        assert_ne!(j, Jid::parse("romeo@montague.lit/orchard").unwrap());
        assert_eq!(
            Jid::new(Some("Romeo"), "MONTAGUE.lit", Some("x")).unwrap(),
            Jid::parse("romeo@montague.lit/x").unwrap()
        );
        assert_eq!(Jid::new(Some(""), "a", None), Err(JidError::EmptyLocalpart));
        assert_eq!(Jid::new(None, "a", Some("")), Err(JidError::EmptyResource));
    }

    #[test]
    fn parts_are_normalized_to_nfc() {
        // "é" precomposed (U+00E9) and decomposed (e + U+0301) name the same entity.
        let composed = Jid::parse("ren\u{e9}@caf\u{e9}.example/r\u{e9}sum\u{e9}").unwrap();
        let decomposed =
            Jid::parse("rene\u{301}@cafe\u{301}.example/re\u{301}sume\u{301}").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(decomposed.node(), Some("ren\u{e9}"));
        assert_eq!(decomposed.resource(), Some("r\u{e9}sum\u{e9}"));
    }
}
