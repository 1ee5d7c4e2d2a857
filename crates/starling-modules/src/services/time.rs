//! XEP-0202 Entity Time of the server: `<tzo/>` and `<utc/>` (§3) in the XEP-0082 formats.
//! The server reports UTC (offset `+00:00`): its local zone is nobody's business.

use std::sync::Arc;

use async_trait::async_trait;
use starling_core::{IqHandler, IqRequest, IqResult, IqTarget, Module, Registrar, Server};
use starling_xml::Element;

pub const NS_TIME: &str = "urn:xmpp:time";

/// The XEP-0202 module.
pub struct Time;

impl Module for Time {
    fn name(&self) -> &'static str {
        "time"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.host_feature(NS_TIME);
        reg.iq(
            false,
            &[IqTarget::Host],
            "time",
            NS_TIME,
            Arc::new(TimeHandler),
        );
    }
}

struct TimeHandler;

#[async_trait]
impl IqHandler for TimeHandler {
    async fn handle_iq(&self, _server: &Arc<Server>, _req: IqRequest) -> IqResult {
        // XEP-0082 DateTime with milliseconds, always in UTC ("Z").
        let utc = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        Ok(Some(
            Element::new("time", NS_TIME)
                .with_child(Element::new("tzo", NS_TIME).with_text("+00:00"))
                .with_child(Element::new("utc", NS_TIME).with_text(utc)),
        ))
    }
}
