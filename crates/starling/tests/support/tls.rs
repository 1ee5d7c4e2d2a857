//! TLS for the test client: a rustls client trusting any certificate (the server's is
//! self-signed), and the channel-binding data seen from the client side (RFC 5929 §4
//! `tls-server-end-point`, RFC 9266 `tls-exporter`), computed independently of the server.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::Digest;

/// ALPN protocol of XEP-0368 §4.
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration trusting any certificate, offering these ALPN protocols.
pub fn client_config(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub fn server_name(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).expect("server name")
}

/// What the client learned from a finished handshake.
#[derive(Clone, Debug, Default)]
pub struct TlsInfo {
    /// RFC 9266: 32 bytes exported with label "EXPORTER-Channel-Binding", no context
    /// (TLS 1.3 only).
    pub exporter: Option<Vec<u8>>,
    /// RFC 5929 §4.1: hash of the server's leaf certificate; SHA-256 for the ECDSA-SHA256
    /// certificate the server generates.
    pub end_point: Option<Vec<u8>>,
    pub alpn: Option<Vec<u8>>,
    pub tls13: bool,
}

pub fn info(conn: &rustls::ClientConnection) -> TlsInfo {
    let tls13 = conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
    let exporter = if tls13 {
        conn.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
    } else {
        None
    };
    let end_point = conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|leaf| sha2::Sha256::digest(leaf.as_ref()).to_vec());
    TlsInfo {
        exporter,
        end_point,
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        tls13,
    }
}
