//! The Starling kernel: configuration, the session registry, the hook bus and module
//! interface, the stanza router, and client streams (RFC 6120/6121) over any transport.

mod accounts;
pub mod c2s;
pub mod config;
pub mod hooks;
mod inbound;
pub mod registry;
pub mod router;
pub mod routes;
mod server;
pub mod testing;
pub mod throttle;
pub mod transport;

pub use config::Config;
pub use hooks::{
    events, AccountEvent, AccountHook, FeatureStage, Flow, IqHandler, IqRequest, IqResult,
    IqTarget, Module, PreAuthIq, PreAuthIqHandler, Registrar, SessionEvent, SessionHook,
    StanzaEvent, StanzaHook,
};
pub use registry::{SessionInfo, SessionRegistry};
pub use routes::{DomainClaim, DomainLookup, DomainRoute, DomainRoutes, RouteConnection};
pub use server::Server;
pub use transport::{Transport, TransportError};
