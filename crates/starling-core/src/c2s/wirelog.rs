//! The server-side XML console: every element in and out of a session, when `log.stanzas` is
//! on, with secrets redacted (SASL payloads, XEP-0077 passwords).

use starling_xml::Element;
use tracing::info;

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const REGISTER: &str = "jabber:iq:register";

/// A copy of `el` safe to log.
pub fn redacted(el: &Element) -> Element {
    let mut copy = el.clone();
    if copy.ns() == SASL && matches!(copy.name(), "auth" | "response" | "challenge" | "success") {
        if !copy.text().is_empty() {
            copy.clear_children();
            copy.append_text("[redacted]");
        }
        return copy;
    }
    redact_passwords(&mut copy);
    copy
}

fn redact_passwords(el: &mut Element) {
    for child in el.children_mut() {
        if child.ns() == REGISTER && child.name() == "password" {
            child.clear_children();
            child.append_text("[redacted]");
        } else if child.ns() == "jabber:x:data" && child.name() == "field" {
            if child.attr("var") == Some("password") || child.attr("type") == Some("text-private") {
                child.clear_children();
            }
        } else {
            redact_passwords(child);
        }
    }
}

pub struct WireLog {
    pub enabled: bool,
    pub label: String,
}

impl WireLog {
    pub fn incoming(&self, el: &Element) {
        if self.enabled {
            info!(target: "starling::xml", session = %self.label, "<< {}", redacted(el));
        }
    }

    pub fn outgoing(&self, el: &Element) {
        if self.enabled {
            info!(target: "starling::xml", session = %self.label, ">> {}", redacted(el));
        }
    }

    pub fn note(&self, what: &str) {
        if self.enabled {
            info!(target: "starling::xml", session = %self.label, "-- {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_and_register_passwords_are_hidden() {
        let auth = Element::new("auth", SASL)
            .with_attr("mechanism", "PLAIN")
            .with_text("AGp1bGlldAByMG0zMA==");
        assert!(!redacted(&auth).to_xml().contains("AGp1"));
        let iq = Element::new("iq", "jabber:client").with_child(
            Element::new("query", REGISTER)
                .with_child(Element::new("username", REGISTER).with_text("bill"))
                .with_child(Element::new("password", REGISTER).with_text("s3cret")),
        );
        let shown = redacted(&iq).to_xml();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("bill"));
    }
}
