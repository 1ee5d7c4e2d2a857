//! Where a remote domain's server listens (RFC 6120 §3.2.1, XEP-0368 §3): a static route, or
//! SRV `_xmpps-server._tcp` (Direct TLS) and `_xmpp-server._tcp` (STARTTLS) merged by priority
//! and weight, or, with no SRV record at all, the domain itself on port 5269 (§3.2.2); and
//! the addresses (A/AAAA) of a target. DNS goes to `s2s.nameservers` when set, else the
//! system's resolver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, Protocol, ResolverConfig, ResolverOpts,
};
use hickory_resolver::error::{ResolveError, ResolveErrorKind};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::TokioAsyncResolver;
use starling_core::config::S2sConfig;

/// The resolver of federation.
pub struct Dns {
    resolver: Option<TokioAsyncResolver>,
    /// `s2s.nameservers` is set: A/AAAA lookups go to it too (else to the system's
    /// `getaddrinfo`, which also reads /etc/hosts).
    custom: bool,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dns(custom: {})", self.custom)
    }
}

impl Dns {
    /// `nameservers` as "ip:port" (unparsable ones are skipped: the config validated them);
    /// empty: the system configuration (none when it cannot be read: then only the domain
    /// itself is tried).
    pub fn new(nameservers: &[String]) -> Dns {
        let servers: Vec<NameServerConfig> = nameservers
            .iter()
            .filter_map(|n| n.parse::<SocketAddr>().ok())
            .map(|a| NameServerConfig::new(a, Protocol::Udp))
            .collect();
        if servers.is_empty() {
            return Dns {
                resolver: TokioAsyncResolver::tokio_from_system_conf().ok(),
                custom: false,
            };
        }
        let config = ResolverConfig::from_parts(None, vec![], NameServerConfigGroup::from(servers));
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(3);
        opts.attempts = 2;
        Dns {
            resolver: Some(TokioAsyncResolver::tokio(config, opts)),
            custom: true,
        }
    }

    /// The addresses of `host` (an IP address is its own), for the log an `Err` naming DNS.
    pub async fn addresses(
        &self,
        host: &str,
        port: u16,
        within: Duration,
    ) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found: Result<Vec<SocketAddr>, String> = match (&self.resolver, self.custom) {
            (Some(r), true) => {
                match tokio::time::timeout(within, r.lookup_ip(format!("{host}."))).await {
                    Ok(Ok(ips)) => Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect()),
                    Ok(Err(e)) => Err(describe(host, "A/AAAA", &e)),
                    Err(_) => Err(format!("DNS: A/AAAA lookup of {host} timed out")),
                }
            }
            _ => match tokio::time::timeout(within, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(a)) => Ok(a.collect()),
                Ok(Err(e)) => Err(format!("DNS: cannot resolve {host}: {e}")),
                Err(_) => Err(format!("DNS: A/AAAA lookup of {host} timed out")),
            },
        };
        match found {
            Ok(a) if a.is_empty() => Err(format!("DNS: no A/AAAA records for {host}")),
            other => other,
        }
    }
}

/// A failed lookup, for the log line.
fn describe(name: &str, what: &str, e: &ResolveError) -> String {
    match e.kind() {
        ResolveErrorKind::NoRecordsFound {
            response_code: ResponseCode::NXDomain,
            ..
        } => format!("DNS: {name} does not exist (NXDOMAIN)"),
        ResolveErrorKind::NoRecordsFound { .. } => format!("DNS: no {what} records for {name}"),
        ResolveErrorKind::Timeout => format!("DNS: {what} lookup of {name} timed out"),
        _ => format!("DNS: {what} lookup of {name} failed: {e}"),
    }
}

/// One place to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub direct_tls: bool,
}

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub target: String,
    pub port: u16,
    pub direct_tls: bool,
}

/// Orders SRV records: lower priority first; for equal priority Direct TLS first
/// (XEP-0368 §3), then higher weight (a deterministic reading of RFC 2782's weights).
/// A lone record with target "." means the service is not offered (RFC 2782).
pub fn order(mut records: Vec<Srv>) -> Vec<Target> {
    records.retain(|r| r.target != "." && !r.target.is_empty());
    records.sort_by_key(|r| (r.priority, !r.direct_tls, std::cmp::Reverse(r.weight)));
    records
        .into_iter()
        .map(|r| Target {
            host: r.target.trim_end_matches('.').to_owned(),
            port: r.port,
            direct_tls: r.direct_tls,
        })
        .collect()
}

/// Where to connect for `domain`, best first. `Err` is a DNS failure, for the log.
pub async fn targets(cfg: &S2sConfig, dns: &Dns, domain: &str) -> Result<Vec<Target>, String> {
    let routes: Vec<Target> = cfg
        .routes
        .iter()
        .filter(|r| r.domain.eq_ignore_ascii_case(domain))
        .map(|r| Target {
            host: r.host.clone(),
            port: r.port,
            direct_tls: r.direct_tls,
        })
        .collect();
    if !routes.is_empty() {
        return Ok(routes);
    }
    let Some(resolver) = &dns.resolver else {
        return Ok(vec![fallback(domain)]);
    };
    let mut records = Vec::new();
    for (service, direct_tls) in [("_xmpps-server._tcp", true), ("_xmpp-server._tcp", false)] {
        match resolver.srv_lookup(format!("{service}.{domain}.")).await {
            Ok(found) => records.extend(found.iter().map(|r| Srv {
                priority: r.priority(),
                weight: r.weight(),
                target: r.target().to_utf8(),
                port: r.port(),
                direct_tls,
            })),
            Err(e) => tracing::debug!("{}", describe(&format!("{service}.{domain}"), "SRV", &e)),
        }
    }
    if records.is_empty() {
        // RFC 6120 §3.2.2: no SRV record, try the domain itself.
        return Ok(vec![fallback(domain)]);
    }
    let ordered = order(records);
    if ordered.is_empty() {
        return Err(format!(
            "DNS: {domain} does not offer XMPP federation (SRV target \".\")"
        ));
    }
    Ok(ordered)
}

/// RFC 6120 §3.2.2: the domain itself, on the default port.
pub fn fallback(domain: &str) -> Target {
    Target {
        host: domain.to_owned(),
        port: 5269,
        direct_tls: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str, direct_tls: bool) -> Srv {
        Srv {
            priority,
            weight,
            target: target.into(),
            port: if direct_tls { 5270 } else { 5269 },
            direct_tls,
        }
    }

    #[test]
    fn srv_order_prefers_priority_then_direct_tls_then_weight() {
        let t = order(vec![
            srv(20, 0, "c.example.", false),
            srv(10, 5, "b.example.", false),
            srv(10, 1, "a.example.", true),
            srv(10, 50, "d.example.", false),
        ]);
        let hosts: Vec<_> = t.iter().map(|t| t.host.as_str()).collect();
        assert_eq!(hosts, ["a.example", "d.example", "b.example", "c.example"]);
        assert!(t[0].direct_tls && t[0].port == 5270);
        assert!(order(vec![srv(0, 0, ".", false)]).is_empty());
    }

    #[tokio::test]
    async fn static_routes_win() {
        let mut cfg = S2sConfig::default();
        cfg.routes.push(starling_core::config::S2sRoute {
            domain: "ej.test".into(),
            host: "127.0.0.2".into(),
            port: 16269,
            direct_tls: false,
        });
        let t = targets(&cfg, &Dns::new(&[]), "EJ.test")
            .await
            .expect("route");
        assert_eq!(
            t,
            vec![Target {
                host: "127.0.0.2".into(),
                port: 16269,
                direct_tls: false
            }]
        );
    }
}
