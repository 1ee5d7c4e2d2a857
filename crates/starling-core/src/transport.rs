//! The seam between transports (TCP+STARTTLS, Direct TLS, WebSocket, BOSH) and stream logic:
//! a transport only moves stream items, so c2s code never sees a socket (ARCHITECTURE.md).

use std::future::Future;
use std::net::SocketAddr;

use starling_proto::sasl::ChannelBindings;
use starling_xml::{Element, StreamEvent, XmlError};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Xml(#[from] XmlError),
    #[error("tls: {0}")]
    Tls(String),
    #[error("framing: {0}")]
    Framing(String),
}

/// One client-facing stream transport.
///
/// Writes are buffered by `send_*` and reach the peer on `flush`, so a session can batch
/// everything it has for one wake-up into one write (and one TLS record).
pub trait Transport: Send + 'static {
    /// Short name for logs and admin output: "tcp", "tls", "websocket".
    fn kind(&self) -> &'static str;

    /// The next item from the peer. `Ok(None)`: the peer closed the connection.
    /// WebSocket maps `<open/>` to `StreamEvent::Open`, `<close/>` to `StreamEvent::Close`.
    fn recv(&mut self) -> impl Future<Output = Result<Option<StreamEvent>, TransportError>> + Send;

    /// Queues our stream header with these attributes (`from`, `id`, `version`, `xml:lang`).
    /// TCP writes `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream=…>`,
    /// WebSocket writes `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' …/>` (RFC 7395 §3.4).
    fn send_open(&mut self, attrs: &[(&str, &str)]);

    /// Queues one top-level element. Elements in the streams namespace are written with the
    /// `stream:` prefix (`<stream:features>`, `<stream:error>`); others in the content
    /// namespace (`jabber:client`).
    fn send_element(&mut self, element: &Element);

    /// Queues a whitespace keepalive (RFC 6120 §4.6.1) where the framing has one.
    fn send_keepalive(&mut self);

    /// Queues the stream close (`</stream:stream>` or `<close/>`).
    fn send_close(&mut self);

    /// Writes everything queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Bytes queued and not yet flushed (for the slow-reader policy).
    fn pending_bytes(&self) -> usize;

    /// True when STARTTLS can be offered (plain TCP with a TLS configuration).
    fn can_starttls(&self) -> bool;

    /// Upgrades to TLS after `<proceed/>` was flushed; resets the parser (RFC 6120 §5.4.3.3).
    fn starttls(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Forgets the parser state for a stream restart after SASL success (RFC 6120 §6.4.6).
    fn reset(&mut self);

    /// True when the connection is encrypted (STARTTLS done, Direct TLS, or WebSocket over TLS
    /// or loopback, which RFC 7395 §3 leaves to the HTTP layer).
    fn is_secure(&self) -> bool;

    /// Channel-binding data of the TLS layer, for SCRAM-*-PLUS.
    fn channel_bindings(&self) -> ChannelBindings;

    /// The SNI name the client asked for, if any.
    fn sni(&self) -> Option<String>;

    fn peer_addr(&self) -> Option<SocketAddr>;

    /// Releases buffers while the connection is idle (idle sessions must be cheap).
    fn shrink(&mut self) {}
}
