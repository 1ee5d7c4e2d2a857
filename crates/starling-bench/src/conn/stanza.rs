//! Outgoing XML as preformatted templates written into a connection's buffer (no element
//! trees on the send path), and small readers for what the server sends. Values from the
//! network or the command line are escaped; our own numbers are not.

use std::fmt::Write as _;

use starling_xml::{escape_attr, escape_text, Element};

pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_ROSTER: &str = "jabber:iq:roster";
pub const NS_REGISTER: &str = "jabber:iq:register";
pub const NS_PING: &str = "urn:xmpp:ping";
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const NS_MAM: &str = "urn:xmpp:mam:2";
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";

/// An attribute value, escaped.
pub struct Attr<'a>(pub &'a str);

impl std::fmt::Display for Attr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.bytes().any(|b| b"&<>'\"\t\n\r".contains(&b)) {
            let mut s = String::with_capacity(self.0.len() + 8);
            escape_attr(self.0, &mut s);
            f.write_str(&s)
        } else {
            f.write_str(self.0)
        }
    }
}

/// Character data, escaped.
pub struct Text<'a>(pub &'a str);

impl std::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.bytes().any(|b| b"&<>\r".contains(&b)) {
            let mut s = String::with_capacity(self.0.len() + 8);
            escape_text(self.0, &mut s);
            f.write_str(&s)
        } else {
            f.write_str(self.0)
        }
    }
}

/// RFC 6120 §4.7 stream header, or RFC 7395 §3.3.1 `<open/>` on WebSocket.
pub fn stream_open(out: &mut String, domain: &str, ws: bool) {
    if ws {
        let _ = write!(
            out,
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{}' version='1.0'/>",
            Attr(domain)
        );
    } else {
        let _ = write!(
            out,
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
            Attr(domain)
        );
    }
}

/// An IQ result answering `iq` (XEP-0199 pings, roster pushes).
pub fn iq_result(out: &mut String, iq: &Element) {
    out.push_str("<iq type='result'");
    if let Some(id) = iq.attr("id") {
        let _ = write!(out, " id='{}'", Attr(id));
    }
    if let Some(from) = iq.attr("from") {
        let _ = write!(out, " to='{}'", Attr(from));
    }
    out.push_str("/>");
}

/// The defined condition of a stanza's `<error/>` (RFC 6120 §8.3), or "unknown".
pub fn error_condition(stanza: &Element) -> String {
    stanza
        .children()
        .find(|c| c.name() == "error")
        .and_then(|e| {
            e.children()
                .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        })
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// An IQ get/set from the server that we must answer (RFC 6120 §8.2.3): pings and roster
/// pushes get a result, anything else `service-unavailable`. Returns true when `e` was such
/// an IQ (the answer is pushed, not flushed).
pub fn answer_iq(out: &mut super::Conn, e: &Element) -> bool {
    if e.name() != "iq" || !matches!(e.attr("type"), Some("get" | "set")) {
        return false;
    }
    let known = e.has_child("ping", NS_PING) || e.has_child("query", NS_ROSTER);
    if known {
        out.push(|o| iq_result(o, e));
    } else {
        out.push(|o| {
            o.push_str("<iq type='error'");
            if let Some(id) = e.attr("id") {
                let _ = write!(o, " id='{}'", Attr(id));
            }
            if let Some(from) = e.attr("from") {
                let _ = write!(o, " to='{}'", Attr(from));
            }
            o.push_str(
                "><error type='cancel'><service-unavailable \
                 xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            );
        });
    }
    true
}

/// The localpart of a JID (`user@domain/res` → `user`).
pub fn localpart(jid: &str) -> Option<&str> {
    jid.split_once('@').map(|(l, _)| l)
}

/// The bare part of a JID.
pub fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}

/// The resource part of a JID.
pub fn resource(jid: &str) -> Option<&str> {
    jid.split_once('/').map(|(_, r)| r)
}

/// Parses a benchmark body `"{seq} {t_ns} …"` (sent by this tool).
pub fn parse_body(body: &str) -> Option<(u64, u64)> {
    let mut it = body.split_ascii_whitespace();
    let seq = it.next()?.parse().ok()?;
    let ts = it.next()?.parse().ok()?;
    Some((seq, ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(Attr("a'b<").to_string(), "a&apos;b&lt;");
        assert_eq!(Attr("plain").to_string(), "plain");
        assert_eq!(Text("x & y").to_string(), "x &amp; y");
        let mut s = String::new();
        stream_open(&mut s, "d'x", true);
        assert!(s.contains("to='d&apos;x'"), "{s}");
    }

    #[test]
    fn iq_answers_and_errors() {
        let ping = Element::new("iq", "jabber:client")
            .with_attr("type", "get")
            .with_attr("id", "p'1")
            .with_attr("from", "localhost")
            .with_child(Element::new("ping", NS_PING));
        let mut s = String::new();
        iq_result(&mut s, &ping);
        assert_eq!(s, "<iq type='result' id='p&apos;1' to='localhost'/>");
        let err = Element::new("iq", "jabber:client")
            .with_attr("type", "error")
            .with_child(
                Element::new("error", "jabber:client")
                    .with_child(Element::new("service-unavailable", NS_STANZAS)),
            );
        assert_eq!(error_condition(&err), "service-unavailable");
        assert_eq!(error_condition(&ping), "unknown");
    }

    #[test]
    fn jids_and_bodies() {
        assert_eq!(localpart("bench1@localhost/x"), Some("bench1"));
        assert_eq!(bare("r@c/n"), "r@c");
        assert_eq!(resource("r@c/n/m"), Some("n/m"));
        assert_eq!(parse_body("12 345 xxxx"), Some((12, 345)));
        assert_eq!(parse_body("hello"), None);
    }
}
