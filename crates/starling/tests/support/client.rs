//! A raw XMPP client for protocol tests: it sends exactly the bytes a test gives it, reads
//! what the server sends as parsed stream events (`starling_xml::StreamParser` on TCP,
//! one document per message on WebSocket), and fails with the whole conversation when the
//! server says something else than expected or nothing within [`TIMEOUT`].
//!
//! Transports: TCP with STARTTLS (RFC 6120 §5), Direct TLS (XEP-0368), WebSocket (RFC 7395).
//! Expectations are in `expect.rs`; STARTTLS, SASL (RFC 6120 §6), stream restart and
//! resource binding (RFC 6120 §7) in `negotiation.rs`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use starling_xml::{ns, parse_document, Element, Limits, StreamEvent, StreamParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::tls::{self, TlsInfo};

/// How long the client waits for anything it expects.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Keep at most this much of the conversation for failure messages.
const TRANSCRIPT_MAX: usize = 24 * 1024;

pub(super) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Ws(Box<WebSocketStream<TcpStream>>),
    Gone,
}

pub struct XmppClient {
    pub(super) io: Io,
    pub(super) parser: StreamParser,
    pending: VecDeque<StreamEvent>,
    eof: bool,
    transcript: String,
    /// The domain put in `to` of our stream headers.
    pub host: String,
    /// The last `<stream:features/>` received.
    pub features: Option<Element>,
    /// The last stream header received (TCP `<stream:stream>` or WebSocket `<open/>`).
    pub header: Option<Element>,
    /// The full JID after binding.
    pub jid: Option<String>,
    /// TLS details, once TLS is up.
    pub tls: Option<TlsInfo>,
    /// How the connection ended when it did not end cleanly (a reset, or TLS without
    /// `close_notify`).
    pub eof_error: Option<String>,
    next_id: u64,
}

pub(super) fn parser() -> StreamParser {
    // Larger than the server's limit: the client must never be the one that refuses.
    StreamParser::new(Limits {
        max_stanza_bytes: 4 * 1024 * 1024,
        ..Limits::default()
    })
}

fn shorten(s: &str) -> String {
    if s.len() <= 400 {
        return s.to_owned();
    }
    let mut cut = 300;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…[{} bytes]", &s[..cut], s.len())
}

impl XmppClient {
    fn with_io(io: Io, host: &str) -> Self {
        XmppClient {
            io,
            parser: parser(),
            pending: VecDeque::new(),
            eof: false,
            transcript: String::new(),
            host: host.to_owned(),
            features: None,
            header: None,
            jid: None,
            tls: None,
            eof_error: None,
            next_id: 0,
        }
    }

    /// A plain TCP connection (STARTTLS comes later).
    pub async fn connect_tcp(addr: SocketAddr, host: &str) -> Self {
        let s = TcpStream::connect(addr).await.expect("connect to c2s");
        s.set_nodelay(true).expect("nodelay");
        Self::with_io(Io::Plain(s), host)
    }

    /// Direct TLS (XEP-0368), offering ALPN `xmpp-client` or no ALPN at all.
    pub async fn connect_direct_tls(addr: SocketAddr, host: &str, alpn: bool) -> Self {
        let s = TcpStream::connect(addr)
            .await
            .expect("connect to Direct TLS");
        s.set_nodelay(true).expect("nodelay");
        let protocols: &[&[u8]] = if alpn { &[tls::ALPN_XMPP_CLIENT] } else { &[] };
        let connector = TlsConnector::from(tls::client_config(protocols));
        let t = tokio::time::timeout(TIMEOUT, connector.connect(tls::server_name(host), s))
            .await
            .expect("Direct TLS handshake timed out")
            .expect("Direct TLS handshake");
        let mut c = Self::with_io(Io::Tls(Box::new(t)), host);
        c.record_tls();
        c.note("Direct TLS established");
        c
    }

    /// A WebSocket connection offering these subprotocols (RFC 7395 §3.2 wants `xmpp`).
    pub async fn connect_ws_with(
        addr: SocketAddr,
        path: &str,
        host: &str,
        protocols: Option<&str>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let s = TcpStream::connect(addr).await.expect("connect to HTTP");
        let mut req = format!("ws://{addr}{path}")
            .into_client_request()
            .expect("request");
        if let Some(p) = protocols {
            req.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(p).expect("header"),
            );
        }
        let (ws, resp) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(req, s))
            .await
            .expect("WebSocket handshake timed out")?;
        let mut c = Self::with_io(Io::Ws(Box::new(ws)), host);
        let proto = resp
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        c.note(&format!("WebSocket established, subprotocol {proto:?}"));
        Ok(c)
    }

    pub async fn connect_ws(addr: SocketAddr, path: &str, host: &str) -> Self {
        Self::connect_ws_with(addr, path, host, Some("xmpp"))
            .await
            .expect("WebSocket handshake with subprotocol xmpp")
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.io, Io::Ws(_))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    pub(super) fn record_tls(&mut self) {
        if let Io::Tls(t) = &self.io {
            self.tls = Some(tls::info(t.get_ref().1));
        }
    }

    pub(super) fn note(&mut self, what: &str) {
        let _ = writeln!(self.transcript, "-- {what}");
        self.trim_transcript();
    }

    fn trim_transcript(&mut self) {
        if self.transcript.len() > TRANSCRIPT_MAX {
            let mut cut = self.transcript.len() - TRANSCRIPT_MAX / 2;
            while !self.transcript.is_char_boundary(cut) {
                cut += 1;
            }
            self.transcript = format!("[…]{}", &self.transcript[cut..]);
        }
    }

    /// The conversation so far (C: sent, S: received), for failure messages.
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// Fails the test with the conversation so far.
    #[track_caller]
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\n--- conversation ({}) ---\n{}\n---",
            self.host, self.transcript
        )
    }

    /// A fresh id for a stanza.
    pub fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    // ---- sending ----

    /// Sends text as it is (one WebSocket message on WebSocket); errors are returned, for
    /// tests where the server may already have closed.
    pub async fn try_send_raw(&mut self, text: &str) -> std::io::Result<()> {
        let _ = writeln!(self.transcript, "C: {}", shorten(text));
        self.trim_transcript();
        match &mut self.io {
            Io::Plain(s) => {
                s.write_all(text.as_bytes()).await?;
                s.flush().await
            }
            Io::Tls(s) => {
                s.write_all(text.as_bytes()).await?;
                s.flush().await
            }
            Io::Ws(ws) => ws
                .send(Message::text(text))
                .await
                .map_err(std::io::Error::other),
            Io::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    #[track_caller]
    pub fn send_raw(&mut self, text: &str) -> impl std::future::Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        let text = text.to_owned();
        async move {
            if let Err(e) = self.try_send_raw(&text).await {
                self.fail(&format!("send failed at {caller}: {e}"));
            }
        }
    }

    /// Sends an element: inside a `jabber:client` stream on TCP (no redundant xmlns), as a
    /// standalone document with its namespace on WebSocket (RFC 7395 §3.3.3).
    pub async fn send(&mut self, el: &Element) {
        let text = if self.is_ws() {
            el.to_xml()
        } else {
            let mut s = String::new();
            el.write_to(&mut s, ns::CLIENT);
            s
        };
        self.send_raw(&text).await;
    }

    /// Sends a stanza written as XML text; on WebSocket the `jabber:client` namespace is
    /// added to the top element when missing.
    pub async fn send_stanza(&mut self, xml: &str) {
        if self.is_ws() && !xml.contains("xmlns='jabber:client'") {
            let end = xml
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(xml.len());
            let text = format!("{} xmlns='jabber:client'{}", &xml[..end], &xml[end..]);
            self.send_raw(&text).await;
        } else {
            self.send_raw(xml).await;
        }
    }

    /// Our stream header (RFC 6120 §4.7; RFC 7395 §3.4 `<open/>`).
    pub async fn open(&mut self) {
        let text = if self.is_ws() {
            format!(
                "<open xmlns='{}' to='{}' version='1.0' xml:lang='en'/>",
                ns::FRAMING,
                self.host
            )
        } else {
            format!(
                "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xml:lang='en' \
                 xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
                self.host
            )
        };
        self.send_raw(&text).await;
    }

    /// Our closing (`</stream:stream>` or `<close/>`).
    pub async fn close(&mut self) {
        let text = if self.is_ws() {
            format!("<close xmlns='{}'/>", ns::FRAMING)
        } else {
            "</stream:stream>".to_owned()
        };
        self.send_raw(&text).await;
    }

    // ---- receiving ----

    async fn fill(&mut self) {
        match &mut self.io {
            Io::Plain(_) | Io::Tls(_) => {
                let mut buf = vec![0u8; 16 * 1024];
                let read = match &mut self.io {
                    Io::Plain(s) => s.read(&mut buf).await,
                    Io::Tls(s) => s.read(&mut buf).await,
                    _ => unreachable!(),
                };
                match read {
                    Ok(0) => {
                        self.eof = true;
                        self.note("connection closed by the server");
                    }
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let _ = writeln!(self.transcript, "S: {}", shorten(&text));
                        self.trim_transcript();
                        self.parser.feed(&buf[..n]);
                    }
                    Err(e) => {
                        self.eof = true;
                        self.eof_error = Some(e.to_string());
                        self.note(&format!("read error (taken as closed): {e}"));
                    }
                }
            }
            Io::Ws(ws) => match ws.next().await {
                None => {
                    self.eof = true;
                    self.note("WebSocket ended");
                }
                Some(Err(e)) => {
                    self.eof = true;
                    self.note(&format!("WebSocket error (taken as closed): {e}"));
                }
                Some(Ok(Message::Text(text))) => {
                    let _ = writeln!(self.transcript, "S: {}", shorten(text.as_str()));
                    self.trim_transcript();
                    let el = match parse_document(text.as_bytes(), ns::CLIENT, &Limits::default()) {
                        Ok(el) => el,
                        Err(e) => self.fail(&format!(
                            "the server sent a WebSocket message that is not one XML document: {e}"
                        )),
                    };
                    let ev = if el.is("open", ns::FRAMING) {
                        StreamEvent::Open {
                            header: el,
                            default_ns: ns::CLIENT.to_owned(),
                        }
                    } else if el.is("close", ns::FRAMING) {
                        StreamEvent::Close
                    } else {
                        StreamEvent::Stanza(el)
                    };
                    self.pending.push_back(ev);
                }
                Some(Ok(Message::Close(frame))) => {
                    self.eof = true;
                    self.note(&format!("WebSocket close frame {frame:?}"));
                }
                Some(Ok(Message::Binary(_))) => {
                    self.fail("the server sent a binary WebSocket message (RFC 7395 §3.3.3)")
                }
                Some(Ok(_)) => {}
            },
            Io::Gone => self.eof = true,
        }
    }

    /// The next event, `None` once the connection is closed; fails after `wait`.
    pub async fn next_event_within(&mut self, wait: Duration) -> Result<Option<StreamEvent>, ()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            match self.parser.next_event() {
                Ok(Some(ev)) => return Ok(Some(ev)),
                Ok(None) => {}
                Err(e) => self.fail(&format!("the server sent XML we cannot parse: {e}")),
            }
            if self.eof {
                return Ok(None);
            }
            if tokio::time::timeout_at(deadline, self.fill())
                .await
                .is_err()
            {
                return Err(());
            }
        }
    }

    /// The next event within [`TIMEOUT`]; `None` once the connection is closed.
    #[track_caller]
    pub fn next_event(&mut self) -> impl std::future::Future<Output = Option<StreamEvent>> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next_event_within(TIMEOUT).await {
                Ok(ev) => ev,
                Err(()) => self.fail(&format!(
                    "{caller}: nothing from the server within {TIMEOUT:?}"
                )),
            }
        }
    }

    /// The next top-level element (not a header, close or end of connection).
    #[track_caller]
    pub fn next_stanza(&mut self) -> impl std::future::Future<Output = Element> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next_event_within(TIMEOUT).await {
                Ok(Some(StreamEvent::Stanza(el))) => el,
                Ok(Some(StreamEvent::Open { .. })) => self.fail(&format!(
                    "{caller}: expected an element, got a stream header"
                )),
                Ok(Some(StreamEvent::Close)) => self.fail(&format!(
                    "{caller}: expected an element, the stream was closed"
                )),
                Ok(None) => self.fail(&format!(
                    "{caller}: expected an element, the connection was closed"
                )),
                Err(()) => self.fail(&format!(
                    "{caller}: expected an element, nothing came within {TIMEOUT:?}"
                )),
            }
        }
    }
}
