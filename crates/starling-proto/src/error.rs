//! Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3), and the reply shapes built
//! from a received stanza: error replies (§8.3.1) and IQ results (§8.2.3).

use std::fmt;

use starling_xml::Element;

/// Namespace of stream error conditions (RFC 6120 §4.9.2).
pub const NS_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Namespace of stanza error conditions (RFC 6120 §8.3.2).
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// Namespace of the stream element itself.
pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";

macro_rules! conditions {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $s:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant,)* }

        impl $name {
            /// Every condition, in the order of the RFC's list.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The condition's element name.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $s,)* }
            }

            /// The condition named by an element name, if it is one.
            pub fn from_str_opt(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

conditions! {
    /// Stream error conditions (RFC 6120 §4.9.3).
    StreamErrorCondition {
        BadFormat => "bad-format",
        BadNamespacePrefix => "bad-namespace-prefix",
        Conflict => "conflict",
        ConnectionTimeout => "connection-timeout",
        HostGone => "host-gone",
        HostUnknown => "host-unknown",
        ImproperAddressing => "improper-addressing",
        InternalServerError => "internal-server-error",
        InvalidFrom => "invalid-from",
        InvalidNamespace => "invalid-namespace",
        InvalidXml => "invalid-xml",
        NotAuthorized => "not-authorized",
        NotWellFormed => "not-well-formed",
        PolicyViolation => "policy-violation",
        RemoteConnectionFailed => "remote-connection-failed",
        Reset => "reset",
        ResourceConstraint => "resource-constraint",
        RestrictedXml => "restricted-xml",
        SeeOtherHost => "see-other-host",
        SystemShutdown => "system-shutdown",
        UndefinedCondition => "undefined-condition",
        UnsupportedEncoding => "unsupported-encoding",
        UnsupportedFeature => "unsupported-feature",
        UnsupportedStanzaType => "unsupported-stanza-type",
        UnsupportedVersion => "unsupported-version",
    }
}

conditions! {
    /// Stanza error conditions (RFC 6120 §8.3.3).
    StanzaErrorCondition {
        BadRequest => "bad-request",
        Conflict => "conflict",
        FeatureNotImplemented => "feature-not-implemented",
        Forbidden => "forbidden",
        Gone => "gone",
        InternalServerError => "internal-server-error",
        ItemNotFound => "item-not-found",
        JidMalformed => "jid-malformed",
        NotAcceptable => "not-acceptable",
        NotAllowed => "not-allowed",
        NotAuthorized => "not-authorized",
        PolicyViolation => "policy-violation",
        RecipientUnavailable => "recipient-unavailable",
        Redirect => "redirect",
        RegistrationRequired => "registration-required",
        RemoteServerNotFound => "remote-server-not-found",
        RemoteServerTimeout => "remote-server-timeout",
        ResourceConstraint => "resource-constraint",
        ServiceUnavailable => "service-unavailable",
        SubscriptionRequired => "subscription-required",
        UndefinedCondition => "undefined-condition",
        UnexpectedRequest => "unexpected-request",
    }
}

/// A stream-level error: sent as `<stream:error/>`, then the stream is closed (RFC 6120 §4.9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: Option<String>,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError {
            condition,
            text: None,
        }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// `<error xmlns='http://etherx.jabber.org/streams'><condition xmlns='…xmpp-streams'/>
    /// [<text xmlns='…xmpp-streams' xml:lang='en'>…</text>]</error>`; write it with the
    /// `stream` prefix (`Element::write_prefixed`) inside a stream.
    pub fn to_element(&self) -> Element {
        let mut e = Element::new("error", NS_STREAM)
            .with_child(Element::new(self.condition.as_str(), NS_STREAMS));
        if let Some(text) = &self.text {
            e.append_child(
                Element::new("text", NS_STREAMS)
                    .with_attr("xml:lang", "en")
                    .with_text(text.as_str()),
            );
        }
        e
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream error {}", self.condition)?;
        if let Some(t) = &self.text {
            write!(f, ": {t}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StreamError {}

impl From<StreamErrorCondition> for StreamError {
    fn from(c: StreamErrorCondition) -> Self {
        StreamError::new(c)
    }
}

/// The `type` of a stanza error (RFC 6120 §8.3.2): what the sender should do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auth" => ErrorType::Auth,
            "cancel" => ErrorType::Cancel,
            "continue" => ErrorType::Continue,
            "modify" => ErrorType::Modify,
            "wait" => ErrorType::Wait,
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StanzaErrorCondition {
    /// The error type each condition's definition in RFC 6120 §8.3.3 gives (or its example
    /// uses, where the definition allows several).
    pub fn default_type(&self) -> ErrorType {
        use StanzaErrorCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => {
                ErrorType::Modify
            }
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => {
                ErrorType::Auth
            }
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                ErrorType::Wait
            }
            Conflict
            | FeatureNotImplemented
            | Gone
            | InternalServerError
            | ItemNotFound
            | NotAllowed
            | RemoteServerNotFound
            | ServiceUnavailable
            | UndefinedCondition => ErrorType::Cancel,
        }
    }
}

/// A stanza-level error (RFC 6120 §8.3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaError {
    pub error_type: ErrorType,
    pub condition: StanzaErrorCondition,
    pub text: Option<String>,
    /// The entity that generated the error, when we want to say so.
    pub by: Option<String>,
}

impl StanzaError {
    /// An error with the condition's default type.
    pub fn new(condition: StanzaErrorCondition) -> Self {
        StanzaError {
            error_type: condition.default_type(),
            condition,
            text: None,
            by: None,
        }
    }

    pub fn with_type(mut self, error_type: ErrorType) -> Self {
        self.error_type = error_type;
        self
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn with_by(mut self, by: impl Into<String>) -> Self {
        self.by = Some(by.into());
        self
    }

    /// `<error type='…' [by='…']>` in the stanza namespace `ns` (jabber:client or
    /// jabber:server), with the condition and optional text in the stanzas namespace.
    pub fn to_element(&self, ns: &str) -> Element {
        let mut e = Element::new("error", ns)
            .with_attr("type", self.error_type.as_str())
            .with_opt_attr("by", self.by.as_deref())
            .with_child(Element::new(self.condition.as_str(), NS_STANZAS));
        if let Some(text) = &self.text {
            e.append_child(
                Element::new("text", NS_STANZAS)
                    .with_attr("xml:lang", "en")
                    .with_text(text.as_str()),
            );
        }
        e
    }

    /// Reads an `<error/>` element (any stanza namespace). An unknown condition in the
    /// stanzas namespace reads as undefined-condition; a missing or unknown type falls back
    /// to the condition's default. None when it is not an error or has no condition.
    pub fn from_element(e: &Element) -> Option<Self> {
        if e.name() != "error" {
            return None;
        }
        let mut condition = None;
        for child in e.children() {
            if child.ns() != NS_STANZAS || child.name() == "text" {
                continue;
            }
            condition = Some(
                StanzaErrorCondition::from_str_opt(child.name())
                    .unwrap_or(StanzaErrorCondition::UndefinedCondition),
            );
            break;
        }
        let condition = condition?;
        let error_type = e
            .attr("type")
            .and_then(ErrorType::parse)
            .unwrap_or_else(|| condition.default_type());
        Some(StanzaError {
            error_type,
            condition,
            text: e.child_text("text", NS_STANZAS),
            by: e.attr("by").map(str::to_owned),
        })
    }
}

impl fmt::Display for StanzaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.condition, self.error_type)?;
        if let Some(t) = &self.text {
            write!(f, ": {t}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StanzaError {}

impl From<StanzaErrorCondition> for StanzaError {
    fn from(c: StanzaErrorCondition) -> Self {
        StanzaError::new(c)
    }
}

/// RFC 6120 §8.3.1: an entity must not answer an error stanza with another error (and an IQ
/// result or error needs no answer at all). True when the stanza's type is `error`.
pub fn is_error(stanza: &Element) -> bool {
    stanza.attr("type") == Some("error")
}

/// Starts a reply: same name and namespace, `id` kept, `to`/`from` swapped (the reply comes
/// from the original addressee, when there was one, and goes back to the original sender).
fn reply_shell(stanza: &Element, reply_type: &str) -> Element {
    Element::new(stanza.name(), stanza.ns())
        .with_opt_attr("id", stanza.attr("id"))
        .with_opt_attr("to", stanza.attr("from"))
        .with_opt_attr("from", stanza.attr("to"))
        .with_attr("type", reply_type)
}

/// RFC 6120 §8.3.1: the error reply to `stanza`: same name and namespace, `id` kept, `to`/`from`
/// swapped, `type='error'`, other attributes (`xml:lang`) kept, the original children kept
/// for messages and presence (except an earlier `<error/>`), then the error element appended.
///
/// Callers must not reply to a stanza that is itself an error ([`is_error`]).
pub fn error_reply(stanza: &Element, err: &StanzaError) -> Element {
    let mut reply = reply_shell(stanza, "error");
    for (k, v) in stanza.attrs() {
        if !matches!(k, "id" | "to" | "from" | "type") {
            reply.set_attr(k, v);
        }
    }
    // §8.3.1 makes the original payload optional. An IQ's is left out: it can carry a
    // password (XEP-0077) or a large document, and the id already ties the error to it.
    if stanza.name() != "iq" {
        for node in stanza.nodes() {
            match node {
                starling_xml::Node::Element(e) if e.name() == "error" && e.ns() == stanza.ns() => {}
                other => reply.nodes_mut().push(other.clone()),
            }
        }
    }
    reply.append_child(err.to_element(stanza.ns()));
    reply
}

/// RFC 6120 §8.2.3: the result of an IQ get/set: same namespace, `id` kept, `to`/`from` swapped,
/// `type='result'`, with the payload as its only child when given.
pub fn iq_result(iq: &Element, payload: Option<Element>) -> Element {
    let mut reply = reply_shell(iq, "result");
    if let Some(p) = payload {
        reply.append_child(p);
    }
    reply
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const C: &str = "jabber:client";

    #[test]
    fn condition_names_round_trip() {
        for c in StreamErrorCondition::ALL {
            assert_eq!(StreamErrorCondition::from_str_opt(c.as_str()), Some(*c));
        }
        assert_eq!(StreamErrorCondition::ALL.len(), 25);
        for c in StanzaErrorCondition::ALL {
            assert_eq!(StanzaErrorCondition::from_str_opt(c.as_str()), Some(*c));
        }
        assert_eq!(StanzaErrorCondition::ALL.len(), 22);
        assert_eq!(StreamErrorCondition::HostUnknown.as_str(), "host-unknown");
        assert_eq!(
            StanzaErrorCondition::from_str_opt("feature-not-implemented"),
            Some(StanzaErrorCondition::FeatureNotImplemented)
        );
        assert_eq!(StanzaErrorCondition::from_str_opt("nope"), None);
        for t in ["auth", "cancel", "continue", "modify", "wait"] {
            assert_eq!(ErrorType::parse(t).map(|t| t.as_str()), Some(t));
        }
        assert_eq!(ErrorType::parse("bogus"), None);
    }

    #[test]
    fn default_types_follow_rfc6120() {
        use StanzaErrorCondition as S;
        assert_eq!(S::ServiceUnavailable.default_type(), ErrorType::Cancel);
        assert_eq!(S::BadRequest.default_type(), ErrorType::Modify);
        assert_eq!(S::NotAuthorized.default_type(), ErrorType::Auth);
        assert_eq!(S::Forbidden.default_type(), ErrorType::Auth);
        assert_eq!(S::ResourceConstraint.default_type(), ErrorType::Wait);
        assert_eq!(S::ItemNotFound.default_type(), ErrorType::Cancel);
        assert_eq!(S::JidMalformed.default_type(), ErrorType::Modify);
        assert_eq!(S::RemoteServerTimeout.default_type(), ErrorType::Wait);
    }

    #[test]
    fn stream_error_element() {
        let e = StreamError::new(StreamErrorCondition::HostUnknown).with_text("no such host");
        assert_eq!(
            e.to_element().to_xml(),
            "<error xmlns='http://etherx.jabber.org/streams'>\
             <host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>no such host</text>\
             </error>"
        );
        let mut s = String::new();
        StreamError::new(StreamErrorCondition::NotWellFormed)
            .to_element()
            .write_prefixed(&mut s, "stream", C, false);
        assert_eq!(
            s,
            "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             </stream:error>"
        );
    }

    #[test]
    fn stanza_error_element_round_trip() {
        let err = StanzaError::new(StanzaErrorCondition::ServiceUnavailable)
            .with_text("nobody home")
            .with_by("example.com");
        let el = err.to_element(C);
        assert_eq!(
            el.to_xml(),
            "<error xmlns='jabber:client' type='cancel' by='example.com'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>nobody home</text>\
             </error>"
        );
        assert_eq!(StanzaError::from_element(&el), Some(err));

        let odd = Element::new("error", C)
            .with_child(Element::new("text", NS_STANZAS).with_text("t"))
            .with_child(Element::new("made-up", NS_STANZAS));
        let parsed = StanzaError::from_element(&odd).unwrap();
        assert_eq!(parsed.condition, StanzaErrorCondition::UndefinedCondition);
        assert_eq!(parsed.error_type, ErrorType::Cancel);
        assert_eq!(parsed.text.as_deref(), Some("t"));
        assert_eq!(StanzaError::from_element(&Element::new("error", C)), None);
        assert_eq!(
            StanzaError::new(StanzaErrorCondition::Conflict)
                .with_type(ErrorType::Wait)
                .error_type,
            ErrorType::Wait
        );
    }

    #[test]
    fn error_reply_shape() {
        let msg = Element::new("message", C)
            .with_attr("from", "romeo@montague.lit/orchard")
            .with_attr("to", "juliet@capulet.lit")
            .with_attr("id", "m1")
            .with_attr("type", "chat")
            .with_attr("xml:lang", "en")
            .with_child(Element::new("body", C).with_text("hi"))
            .with_child(Element::new("error", C));
        let reply = error_reply(
            &msg,
            &StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
        );
        assert_eq!(
            reply.to_xml(),
            "<message xmlns='jabber:client' id='m1' to='romeo@montague.lit/orchard' \
             from='juliet@capulet.lit' type='error' xml:lang='en'><body>hi</body>\
             <error type='cancel'><service-unavailable \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        );
        assert!(is_error(&reply));
        assert!(!is_error(&msg));

        // No 'to' on the original (addressed to the user's own server): no 'from' on the reply.
        let iq = Element::new("iq", C)
            .with_attr("from", "romeo@montague.lit/orchard")
            .with_attr("id", "q1")
            .with_attr("type", "get")
            .with_child(Element::new("query", "jabber:iq:version"));
        let reply = error_reply(&iq, &StanzaError::new(StanzaErrorCondition::BadRequest));
        assert_eq!(reply.attr("from"), None);
        assert_eq!(reply.attr("to"), Some("romeo@montague.lit/orchard"));
        // An IQ's payload is not echoed (it may hold a password).
        assert!(!reply.has_child("query", "jabber:iq:version"));
        let e = StanzaError::from_element(reply.get_child("error", C).unwrap()).unwrap();
        assert_eq!(e.condition, StanzaErrorCondition::BadRequest);
        assert_eq!(e.error_type, ErrorType::Modify);
    }

    #[test]
    fn iq_result_shape() {
        let iq = Element::new("iq", "jabber:server")
            .with_attr("from", "a@x.example/r")
            .with_attr("to", "b@y.example")
            .with_attr("id", "42")
            .with_attr("type", "get")
            .with_child(Element::new("ping", "urn:xmpp:ping"));
        let r = iq_result(&iq, None);
        assert_eq!(
            r.to_xml(),
            "<iq xmlns='jabber:server' id='42' to='a@x.example/r' from='b@y.example' \
             type='result'/>"
        );
        let r = iq_result(&iq, Some(Element::new("query", "jabber:iq:roster")));
        assert_eq!(r.first_child().map(|c| c.name()), Some("query"));
        assert_eq!(r.children().count(), 1);
    }
}
