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
        for h in &mut cfg.hosts {
            if let Ok(j) = starling_proto::Jid::new(None, h, None) {
                *h = j.domain().to_string();
            }
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
        ] {
            if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "`{key}`: {value:?} is not an address:port like \"0.0.0.0:5222\""
                )));
            }
        }
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
    }
}
