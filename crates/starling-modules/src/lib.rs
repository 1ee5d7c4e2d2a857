//! Features of the server, one module per specification, registered on the core's hook bus.
//! `im`: RFC 6121 roster, presence, messages, and offline storage (XEP-0160).
//! `services`: the small services every client asks for (disco, ping, version, time, last
//! activity, vCard, private storage, blocking, in-band registration, entity capabilities).

pub mod im;
pub mod services;

use std::sync::Arc;

use starling_core::Module;

/// Every module of a default server, in registration order (entity capabilities last, so
/// it hashes everything the others advertise).
pub fn default_modules() -> Vec<Arc<dyn Module>> {
    let mut modules = im::modules();
    modules.extend(services::modules());
    modules
}
