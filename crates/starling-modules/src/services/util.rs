//! Helpers the service modules share: registering an IQ get where it is answered and
//! advertised, the (host, user) key of a local account, mapping store failures to RFC 6120
//! §8.3.3 stanza errors, and reading back XML documents we stored.

use std::sync::Arc;

use async_trait::async_trait;
use starling_core::{IqHandler, IqRequest, IqResult, IqTarget, Registrar, Server};
use starling_proto::{Jid, StanzaError, StanzaErrorCondition};
use starling_store::StoreError;
use starling_xml::{parse_document, Element, Limits};
use tracing::warn;

/// The server itself and local accounts' bare JIDs (the user's own and others'), for services
/// the server answers on the accounts' behalf.
pub(crate) const ALL_TARGETS: [IqTarget; 3] =
    [IqTarget::Host, IqTarget::OwnAccount, IqTarget::OtherAccount];

/// Registers `handler` for IQ gets of `<name xmlns='ns'/>` at `targets`, and advertises `ns`
/// in disco#info wherever it is answered: among the server's features when the server is a
/// target, among the accounts' when accounts are.
pub(crate) fn answer_gets(
    reg: &mut Registrar,
    targets: &[IqTarget],
    name: &str,
    ns: &str,
    handler: Arc<dyn IqHandler>,
) {
    if targets.contains(&IqTarget::Host) {
        reg.host_feature(ns);
    }
    if targets.iter().any(|t| *t != IqTarget::Host) {
        reg.account_feature(ns);
    }
    reg.iq(false, targets, name, ns, handler);
}

/// Answers an IQ get about the server itself with a payload made afresh for each request and
/// the same for every requester (software version, entity time).
pub(crate) struct ServerInfo(pub fn() -> Element);

#[async_trait]
impl IqHandler for ServerInfo {
    async fn handle_iq(&self, _server: &Arc<Server>, _req: IqRequest) -> IqResult {
        Ok(Some((self.0)()))
    }
}

/// The store key of a local account's bare JID: `(domain, localpart)`.
pub(crate) fn account_key(jid: &Jid) -> Option<(&str, &str)> {
    jid.node().map(|user| (jid.domain(), user))
}

/// A storage failure as the requester sees it: `internal-server-error` (RFC 6120 §8.3.3.6);
/// the detail goes to the log, not to the network.
pub(crate) fn store_error(e: StoreError) -> StanzaError {
    warn!(error = %e, "storage failure while answering a stanza");
    StanzaError::new(StanzaErrorCondition::InternalServerError)
}

/// For an IQ the server answers on behalf of another local account: the account must exist,
/// else `service-unavailable` (RFC 6121 §8.5.1). The sender's own account always exists.
pub(crate) async fn ensure_account(
    server: &Arc<Server>,
    req: &IqRequest,
) -> Result<(), StanzaError> {
    let Some((host, user)) = account_key(&req.to) else {
        return Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
    };
    if req.from.bare() == req.to {
        return Ok(());
    }
    match server.store.account_exists(host, user).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)),
        Err(e) => Err(store_error(e)),
    }
}

/// Parses an XML document this server serialized into storage earlier.
pub(crate) fn parse_stored(xml: &str) -> Result<Element, StanzaError> {
    let limits = Limits {
        // Our own writes were size-checked; allow some slack for serialization differences.
        max_stanza_bytes: xml.len().max(1024) * 2,
        ..Limits::default()
    };
    parse_document(xml.as_bytes(), "", &limits).map_err(|e| {
        warn!(error = %e, "stored XML does not parse");
        StanzaError::new(StanzaErrorCondition::InternalServerError)
    })
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
