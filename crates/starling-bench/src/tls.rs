//! TLS client configuration: rustls with the `ring` provider and a verifier that accepts ANY
//! certificate, because the servers under test are loopback test servers with self-signed
//! certificates. Handshake signatures are not checked either (nothing is trusted anyway, and
//! the work would be the load tool's, not the server's). Never point this at a server whose
//! identity matters.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::error::BenchError;

/// ALPN protocol of Direct TLS (XEP-0368 §4).
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

#[derive(Debug)]
struct AcceptAny(Vec<SignatureScheme>);

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
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// A client configuration trusting any certificate. `alpn`: protocols to offer (Direct TLS
/// offers `xmpp-client`). Session resumption is off: each simulated client is a new client,
/// so every login pays a full handshake on the server, as thousands of distinct devices do.
pub fn client_config(alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, BenchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| BenchError::Setup(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(schemes)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The SNI name for a domain.
pub fn server_name(domain: &str) -> Result<ServerName<'static>, BenchError> {
    ServerName::try_from(domain.to_owned())
        .map_err(|_| BenchError::Usage(format!("--domain: {domain:?} is not a valid TLS name")))
}
