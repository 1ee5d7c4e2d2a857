//! A raw XMPP client for protocol tests: it sends exactly the bytes a test gives it, reads
//! what the server sends as parsed stream events (`starling_xml::StreamParser` on TCP,
//! one document per message on WebSocket), and fails with the whole conversation when the
//! server says something else than expected or nothing within [`TIMEOUT`].
//!
//! Transports: TCP with STARTTLS (RFC 6120 §5), Direct TLS (XEP-0368), WebSocket (RFC 7395).
//! High level: SASL (RFC 6120 §6), stream restart, resource binding (RFC 6120 §7).

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

use super::sasl::{b64, plain_message, unb64, Cb, Mech, ScramClient};
use super::tls::{self, TlsInfo};
use super::{NS_BIND, NS_ROSTER, NS_SASL, NS_STANZAS, NS_STREAMS, NS_TLS};

/// How long the client waits for anything it expects.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Keep at most this much of the conversation for failure messages.
const TRANSCRIPT_MAX: usize = 24 * 1024;

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Ws(Box<WebSocketStream<TcpStream>>),
    Gone,
}

/// Options for a SASL exchange that deliberately deviates (downgrade and binding tests).
#[derive(Clone, Debug, Default)]
pub struct SaslOptions {
    /// Replaces the GS2 header ("n,,", "y,,", "p=…,,").
    pub gs2_header: Option<String>,
    /// Replaces the channel-binding data.
    pub cb_data: Option<Vec<u8>>,
}

pub struct XmppClient {
    io: Io,
    parser: StreamParser,
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

fn parser() -> StreamParser {
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

    fn record_tls(&mut self) {
        if let Io::Tls(t) = &self.io {
            self.tls = Some(tls::info(t.get_ref().1));
        }
    }

    fn note(&mut self, what: &str) {
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

    /// The next element must be `<name xmlns=ns>`.
    #[track_caller]
    pub fn expect<'a>(
        &'a mut self,
        name: &'a str,
        ns: &'a str,
    ) -> impl std::future::Future<Output = Element> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let el = self.next_stanza().await;
            if !el.is(name, ns) {
                self.fail(&format!(
                    "{caller}: expected <{name} xmlns='{ns}'>, got {el}"
                ));
            }
            el
        }
    }

    /// The next event must be a stream header; returns it.
    #[track_caller]
    pub fn expect_open(&mut self) -> impl std::future::Future<Output = Element> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next_event().await {
                Some(StreamEvent::Open { header, .. }) => {
                    self.header = Some(header.clone());
                    header
                }
                other => self.fail(&format!(
                    "{caller}: expected the server's stream header, got {other:?}"
                )),
            }
        }
    }

    /// `<stream:features/>`, remembered in `self.features`.
    #[track_caller]
    pub fn expect_features(&mut self) -> impl std::future::Future<Output = Element> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let el = self.next_stanza().await;
            if !el.is("features", ns::STREAM) {
                self.fail(&format!("{caller}: expected <stream:features/>, got {el}"));
            }
            self.features = Some(el.clone());
            el
        }
    }

    /// Sends our header, reads the server's header and features.
    pub async fn open_stream(&mut self) -> Element {
        self.open().await;
        self.expect_open().await;
        self.expect_features().await
    }

    /// The next element is `<stream:error>` with this condition; then the server closes the
    /// stream and the connection (RFC 6120 §4.9.1.1). Returns the error element.
    #[track_caller]
    pub fn expect_stream_error<'a>(
        &'a mut self,
        condition: &'a str,
    ) -> impl std::future::Future<Output = Element> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let el = self.next_stanza().await;
            if !el.is("error", ns::STREAM) {
                self.fail(&format!(
                    "{caller}: expected <stream:error><{condition}/>, got {el}"
                ));
            }
            if !el.has_child(condition, NS_STREAMS) {
                self.fail(&format!(
                    "{caller}: expected stream error condition <{condition}/>, got {el}"
                ));
            }
            self.expect_closed().await;
            el
        }
    }

    /// The server closes the stream (`</stream:stream>` or `<close/>`), then the connection.
    #[track_caller]
    pub fn expect_closed(&mut self) -> impl std::future::Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next_event().await {
                Some(StreamEvent::Close) => {}
                other => self.fail(&format!(
                    "{caller}: expected the server to close the stream, got {other:?}"
                )),
            }
            self.expect_eof().await;
        }
    }

    /// Nothing more: the connection ends.
    #[track_caller]
    pub fn expect_eof(&mut self) -> impl std::future::Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next_event().await {
                None => {}
                Some(other) => self.fail(&format!(
                    "{caller}: expected the connection to end, got {other:?}"
                )),
            }
        }
    }

    /// Reads elements until one satisfies `pred` (within [`TIMEOUT`] overall), answering
    /// roster pushes on the way (RFC 6121 §2.1.6). Elements skipped are in the transcript.
    #[track_caller]
    pub fn wait_for<'a, F>(
        &'a mut self,
        what: &'a str,
        pred: F,
    ) -> impl std::future::Future<Output = Element> + 'a
    where
        F: Fn(&Element) -> bool + 'a,
    {
        let caller = std::panic::Location::caller();
        async move {
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let el = match self.next_event_within(left).await {
                    Ok(Some(StreamEvent::Stanza(el))) => el,
                    Ok(other) => self.fail(&format!(
                        "{caller}: waiting for {what}, got {other:?} instead"
                    )),
                    Err(()) => self.fail(&format!(
                        "{caller}: waiting for {what}: not received within {TIMEOUT:?}"
                    )),
                };
                let matched = pred(&el);
                self.ack_roster_push(&el).await;
                if matched {
                    return el;
                }
            }
        }
    }

    /// Like [`Self::wait_for`] for several elements that may come in any order (where the
    /// RFC leaves the order open). Each element satisfies at most one predicate; returns
    /// them in the order of `wanted`.
    #[track_caller]
    pub fn wait_for_all<'a>(
        &'a mut self,
        wanted: Vec<Want<'a>>,
    ) -> impl std::future::Future<Output = Vec<Element>> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            let mut found: Vec<Option<Element>> = wanted.iter().map(|_| None).collect();
            while found.iter().any(Option::is_none) {
                let missing = || {
                    wanted
                        .iter()
                        .zip(&found)
                        .filter(|(_, f)| f.is_none())
                        .map(|(w, _)| w.what.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let el = match self.next_event_within(left).await {
                    Ok(Some(StreamEvent::Stanza(el))) => el,
                    Ok(other) => self.fail(&format!(
                        "{caller}: waiting for [{}], got {other:?} instead",
                        missing()
                    )),
                    Err(()) => self.fail(&format!(
                        "{caller}: waiting for [{}]: not received within {TIMEOUT:?}",
                        missing()
                    )),
                };
                if let Some(i) =
                    (0..wanted.len()).find(|&i| found[i].is_none() && (wanted[i].pred)(&el))
                {
                    found[i] = Some(el.clone());
                }
                self.ack_roster_push(&el).await;
            }
            found.into_iter().flatten().collect()
        }
    }

    async fn ack_roster_push(&mut self, el: &Element) {
        if el.name() == "iq" && el.attr("type") == Some("set") && el.has_child("query", NS_ROSTER) {
            if let Some(id) = el.attr("id") {
                let ack = format!("<iq type='result' id='{id}'/>");
                self.send_stanza(&ack).await;
            }
        }
    }

    /// Sends an IQ (XML text with this `id`) and returns its answer (result or error),
    /// skipping anything else that arrives meanwhile.
    #[track_caller]
    pub fn request<'a>(
        &'a mut self,
        xml: &'a str,
        id: &'a str,
    ) -> impl std::future::Future<Output = Element> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            self.send_stanza(xml).await;
            let what = format!("the answer to IQ {id} (sent at {caller})");
            self.wait_for(&what, |el| {
                el.name() == "iq"
                    && el.attr("id") == Some(id)
                    && matches!(el.attr("type"), Some("result") | Some("error"))
            })
            .await
        }
    }

    /// A round trip to the server: everything the server sent before its answer is returned,
    /// so a test can check what did or did not arrive without sleeping. Uses an IQ to the
    /// domain in a namespace nobody serves (answered with an error by the router).
    pub async fn barrier(&mut self) -> Vec<Element> {
        let id = self.id("barrier-");
        let xml = format!(
            "<iq type='get' id='{id}' to='{}'><query xmlns='urn:starling:test:barrier'/></iq>",
            self.host
        );
        self.send_stanza(&xml).await;
        let mut before = Vec::new();
        loop {
            let el = self.next_stanza().await;
            if el.name() == "iq" && el.attr("id") == Some(id.as_str()) {
                return before;
            }
            self.ack_roster_push(&el).await;
            before.push(el);
        }
    }

    // ---- negotiation ----

    /// Sends `<starttls/>`, expects `<proceed/>` and does the TLS handshake (RFC 6120 §5.4).
    pub async fn starttls(&mut self) {
        self.send_raw(&format!("<starttls xmlns='{NS_TLS}'/>"))
            .await;
        self.complete_starttls().await;
    }

    /// The rest of STARTTLS once `<starttls/>` went out: `<proceed/>`, then the handshake.
    pub async fn complete_starttls(&mut self) {
        self.expect("proceed", NS_TLS).await;
        let Io::Plain(s) = std::mem::replace(&mut self.io, Io::Gone) else {
            self.fail("STARTTLS on a connection that is not plain TCP");
        };
        let connector = TlsConnector::from(tls::client_config(&[]));
        let host = self.host.clone();
        let t = match tokio::time::timeout(TIMEOUT, connector.connect(tls::server_name(&host), s))
            .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => self.fail(&format!("TLS handshake after <proceed/> failed: {e}")),
            Err(_) => self.fail("TLS handshake after <proceed/> timed out"),
        };
        self.io = Io::Tls(Box::new(t));
        self.parser = parser();
        self.record_tls();
        self.note("TLS established (STARTTLS)");
    }

    /// Opens the stream and gets it to the point where SASL can start: STARTTLS on plain
    /// TCP, nothing more on Direct TLS and WebSocket. Returns the features.
    pub async fn negotiate_tls(&mut self) -> Element {
        let features = self.open_stream().await;
        if matches!(self.io, Io::Plain(_)) {
            if !features.has_child("starttls", NS_TLS) {
                self.fail("no STARTTLS offered on plain TCP");
            }
            self.starttls().await;
            return self.open_stream().await;
        }
        features
    }

    /// The mechanism names in the last features.
    pub fn mechanisms(&self) -> Vec<String> {
        super::mechanisms(self.features.as_ref())
    }

    /// Channel-binding data of this connection, as the client computes it.
    pub fn cb_data(&self, cb: Cb) -> Vec<u8> {
        let Some(info) = &self.tls else {
            self.fail("channel binding without TLS");
        };
        let data = match cb {
            Cb::Exporter => info.exporter.clone(),
            Cb::EndPoint => info.end_point.clone(),
        };
        data.unwrap_or_else(|| self.fail(&format!("no {} data on this connection", cb.name())))
    }

    /// Runs one SASL exchange. `Ok` after `<success/>` (with the SCRAM server signature
    /// verified), `Err(<failure/>)` otherwise.
    pub async fn authenticate(
        &mut self,
        user: &str,
        password: &str,
        mech: Mech,
    ) -> Result<(), Element> {
        self.authenticate_with(user, password, mech, SaslOptions::default())
            .await
    }

    pub async fn authenticate_with(
        &mut self,
        user: &str,
        password: &str,
        mech: Mech,
        opts: SaslOptions,
    ) -> Result<(), Element> {
        let mut scram = match mech {
            Mech::Plain => None,
            Mech::Scram(h) => {
                let gs2 = opts.gs2_header.clone().unwrap_or_else(|| "n,,".into());
                Some(ScramClient::new(
                    h,
                    user,
                    password,
                    &gs2,
                    &opts.cb_data.clone().unwrap_or_default(),
                ))
            }
            Mech::ScramPlus(h, cb) => {
                let gs2 = opts
                    .gs2_header
                    .clone()
                    .unwrap_or_else(|| format!("p={},,", cb.name()));
                let data = opts.cb_data.clone().unwrap_or_else(|| self.cb_data(cb));
                Some(ScramClient::new(h, user, password, &gs2, &data))
            }
        };
        let initial = match &scram {
            None => plain_message(user, password),
            Some(s) => s.client_first(),
        };
        self.send_raw(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='{}'>{}</auth>",
            mech.name(),
            b64(&initial)
        ))
        .await;
        loop {
            let el = self.next_stanza().await;
            if el.ns() != NS_SASL {
                self.fail(&format!("expected a SASL element, got {el}"));
            }
            match el.name() {
                "challenge" => {
                    let data = unb64(&el.text()).unwrap_or_else(|e| self.fail(&e));
                    let Some(s) = scram.as_mut() else {
                        self.fail("a challenge for PLAIN");
                    };
                    let reply = s.client_final(&data).unwrap_or_else(|e| self.fail(&e));
                    self.send_raw(&format!(
                        "<response xmlns='{NS_SASL}'>{}</response>",
                        b64(&reply)
                    ))
                    .await;
                }
                "success" => {
                    if let Some(s) = &scram {
                        // RFC 6120 §6.3.10: SCRAM's server-final travels in <success/>.
                        let data = unb64(&el.text()).unwrap_or_else(|e| self.fail(&e));
                        if let Err(e) = s.verify_server_final(&data) {
                            self.fail(&format!(
                                "the server did not prove it knows the password: {e}"
                            ));
                        }
                    }
                    // RFC 6120 §6.4.6: the parser starts over with the new stream.
                    self.parser = parser();
                    return Ok(());
                }
                "failure" => return Err(el),
                _ => self.fail(&format!("unexpected SASL element {el}")),
            }
        }
    }

    /// Binds a resource (None: the server picks one). `Ok(full JID)` or `Err(error IQ)`.
    pub async fn bind(&mut self, resource: Option<&str>) -> Result<String, Element> {
        let id = self.id("bind-");
        let inner = match resource {
            Some(r) => {
                let mut s = String::new();
                starling_xml::escape_text(r, &mut s);
                format!("<resource>{s}</resource>")
            }
            None => String::new(),
        };
        let xml = format!("<iq type='set' id='{id}'><bind xmlns='{NS_BIND}'>{inner}</bind></iq>");
        self.send_stanza(&xml).await;
        let el = self.next_stanza().await;
        if el.name() != "iq" || el.attr("id") != Some(id.as_str()) {
            self.fail(&format!(
                "expected the answer to the bind request, got {el}"
            ));
        }
        if el.attr("type") != Some("result") {
            return Err(el);
        }
        let jid = el
            .get_child("bind", NS_BIND)
            .and_then(|b| b.child_text("jid", NS_BIND))
            .unwrap_or_else(|| self.fail(&format!("bind result without <jid/>: {el}")));
        self.jid = Some(jid.clone());
        Ok(jid)
    }

    /// From a fresh connection to a bound resource: stream, STARTTLS where needed, SASL with
    /// `mech` (which must be offered), restart, bind. Returns the full JID.
    pub async fn login(
        &mut self,
        user: &str,
        password: &str,
        resource: Option<&str>,
        mech: Mech,
    ) -> String {
        self.negotiate_tls().await;
        let offered = self.mechanisms();
        if !offered.iter().any(|m| m == mech.name()) {
            self.fail(&format!(
                "{} is not offered; offered: {offered:?}",
                mech.name()
            ));
        }
        if let Err(f) = self.authenticate(user, password, mech).await {
            self.fail(&format!(
                "authentication as {user} with {} failed: {f}",
                mech.name()
            ));
        }
        let features = self.open_stream().await;
        if !features.has_child("bind", NS_BIND) {
            self.fail("no <bind/> offered after authentication");
        }
        match self.bind(resource).await {
            Ok(jid) => jid,
            Err(e) => self.fail(&format!("bind failed: {e}")),
        }
    }

    /// [`Self::login`], then initial presence (RFC 6121 §4.2) so the session is available.
    pub async fn login_available(
        &mut self,
        user: &str,
        password: &str,
        resource: Option<&str>,
        mech: Mech,
    ) -> String {
        let jid = self.login(user, password, resource, mech).await;
        self.send_stanza("<presence/>").await;
        jid
    }

    /// The bare JID of the bound session.
    pub fn bare(&self) -> String {
        let jid = self
            .jid
            .as_deref()
            .unwrap_or_else(|| self.fail("not bound"));
        jid.split('/').next().unwrap_or(jid).to_owned()
    }

    pub fn full(&self) -> String {
        self.jid.clone().unwrap_or_else(|| self.fail("not bound"))
    }
}

/// One element [`XmppClient::wait_for_all`] waits for.
pub struct Want<'a> {
    pub what: String,
    pub pred: Box<dyn Fn(&Element) -> bool + 'a>,
}

/// Describes an element to wait for with a predicate.
pub fn want<'a>(what: impl Into<String>, pred: impl Fn(&Element) -> bool + 'a) -> Want<'a> {
    Want {
        what: what.into(),
        pred: Box::new(pred),
    }
}

/// The stanza error condition of an error stanza (RFC 6120 §8.3.2), with its type.
pub fn stanza_error(el: &Element) -> Option<(String, String)> {
    let err = el.get_child("error", ns::CLIENT)?;
    let cond = err
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")?;
    Some((
        cond.name().to_owned(),
        err.attr("type").unwrap_or_default().to_owned(),
    ))
}
