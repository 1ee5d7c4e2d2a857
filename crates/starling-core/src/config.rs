//! Server configuration: one TOML file, typed sections, unknown keys rejected by name.
//! Every field has a default, so `starling serve` with no file runs a working server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The domains this server serves (the `domain` of local JIDs).
    pub hosts: Vec<String>,
    /// Where the database, generated certificate and admin socket live.
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub c2s: C2sConfig,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub registration: RegistrationConfig,
    pub offline: OfflineConfig,
    pub log: LogConfig,
    pub s2s: S2sConfig,
    pub component: ComponentConfig,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://path` (relative paths are under `data_dir`) or `sqlite::memory:`.
    /// Empty: `sqlite://<data_dir>/starling.db`.
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sConfig {
    /// Client streams with STARTTLS (RFC 6120 §5). Empty string disables.
    pub listen: String,
    /// Direct TLS (XEP-0368). Empty string disables.
    pub direct_tls_listen: String,
    /// RFC 6120 §5.3.1: refuse authentication before TLS.
    pub require_tls: bool,
    pub max_stanza_bytes: usize,
    pub max_connections: usize,
    /// Seconds a stream may take from connect to bound resource.
    pub negotiation_timeout_secs: u64,
    /// Seconds of silence after which we send a whitespace keepalive.
    pub keepalive_secs: u64,
    /// Stanzas queued for one slow session before it is disconnected.
    pub max_queued_stanzas: usize,
    /// Bytes queued for one slow session before it is disconnected.
    pub max_queued_bytes: usize,
}

impl Default for C2sConfig {
    fn default() -> Self {
        C2sConfig {
            listen: "0.0.0.0:5222".into(),
            direct_tls_listen: "0.0.0.0:5223".into(),
            require_tls: true,
            max_stanza_bytes: 256 * 1024,
            max_connections: 19_900,
            negotiation_timeout_secs: 60,
            keepalive_secs: 120,
            max_queued_stanzas: 2048,
            max_queued_bytes: 4 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Plain HTTP (WebSocket, host-meta). Empty string disables.
    pub listen: String,
    /// HTTPS. Empty string disables.
    pub tls_listen: String,
    pub websocket_path: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:5280".into(),
            tls_listen: String::new(),
            websocket_path: "/xmpp-websocket".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Certificate/key PEM pairs, chosen by SNI. None: a self-signed one is generated.
    pub certs: Vec<CertPair>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// XEP-0077 in-band registration of new accounts; off by default (spam).
    pub enabled: bool,
    /// Seconds between two registrations from one IP address.
    pub min_interval_secs: u64,
    /// Let clients change their password in band (XEP-0077 §3.3) even when registration is off.
    pub allow_password_change: bool,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            enabled: false,
            min_interval_secs: 60,
            allow_password_change: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// Messages kept per user while offline (XEP-0160); beyond it senders get an error.
    pub max_per_user: u64,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig { max_per_user: 1000 }
    }
}

/// How a remote domain must authenticate (RFC 6120 §13.7.1.2, XEP-0178, XEP-0220).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum S2sPolicy {
    /// A certificate valid for the domain (SASL EXTERNAL, XEP-0178).
    Certs,
    /// Certificates when valid, else Server Dialback (XEP-0220).
    #[default]
    Dialback,
    /// No federation with the domain.
    Deny,
}

/// Server-to-server federation (RFC 6120, XEP-0220, XEP-0288, XEP-0368).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// Server streams with STARTTLS. Empty string disables federation entirely.
    pub listen: String,
    /// Direct TLS for s2s (XEP-0368, ALPN `xmpp-server`). Empty string disables.
    pub direct_tls_listen: String,
    /// Extra trusted CA certificates (PEM), besides the system roots.
    pub ca_file: String,
    pub default_policy: S2sPolicy,
    /// Key for dialback keys (XEP-0220 §2.4). Empty: random per start.
    pub dialback_secret: String,
    pub connect_timeout_secs: u64,
    /// Seconds a server stream may take from connect to authenticated.
    pub negotiation_timeout_secs: u64,
    /// Seconds without traffic after which a server stream is closed.
    pub idle_timeout_secs: u64,
    /// Incoming server streams at once.
    pub max_connections: usize,
    pub max_stanza_bytes: usize,
    /// Stanzas queued for one outgoing stream at most; past that the stream is closed and
    /// what it held bounced (a peer that does not read cannot grow our memory).
    pub max_queued_stanzas: usize,
    /// Bytes queued for one outgoing stream at most.
    pub max_queued_bytes: usize,
    /// Offer and request bidirectional streams (XEP-0288).
    pub bidi: bool,
    /// DNS servers ("ip:port") for SRV and A/AAAA lookups; empty: the system's resolv.conf.
    pub nameservers: Vec<String>,
    /// Per remote domain: "certs", "dialback" or "deny".
    pub policy: std::collections::BTreeMap<String, S2sPolicy>,
    /// Static routes used instead of DNS.
    pub routes: Vec<S2sRoute>,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            listen: "0.0.0.0:5269".into(),
            direct_tls_listen: String::new(),
            ca_file: String::new(),
            default_policy: S2sPolicy::Dialback,
            dialback_secret: String::new(),
            connect_timeout_secs: 10,
            negotiation_timeout_secs: 60,
            idle_timeout_secs: 600,
            max_connections: 1000,
            max_stanza_bytes: 256 * 1024,
            max_queued_stanzas: 1024,
            max_queued_bytes: 8 << 20,
            bidi: true,
            nameservers: Vec::new(),
            policy: Default::default(),
            routes: Vec::new(),
        }
    }
}

impl S2sConfig {
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }

    /// The policy for a remote domain.
    pub fn policy_for(&self, domain: &str) -> S2sPolicy {
        self.policy
            .get(domain)
            .copied()
            .unwrap_or(self.default_policy)
    }
}

/// Where to reach a remote domain without DNS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S2sRoute {
    pub domain: String,
    pub host: String,
    #[serde(default = "default_s2s_port")]
    pub port: u16,
    /// Connect with TLS from the first byte (XEP-0368) instead of STARTTLS.
    #[serde(default)]
    pub direct_tls: bool,
}

fn default_s2s_port() -> u16 {
    5269
}

/// External components (XEP-0114): services on their own domain connecting over TCP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentConfig {
    /// Where components connect (`jabber:component:accept`; plain TCP, so keep it on
    /// loopback or a private network). Empty string disables; nothing listens while
    /// `services` is empty.
    pub listen: String,
    /// Component connections at once.
    pub max_connections: usize,
    pub max_stanza_bytes: usize,
    /// Seconds a component may take from connect to a successful handshake.
    pub negotiation_timeout_secs: u64,
    /// Stanzas queued for one component before it is disconnected as too slow.
    pub max_queued_stanzas: usize,
    pub services: Vec<ComponentService>,
}

impl Default for ComponentConfig {
    fn default() -> Self {
        ComponentConfig {
            listen: "127.0.0.1:5347".into(),
            max_connections: 100,
            max_stanza_bytes: 256 * 1024,
            negotiation_timeout_secs: 30,
            max_queued_stanzas: 10_000,
            services: Vec::new(),
        }
    }
}

/// One component: the domain it serves and the secret of its handshake.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentService {
    pub domain: String,
    pub secret: String,
}

impl ComponentConfig {
    /// True when a listener should run: an address and at least one service.
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty() && !self.services.is_empty()
    }

    fn validate(&self, hosts: &[String]) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for svc in &self.services {
            let domain = match starling_proto::Jid::new(None, &svc.domain, None) {
                Ok(j) if !svc.domain.contains(['@', '/']) => j.domain().to_owned(),
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "`component.services`: {:?} is not a valid domain",
                        svc.domain
                    )))
                }
            };
            if hosts.iter().any(|h| h.eq_ignore_ascii_case(&domain)) {
                return Err(ConfigError::Invalid(format!(
                    "`component.services`: {domain:?} is also in `hosts`; a component needs a domain of its own (e.g. \"bot.{domain}\")"
                )));
            }
            if !seen.insert(domain.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "`component.services`: {domain:?} is configured twice"
                )));
            }
            if svc.secret.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "`component.services`: {domain:?} needs a non-empty secret"
                )));
            }
        }
        if self.max_stanza_bytes < 10_000 {
            return Err(ConfigError::Invalid(
                "`component.max_stanza_bytes` below 10000 (RFC 6120 §13.12 asks for at least 10000)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or an env-filter directive.
    pub level: String,
    /// Log every stanza in and out of each session (credentials redacted).
    pub stanzas: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            stanzas: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hosts: vec!["localhost".into()],
            data_dir: PathBuf::from("./data"),
            storage: StorageConfig::default(),
            c2s: C2sConfig::default(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            registration: RegistrationConfig::default(),
            offline: OfflineConfig::default(),
            log: LogConfig::default(),
            s2s: S2sConfig::default(),
            component: ComponentConfig::default(),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        // A relative data folder is relative to the config file, so the server finds the
        // same data whatever directory it is started from.
        if cfg.data_dir.is_relative() {
            if let Some(dir) = path.parent() {
                if !dir.as_os_str().is_empty() {
                    cfg.data_dir = dir.join(&cfg.data_dir);
                }
            }
        }
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        cfg.validate()?;
        // Hosts are compared with JID domains, which are normalized (RFC 7622 §3.2).
        for h in cfg
            .hosts
            .iter_mut()
            .chain(cfg.component.services.iter_mut().map(|s| &mut s.domain))
        {
            if let Ok(j) = starling_proto::Jid::new(None, h, None) {
                *h = j.domain().to_string();
            }
        }
        // Remote domains are looked up with normalized JID domains too: a policy key or a
        // route written "EVIL.Example." must apply to `evil.example`.
        let normalize = |d: &str| {
            starling_proto::Jid::new(None, d, None).map_or_else(
                |_| d.trim_end_matches('.').to_ascii_lowercase(),
                |j| j.domain().to_string(),
            )
        };
        cfg.s2s.policy = std::mem::take(&mut cfg.s2s.policy)
            .into_iter()
            .map(|(k, v)| (normalize(&k), v))
            .collect();
        for r in &mut cfg.s2s.routes {
            r.domain = normalize(&r.domain);
        }
        Ok(cfg)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hosts.is_empty() {
            return Err(ConfigError::Invalid(
                "`hosts` is empty: name at least one domain to serve".into(),
            ));
        }
        for h in &self.hosts {
            if starling_proto::Jid::new(None, h, None).is_err() {
                return Err(ConfigError::Invalid(format!(
                    "`hosts`: {h:?} is not a valid domain"
                )));
            }
        }
        for (key, value) in [
            ("c2s.listen", &self.c2s.listen),
            ("c2s.direct_tls_listen", &self.c2s.direct_tls_listen),
            ("http.listen", &self.http.listen),
            ("http.tls_listen", &self.http.tls_listen),
            ("s2s.listen", &self.s2s.listen),
            ("s2s.direct_tls_listen", &self.s2s.direct_tls_listen),
            ("component.listen", &self.component.listen),
        ] {
            if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "`{key}`: {value:?} is not an address:port like \"0.0.0.0:5222\""
                )));
            }
        }
        if self.s2s.max_stanza_bytes < 10_000 {
            return Err(ConfigError::Invalid(
                "`s2s.max_stanza_bytes` below 10000 breaks federation (RFC 6120 §13.12)".into(),
            ));
        }
        if self.s2s.max_queued_stanzas == 0 || self.s2s.max_queued_bytes < self.s2s.max_stanza_bytes
        {
            return Err(ConfigError::Invalid(
                "`s2s.max_queued_stanzas` must be at least 1 and `s2s.max_queued_bytes` at least \
                 `s2s.max_stanza_bytes`"
                    .into(),
            ));
        }
        for n in &self.s2s.nameservers {
            if n.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "`s2s.nameservers`: {n:?} is not an ip:port like \"192.0.2.53:53\""
                )));
            }
        }
        for r in &self.s2s.routes {
            if starling_proto::Jid::new(None, &r.domain, None).is_err() || r.host.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "`s2s.routes`: {:?} -> {:?} needs a valid domain and a host",
                    r.domain, r.host
                )));
            }
        }
        self.component.validate(&self.hosts)?;
        if !self.http.websocket_path.starts_with('/') {
            return Err(ConfigError::Invalid(
                "`http.websocket_path` must start with '/'".into(),
            ));
        }
        if self.c2s.max_stanza_bytes < 10_000 {
            return Err(ConfigError::Invalid(
                "`c2s.max_stanza_bytes` below 10000 breaks ordinary clients (RFC 6120 §13.12 asks for at least 10000)".into(),
            ));
        }
        Ok(())
    }

    /// The storage URL with the default filled in and relative paths under `data_dir`.
    pub fn storage_url(&self) -> String {
        let url = self.storage.url.trim();
        if url.is_empty() {
            return format!("sqlite://{}", self.data_dir.join("starling.db").display());
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            let p = Path::new(path);
            if p.is_relative() {
                return format!("sqlite://{}", self.data_dir.join(p).display());
            }
        }
        url.to_string()
    }

    /// Where the admin CLI reaches the running server (a Unix socket only root and the
    /// server's user can open: the data folder is created 0700).
    pub fn admin_socket(&self) -> PathBuf {
        self.data_dir.join("admin.sock")
    }

    pub fn is_local_host(&self, domain: &str) -> bool {
        self.hosts.iter().any(|h| h == domain)
    }

    pub fn default_host(&self) -> &str {
        self.hosts
            .first()
            .map(String::as_str)
            .unwrap_or("localhost")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::parse("").expect("empty config is valid");
        assert_eq!(c.hosts, vec!["localhost".to_string()]);
        assert!(c.c2s.require_tls);
        assert!(!c.registration.enabled);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse("hosts = [\"a.example\"]\n[c2s]\nlisten_port = 5\n")
            .expect_err("unknown key");
        assert!(e.to_string().contains("listen_port"), "{e}");
        let e = Config::parse("hostz = []").expect_err("unknown key");
        assert!(e.to_string().contains("hostz"), "{e}");
    }

    #[test]
    fn hosts_are_normalized_like_jid_domains() {
        let c = Config::parse("hosts = [\"Example.COM\"]").expect("valid");
        assert!(c.is_local_host("example.com"));
    }

    #[test]
    fn bad_values_are_explained() {
        let e = Config::parse("[c2s]\nlisten = \"5222\"\n").expect_err("bad addr");
        assert!(e.to_string().contains("c2s.listen"), "{e}");
        let e = Config::parse("hosts = []").expect_err("no hosts");
        assert!(e.to_string().contains("hosts"), "{e}");
    }

    #[test]
    fn component_services_are_checked() {
        let ok =
            "[component]\n[[component.services]]\ndomain = \"Bot.Localhost\"\nsecret = \"s\"\n";
        let c = Config::parse(ok).expect("valid");
        assert_eq!(c.component.services[0].domain, "bot.localhost");
        assert!(c.component.enabled());
        assert!(!Config::parse("").expect("valid").component.enabled());
        let dup =
            format!("{ok}[[component.services]]\ndomain = \"bot.localhost\"\nsecret = \"t\"\n");
        let e = Config::parse(&dup).expect_err("duplicate");
        assert!(e.to_string().contains("twice"), "{e}");
        let e = Config::parse("[[component.services]]\ndomain = \"localhost\"\nsecret = \"s\"\n")
            .expect_err("a served host");
        assert!(e.to_string().contains("hosts"), "{e}");
        let e = Config::parse("[[component.services]]\ndomain = \"a@b\"\nsecret = \"s\"\n")
            .expect_err("not a domain");
        assert!(e.to_string().contains("valid domain"), "{e}");
        let e = Config::parse("[[component.services]]\ndomain = \"b.x\"\nsecret = \"\"\n")
            .expect_err("empty secret");
        assert!(e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn storage_url_defaults_under_data_dir() {
        let mut c = Config {
            data_dir: PathBuf::from("/srv/x"),
            ..Config::default()
        };
        assert_eq!(c.storage_url(), "sqlite:///srv/x/starling.db");
        c.storage.url = "sqlite://db/s.db".into();
        assert_eq!(c.storage_url(), "sqlite:///srv/x/db/s.db");
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The example config shipped in the repository must stay loadable and say the defaults.
    #[test]
    fn example_config_loads_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../starling.example.toml");
        let cfg = Config::load(&path).expect("example config loads");
        let def = Config::default();
        assert_eq!(cfg.hosts, def.hosts);
        assert_eq!(cfg.c2s.listen, def.c2s.listen);
        assert_eq!(cfg.c2s.max_stanza_bytes, def.c2s.max_stanza_bytes);
        assert_eq!(cfg.registration.enabled, def.registration.enabled);
        assert!(cfg.data_dir.ends_with("data"));
        assert_eq!(cfg.s2s.listen, def.s2s.listen);
        assert_eq!(cfg.s2s.default_policy, def.s2s.default_policy);
        assert_eq!(cfg.s2s.max_connections, def.s2s.max_connections);
    }

    #[test]
    fn s2s_section_parses() {
        let c = Config::parse(
            "[s2s]\nlisten = \"\"\ndefault_policy = \"certs\"\n[s2s.policy]\n\"pr.test\" = \"deny\"\n\
             [[s2s.routes]]\ndomain = \"ej.test\"\nhost = \"127.0.0.2\"\nport = 16269\n",
        )
        .expect("valid");
        assert!(!c.s2s.enabled());
        assert_eq!(c.s2s.policy_for("pr.test"), S2sPolicy::Deny);
        assert_eq!(c.s2s.policy_for("x.test"), S2sPolicy::Certs);
        assert_eq!(c.s2s.routes[0].port, 16269);
        assert!(!c.s2s.routes[0].direct_tls);
        let e = Config::parse("[s2s]\npolicyy = 1\n").expect_err("unknown key");
        assert!(e.to_string().contains("policyy"), "{e}");
        let c = Config::parse(
            "[s2s]\nnameservers = [\"127.0.0.1:5353\"]\nmax_queued_stanzas = 10\nbidi = false\n",
        )
        .expect("valid");
        assert_eq!(c.s2s.nameservers, ["127.0.0.1:5353"]);
        assert_eq!(c.s2s.max_queued_stanzas, 10);
        assert!(!c.s2s.bidi);
        let e = Config::parse("[s2s]\nnameservers = [\"dns.example\"]\n").expect_err("not ip:port");
        assert!(e.to_string().contains("s2s.nameservers"), "{e}");
        let e = Config::parse("[s2s]\nmax_queued_bytes = 1000\n").expect_err("too small");
        assert!(e.to_string().contains("max_queued_bytes"), "{e}");
    }

    #[test]
    fn s2s_policy_and_route_domains_are_normalized() {
        let c = Config::parse(
            "[s2s]\n[s2s.policy]\n\"EVIL.Test.\" = \"deny\"\n\
             [[s2s.routes]]\ndomain = \"Ej.TEST.\"\nhost = \"127.0.0.2\"\n",
        )
        .expect("valid");
        assert_eq!(c.s2s.policy_for("evil.test"), S2sPolicy::Deny);
        assert_eq!(c.s2s.routes[0].domain, "ej.test");
    }
}
