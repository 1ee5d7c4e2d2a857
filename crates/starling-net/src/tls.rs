//! TLS set-up: certificates from PEM files served by SNI (exact name, then `*.parent`, then the
//! first as default), or a generated self-signed certificate for first runs; the rustls server
//! configurations for STARTTLS/HTTPS (RFC 6120 §5) and Direct TLS with ALPN `xmpp-client`
//! (XEP-0368); and the per-certificate `tls-server-end-point` hash (RFC 5929 §4.1).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;
use starling_proto::sasl::ChannelBindings;
use tracing::{debug, info, warn};

use crate::der::{self, EndPointHash};
use crate::NetError;

/// ALPN protocol identifier for XMPP client-to-server Direct TLS (XEP-0368 §4).
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";
/// ALPN protocol identifier for XMPP server-to-server Direct TLS (XEP-0368 §4).
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

/// The DNS names (subjectAltName dNSName) of a DER certificate, for messages and checks.
pub fn cert_dns_names(cert_der: &[u8]) -> Vec<String> {
    der::dns_names(cert_der)
}

/// The XmppAddr names (subjectAltName otherName id-on-xmppAddr, RFC 6120 §13.7.1.4) of a DER
/// certificate.
pub fn cert_xmpp_addrs(cert_der: &[u8]) -> Vec<String> {
    der::other_names(cert_der, der::OID_XMPP_ADDR)
}

/// The SRV-IDs (subjectAltName otherName id-on-dnsSRV, RFC 4985, e.g.
/// `_xmpp-server.example.com`) of a DER certificate.
pub fn cert_srv_ids(cert_der: &[u8]) -> Vec<String> {
    der::other_names(cert_der, der::OID_DNS_SRV)
}

/// Whether a DER certificate carries a nameConstraints extension (RFC 5280 §4.2.1.10);
/// unreadable input counts as constrained.
pub fn cert_has_name_constraints(cert_der: &[u8]) -> bool {
    der::has_name_constraints(cert_der)
}

/// One configured certificate: PEM files; the certificate file may hold the whole chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The server's TLS configurations, shared by every listener.
#[derive(Debug)]
pub struct TlsSetup {
    /// For STARTTLS and HTTPS: no ALPN.
    pub starttls: Arc<ServerConfig>,
    /// For Direct TLS (XEP-0368): offers ALPN `xmpp-client`; a client sending no ALPN is still
    /// accepted, one offering only other protocols is refused by rustls.
    pub direct: Arc<ServerConfig>,
    resolver: Arc<CertResolver>,
    self_signed: Option<PathBuf>,
}

impl TlsSetup {
    /// The `tls-server-end-point` channel binding (RFC 5929 §4.1) of the certificate served for
    /// this SNI name; `None` where the certificate's signature has no hash (Ed25519).
    pub fn server_end_point(&self, sni: Option<&str>) -> Option<Vec<u8>> {
        let index = self.resolver.pick(sni)?;
        self.resolver.certs.get(index)?.end_point.clone()
    }

    /// The certificate (chain and key) served for `name`, or the default one: what we present
    /// as a TLS client certificate on server-to-server streams for our domain `name`.
    pub fn certified_key(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let index = self.resolver.pick(Some(name))?;
        self.resolver.certs.get(index).map(|c| c.key.clone())
    }

    /// The same certificates for server-to-server listeners: client certificates are
    /// requested (not required) and checked by `verifier`, Direct TLS offers ALPN
    /// `xmpp-server` (XEP-0368 §4).
    pub fn for_servers(
        &self,
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    ) -> Result<TlsSetup, NetError> {
        let starttls = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.resolver.clone());
        let mut direct = starttls.clone();
        direct.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
        Ok(TlsSetup {
            starttls: Arc::new(starttls),
            direct: Arc::new(direct),
            resolver: self.resolver.clone(),
            self_signed: self.self_signed.clone(),
        })
    }

    /// The generated self-signed certificate's path, when no certificate is configured.
    pub fn self_signed_path(&self) -> Option<&Path> {
        self.self_signed.as_deref()
    }

    /// Builds the set-up from in-memory certificates (first = default). For tests and for
    /// certificates obtained at run time.
    pub fn from_pem(pairs: &[(&[u8], &[u8])]) -> Result<TlsSetup, NetError> {
        let mut certs = Vec::new();
        for (cert, key) in pairs {
            let label = PathBuf::from("<memory>");
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| cert_err(&label, e))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| cert_err(&label, e))?;
            certs.push(Served::new(chain, key, &label, &label)?);
        }
        TlsSetup::from_served(certs, None)
    }

    fn from_served(certs: Vec<Served>, self_signed: Option<PathBuf>) -> Result<TlsSetup, NetError> {
        let resolver = Arc::new(CertResolver::new(certs));
        let provider = Arc::new(provider());
        let mut starttls = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        tune_for_logins(&mut starttls);
        let mut direct = starttls.clone();
        direct.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
        Ok(TlsSetup {
            starttls: Arc::new(starttls),
            direct: Arc::new(direct),
            resolver,
            self_signed,
        })
    }
}

/// ring, with TLS 1.3 AES-128-GCM-SHA256 moved first (the rest keep ring's order). Its
/// key schedule hashes with SHA-256, which ring runs on the CPU's SHA extensions; the
/// SHA-384 of AES-256-GCM-SHA384 is software only and cost ~4% of a login's CPU.
fn provider() -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    p
}

/// Client-facing handshake settings, chosen for login cost (docs/perf-notes-login.md):
/// - our cipher-suite order wins over the client's (most clients list AES-256 first);
/// - no TLS 1.3 session tickets (rustls sends two): the only session store here is rustls's
///   in-memory cache of 256 sessions, useless beyond 256 clients and lost at restart, while
///   the tickets cost every handshake an encrypted record, one more write (a syscall and a
///   wake-up of the client) and the client's work to store them. Resumption, if wanted,
///   should come with a stateless ticketer and one ticket.
///
/// Key exchange stays ring's order, X25519 first.
fn tune_for_logins(config: &mut ServerConfig) {
    config.ignore_client_order = true;
    config.send_tls13_tickets = 0;
}

/// Loads every configured certificate (or the self-signed one under `data_dir/tls/`, generated
/// on first use) and builds the TLS configurations. `hosts` are the served domains: they name
/// the self-signed certificate and are checked against the configured ones.
pub fn build_tls(
    hosts: &[String],
    certs: &[CertConfig],
    data_dir: &Path,
) -> Result<TlsSetup, NetError> {
    if certs.is_empty() {
        let (cert, key) = self_signed(hosts, data_dir)?;
        let served = load_pair(&cert, &key)?;
        return TlsSetup::from_served(vec![served], Some(cert));
    }
    let mut served = Vec::with_capacity(certs.len());
    for c in certs {
        served.push(load_pair(&c.cert, &c.key)?);
    }
    let setup = TlsSetup::from_served(served, None)?;
    for host in hosts {
        if !setup.resolver.covers(host) {
            warn!(
                "no configured certificate covers host {host}; clients asking for it get {} \
                 and will reject it",
                certs[0].cert.display()
            );
        }
    }
    Ok(setup)
}

/// One loadable certificate with what the resolver needs to know about it.
#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
    end_point: Option<Vec<u8>>,
}

impl Served {
    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Served, NetError> {
        let Some(leaf) = chain.first() else {
            return Err(NetError::Cert {
                path: cert_path.to_owned(),
                reason: "no certificate in the file".into(),
            });
        };
        let names = der::dns_names(leaf);
        let end_point = tls_server_end_point(leaf);
        let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| NetError::Cert {
            path: key_path.to_owned(),
            reason: format!("unusable key or key not matching the certificate: {e}"),
        })?;
        Ok(Served {
            key: Arc::new(key),
            names,
            end_point,
        })
    }
}

fn cert_err(path: &Path, e: impl std::fmt::Display) -> NetError {
    NetError::Cert {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn load_pair(cert: &Path, key: &Path) -> Result<Served, NetError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(cert, e))?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| cert_err(key, e))?;
    let served = Served::new(chain, private, cert, key)?;
    debug!(cert = %cert.display(), names = ?served.names, "loaded certificate");
    Ok(served)
}

/// `tls-server-end-point` (RFC 5929 §4.1): the hash of the DER certificate with the hash of its
/// signature algorithm, SHA-256 for MD5/SHA-1; undefined for hash-less signatures.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    match der::end_point_hash(cert_der) {
        EndPointHash::Sha256 => Some(sha2::Sha256::digest(cert_der).to_vec()),
        EndPointHash::Sha384 => Some(sha2::Sha384::digest(cert_der).to_vec()),
        EndPointHash::Sha512 => Some(sha2::Sha512::digest(cert_der).to_vec()),
        EndPointHash::Undefined => None,
    }
}

/// RFC 9266 §2: label and length of the `tls-exporter` channel binding.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
const EXPORTER_LEN: usize = 32;

/// The SNI name and channel bindings of an established server connection.
pub(crate) fn session_info(
    conn: &rustls::ServerConnection,
    setup: &TlsSetup,
) -> (Option<String>, ChannelBindings) {
    let sni = conn.server_name().map(str::to_owned);
    // RFC 9266 §3: tls-exporter is defined for TLS 1.3 only (under TLS 1.2 without extended
    // master secret it would not be unique to the connection).
    let tls_exporter = if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
        conn.export_keying_material(vec![0u8; EXPORTER_LEN], EXPORTER_LABEL, None)
            .ok()
    } else {
        None
    };
    // The resolver picks by SNI alone, so the same pick names the certificate it served.
    let tls_server_end_point = setup.server_end_point(sni.as_deref());
    (
        sni,
        ChannelBindings {
            tls_exporter,
            tls_server_end_point,
        },
    )
}

/// Picks a certificate by SNI: exact name, then a wildcard for the parent, then the first.
#[derive(Debug)]
struct CertResolver {
    certs: Vec<Served>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl CertResolver {
    fn new(certs: Vec<Served>) -> CertResolver {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, c) in certs.iter().enumerate() {
            for name in &c.names {
                // The first configured certificate naming a host wins.
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        CertResolver {
            certs,
            exact,
            wildcard,
        }
    }

    fn matching(&self, name: &str) -> Option<usize> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&name) {
            return Some(i);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }

    fn covers(&self, name: &str) -> bool {
        self.matching(name).is_some()
    }

    fn pick(&self, sni: Option<&str>) -> Option<usize> {
        if self.certs.is_empty() {
            return None;
        }
        Some(sni.and_then(|n| self.matching(n)).unwrap_or(0))
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = self.pick(hello.server_name())?;
        self.certs.get(index).map(|c| c.key.clone())
    }
}

/// The names a self-signed certificate for `hosts` carries: each host and `*.host` (for
/// components and MUC subdomains); IP literals as they are.
fn self_signed_names(hosts: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    for host in hosts {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() || names.contains(&host) {
            continue;
        }
        let is_ip = host.parse::<IpAddr>().is_ok();
        names.push(host.clone());
        if !is_ip {
            names.push(format!("*.{host}"));
        }
    }
    if names.is_empty() {
        names.push("localhost".into());
    }
    names
}

/// Returns the self-signed certificate and key under `data_dir/tls/`, generating them when
/// absent or made for another host list.
fn self_signed(hosts: &[String], data_dir: &Path) -> Result<(PathBuf, PathBuf), NetError> {
    let dir = data_dir.join("tls");
    let cert_path = dir.join("selfsigned.pem");
    let key_path = dir.join("selfsigned.key");
    let names = self_signed_names(hosts);
    let wanted: BTreeSet<String> = names
        .iter()
        .filter(|n| n.parse::<IpAddr>().is_err())
        .cloned()
        .collect();

    if cert_path.exists() && key_path.exists() {
        let current = CertificateDer::pem_file_iter(&cert_path)
            .ok()
            .and_then(|mut certs| certs.next())
            .and_then(Result::ok)
            .map(|der| der::dns_names(&der).into_iter().collect::<BTreeSet<_>>());
        match current {
            Some(current) if current == wanted => {
                debug!(path = %cert_path.display(), "reusing the self-signed certificate");
                return Ok((cert_path, key_path));
            }
            Some(_) => info!(
                "the host list changed; regenerating the self-signed certificate {}",
                cert_path.display()
            ),
            None => info!(
                "cannot read {}; regenerating the self-signed certificate",
                cert_path.display()
            ),
        }
    }

    let mut params = rcgen::CertificateParams::new(names.clone())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, names[0].clone());
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;

    fs::create_dir_all(&dir).map_err(|source| NetError::File {
        path: dir.clone(),
        source,
    })?;
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    warn!(
        "generated a self-signed TLS certificate {} for {}; clients will warn about it until a \
         real certificate is configured (configure [[tls.certs]] cert/key)",
        cert_path.display(),
        names.join(", ")
    );
    Ok((cert_path, key_path))
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key; the
/// mode is set at creation so the key is never readable by others, even briefly.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), NetError> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = opts.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|source| NetError::File {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "starling-net-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn generates_reuses_and_regenerates_the_self_signed_certificate() {
        let dir = temp_dir("selfsigned");
        let hosts = vec!["example.com".to_string()];
        let setup = build_tls(&hosts, &[], &dir).expect("first");
        let cert = dir.join("tls/selfsigned.pem");
        let key = dir.join("tls/selfsigned.key");
        assert_eq!(setup.self_signed_path(), Some(cert.as_path()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let first = fs::read(&cert).expect("cert");
        let der = CertificateDer::from_pem_slice(&first).expect("pem");
        assert_eq!(der::dns_names(&der), vec!["example.com", "*.example.com"]);
        assert!(setup.server_end_point(Some("example.com")).is_some());

        build_tls(&hosts, &[], &dir).expect("second");
        assert_eq!(fs::read(&cert).expect("cert"), first, "reused");

        let more = vec!["example.com".to_string(), "example.org".to_string()];
        build_tls(&more, &[], &dir).expect("third");
        let third = fs::read(&cert).expect("cert");
        assert_ne!(third, first, "regenerated");
        let der = CertificateDer::from_pem_slice(&third).expect("pem");
        assert!(der::dns_names(&der).contains(&"*.example.org".to_string()));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn resolver_prefers_exact_then_wildcard_then_default() {
        let dir = temp_dir("resolver");
        let mut configs = Vec::new();
        for (i, names) in [
            vec!["default.test"],
            vec!["*.example.com"],
            vec!["chat.example.com"],
        ]
        .into_iter()
        .enumerate()
        {
            let key = rcgen::KeyPair::generate().expect("key");
            let names: Vec<String> = names.into_iter().map(String::from).collect();
            let cert = rcgen::CertificateParams::new(names)
                .expect("params")
                .self_signed(&key)
                .expect("cert");
            let c = dir.join(format!("{i}.pem"));
            let k = dir.join(format!("{i}.key"));
            fs::write(&c, cert.pem()).expect("write");
            fs::write(&k, key.serialize_pem()).expect("write");
            configs.push(CertConfig { cert: c, key: k });
        }
        let setup = build_tls(&["example.com".into()], &configs, &dir).expect("setup");
        let r = &setup.resolver;
        assert_eq!(r.pick(Some("chat.example.com")), Some(2));
        assert_eq!(r.pick(Some("CHAT.example.com.")), Some(2));
        assert_eq!(r.pick(Some("muc.example.com")), Some(1));
        assert_eq!(r.pick(Some("a.b.example.com")), Some(0));
        assert_eq!(r.pick(Some("example.com")), Some(0));
        assert_eq!(r.pick(None), Some(0));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = temp_dir("mismatch");
        let k1 = rcgen::KeyPair::generate().expect("key");
        let k2 = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_string()])
            .expect("params")
            .self_signed(&k1)
            .expect("cert");
        let c = dir.join("a.pem");
        let k = dir.join("a.key");
        fs::write(&c, cert.pem()).expect("write");
        fs::write(&k, k2.serialize_pem()).expect("write");
        let err = build_tls(&[], &[CertConfig { cert: c, key: k }], &dir).expect_err("mismatch");
        assert!(matches!(err, NetError::Cert { .. }), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }
}
