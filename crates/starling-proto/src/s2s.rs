//! Server-to-server negotiation, pure (RFC 6120 §4.3 features, §5 STARTTLS, §6 SASL; XEP-0178
//! SASL EXTERNAL, XEP-0220 §2.1.1 dialback feature, XEP-0288 bidi): reading a receiving
//! server's features, choosing how to authenticate, building our features, checking an
//! EXTERNAL authzid, and moving stanzas between the `jabber:server` and `jabber:client`
//! content namespaces (RFC 6120 §4.8.3).

use starling_xml::{ns, Element};

use crate::dialback::NS_DIALBACK_FEATURE;
use crate::sasl::{decode_b64, encode_b64, SaslFailure, NS_SASL};

pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// XEP-0288: the feature, and the element that enables it.
pub const NS_BIDI_FEATURE: &str = "urn:xmpp:features:bidi";
pub const NS_BIDI: &str = "urn:xmpp:bidi";

/// What a receiving server offers in `<stream:features/>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// STARTTLS offered; `Some(true)` when marked required.
    pub starttls: Option<bool>,
    pub mechanisms: Vec<String>,
    pub dialback: bool,
    pub bidi: bool,
}

impl Features {
    pub fn parse(features: &Element) -> Features {
        let starttls = features
            .get_child("starttls", NS_TLS)
            .map(|st| st.has_child("required", NS_TLS));
        let mechanisms = features
            .get_child("mechanisms", NS_SASL)
            .map(|m| {
                m.children()
                    .filter(|c| c.is("mechanism", NS_SASL))
                    .map(|c| c.text().trim().to_ascii_uppercase())
                    .collect()
            })
            .unwrap_or_default();
        Features {
            starttls,
            mechanisms,
            dialback: features.has_child("dialback", NS_DIALBACK_FEATURE),
            bidi: features.has_child("bidi", NS_BIDI_FEATURE),
        }
    }

    pub fn offers_external(&self) -> bool {
        self.mechanisms.iter().any(|m| m == "EXTERNAL")
    }
}

/// The next step of an initiating server after reading features (RFC 6120 §4.3.3 order:
/// TLS, then authentication).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    StartTls,
    SaslExternal,
    Dialback,
    /// Nothing acceptable: the reason, for the log.
    Fail(String),
}

/// Chooses the initiating server's next step.
/// `secure`: TLS is up. `cert_ok`: the receiving server's certificate is valid for its
/// domain. `dialback_allowed`: the policy accepts dialback for this peer. `external_failed`:
/// SASL EXTERNAL was tried on this stream and refused.
pub fn next_step(
    f: &Features,
    secure: bool,
    cert_ok: bool,
    dialback_allowed: bool,
    external_failed: bool,
) -> Step {
    if !secure {
        return match f.starttls {
            Some(_) => Step::StartTls,
            None => Step::Fail("TLS: the peer does not offer STARTTLS".into()),
        };
    }
    if !cert_ok && !dialback_allowed {
        // Reported by the caller with the certificate's names.
        return Step::Fail("TLS: certificate not valid".into());
    }
    if f.offers_external() && !external_failed {
        return Step::SaslExternal;
    }
    if dialback_allowed && f.dialback {
        return Step::Dialback;
    }
    if !dialback_allowed {
        return Step::Fail(if external_failed {
            "SASL EXTERNAL refused by the peer (is our certificate trusted there?)".into()
        } else {
            "the peer does not offer SASL EXTERNAL (does it trust our certificate?)".into()
        });
    }
    Step::Fail("the peer offers neither usable SASL EXTERNAL nor dialback".into())
}

/// `<auth mechanism='EXTERNAL'>` with our domain as authzid (XEP-0178 §3 step 7… ).
pub fn external_auth(authzid: &str) -> Element {
    Element::new("auth", NS_SASL)
        .with_attr("mechanism", "EXTERNAL")
        .with_text(encode_b64(authzid.as_bytes()))
}

/// Checks an incoming `<auth mechanism='EXTERNAL'>`: the authzid must be empty or the
/// stream's `from` domain (XEP-0178 §3; RFC 6120 §6.4.6 invalid-authzid).
pub fn check_external_authzid(auth: &Element, stream_from: &str) -> Result<(), SaslFailure> {
    let raw = decode_b64(&auth.text())?;
    let authzid = String::from_utf8(raw).map_err(|_| SaslFailure::IncorrectEncoding)?;
    if authzid.is_empty() || authzid.eq_ignore_ascii_case(stream_from) {
        Ok(())
    } else {
        Err(SaslFailure::InvalidAuthzid)
    }
}

/// The features a receiving server offers. Before TLS: STARTTLS (required). After TLS,
/// before authentication: EXTERNAL when the peer's certificate is valid, dialback when
/// allowed. Before authentication, `offer_bidi` adds XEP-0288 bidi (§2.1: both before and
/// after TLS). After authentication: nothing.
pub fn receiving_features(
    secure: bool,
    authenticated: bool,
    offer_external: bool,
    offer_dialback: bool,
    offer_bidi: bool,
) -> Element {
    let mut f = Element::new("features", ns::STREAM);
    if !secure {
        f.append_child(
            Element::new("starttls", NS_TLS).with_child(Element::new("required", NS_TLS)),
        );
    } else if !authenticated {
        if offer_external {
            f.append_child(
                Element::new("mechanisms", NS_SASL)
                    .with_child(Element::new("mechanism", NS_SASL).with_text("EXTERNAL")),
            );
        }
        if offer_dialback {
            f.append_child(
                Element::new("dialback", NS_DIALBACK_FEATURE)
                    .with_child(Element::new("errors", NS_DIALBACK_FEATURE)),
            );
        }
    }
    if offer_bidi && !authenticated {
        f.append_child(Element::new("bidi", NS_BIDI_FEATURE));
    }
    f
}

/// Moves a stanza from one content namespace to another (`jabber:server` or
/// `jabber:component:accept` on the wire, `jabber:client` inside the server): the stanza and
/// its descendants in `from_ns` (body, subject, thread, show, status, priority, error). An
/// element in another namespace keeps it, and so does everything below it (a forwarded
/// `<message xmlns='jabber:client'/>` stays one).
pub fn change_content_ns(stanza: &mut Element, from_ns: &str, to_ns: &str) {
    if stanza.ns() != from_ns {
        return;
    }
    stanza.set_ns(to_ns);
    for child in stanza.children_mut() {
        change_content_ns(child, from_ns, to_ns);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use starling_xml::{parse_document, Limits};

    fn features(xml: &str) -> Features {
        let doc = format!(
            "<stream:features xmlns:stream='{}' xmlns='jabber:server'>{xml}</stream:features>",
            ns::STREAM
        );
        Features::parse(
            &parse_document(doc.as_bytes(), "jabber:server", &Limits::default()).unwrap(),
        )
    }

    #[test]
    fn reads_prosody_and_ejabberd_features() {
        let f =
            features("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>");
        assert_eq!(f.starttls, Some(true));
        assert_eq!(next_step(&f, false, false, true, false), Step::StartTls);

        let f = features(
            "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>\
             <dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>\
             <bidi xmlns='urn:xmpp:features:bidi'/>",
        );
        assert!(f.offers_external() && f.dialback && f.bidi);
        assert_eq!(next_step(&f, true, true, true, false), Step::SaslExternal);
        assert_eq!(next_step(&f, true, true, true, true), Step::Dialback);
        assert!(matches!(
            next_step(&f, true, true, false, true),
            Step::Fail(_)
        ));
        // An invalid certificate is fine for dialback, fatal under "certs".
        assert_eq!(next_step(&f, true, false, true, false), Step::SaslExternal);
        assert!(
            matches!(next_step(&f, true, false, false, false), Step::Fail(m) if m.contains("certificate"))
        );
    }

    #[test]
    fn no_tls_no_federation() {
        let f = features("<dialback xmlns='urn:xmpp:features:dialback'/>");
        assert!(
            matches!(next_step(&f, false, false, true, false), Step::Fail(m) if m.contains("STARTTLS"))
        );
        let only_db = features("<dialback xmlns='urn:xmpp:features:dialback'/>");
        assert_eq!(
            next_step(&only_db, true, false, true, false),
            Step::Dialback
        );
        assert!(matches!(
            next_step(&features(""), true, true, true, false),
            Step::Fail(_)
        ));
    }

    #[test]
    fn external_auth_bytes() {
        assert_eq!(
            external_auth("a.test").to_xml(),
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS50ZXN0</auth>"
        );
        let auth = |t: &str| Element::new("auth", NS_SASL).with_text(t);
        assert_eq!(check_external_authzid(&auth("YS50ZXN0"), "a.test"), Ok(()));
        assert_eq!(check_external_authzid(&auth("="), "a.test"), Ok(()));
        assert_eq!(
            check_external_authzid(&auth("eS50ZXN0"), "a.test"),
            Err(SaslFailure::InvalidAuthzid)
        );
        assert_eq!(
            check_external_authzid(&auth("!!"), "a.test"),
            Err(SaslFailure::IncorrectEncoding)
        );
    }

    #[test]
    fn our_features() {
        let pre = receiving_features(false, false, false, true, true).to_xml();
        assert!(
            pre.contains(
                "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
            ),
            "{pre}"
        );
        assert!(!pre.contains("dialback"));
        assert!(
            pre.contains("<bidi xmlns='urn:xmpp:features:bidi'/>"),
            "{pre}"
        );
        let f = Features::parse(&receiving_features(true, false, true, true, true));
        assert!(f.offers_external() && f.dialback && f.bidi && f.starttls.is_none());
        let f = Features::parse(&receiving_features(true, false, false, true, false));
        assert!(!f.offers_external() && f.dialback && !f.bidi);
        assert_eq!(
            Features::parse(&receiving_features(true, true, true, true, true)),
            Features::default()
        );
    }

    #[test]
    fn content_namespace_moves_one_level() {
        let doc = "<message xmlns='jabber:server' to='b@b.test' from='a@a.test/r'><body>hi</body>\
                   <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:server'/></forwarded></message>";
        let mut el = parse_document(doc.as_bytes(), "jabber:server", &Limits::default()).unwrap();
        change_content_ns(&mut el, ns::SERVER, ns::CLIENT);
        assert_eq!(
            el.to_xml(),
            "<message xmlns='jabber:client' to='b@b.test' from='a@a.test/r'><body>hi</body>\
             <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:server'/></forwarded></message>"
        );
    }
}
