//! XEP-0030 Service Discovery: disco#info (§3) and disco#items (§4) of the server itself
//! (its items: the domain routes on its subdomains, such as XEP-0114 components) and,
//! answered by the server on their behalf (RFC 6121 §8.5.1), of local accounts' bare JIDs.
//! Identities (§3.1), features (§3.2), extended info forms (XEP-0128), and the item-not-found
//! error for unknown nodes (§3.2, §4.2). The node `NODE#VER` of the entity capabilities the
//! server advertises (XEP-0115 §6.2) answers like the node-less query.

use std::sync::Arc;

use async_trait::async_trait;
use starling_core::hooks::{DiscoRegistry, Identity};
use starling_core::{
    FeatureStage, IqHandler, IqRequest, IqResult, IqTarget, Module, Registrar, Server,
};
use starling_proto::{StanzaError, StanzaErrorCondition};
use starling_xml::Element;

use super::caps::NS_CAPS;
use super::util::{answer_gets, ensure_account, ALL_TARGETS};

pub const NS_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_ITEMS: &str = "http://jabber.org/protocol/disco#items";

/// The XEP-0030 module: registers the server's `server/im` identity and answers queries.
pub struct Disco;

impl Module for Disco {
    fn name(&self) -> &'static str {
        "disco"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.host_identity("server", "im", Some("Starling"));
        // XEP-0030 §3.1 registry: a bare JID of a registered account on the server.
        reg.account_identity("account", "registered", None);
        answer_gets(reg, &ALL_TARGETS, "query", NS_INFO, Arc::new(InfoHandler));
        answer_gets(reg, &ALL_TARGETS, "query", NS_ITEMS, Arc::new(ItemsHandler));
    }
}

struct InfoHandler;

#[async_trait]
impl IqHandler for InfoHandler {
    async fn handle_iq(&self, server: &Arc<Server>, req: IqRequest) -> IqResult {
        let node = req.payload.attr("node").map(str::to_owned);
        match req.target {
            IqTarget::Host => {
                if let Some(n) = &node {
                    if !is_advertised_caps_node(server, n) {
                        return Err(StanzaError::new(StanzaErrorCondition::ItemNotFound));
                    }
                }
                Ok(Some(host_info(&server.disco, node.as_deref())))
            }
            IqTarget::OwnAccount | IqTarget::OtherAccount => {
                ensure_account(server, &req).await?;
                if node.is_some() {
                    return Err(StanzaError::new(StanzaErrorCondition::ItemNotFound));
                }
                Ok(Some(info_element(
                    &server.disco.account_identities,
                    &server.disco.account_features,
                    &[],
                    None,
                )))
            }
        }
    }
}

struct ItemsHandler;

#[async_trait]
impl IqHandler for ItemsHandler {
    async fn handle_iq(&self, server: &Arc<Server>, req: IqRequest) -> IqResult {
        if req.target != IqTarget::Host {
            ensure_account(server, &req).await?;
        }
        // No nodes yet: PEP nodes will list items here.
        if req.payload.attr("node").is_some() {
            return Err(StanzaError::new(StanzaErrorCondition::ItemNotFound));
        }
        let mut q = Element::new("query", NS_ITEMS);
        if req.target == IqTarget::Host {
            // §4.1: services hosted beside the server (e.g. external components, XEP-0114)
            // on subdomains of the queried host.
            let suffix = format!(".{}", req.to.domain());
            for d in server.domain_routes.domains() {
                if d.ends_with(&suffix) {
                    q.append_child(Element::new("item", NS_ITEMS).with_attr("jid", d));
                }
            }
        }
        Ok(Some(q))
    }
}

/// The server's disco#info answer, `node` echoed when the query named one (§3.2).
pub fn host_info(disco: &DiscoRegistry, node: Option<&str>) -> Element {
    info_element(
        &disco.host_identities,
        &disco.host_features,
        &disco.host_extensions,
        node,
    )
}

fn info_element(
    identities: &[Identity],
    features: &[String],
    extensions: &[Element],
    node: Option<&str>,
) -> Element {
    let mut q = Element::new("query", NS_INFO).with_opt_attr("node", node);
    for id in identities {
        q.append_child(
            Element::new("identity", NS_INFO)
                .with_attr("category", id.category.as_str())
                .with_attr("type", id.kind.as_str())
                .with_opt_attr("name", id.name.as_deref()),
        );
    }
    for f in features {
        q.append_child(Element::new("feature", NS_INFO).with_attr("var", f.as_str()));
    }
    for x in extensions {
        q.append_child(x.clone());
    }
    q
}

/// True when `node` is `NODE#VER` of a `<c/>` stream feature the server offers (XEP-0115 §6.2:
/// a client verifying our capabilities queries exactly that node).
fn is_advertised_caps_node(server: &Server, node: &str) -> bool {
    let Some((n, ver)) = node.rsplit_once('#') else {
        return false;
    };
    [FeatureStage::PostAuth, FeatureStage::PreAuth]
        .into_iter()
        .flat_map(|stage| server.hooks.features(stage))
        .any(|c| c.is("c", NS_CAPS) && c.attr("node") == Some(n) && c.attr("ver") == Some(ver))
}
