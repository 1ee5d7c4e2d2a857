//! XEP-0092 Software Version of the server: name and version (§2). The optional `<os/>` is
//! left out: §6 warns that it helps attackers, so we do not volunteer it.

use std::sync::Arc;

use async_trait::async_trait;
use starling_core::{IqHandler, IqRequest, IqResult, IqTarget, Module, Registrar, Server};
use starling_xml::Element;

pub const NS_VERSION: &str = "jabber:iq:version";

/// The XEP-0092 module.
pub struct Version;

impl Module for Version {
    fn name(&self) -> &'static str {
        "version"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.host_feature(NS_VERSION);
        reg.iq(
            false,
            &[IqTarget::Host],
            "query",
            NS_VERSION,
            Arc::new(VersionHandler),
        );
    }
}

struct VersionHandler;

#[async_trait]
impl IqHandler for VersionHandler {
    async fn handle_iq(&self, _server: &Arc<Server>, _req: IqRequest) -> IqResult {
        Ok(Some(
            Element::new("query", NS_VERSION)
                .with_child(Element::new("name", NS_VERSION).with_text("Starling"))
                .with_child(
                    Element::new("version", NS_VERSION).with_text(env!("CARGO_PKG_VERSION")),
                ),
        ))
    }
}
