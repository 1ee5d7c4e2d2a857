//! The small services every client asks for, one module per specification: service discovery
//! (XEP-0030), ping (XEP-0199), software version (XEP-0092), entity time (XEP-0202), last
//! activity (XEP-0012), vcard-temp (XEP-0054), private XML storage (XEP-0049), blocking
//! (XEP-0191), message carbons (XEP-0280), in-band registration (XEP-0077) and the server's
//! entity capabilities (XEP-0115).

pub mod blocking;
pub mod caps;
pub mod carbons;
pub mod disco;
pub mod last;
pub mod ping;
pub mod private;
pub mod register;
pub mod time;
mod util;
pub mod vcard;
pub mod version;

use std::sync::Arc;

use starling_core::Module;

/// The service modules in registration order. Entity capabilities come last: they hash the
/// disco identities, features and forms everything before them registered.
pub fn modules() -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(disco::Disco),
        Arc::new(ping::Ping),
        Arc::new(version::Version),
        Arc::new(time::Time),
        Arc::new(last::LastActivity::default()),
        Arc::new(vcard::VCard),
        Arc::new(private::PrivateStorage),
        Arc::new(blocking::Blocking::default()),
        Arc::new(carbons::CarbonsModule::default()),
        Arc::new(register::Register::default()),
        Arc::new(caps::Caps),
    ]
}
