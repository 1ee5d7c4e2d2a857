//! XEP-0202 Entity Time of the server: `<tzo/>` and `<utc/>` (§3) in the XEP-0082 formats.
//! The server reports UTC (offset `+00:00`): its local zone is nobody's business.

use std::sync::Arc;

use starling_core::{IqTarget, Module, Registrar};
use starling_xml::Element;

use super::util::{answer_gets, ServerInfo};

pub const NS_TIME: &str = "urn:xmpp:time";

/// The XEP-0202 module.
pub struct Time;

impl Module for Time {
    fn name(&self) -> &'static str {
        "time"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        answer_gets(
            reg,
            &[IqTarget::Host],
            "time",
            NS_TIME,
            Arc::new(ServerInfo(entity_time)),
        );
    }
}

/// `<time/>` now: XEP-0082 DateTime with milliseconds, always in UTC ("Z").
fn entity_time() -> Element {
    let utc = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    Element::new("time", NS_TIME)
        .with_child(Element::new("tzo", NS_TIME).with_text("+00:00"))
        .with_child(Element::new("utc", NS_TIME).with_text(utc))
}
