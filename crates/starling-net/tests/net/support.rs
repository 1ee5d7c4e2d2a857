//! Shared test fixtures: an echoing stream handler, TLS material, and client helpers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use starling_core::transport::Transport;
use starling_net::{ConnLimits, StreamHandler, TcpTransport, TlsSetup, WsTransport};
use starling_xml::{ns, Element, StreamEvent};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const STREAM_HEADER: &str = "<?xml version='1.0'?><stream:stream to='localhost' \
    version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// For each stream: answers the header with a header and features (offering STARTTLS while
/// it can), performs STARTTLS, and echoes stanzas with what the transport knows as attributes.
pub struct Echo;

impl StreamHandler for Echo {
    fn tcp(&self, t: TcpTransport) {
        tokio::spawn(echo(t));
    }
    fn ws(&self, t: WsTransport) {
        tokio::spawn(echo(t));
    }
}

pub async fn echo<T: Transport>(mut t: T) {
    loop {
        let event = match t.recv().await {
            Ok(Some(event)) => event,
            Ok(None) | Err(_) => return,
        };
        match event {
            StreamEvent::Open { .. } => {
                t.send_open(&[("from", "localhost"), ("id", "s1"), ("version", "1.0")]);
                let mut features = Element::new("features", ns::STREAM);
                if t.can_starttls() {
                    features.append_child(Element::new("starttls", NS_TLS));
                }
                t.send_element(&features);
            }
            StreamEvent::Stanza(el) if el.is("starttls", NS_TLS) => {
                t.send_element(&Element::new("proceed", NS_TLS));
                if t.flush().await.is_err() || t.starttls().await.is_err() {
                    return;
                }
                continue;
            }
            StreamEvent::Stanza(mut el) => {
                let cb = t.channel_bindings();
                el.set_attr("secure", t.is_secure().to_string());
                el.set_attr(
                    "exporter",
                    cb.tls_exporter.map_or(0, |v| v.len()).to_string(),
                );
                el.set_attr(
                    "endpoint",
                    cb.tls_server_end_point.map_or(0, |v| v.len()).to_string(),
                );
                el.set_attr("sni", t.sni().unwrap_or_default());
                el.set_attr("kind", t.kind());
                t.send_element(&el);
                t.send_keepalive();
            }
            StreamEvent::Close => {
                t.send_close();
                let _ = t.flush().await;
                return;
            }
        }
        if t.flush().await.is_err() {
            return;
        }
        t.shrink();
    }
}

pub fn handler() -> Arc<dyn StreamHandler> {
    Arc::new(Echo)
}

pub fn limits() -> ConnLimits {
    ConnLimits {
        max_connections: 100,
        max_stanza_bytes: 64 * 1024,
        tls_handshake_timeout: Duration::from_secs(5),
        ..ConnLimits::default()
    }
}

pub fn shutdown() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A certificate (PEM, DER) and key (PEM) for these names.
pub fn cert(names: &[&str]) -> (String, CertificateDer<'static>, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params")
            .self_signed(&key)
            .expect("cert");
    (cert.pem(), cert.der().clone(), key.serialize_pem())
}

pub fn tls_setup() -> Arc<TlsSetup> {
    let (cert, _, key) = cert(&["localhost", "example.com"]);
    Arc::new(TlsSetup::from_pem(&[(cert.as_bytes(), key.as_bytes())]).expect("tls"))
}

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

/// A client configuration trusting any certificate.
pub fn client_config(alpn: &[&[u8]], tls12_only: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub fn server_name(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).expect("server name")
}

/// Reads until `needle` appears in what was read since the last call; returns all of it.
pub async fn read_until<S: AsyncRead + Unpin>(s: &mut S, needle: &str) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if String::from_utf8_lossy(&buf).contains(needle) {
            return String::from_utf8_lossy(&buf).into_owned();
        }
        let read = tokio::time::timeout_at(deadline, s.read(&mut chunk)).await;
        match read {
            Ok(Ok(0)) => panic!(
                "connection closed before {needle:?}; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("read error before {needle:?}: {e}"),
            Err(_) => panic!(
                "timed out waiting for {needle:?}; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
}
