//! Domain routes: domains this server does not host as accounts but delivers to over a
//! connection that registers at run time (RFC 6120 §10.4 "the server itself or a service
//! hosted by it"). The router checks them before stanzas go to other servers (`route/remote`),
//! so such a domain is never looked up in DNS. The core only knows "a domain and where its
//! stanzas go"; what speaks to the other end (an external component, XEP-0114, is one) is
//! someone else's business.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use starling_xml::Element;

/// Where the stanzas for one domain go.
pub trait DomainRoute: Send + Sync + 'static {
    /// Hands over a stanza addressed to the domain (any JID in it), without waiting. Returns
    /// the stanza when it cannot be taken (the connection is gone or reads too slowly), for
    /// the router to bounce.
    fn deliver(&self, stanza: Element) -> Result<(), Element>;

    /// Who holds the route, for the operator (`starling ctl components`); `None` when the
    /// route does not say.
    fn connection(&self) -> Option<RouteConnection> {
        None
    }
}

/// The connection behind a route: the peer's address and when the route was claimed.
#[derive(Clone, Debug)]
pub struct RouteConnection {
    pub peer: String,
    pub since: Instant,
}

/// What the router finds for a domain.
pub enum DomainLookup {
    /// Not a routed domain: another server's.
    NotRouted,
    /// Reserved here but nothing connected for it now: stanzas bounce (service-unavailable).
    Unavailable,
    Route(Arc<dyn DomainRoute>),
}

#[derive(Default)]
struct Entry {
    reserved: bool,
    route: Option<Arc<dyn DomainRoute>>,
}

/// The domain routes of a server. Reads are a shared lock and a map lookup (one per stanza
/// to a non-local domain).
#[derive(Default, Clone)]
pub struct DomainRoutes {
    map: Arc<RwLock<HashMap<String, Entry>>>,
}

/// The domain already has a route.
#[derive(Debug, thiserror::Error)]
#[error("domain {0} already has a connected route")]
pub struct RouteTaken(pub String);

/// Holds a claimed domain; dropping it removes the route (a reserved domain stays reserved).
pub struct DomainClaim {
    routes: DomainRoutes,
    domain: String,
    route: Arc<dyn DomainRoute>,
}

impl DomainClaim {
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl Drop for DomainClaim {
    fn drop(&mut self) {
        let mut map = self.routes.map.write();
        let Some(entry) = map.get_mut(&self.domain) else {
            return;
        };
        if entry
            .route
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &self.route))
        {
            entry.route = None;
            if !entry.reserved {
                map.remove(&self.domain);
            }
        }
    }
}

impl DomainRoutes {
    /// Marks a domain as served here even while nothing is connected for it (configured at
    /// start), so its stanzas bounce instead of going to another server.
    pub fn reserve(&self, domain: &str) {
        self.map
            .write()
            .entry(domain.to_owned())
            .or_default()
            .reserved = true;
    }

    /// Routes the domain's stanzas to `route` until the claim is dropped. A domain has at most
    /// one route: a second claim is refused (the first connection keeps it).
    pub fn claim(
        &self,
        domain: &str,
        route: Arc<dyn DomainRoute>,
    ) -> Result<DomainClaim, RouteTaken> {
        let mut map = self.map.write();
        let entry = map.entry(domain.to_owned()).or_default();
        if entry.route.is_some() {
            return Err(RouteTaken(domain.to_owned()));
        }
        entry.route = Some(route.clone());
        Ok(DomainClaim {
            routes: self.clone(),
            domain: domain.to_owned(),
            route,
        })
    }

    pub fn lookup(&self, domain: &str) -> DomainLookup {
        match self.map.read().get(domain) {
            None => DomainLookup::NotRouted,
            Some(Entry { route: Some(r), .. }) => DomainLookup::Route(r.clone()),
            Some(_) => DomainLookup::Unavailable,
        }
    }

    /// Every reserved or connected domain, sorted.
    pub fn domains(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// True when the domain is served here through a route (connected or not). Federation
    /// treats such a domain as one of ours: stanzas from it may leave over server streams,
    /// and remote servers may open streams to it.
    pub fn is_routed(&self, domain: &str) -> bool {
        self.map.read().contains_key(domain)
    }

    /// True when a route is connected for the domain now.
    pub fn is_connected(&self, domain: &str) -> bool {
        matches!(self.lookup(domain), DomainLookup::Route(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sink;
    impl DomainRoute for Sink {
        fn deliver(&self, _: Element) -> Result<(), Element> {
            Ok(())
        }
    }

    #[test]
    fn one_route_per_domain_and_release_on_drop() {
        let routes = DomainRoutes::default();
        routes.reserve("bot.example");
        assert!(matches!(
            routes.lookup("bot.example"),
            DomainLookup::Unavailable
        ));
        assert!(matches!(
            routes.lookup("other.example"),
            DomainLookup::NotRouted
        ));
        let claim = routes.claim("bot.example", Arc::new(Sink)).expect("free");
        assert!(routes.is_connected("bot.example"));
        assert!(routes.claim("bot.example", Arc::new(Sink)).is_err());
        drop(claim);
        assert!(matches!(
            routes.lookup("bot.example"),
            DomainLookup::Unavailable
        ));
        // An unreserved domain disappears with its claim.
        let c = routes.claim("x.example", Arc::new(Sink)).expect("free");
        assert_eq!(routes.domains(), vec!["bot.example", "x.example"]);
        drop(c);
        assert_eq!(routes.domains(), vec!["bot.example"]);
        assert!(routes.is_routed("bot.example") && !routes.is_routed("x.example"));
    }
}
