//! XEP-0049 Private XML Storage: a user stores XML fragments on the server under the
//! fragment's (name, namespace) and gets them back (§2). Only the user's own account (§2:
//! `forbidden` for anyone else's); a query without a child is `not-acceptable` (§2); the
//! reserved namespaces `jabber:client`, `jabber:server` and `jabber:iq:private` (and
//! fragments without a namespace of their own) are `not-acceptable` (§2, §3). A get of
//! something never stored returns the requested element as sent, empty.
//!
//! Stored in the map store `private`, keyed `{namespace}name` (Clark notation).

use std::sync::Arc;

use async_trait::async_trait;
use starling_core::{IqHandler, IqRequest, IqResult, IqTarget, Module, Registrar, Server};
use starling_proto::{StanzaError, StanzaErrorCondition};
use starling_xml::{ns, Element};

use super::util::{account_key, parse_stored, store_error};

pub const NS_PRIVATE: &str = "jabber:iq:private";
/// Map store holding each fragment's XML.
pub const STORE: &str = "private";
/// Largest single fragment we keep.
pub const MAX_FRAGMENT_BYTES: usize = 256 * 1024;

/// The XEP-0049 module.
pub struct PrivateStorage;

impl Module for PrivateStorage {
    fn name(&self) -> &'static str {
        "private"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.iq_get_set(
            &[IqTarget::OwnAccount, IqTarget::OtherAccount],
            "query",
            NS_PRIVATE,
            Arc::new(PrivateHandler),
        );
    }
}

fn key(el: &Element) -> String {
    format!("{{{}}}{}", el.ns(), el.name())
}

fn check_fragment(el: &Element) -> Result<(), StanzaError> {
    if matches!(el.ns(), "" | ns::CLIENT | ns::SERVER | NS_PRIVATE) {
        return Err(
            StanzaError::new(StanzaErrorCondition::NotAcceptable).with_text("reserved namespace")
        );
    }
    Ok(())
}

struct PrivateHandler;

#[async_trait]
impl IqHandler for PrivateHandler {
    async fn handle_iq(&self, server: &Arc<Server>, req: IqRequest) -> IqResult {
        if req.target != IqTarget::OwnAccount {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        }
        let Some((host, user)) = account_key(&req.to) else {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        };
        let query = &req.payload;
        let fragments: Vec<&Element> = query.children().collect();
        if fragments.is_empty() {
            return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)
                .with_text("name the fragment to store or retrieve"));
        }
        for f in &fragments {
            check_fragment(f)?;
        }
        if req.is_set {
            // Validate everything first so a refused set stores nothing.
            let mut writes = Vec::with_capacity(fragments.len());
            for f in &fragments {
                let xml = f.to_xml();
                if xml.len() > MAX_FRAGMENT_BYTES {
                    return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)
                        .with_text(format!("fragment larger than {MAX_FRAGMENT_BYTES} bytes")));
                }
                writes.push((key(f), xml));
            }
            for (k, xml) in writes {
                server
                    .store
                    .map_set(host, user, STORE, &k, Some(&xml))
                    .await
                    .map_err(store_error)?;
            }
            return Ok(None);
        }
        let mut out = Element::new("query", NS_PRIVATE);
        for f in fragments {
            let stored = server
                .store
                .map_get(host, user, STORE, &key(f))
                .await
                .map_err(store_error)?;
            match stored {
                Some(xml) => out.append_child(parse_stored(&xml)?),
                None => out.append_child(f.clone()),
            };
        }
        Ok(Some(out))
    }
}
