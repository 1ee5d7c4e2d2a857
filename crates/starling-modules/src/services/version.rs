//! XEP-0092 Software Version of the server: name and version (§2). The optional `<os/>` is
//! left out: §6 warns that it helps attackers, so we do not volunteer it.

use std::sync::Arc;

use starling_core::{IqTarget, Module, Registrar};
use starling_xml::Element;

use super::util::{answer_gets, ServerInfo};

pub const NS_VERSION: &str = "jabber:iq:version";

/// The XEP-0092 module.
pub struct Version;

impl Module for Version {
    fn name(&self) -> &'static str {
        "version"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        answer_gets(
            reg,
            &[IqTarget::Host],
            "query",
            NS_VERSION,
            Arc::new(ServerInfo(software_version)),
        );
    }
}

/// The server's name and version, without `<os/>`.
fn software_version() -> Element {
    Element::new("query", NS_VERSION)
        .with_child(Element::new("name", NS_VERSION).with_text("Starling"))
        .with_child(Element::new("version", NS_VERSION).with_text(env!("CARGO_PKG_VERSION")))
}
