//! XEP-0115 Entity Capabilities of the server itself: the verification string of §5.1
//! (identities, features and XEP-0128 extension forms, sorted, `<`-terminated), hashed with
//! SHA-1 and base64-encoded (§5.1 steps 7-8), offered as a `<c/>` stream feature (§6.3) before
//! and after authentication. The disco module answers the `NODE#VER` query (§6.2).
//!
//! Register this module last: it hashes what every module before it advertised.

use std::sync::Arc;

use starling_core::hooks::DiscoRegistry;
use starling_core::{FeatureStage, Module, Registrar};
use starling_proto::sasl::{encode_b64, HashAlg};
use starling_xml::Element;

pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// The URI identifying this software (§4: "a URI that identifies the software").
pub const NODE: &str = "https://github.com/starling-xmpp/starling";
const NS_DATA: &str = "jabber:x:data";

/// The entity-capabilities module.
pub struct Caps;

impl Module for Caps {
    fn name(&self) -> &'static str {
        "caps"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        let ver = registry_ver(reg.disco());
        let c = Element::new("c", NS_CAPS)
            .with_attr("hash", "sha-1")
            .with_attr("node", NODE)
            .with_attr("ver", ver);
        reg.stream_feature(FeatureStage::PreAuth, c.clone());
        reg.stream_feature(FeatureStage::PostAuth, c);
    }
}

/// One identity as §5.1 step 2 formats it: category, type, xml:lang, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CapsIdentity<'a> {
    pub category: &'a str,
    pub kind: &'a str,
    pub lang: &'a str,
    pub name: &'a str,
}

/// The `ver` of the server's disco#info as registered so far.
pub fn registry_ver(disco: &DiscoRegistry) -> String {
    let identities: Vec<CapsIdentity<'_>> = disco
        .host_identities
        .iter()
        .map(|i| CapsIdentity {
            category: &i.category,
            kind: &i.kind,
            lang: "",
            name: i.name.as_deref().unwrap_or(""),
        })
        .collect();
    let features: Vec<&str> = disco.host_features.iter().map(String::as_str).collect();
    hash_ver(&verification_string(
        &identities,
        &features,
        &disco.host_extensions,
    ))
}

/// §5.1 steps 1-6: the verification string S.
pub fn verification_string(
    identities: &[CapsIdentity<'_>],
    features: &[&str],
    forms: &[Element],
) -> String {
    let mut s = String::new();
    // Step 2: identities sorted by category, type, xml:lang (then name, for a total order).
    let mut ids = identities.to_vec();
    ids.sort();
    for i in &ids {
        s.push_str(&format!("{}/{}/{}/{}<", i.category, i.kind, i.lang, i.name));
    }
    // Step 3: features sorted (i;octet is byte order, which is how `str` compares).
    let mut feats = features.to_vec();
    feats.sort_unstable();
    feats.dedup();
    for f in feats {
        s.push_str(f);
        s.push('<');
    }
    // Step 4: extension forms sorted by FORM_TYPE; forms without one are not hashed (§5.4 3.6).
    let mut typed: Vec<(String, &Element)> = forms
        .iter()
        .filter(|x| x.is("x", NS_DATA))
        .filter_map(|x| form_type(x).map(|t| (t, x)))
        .collect();
    typed.sort_by(|a, b| a.0.cmp(&b.0));
    for (form_type, form) in typed {
        s.push_str(&form_type);
        s.push('<');
        let mut fields: Vec<(&str, Vec<String>)> = form
            .children()
            .filter(|f| f.is("field", NS_DATA))
            .filter_map(|f| f.attr("var").map(|v| (v, f)))
            .filter(|(v, _)| *v != "FORM_TYPE")
            .map(|(v, f)| (v, values(f)))
            .collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        for (var, mut vals) in fields {
            s.push_str(var);
            s.push('<');
            vals.sort();
            for v in vals {
                s.push_str(&v);
                s.push('<');
            }
        }
    }
    s
}

/// §5.1 steps 7-8: SHA-1 of S, base64-encoded.
pub fn hash_ver(s: &str) -> String {
    encode_b64(&HashAlg::Sha1.hash(s.as_bytes()))
}

fn values(field: &Element) -> Vec<String> {
    field
        .children()
        .filter(|v| v.is("value", NS_DATA))
        .map(Element::text)
        .collect()
}

fn form_type(form: &Element) -> Option<String> {
    form.children()
        .find(|f| f.is("field", NS_DATA) && f.attr("var") == Some("FORM_TYPE"))
        .and_then(|f| values(f).into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEATURES: [&str; 4] = [
        "http://jabber.org/protocol/muc",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/disco#items",
    ];

    #[test]
    fn simple_example_of_section_5_2() {
        let ids = [CapsIdentity {
            category: "client",
            kind: "pc",
            lang: "",
            name: "Exodus 0.9.1",
        }];
        let s = verification_string(&ids, &FEATURES, &[]);
        assert_eq!(
            s,
            "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<\
             http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
             http://jabber.org/protocol/muc<"
        );
        assert_eq!(hash_ver(&s), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    fn field(var: &str, vals: &[&str]) -> Element {
        let mut f = Element::new("field", NS_DATA).with_attr("var", var);
        for v in vals {
            f.append_child(Element::new("value", NS_DATA).with_text(*v));
        }
        f
    }

    #[test]
    fn complex_example_of_section_5_3() {
        let ids = [
            CapsIdentity {
                category: "client",
                kind: "pc",
                lang: "en",
                name: "Psi 0.11",
            },
            CapsIdentity {
                category: "client",
                kind: "pc",
                lang: "el",
                name: "Ψ 0.11",
            },
        ];
        // Fields deliberately out of order: the algorithm sorts them.
        let form = Element::new("x", NS_DATA)
            .with_attr("type", "result")
            .with_child(field("os_version", &["10.5.1"]))
            .with_child(field("FORM_TYPE", &["urn:xmpp:dataforms:softwareinfo"]))
            .with_child(field("ip_version", &["ipv6", "ipv4"]))
            .with_child(field("os", &["Mac"]))
            .with_child(field("software", &["Psi"]))
            .with_child(field("software_version", &["0.11"]));
        let s = verification_string(&ids, &FEATURES, &[form]);
        assert_eq!(
            s,
            "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<\
             http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
             http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<\
             ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<\
             software_version<0.11<"
        );
        assert_eq!(hash_ver(&s), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    }

    #[test]
    fn forms_without_form_type_are_not_hashed() {
        let untyped = Element::new("x", NS_DATA).with_child(field("a", &["b"]));
        assert_eq!(
            verification_string(&[], &["f"], &[untyped]),
            verification_string(&[], &["f"], &[])
        );
    }
}
