//! The TCP transport: an XML stream over a socket (RFC 6120 §4), upgraded in place by STARTTLS
//! (RFC 6120 §5.4.3.3) or TLS from the first byte (Direct TLS, XEP-0368), with the channel
//! bindings of the TLS layer (RFC 5929 §4 `tls-server-end-point`, RFC 9266 `tls-exporter`).
//! Accepted streams are the TLS server; streams we open to other servers (s2s) the TLS client.

use std::cell::RefCell;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rustls::ProtocolVersion;
use rustls_pki_types::{CertificateDer, ServerName};
use starling_core::transport::{Transport, TransportError};
use starling_proto::dialback::NS_DIALBACK;
use starling_proto::sasl::ChannelBindings;
use starling_xml::{escape_attr, ns, Element, Limits, StreamEvent, StreamParser};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tls::TlsSetup;

/// Bytes read from the socket at a time, into the worker thread's scratch buffer.
const READ_CHUNK: usize = 16 * 1024;
/// What the write buffer starts with when a stanza is queued (it grows for larger ones).
const WRITE_INITIAL_CAPACITY: usize = 1024;

thread_local! {
    /// One read buffer per runtime thread, borrowed only within one poll: an idle connection
    /// holds no read buffer of its own (the bytes go straight to its parser, which keeps only
    /// what it has not parsed yet).
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_CHUNK].into_boxed_slice());
}

/// How a TCP transport is set up.
#[derive(Clone, Debug)]
pub struct TcpOptions {
    /// The stream's content namespace: `jabber:client` for c2s, `jabber:server` for s2s.
    pub content_ns: &'static str,
    /// Limits of the XML parser.
    pub limits: Limits,
    /// How long a TLS handshake (Direct TLS or after `<proceed/>`) may take.
    pub tls_handshake_timeout: Duration,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            content_ns: ns::CLIENT,
            limits: Limits::default(),
            tls_handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// The TLS client side of a stream we initiate (server-to-server).
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// SNI and the name the handshake is for (the peer's domain).
    pub server_name: ServerName<'static>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Between taking the socket for a handshake and getting it back (or after it failed).
    Gone,
}

/// An XMPP stream over TCP, plain or TLS.
pub struct TcpTransport {
    stream: Stream,
    tls: Option<Arc<TlsSetup>>,
    /// Set on streams we initiate: STARTTLS then runs the client handshake.
    client: Option<ClientTls>,
    opts: TcpOptions,
    parser: StreamParser,
    /// Queued output; released after each flush, so an idle connection holds none.
    write_buf: String,
    /// Bytes of `write_buf` already written (keeps `flush` cancel-safe).
    written: usize,
    direct: bool,
    /// Our closing tag is queued: the next flush ends the connection cleanly.
    closing: bool,
    peer: Option<SocketAddr>,
    sni: Option<String>,
    bindings: ChannelBindings,
    /// Held for the connection's lifetime: counts it against the connection limit.
    _permit: Option<OwnedSemaphorePermit>,
}

impl TcpTransport {
    /// A plain TCP stream; STARTTLS is offered when `tls` is given.
    pub fn new(stream: TcpStream, tls: Option<Arc<TlsSetup>>, opts: TcpOptions) -> Self {
        let peer = stream.peer_addr().ok();
        let _ = stream.set_nodelay(true);
        TcpTransport {
            parser: StreamParser::new(opts.limits.clone()),
            stream: Stream::Plain(stream),
            tls,
            client: None,
            opts,
            write_buf: String::new(),
            written: 0,
            direct: false,
            closing: false,
            peer,
            sni: None,
            bindings: ChannelBindings::default(),
            _permit: None,
        }
    }

    /// Direct TLS (XEP-0368): the TLS handshake happens before any XML, with ALPN
    /// `xmpp-client` offered and a timeout.
    pub async fn accept_direct_tls(
        stream: TcpStream,
        tls: Arc<TlsSetup>,
        opts: TcpOptions,
    ) -> Result<Self, TransportError> {
        let config = tls.direct.clone();
        let mut t = TcpTransport::new(stream, Some(tls), opts);
        t.direct = true;
        t.handshake(config).await?;
        Ok(t)
    }

    /// A stream we initiate over a connected socket; STARTTLS, when the peer offers it,
    /// runs the TLS client handshake with `client`.
    pub fn connect(stream: TcpStream, client: ClientTls, opts: TcpOptions) -> Self {
        let mut t = TcpTransport::new(stream, None, opts);
        t.client = Some(client);
        t
    }

    /// A stream we initiate with TLS from the first byte (XEP-0368); the ALPN protocols are
    /// the client configuration's.
    pub async fn connect_direct_tls(
        stream: TcpStream,
        client: ClientTls,
        opts: TcpOptions,
    ) -> Result<Self, TransportError> {
        let mut t = TcpTransport::connect(stream, client, opts);
        t.direct = true;
        t.client_handshake().await?;
        Ok(t)
    }

    async fn client_handshake(&mut self) -> Result<(), TransportError> {
        let Some(client) = self.client.clone() else {
            return Err(TransportError::Tls("not a client stream".into()));
        };
        let Stream::Plain(socket) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(TransportError::Tls("TLS is already active".into()));
        };
        let connect = TlsConnector::from(client.config).connect(client.server_name, socket);
        let tls = match tokio::time::timeout(self.opts.tls_handshake_timeout, connect).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(TransportError::Tls(format!("handshake failed: {e}"))),
            Err(_) => return Err(TransportError::Tls("handshake timed out".into())),
        };
        self.stream = Stream::Client(Box::new(tls));
        Ok(())
    }

    /// The certificate chain the peer presented (a server's, or a client certificate on an
    /// accepted stream), leaf first.
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        let certs = match &self.stream {
            Stream::Tls(tls) => tls.get_ref().1.peer_certificates(),
            Stream::Client(tls) => tls.get_ref().1.peer_certificates(),
            _ => None,
        }?;
        Some(certs.iter().map(|c| c.clone().into_owned()).collect())
    }

    pub(crate) fn hold_permit(&mut self, permit: OwnedSemaphorePermit) {
        self._permit = Some(permit);
    }

    /// Runs the server handshake on the plain socket and records SNI and channel bindings.
    async fn handshake(&mut self, config: Arc<rustls::ServerConfig>) -> Result<(), TransportError> {
        let Stream::Plain(socket) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(TransportError::Tls("TLS is already active".into()));
        };
        let accept = TlsAcceptor::from(config).accept(socket);
        let tls = match tokio::time::timeout(self.opts.tls_handshake_timeout, accept).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(TransportError::Tls(format!("handshake failed: {e}"))),
            Err(_) => return Err(TransportError::Tls("handshake timed out".into())),
        };
        if let Some(setup) = &self.tls {
            let (sni, bindings) = crate::tls::session_info(tls.get_ref().1, setup);
            self.sni = sni;
            self.bindings = bindings;
        }
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// The negotiated ALPN protocol, if any (Direct TLS).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.stream {
            Stream::Tls(tls) => tls.get_ref().1.alpn_protocol(),
            Stream::Client(tls) => tls.get_ref().1.alpn_protocol(),
            _ => None,
        }
    }

    /// The negotiated TLS version, if TLS is active.
    pub fn tls_version(&self) -> Option<ProtocolVersion> {
        match &self.stream {
            Stream::Tls(tls) => tls.get_ref().1.protocol_version(),
            Stream::Client(tls) => tls.get_ref().1.protocol_version(),
            _ => None,
        }
    }

    /// Reads what the socket has into the parser; Ok(0) at the end of the stream.
    /// Cancel-safe: bytes reach the parser in the same poll that read them.
    async fn read_into_parser(&mut self) -> Result<usize, TransportError> {
        let stream = &mut self.stream;
        let parser = &mut self.parser;
        poll_fn(|cx| {
            READ_SCRATCH.with_borrow_mut(|buf| {
                let mut rb = ReadBuf::new(&mut buf[..]);
                let polled = match stream {
                    Stream::Plain(s) => Pin::new(s).poll_read(cx, &mut rb),
                    Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, &mut rb),
                    Stream::Client(s) => Pin::new(&mut **s).poll_read(cx, &mut rb),
                    Stream::Gone => return Poll::Ready(Err(not_connected())),
                };
                match polled {
                    Poll::Ready(Ok(())) => {
                        parser.feed(rb.filled());
                        Poll::Ready(Ok(rb.filled().len()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
                    Poll::Pending => Poll::Pending,
                }
            })
        })
        .await
    }

    /// The write buffer, allocated on first use after a flush released it.
    fn out(&mut self) -> &mut String {
        if self.write_buf.capacity() == 0 {
            self.write_buf.reserve(WRITE_INITIAL_CAPACITY);
        }
        &mut self.write_buf
    }
}

fn not_connected() -> TransportError {
    TransportError::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the connection is closed",
    ))
}

/// The namespace prefixes declared on our stream header besides `stream`, and used for
/// top-level elements in those namespaces, by content namespace.
///
/// COMPAT: XEP-0220 writes dialback elements as `<db:result/>`/`<db:verify/>` with
/// `xmlns:db` declared on the stream header; §2.1 notes the prefix is only conventional but
/// that many servers depend on it. ejabberd 23.01 does: it answers dialback only when written
/// that way and only when the header declares `xmlns:db`. So every `jabber:server` stream
/// declares it and writes dialback elements prefixed (input is accepted in either form).
fn stream_prefixes(content_ns: &str) -> &'static [(&'static str, &'static str)] {
    if content_ns == ns::SERVER {
        &[("db", NS_DIALBACK)]
    } else {
        &[]
    }
}

/// Writes `<?xml version='1.0'?><stream:stream xmlns=… xmlns:stream=… attrs>`, with the
/// declarations of [`stream_prefixes`] (a caller's own declaration of one is not repeated).
pub(crate) fn write_stream_header(out: &mut String, content_ns: &str, attrs: &[(&str, &str)]) {
    out.push_str("<?xml version='1.0'?><stream:stream xmlns='");
    escape_attr(content_ns, out);
    out.push_str("' xmlns:stream='");
    out.push_str(ns::STREAM);
    out.push('\'');
    let prefixes = stream_prefixes(content_ns);
    for (prefix, uri) in prefixes {
        out.push_str(" xmlns:");
        out.push_str(prefix);
        out.push_str("='");
        escape_attr(uri, out);
        out.push('\'');
    }
    for (k, v) in attrs {
        if k.strip_prefix("xmlns:")
            .is_some_and(|p| prefixes.iter().any(|(q, _)| *q == p))
        {
            continue;
        }
        out.push(' ');
        out.push_str(k);
        out.push_str("='");
        escape_attr(v, out);
        out.push('\'');
    }
    out.push('>');
}

/// Writes a top-level element: `stream:`-prefixed in the streams namespace, prefixed with a
/// header-declared prefix of [`stream_prefixes`] (`db:`), else in the content namespace.
pub(crate) fn write_top_level(out: &mut String, content_ns: &str, element: &Element) {
    if element.ns() == ns::STREAM {
        element.write_prefixed(out, "stream", content_ns, false);
    } else if let Some((prefix, _)) = stream_prefixes(content_ns)
        .iter()
        .find(|(_, uri)| *uri == element.ns())
    {
        element.write_prefixed(out, prefix, content_ns, false);
    } else {
        element.write_to(out, content_ns);
    }
}

impl Transport for TcpTransport {
    fn kind(&self) -> &'static str {
        if self.direct {
            "tls"
        } else {
            "tcp"
        }
    }

    /// Cancel-safe: bytes are fed to the parser only in the poll that read them, and no
    /// await separates feeding from parsing.
    async fn recv(&mut self) -> Result<Option<StreamEvent>, TransportError> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(Some(event));
            }
            // Everything read so far is parsed: hold no input buffer while waiting.
            self.parser.release_input();
            if self.read_into_parser().await? == 0 {
                return Ok(None);
            }
        }
    }

    fn send_open(&mut self, attrs: &[(&str, &str)]) {
        write_stream_header(&mut self.write_buf, self.opts.content_ns, attrs);
    }

    fn send_element(&mut self, element: &Element) {
        let content_ns = self.opts.content_ns;
        write_top_level(self.out(), content_ns, element);
    }

    fn send_keepalive(&mut self) {
        self.write_buf.push(' ');
    }

    fn send_close(&mut self) {
        self.write_buf.push_str("</stream:stream>");
        self.closing = true;
    }

    /// Cancel-safe: progress is remembered in `written`, so a retried flush never repeats or
    /// skips bytes.
    async fn flush(&mut self) -> Result<(), TransportError> {
        while self.written < self.write_buf.len() {
            let chunk = &self.write_buf.as_bytes()[self.written..];
            let n = match &mut self.stream {
                Stream::Plain(s) => s.write(chunk).await?,
                Stream::Tls(s) => s.write(chunk).await?,
                Stream::Client(s) => s.write(chunk).await?,
                Stream::Gone => return Err(not_connected()),
            };
            if n == 0 {
                return Err(TransportError::Io(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        match &mut self.stream {
            Stream::Plain(s) => s.flush().await?,
            Stream::Tls(s) => s.flush().await?,
            Stream::Client(s) => s.flush().await?,
            Stream::Gone => return Err(not_connected()),
        }
        self.written = 0;
        // Released, not kept: a connection spends most of its life idle, and allocating
        // the next batch's buffer costs less than holding one per connection.
        self.write_buf = String::new();
        if self.closing {
            // After our closing tag, end TLS with close_notify (RFC 8446 §6.1) and half-close
            // TCP, so the peer can tell a finished stream from a truncated one.
            match &mut self.stream {
                Stream::Plain(s) => s.shutdown().await?,
                Stream::Tls(s) => s.shutdown().await?,
                Stream::Client(s) => s.shutdown().await?,
                Stream::Gone => {}
            }
        }
        Ok(())
    }

    fn pending_bytes(&self) -> usize {
        self.write_buf.len() - self.written
    }

    fn can_starttls(&self) -> bool {
        (self.tls.is_some() || self.client.is_some()) && matches!(self.stream, Stream::Plain(_))
    }

    /// After `<proceed/>` (RFC 6120 §5.4.3.3). Anything the client sent after `<starttls/>`
    /// in plaintext is discarded with the parser, so it cannot be injected into the encrypted
    /// stream (the STARTTLS command-injection class of bugs).
    async fn starttls(&mut self) -> Result<(), TransportError> {
        if self.client.is_some() {
            // We initiated the stream: `<proceed/>` was received, we are the TLS client.
            self.flush().await?;
            self.reset();
            return self.client_handshake().await;
        }
        let Some(config) = self.tls.as_ref().map(|t| t.starttls.clone()) else {
            return Err(TransportError::Tls("TLS is not configured".into()));
        };
        if !matches!(self.stream, Stream::Plain(_)) {
            return Err(TransportError::Tls("TLS is already active".into()));
        }
        self.flush().await?;
        self.reset();
        self.handshake(config).await
    }

    fn reset(&mut self) {
        self.parser = StreamParser::new(self.opts.limits.clone());
    }

    fn is_secure(&self) -> bool {
        matches!(self.stream, Stream::Tls(_) | Stream::Client(_))
    }

    fn channel_bindings(&self) -> ChannelBindings {
        self.bindings.clone()
    }

    fn sni(&self) -> Option<String> {
        self.sni.clone()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    fn shrink(&mut self) {
        self.parser.shrink();
        if self.pending_bytes() == 0 {
            self.write_buf = String::new();
            self.written = 0;
        } else {
            self.write_buf.shrink_to_fit();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod prefix_tests {
    use super::*;

    #[test]
    fn server_streams_declare_and_use_the_dialback_prefix() {
        let mut out = String::new();
        write_stream_header(
            &mut out,
            ns::SERVER,
            &[
                ("from", "a.test"),
                ("xmlns:db", NS_DIALBACK),
                ("version", "1.0"),
            ],
        );
        assert_eq!(
            out,
            "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
             xmlns:stream='http://etherx.jabber.org/streams' \
             xmlns:db='jabber:server:dialback' from='a.test' version='1.0'>"
        );
        let result = Element::new("result", NS_DIALBACK)
            .with_attr("from", "a.test")
            .with_attr("to", "b.test")
            .with_text("k3y");
        let mut out = String::new();
        write_top_level(&mut out, ns::SERVER, &result);
        assert_eq!(out, "<db:result from='a.test' to='b.test'>k3y</db:result>");
        let error = Element::new("result", NS_DIALBACK)
            .with_attr("type", "error")
            .with_child(Element::new("error", ns::SERVER).with_attr("type", "cancel"));
        let mut out = String::new();
        write_top_level(&mut out, ns::SERVER, &error);
        assert_eq!(
            out,
            "<db:result type='error'><error type='cancel'/></db:result>"
        );
    }

    #[test]
    fn client_streams_are_unchanged() {
        let mut out = String::new();
        write_stream_header(&mut out, ns::CLIENT, &[("id", "x")]);
        assert!(!out.contains("xmlns:db"), "{out}");
        let mut out = String::new();
        write_top_level(&mut out, ns::CLIENT, &Element::new("result", NS_DIALBACK));
        assert_eq!(out, "<result xmlns='jabber:server:dialback'/>");
        let mut out = String::new();
        write_top_level(&mut out, ns::CLIENT, &Element::new("features", ns::STREAM));
        assert_eq!(out, "<stream:features/>");
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    /// Idle connections must be cheap: between reads a stream holds no input buffer, and
    /// after a flush no output buffer.
    #[tokio::test]
    async fn idle_transport_holds_no_buffers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback");
        let addr = listener.local_addr().expect("loopback");
        let mut client = TcpStream::connect(addr).await.expect("loopback");
        let (server, _) = listener.accept().await.expect("loopback");
        let mut t = TcpTransport::new(server, None, TcpOptions::default());
        client
            .write_all(
                b"<stream:stream xmlns='jabber:client' \
                  xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\
                  <message to='a@b'><body>hi</body></message><presence",
            )
            .await
            .expect("loopback");
        assert!(matches!(t.recv().await, Ok(Some(StreamEvent::Open { .. }))));
        assert!(matches!(t.recv().await, Ok(Some(StreamEvent::Stanza(_)))));
        // A partial stanza is kept until the rest arrives...
        let rest = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(b"/>").await.expect("loopback");
            client
        };
        let (ev, mut client) = tokio::join!(t.recv(), rest);
        assert!(matches!(ev, Ok(Some(StreamEvent::Stanza(_)))));
        // ...and once everything read is parsed, waiting for more holds no input buffer.
        let waiting = tokio::time::timeout(Duration::from_millis(20), t.recv()).await;
        assert!(waiting.is_err(), "nothing more was sent");
        assert_eq!(t.parser.input_capacity(), 0);
        t.send_element(&Element::new("message", ns::CLIENT));
        assert!(t.write_buf.capacity() > 0);
        t.flush().await.expect("loopback");
        assert_eq!(t.write_buf.capacity(), 0, "flushed output is not kept");
        let mut got = [0u8; 64];
        let n = tokio::io::AsyncReadExt::read(&mut client, &mut got)
            .await
            .expect("loopback");
        assert_eq!(&got[..n], b"<message/>");
    }
}
