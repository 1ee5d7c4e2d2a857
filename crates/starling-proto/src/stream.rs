//! Stream headers: reading the initiating entity's opening (RFC 6120 §4.7 attributes, §4.8
//! namespaces; RFC 7395 §3.3 WebSocket `<open/>`), checking it (§4.9.3.10 invalid-namespace,
//! §4.7.5 / §4.9.3.25 unsupported-version), writing our response header, and stream ids
//! (§4.7.3).

use rand::distributions::{Alphanumeric, DistString};
use starling_xml::{escape_attr, ns, Element};

use crate::error::{StreamError, StreamErrorCondition};

/// The attributes of a stream header, either direction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamHeader {
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
    /// The content namespace (`jabber:client`, `jabber:server`, a component's).
    pub content_ns: String,
}

impl StreamHeader {
    /// From a parsed opening (`StreamEvent::Open { header, default_ns }`): accepts
    /// `<stream xmlns='http://etherx.jabber.org/streams'>` (TCP; the content namespace is the
    /// default namespace declared on it) and `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`
    /// (WebSocket, RFC 7395 §3.3.1; the content namespace is always jabber:client). Anything
    /// else is an invalid-namespace stream error (RFC 6120 §4.9.3.10).
    pub fn from_open(header: &Element, default_ns: &str) -> Result<StreamHeader, StreamError> {
        let content_ns = if header.is("stream", ns::STREAM) {
            default_ns.to_owned()
        } else if header.is("open", ns::FRAMING) {
            ns::CLIENT.to_owned()
        } else {
            return Err(StreamError::new(StreamErrorCondition::InvalidNamespace));
        };
        let get = |name: &str| header.attr(name).map(str::to_owned);
        Ok(StreamHeader {
            to: get("to"),
            from: get("from"),
            id: get("id"),
            version: get("version"),
            lang: get("xml:lang"),
            content_ns,
        })
    }

    /// Checks the content namespace against the one this listener serves (else
    /// invalid-namespace) and the version (RFC 6120 §4.7.5): missing (a pre-RFC "0.9"
    /// stream, accepted; callers may refuse it) or major version 0 or 1 is fine, a higher
    /// major version or an unparsable one is unsupported-version.
    pub fn check(&self, expected_content_ns: &str) -> Result<(), StreamError> {
        if self.content_ns != expected_content_ns {
            return Err(StreamError::new(StreamErrorCondition::InvalidNamespace));
        }
        match &self.version {
            None => Ok(()),
            Some(v) => match parse_version(v) {
                Some((0 | 1, _)) => Ok(()),
                _ => Err(StreamError::new(StreamErrorCondition::UnsupportedVersion)),
            },
        }
    }

    /// The (major, minor) version, None when absent or malformed.
    pub fn version_numbers(&self) -> Option<(u32, u32)> {
        self.version.as_deref().and_then(parse_version)
    }

    /// The response header a server sends on TCP (RFC 6120 §4.7.1, §4.8.5): an XML
    /// declaration and an unclosed `<stream:stream>` with the content namespace as default
    /// and the stream namespace bound to the `stream` prefix.
    pub fn to_opening_xml(&self) -> String {
        let mut out = String::with_capacity(200);
        out.push_str("<?xml version='1.0'?><stream:stream xmlns='");
        escape_attr(&self.content_ns, &mut out);
        out.push_str("' xmlns:stream='");
        out.push_str(ns::STREAM);
        out.push('\'');
        self.write_attrs(&mut out);
        out.push('>');
        out
    }

    /// The WebSocket equivalent (RFC 7395 §3.3.2): a complete `<open/>` element.
    pub fn to_open_element(&self) -> Element {
        Element::new("open", ns::FRAMING)
            .with_opt_attr("from", self.from.as_deref())
            .with_opt_attr("to", self.to.as_deref())
            .with_opt_attr("id", self.id.as_deref())
            .with_opt_attr("version", self.version.as_deref())
            .with_opt_attr("xml:lang", self.lang.as_deref())
    }

    fn write_attrs(&self, out: &mut String) {
        let attrs = [
            ("from", &self.from),
            ("to", &self.to),
            ("id", &self.id),
            ("version", &self.version),
            ("xml:lang", &self.lang),
        ];
        for (name, value) in attrs {
            if let Some(v) = value {
                out.push(' ');
                out.push_str(name);
                out.push_str("='");
                escape_attr(v, out);
                out.push('\'');
            }
        }
    }
}

/// "major.minor", each a non-negative integer whose leading zeros are ignored (RFC 6120 §4.7.5).
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    let num = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let s = s.trim_start_matches('0');
        if s.is_empty() {
            Some(0)
        } else {
            s.parse::<u32>().ok()
        }
    };
    Some((num(major)?, num(minor)?))
}

/// A fresh stream id: 24 random alphanumeric characters from the thread's CSPRNG, so ids are
/// unique and unguessable (RFC 6120 §4.7.3; dialback keys are derived from them).
pub fn new_stream_id() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tcp_open(version: Option<&str>) -> Element {
        Element::new("stream", ns::STREAM)
            .with_attr("to", "example.com")
            .with_attr("from", "juliet@example.com")
            .with_opt_attr("version", version)
            .with_attr("xml:lang", "en")
    }

    #[test]
    fn tcp_header() {
        let h = StreamHeader::from_open(&tcp_open(Some("1.0")), ns::CLIENT).unwrap();
        assert_eq!(h.to.as_deref(), Some("example.com"));
        assert_eq!(h.from.as_deref(), Some("juliet@example.com"));
        assert_eq!(h.version.as_deref(), Some("1.0"));
        assert_eq!(h.lang.as_deref(), Some("en"));
        assert_eq!(h.id, None);
        assert_eq!(h.content_ns, ns::CLIENT);
        assert_eq!(h.check(ns::CLIENT), Ok(()));
        // A c2s listener receiving a server stream.
        let err = h.check(ns::SERVER).unwrap_err();
        assert_eq!(err.condition, StreamErrorCondition::InvalidNamespace);
    }

    #[test]
    fn websocket_open() {
        let open = Element::new("open", ns::FRAMING)
            .with_attr("to", "example.com")
            .with_attr("version", "1.0");
        let h = StreamHeader::from_open(&open, ns::FRAMING).unwrap();
        assert_eq!(h.content_ns, ns::CLIENT);
        assert_eq!(h.check(ns::CLIENT), Ok(()));
    }

    #[test]
    fn wrong_namespaces() {
        for (el, dns) in [
            (Element::new("stream", "http://wrong.example"), ns::CLIENT),
            (Element::new("open", ns::STREAM), ns::CLIENT),
            (Element::new("stream", ns::FRAMING), ns::CLIENT),
            (Element::new("message", ns::CLIENT), ns::CLIENT),
        ] {
            let err = StreamHeader::from_open(&el, dns).unwrap_err();
            assert_eq!(err.condition, StreamErrorCondition::InvalidNamespace);
        }
        // Right stream namespace, unsupported content namespace.
        let h = StreamHeader::from_open(&tcp_open(Some("1.0")), "jabber:nope").unwrap();
        assert_eq!(
            h.check(ns::CLIENT).unwrap_err().condition,
            StreamErrorCondition::InvalidNamespace
        );
    }

    #[test]
    fn versions() {
        let check = |v: Option<&str>| {
            StreamHeader::from_open(&tcp_open(v), ns::CLIENT)
                .unwrap()
                .check(ns::CLIENT)
                .map_err(|e| e.condition)
        };
        assert_eq!(check(None), Ok(()));
        assert_eq!(check(Some("1.0")), Ok(()));
        assert_eq!(check(Some("1.1")), Ok(()));
        assert_eq!(check(Some("01.00")), Ok(()));
        assert_eq!(check(Some("0.9")), Ok(()));
        let unsupported = Err(StreamErrorCondition::UnsupportedVersion);
        assert_eq!(check(Some("2.0")), unsupported);
        assert_eq!(check(Some("1")), unsupported);
        assert_eq!(check(Some("x.y")), unsupported);
        assert_eq!(check(Some("1.-1")), unsupported);
        let h = StreamHeader::from_open(&tcp_open(Some("1.10")), ns::CLIENT).unwrap();
        assert_eq!(h.version_numbers(), Some((1, 10)));
    }

    #[test]
    fn response_header_xml() {
        let h = StreamHeader {
            from: Some("example.com".into()),
            to: Some("juliet@example.com".into()),
            id: Some("abc".into()),
            version: Some("1.0".into()),
            lang: Some("en".into()),
            content_ns: ns::CLIENT.into(),
        };
        assert_eq!(
            h.to_opening_xml(),
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' from='example.com' \
             to='juliet@example.com' id='abc' version='1.0' xml:lang='en'>"
        );
        assert_eq!(
            h.to_open_element().to_xml(),
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='example.com' \
             to='juliet@example.com' id='abc' version='1.0' xml:lang='en'/>"
        );
    }

    #[test]
    fn stream_ids_are_random_alphanumeric() {
        let a = new_stream_id();
        let b = new_stream_id();
        assert!(a.len() >= 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
