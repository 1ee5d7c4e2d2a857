//! Certificates of other servers (RFC 6120 §13.7.2, RFC 6125 §6 DNS-ID and SRV-ID, RFC 6120
//! §13.7.1.4 XmppAddr, RFC 7590 §3.2): the
//! trusted roots (system store plus `s2s.ca_file`), TLS verifiers that accept any chain during
//! the handshake while still checking its signatures, so a stream can fall back to dialback
//! (XEP-0220) when the certificate is not good enough, and the PKIX + name check made
//! afterwards for the domain a stream is about.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::TrustAnchor;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tracing::{debug, warn};

use crate::S2sError;

/// Why a certificate does not authenticate a domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("no certificate presented")]
    Missing,
    #[error("certificate not valid for {domain} (names: {})", names.join(", "))]
    WrongName { domain: String, names: Vec<String> },
    #[error("certificate for {domain} not trusted ({reason})")]
    Untrusted { domain: String, reason: String },
}

/// The trust anchors and the crypto provider of federation.
pub struct Pki {
    anchors: Vec<TrustAnchor<'static>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pki({} anchors)", self.anchors.len())
    }
}

impl Pki {
    /// The system roots, plus every certificate in `ca_file` when it is not empty.
    pub fn load(ca_file: &str) -> Result<Pki, S2sError> {
        let mut anchors = Vec::new();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            debug!("system certificate store: {e}");
        }
        for der in &native.certs {
            if let Ok(a) = webpki::anchor_from_trusted_cert(der) {
                anchors.push(a.to_owned());
            }
        }
        if anchors.is_empty() {
            warn!("no system CA certificates found; only s2s.ca_file is trusted for federation");
        }
        if !ca_file.is_empty() {
            let certs = CertificateDer::pem_file_iter(ca_file)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| S2sError::Config(format!("s2s.ca_file {ca_file}: {e}")))?;
            if certs.is_empty() {
                return Err(S2sError::Config(format!(
                    "s2s.ca_file {ca_file}: no certificate in it"
                )));
            }
            for der in &certs {
                let a = webpki::anchor_from_trusted_cert(der).map_err(|e| {
                    S2sError::Config(format!("s2s.ca_file {ca_file}: unusable CA: {e:?}"))
                })?;
                anchors.push(a.to_owned());
            }
        }
        Ok(Pki {
            anchors,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// Checks that `chain` (leaf first) is a valid certificate for `domain`: the name
    /// (subjectAltName DNS-ID with one-level wildcards, RFC 6125 §6.4; or an XmppAddr or
    /// SRV-ID, see [`other_name_matches`]), then the path to a trusted
    /// root with the serverAuth or clientAuth purpose (a server's certificate is also its
    /// client certificate).
    pub fn verify(&self, chain: &[CertificateDer<'_>], domain: &str) -> Result<(), CertError> {
        let Some(leaf) = chain.first() else {
            return Err(CertError::Missing);
        };
        let untrusted = |reason: String| CertError::Untrusted {
            domain: domain.to_owned(),
            reason,
        };
        let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| untrusted(format!("{e:?}")))?;
        let dns_ok = ServerName::try_from(domain)
            .ok()
            .is_some_and(|n| ee.verify_is_valid_for_subject_name(&n).is_ok());
        let other_ok = !dns_ok && other_name_matches(leaf, domain);
        let wrong_name = || {
            let mut names = starling_net::tls::cert_dns_names(leaf);
            names.extend(starling_net::tls::cert_xmpp_addrs(leaf));
            names.extend(starling_net::tls::cert_srv_ids(leaf));
            CertError::WrongName {
                domain: domain.to_owned(),
                names,
            }
        };
        if !dns_ok && !other_ok {
            return Err(wrong_name());
        }
        let algs = self.provider.signature_verification_algorithms.all;
        let now = UnixTime::now();
        let path =
            |usage| ee.verify_for_usage(algs, &self.anchors, &chain[1..], now, usage, None, None);
        let verified = path(webpki::KeyUsage::server_auth())
            .or_else(|_| path(webpki::KeyUsage::client_auth()))
            .map_err(|e| untrusted(format!("{e:?}")))?;
        // rustls-webpki enforces nameConstraints only for DNS, IP, URI and directory names, not
        // for otherName (XmppAddr, SRV-ID). RFC 6125 §6 leaves constraint checking to PKIX and
        // RFC 7590 §3.2 / RFC 6120 §13.7.1.4 add these identities on top of it; so that a
        // CA constrained to other domains cannot vouch for ours through an XmppAddr or an
        // SRV-ID, those count only when no certificate of the verified path (the trust
        // anchor and the leaf included) carries nameConstraints. Else only DNS-IDs count.
        if other_ok {
            let constrained = verified.anchor().name_constraints.is_some()
                || starling_net::tls::cert_has_name_constraints(leaf)
                || verified
                    .intermediate_certificates()
                    .any(|c| starling_net::tls::cert_has_name_constraints(&c.der()));
            if constrained {
                debug!("{domain}: XmppAddr/SRV-ID ignored under a name-constrained CA");
                return Err(wrong_name());
            }
        }
        Ok(())
    }

    /// The TLS client configuration for streams we open: any server certificate is accepted
    /// by the handshake (checked afterwards with [`Pki::verify`]); `ours` is presented as the
    /// client certificate so the peer can offer SASL EXTERNAL (XEP-0178).
    pub fn client_config(
        &self,
        ours: Option<Arc<CertifiedKey>>,
        alpn: Option<&[u8]>,
    ) -> Result<Arc<rustls::ClientConfig>, S2sError> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| S2sError::Config(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(self.provider.clone())))
            .with_client_cert_resolver(Arc::new(OurCert(ours)));
        if let Some(p) = alpn {
            config.alpn_protocols = vec![p.to_vec()];
        }
        Ok(Arc::new(config))
    }

    /// The verifier of s2s listeners: client certificates requested, never required, any
    /// accepted by the handshake (checked for the claimed domain afterwards).
    pub fn client_cert_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::new(AnyCert(self.provider.clone()))
    }
}

/// RFC 6120 §13.7.1.4 and RFC 7590 §3.2 (RFC 6125 §6.5.1): an XmppAddr equal to the domain,
/// or an SRV-ID `_xmpp-server.<domain>` (or `_xmpps-server.<domain>`, XEP-0368); ASCII
/// case-insensitive, no wildcards.
fn other_name_matches(leaf: &CertificateDer<'_>, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    let xmpp = starling_net::tls::cert_xmpp_addrs(leaf)
        .iter()
        .any(|a| a.eq_ignore_ascii_case(domain));
    xmpp || starling_net::tls::cert_srv_ids(leaf).iter().any(|id| {
        ["_xmpp-server.", "_xmpps-server."].iter().any(|service| {
            id.len() == service.len() + domain.len()
                && id.is_char_boundary(service.len())
                && id[..service.len()].eq_ignore_ascii_case(service)
                && id[service.len()..].eq_ignore_ascii_case(domain)
        })
    })
}

/// Accepts any chain whose handshake signatures verify; trust is decided after the handshake.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl AnyCert {
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for AnyCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// Presents our certificate for the local domain of the stream, whatever the server hints.
#[derive(Debug)]
struct OurCert(Option<Arc<CertifiedKey>>);

impl ResolvesClientCert for OurCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Ca {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    fn new_ca() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn leaf(ca: &Ca, names: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.signed_by(&key, &ca.cert, &ca.key).unwrap().der().clone()
    }

    /// A leaf whose only names are otherNames: XmppAddr (UTF8String, via rcgen) or SRV-ID
    /// (IA5String, RFC 4985, in a hand-built subjectAltName).
    fn other_name_leaf(
        ca: &Ca,
        xmpp_addr: Option<&str>,
        srv_id: Option<&str>,
    ) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        if let Some(a) = xmpp_addr {
            p.subject_alt_names.push(rcgen::SanType::OtherName((
                vec![1, 3, 6, 1, 5, 5, 7, 8, 5],
                rcgen::OtherNameValue::Utf8String(a.into()),
            )));
        }
        if let Some(id) = srv_id {
            // GeneralNames { [0] { OID 1.3.6.1.5.5.7.8.7, [0] { IA5String id } } }
            let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x07];
            let ia5 = [&[0x16, id.len() as u8][..], id.as_bytes()].concat();
            let explicit = [&[0xa0, ia5.len() as u8][..], &ia5].concat();
            let other = [
                &[0xa0, (oid.len() + explicit.len()) as u8][..],
                &oid,
                &explicit,
            ]
            .concat();
            let names = [&[0x30, other.len() as u8][..], &other].concat();
            p.custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[2, 5, 29, 17],
                    names,
                ));
        }
        p.signed_by(&key, &ca.cert, &ca.key).unwrap().der().clone()
    }

    #[test]
    fn xmpp_addr_and_srv_id_names() {
        let ca = new_ca();
        let pki = pki_trusting(&ca);
        let xmpp = other_name_leaf(&ca, Some("A.test"), None);
        assert_eq!(pki.verify(std::slice::from_ref(&xmpp), "a.test"), Ok(()));
        let e = pki.verify(&[xmpp], "b.test").unwrap_err();
        assert_eq!(
            e.to_string(),
            "certificate not valid for b.test (names: A.test)"
        );
        let srv = other_name_leaf(&ca, None, Some("_xmpp-server.a.test"));
        assert_eq!(pki.verify(std::slice::from_ref(&srv), "a.test"), Ok(()));
        assert!(pki.verify(std::slice::from_ref(&srv), "test").is_err());
        assert!(pki.verify(&[srv], "xa.test").is_err());
        let direct = other_name_leaf(&ca, None, Some("_xmpps-server.a.test"));
        assert_eq!(pki.verify(&[direct], "a.test"), Ok(()));
        // Another service's SRV-ID does not name an XMPP server.
        let other = other_name_leaf(&ca, None, Some("_xmpp-client.a.test"));
        assert!(matches!(
            pki.verify(&[other], "a.test"),
            Err(CertError::WrongName { .. })
        ));
        // The name alone is not enough: the chain must still be trusted.
        let untrusted = other_name_leaf(&new_ca(), Some("a.test"), None);
        assert!(matches!(
            pki.verify(&[untrusted], "a.test"),
            Err(CertError::Untrusted { .. })
        ));
    }

    fn constrained_ca(issuer: Option<&Ca>) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("ok.test".into())],
            excluded_subtrees: Vec::new(),
        });
        let cert = match issuer {
            Some(i) => p.signed_by(&key, &i.cert, &i.key).unwrap(),
            None => p.self_signed(&key).unwrap(),
        };
        Ca { cert, key }
    }

    /// rustls-webpki does not apply nameConstraints to otherNames: an XmppAddr or SRV-ID
    /// under a constrained anchor or intermediate must not authenticate a domain.
    #[test]
    fn other_names_ignored_under_name_constraints() {
        let anchor = constrained_ca(None);
        let pki = pki_trusting(&anchor);
        let xmpp = other_name_leaf(&anchor, Some("evil.test"), None);
        assert!(matches!(
            pki.verify(&[xmpp], "evil.test"),
            Err(CertError::WrongName { .. })
        ));
        let srv = other_name_leaf(&anchor, None, Some("_xmpp-server.ok.test"));
        assert!(matches!(
            pki.verify(&[srv], "ok.test"),
            Err(CertError::WrongName { .. })
        ));
        // DNS-IDs are constrained by webpki and still work.
        assert_eq!(
            pki.verify(&[leaf(&anchor, &["a.ok.test"])], "a.ok.test"),
            Ok(())
        );

        let root = new_ca();
        let pki = pki_trusting(&root);
        let inter = constrained_ca(Some(&root));
        let xmpp = other_name_leaf(&inter, Some("evil.test"), None);
        let chain = [xmpp, inter.cert.der().clone()];
        assert!(matches!(
            pki.verify(&chain, "evil.test"),
            Err(CertError::WrongName { .. })
        ));
        // Without constraints in the path the XmppAddr counts.
        let free = new_ca_signed_by(&root);
        let xmpp = other_name_leaf(&free, Some("evil.test"), None);
        assert_eq!(
            pki.verify(&[xmpp, free.cert.der().clone()], "evil.test"),
            Ok(())
        );
    }

    fn new_ca_signed_by(root: &Ca) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = p.signed_by(&key, &root.cert, &root.key).unwrap();
        Ca { cert, key }
    }

    fn pki_trusting(ca: &Ca) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "s2s-pki-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        let pki = Pki::load(path.to_str().unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        pki
    }

    #[test]
    fn verifies_name_and_path() {
        let ours = new_ca();
        let pki = pki_trusting(&ours);
        let good = leaf(&ours, &["a.test"]);
        assert_eq!(pki.verify(std::slice::from_ref(&good), "a.test"), Ok(()));
        assert_eq!(
            pki.verify(&[leaf(&ours, &["*.a.test"])], "conference.a.test"),
            Ok(())
        );
        let e = pki.verify(&[good], "b.test").unwrap_err();
        assert_eq!(
            e.to_string(),
            "certificate not valid for b.test (names: a.test)"
        );
        let other = new_ca();
        let e = pki
            .verify(&[leaf(&other, &["a.test"])], "a.test")
            .unwrap_err();
        assert!(matches!(e, CertError::Untrusted { .. }), "{e}");
        assert_eq!(pki.verify(&[], "a.test"), Err(CertError::Missing));
    }
}
