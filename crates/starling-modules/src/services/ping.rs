//! XEP-0199 XMPP Ping: a ping to the server (§4.2 client-to-server) gets an empty result; a ping
//! to a local account's bare JID is answered by the server on the account's behalf (as ejabberd
//! does), or `service-unavailable` when there is no such account (RFC 6121 §8.5.1).

use std::sync::Arc;

use async_trait::async_trait;
use starling_core::{IqHandler, IqRequest, IqResult, IqTarget, Module, Registrar, Server};

use super::util::{answer_gets, ensure_account, ALL_TARGETS};

pub const NS_PING: &str = "urn:xmpp:ping";

/// The XEP-0199 module.
pub struct Ping;

impl Module for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        answer_gets(reg, &ALL_TARGETS, "ping", NS_PING, Arc::new(PingHandler));
    }
}

struct PingHandler;

#[async_trait]
impl IqHandler for PingHandler {
    async fn handle_iq(&self, server: &Arc<Server>, req: IqRequest) -> IqResult {
        if req.target != IqTarget::Host {
            ensure_account(server, &req).await?;
        }
        Ok(None)
    }
}
