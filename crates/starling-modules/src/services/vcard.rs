//! XEP-0054 vcard-temp: a user retrieves (§3.1) and publishes (§3.2) their own vCard, and
//! anyone retrieves a local user's vCard (§3.3) from the server, which answers for the bare
//! JID. An absent vCard is an empty `<vCard/>` (§3.1); only the owner may set it (§3.2:
//! `forbidden` otherwise). Stored as XML text in the key-value store `vcard`, with a size cap.

use std::sync::Arc;

use async_trait::async_trait;
use starling_core::{IqHandler, IqRequest, IqResult, IqTarget, Module, Registrar, Server};
use starling_proto::{StanzaError, StanzaErrorCondition};
use starling_xml::Element;

use super::util::{account_key, ensure_account, parse_stored, store_error};

pub const NS_VCARD: &str = "vcard-temp";
/// Key-value store holding each account's vCard XML.
pub const STORE: &str = "vcard";
/// Largest vCard we keep (avatars inline as base64 make them big, but not unbounded).
pub const MAX_VCARD_BYTES: usize = 256 * 1024;

/// The XEP-0054 module.
pub struct VCard;

impl Module for VCard {
    fn name(&self) -> &'static str {
        "vcard"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.host_feature(NS_VCARD);
        reg.account_feature(NS_VCARD);
        let h = Arc::new(VCardHandler);
        reg.iq_get_set(
            &[IqTarget::OwnAccount, IqTarget::OtherAccount],
            "vCard",
            NS_VCARD,
            h,
        );
    }
}

struct VCardHandler;

#[async_trait]
impl IqHandler for VCardHandler {
    async fn handle_iq(&self, server: &Arc<Server>, req: IqRequest) -> IqResult {
        if req.is_set {
            return set(server, &req).await;
        }
        ensure_account(server, &req).await?;
        let Some((host, user)) = account_key(&req.to) else {
            return Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
        };
        let stored = server
            .store
            .kv_get(host, user, STORE)
            .await
            .map_err(store_error)?;
        match stored {
            Some(xml) => Ok(Some(parse_stored(&xml)?)),
            None => Ok(Some(Element::new("vCard", NS_VCARD))),
        }
    }
}

async fn set(server: &Arc<Server>, req: &IqRequest) -> IqResult {
    if req.target != IqTarget::OwnAccount {
        return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
    }
    let Some((host, user)) = account_key(&req.to) else {
        return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
    };
    let vcard = &req.payload;
    // An empty vCard removes the stored one rather than storing nothing.
    let value = if vcard.children().next().is_none() && vcard.text().trim().is_empty() {
        None
    } else {
        let xml = vcard.to_xml();
        if xml.len() > MAX_VCARD_BYTES {
            return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)
                .with_text(format!("vCard larger than {MAX_VCARD_BYTES} bytes")));
        }
        Some(xml)
    };
    server
        .store
        .kv_set(host, user, STORE, value.as_deref())
        .await
        .map_err(store_error)?;
    Ok(None)
}
