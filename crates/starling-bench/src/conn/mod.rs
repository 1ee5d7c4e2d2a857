//! One client connection: a transport (TCP + STARTTLS, Direct TLS, or RFC 7395 WebSocket)
//! that reads parsed stream events and writes preformatted stanza strings.
//!
//! Lean on purpose (thousands of these share the CPU with the server under test):
//! - reads go through one 16 KiB buffer per worker thread, borrowed only for the duration of
//!   a poll, so an idle connection holds no read buffer of its own;
//! - bytes go straight into the sans-I/O [`StreamParser`] of `starling-xml`;
//! - stanzas are written into one reusable `String` and sent with one write per flush.

pub mod dial;
pub mod login;
pub mod stanza;
mod stream;

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use futures_util::{SinkExt, StreamExt};
use starling_xml::{ns, parse_document, Element, Limits, StreamEvent, StreamParser};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub use stream::Stream;

use crate::error::ConnError;

/// Namespace of RFC 7395 `<open/>` and `<close/>`.
pub const NS_FRAMING: &str = ns::FRAMING;

/// What the server sent.
#[derive(Debug)]
pub enum Event {
    /// A stream header (`<stream:stream>` or WebSocket `<open/>`).
    Open(Element),
    Stanza(Element),
    /// `</stream:stream>` or WebSocket `<close/>`.
    Close,
}

// Raw is what nearly every connection is: boxing it would add an allocation per connection
// to save bytes only on the rarer WebSocket ones.
#[allow(clippy::large_enum_variant)]
enum Io {
    Raw {
        stream: Stream,
        parser: StreamParser,
    },
    Ws(Box<WebSocketStream<Stream>>),
    Gone,
}

pub struct Conn {
    io: Io,
    /// Stanzas waiting for [`Conn::flush`].
    out: String,
    /// End offsets of the stanzas in `out` (WebSocket sends one frame per stanza).
    frames: Vec<usize>,
}

/// `STARLING_BENCH_TRACE=1` prints every stanza sent and received on stderr (for finding
/// out why a server refuses something; far too slow for a real run).
fn trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("STARLING_BENCH_TRACE").is_some_and(|v| v != "0"))
}

fn trace_event(ev: &Event) {
    match ev {
        Event::Open(e) => eprintln!("<< (open) {e}"),
        Event::Stanza(e) => eprintln!("<< {e}"),
        Event::Close => eprintln!("<< (close)"),
    }
}

/// Larger than any server's stanza limit: the load tool must never be the one refusing.
fn limits() -> Limits {
    Limits {
        max_stanza_bytes: 4 << 20,
        ..Limits::default()
    }
}

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; 16 * 1024].into_boxed_slice());
}

/// Reads what is available into the parser; Ok(0) at end of stream. Cancel-safe: bytes are
/// handed to the parser in the same poll that read them.
async fn read_into(stream: &mut Stream, parser: &mut StreamParser) -> std::io::Result<usize> {
    poll_fn(|cx| {
        READ_BUF.with_borrow_mut(|buf| {
            let mut rb = ReadBuf::new(&mut buf[..]);
            match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    parser.feed(rb.filled());
                    Poll::Ready(Ok(n))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
}

impl Conn {
    pub fn raw(stream: Stream) -> Self {
        Conn {
            io: Io::Raw {
                stream,
                parser: StreamParser::new(limits()),
            },
            out: String::new(),
            frames: Vec::new(),
        }
    }

    pub fn ws(ws: WebSocketStream<Stream>) -> Self {
        Conn {
            io: Io::Ws(Box::new(ws)),
            out: String::new(),
            frames: Vec::new(),
        }
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.io, Io::Ws(_))
    }

    /// The next event. Cancel-safe (usable in `select!`).
    pub async fn next_event(&mut self) -> Result<Event, ConnError> {
        let ev = self.next_event_inner().await;
        if trace() {
            match &ev {
                Ok(ev) => trace_event(ev),
                Err(e) => eprintln!("<< error: {e}"),
            }
        }
        ev
    }

    async fn next_event_inner(&mut self) -> Result<Event, ConnError> {
        match &mut self.io {
            Io::Raw { stream, parser } => loop {
                if let Some(ev) = parser.next_event()? {
                    return Ok(match ev {
                        StreamEvent::Open { header, .. } => Event::Open(header),
                        StreamEvent::Stanza(e) => Event::Stanza(e),
                        StreamEvent::Close => Event::Close,
                    });
                }
                if read_into(stream, parser).await? == 0 {
                    return Err(ConnError::Eof);
                }
            },
            Io::Ws(ws) => loop {
                let msg = match ws.next().await {
                    None => return Err(ConnError::Eof),
                    Some(Err(e)) => return Err(ConnError::WebSocket(e.to_string())),
                    Some(Ok(m)) => m,
                };
                match msg {
                    Message::Text(t) => {
                        let el = parse_document(t.as_bytes(), ns::CLIENT, &limits())?;
                        return Ok(if el.is("open", NS_FRAMING) {
                            Event::Open(el)
                        } else if el.is("close", NS_FRAMING) {
                            Event::Close
                        } else {
                            Event::Stanza(el)
                        });
                    }
                    Message::Close(_) => return Err(ConnError::Eof),
                    // Pings are answered by tungstenite on the next read or write.
                    _ => continue,
                }
            },
            Io::Gone => Err(ConnError::Eof),
        }
    }

    /// The next stanza; a stream error, the stream's end or a new header is an error here.
    pub async fn next_stanza(&mut self) -> Result<Element, ConnError> {
        match self.next_event().await? {
            Event::Stanza(e) if e.is("error", ns::STREAM) => Err(stream_error(&e)),
            Event::Stanza(e) => Ok(e),
            Event::Close => Err(ConnError::Closed),
            Event::Open(_) => Err(ConnError::Protocol("unexpected stream header".into())),
        }
    }

    /// Appends one stanza, written by `f`, to the output buffer.
    pub fn push(&mut self, f: impl FnOnce(&mut String)) {
        let start = self.out.len();
        f(&mut self.out);
        if self.is_ws() {
            qualify_ws_frame(&mut self.out, start);
        }
        self.frames.push(self.out.len());
    }

    pub fn push_str(&mut self, s: &str) {
        self.push(|o| o.push_str(s));
    }

    /// Whether anything waits for [`Conn::flush`].
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Sends everything pushed: one write on TCP/TLS, one frame per stanza on WebSocket.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if self.out.is_empty() {
            return Ok(());
        }
        if trace() {
            eprintln!(">> {}", self.out);
        }
        let r = match &mut self.io {
            Io::Raw { stream, .. } => {
                let r = stream.write_all(self.out.as_bytes()).await;
                match r {
                    Ok(()) => stream.flush().await.map_err(ConnError::Io),
                    Err(e) => Err(ConnError::Io(e)),
                }
            }
            Io::Ws(ws) => {
                let mut start = 0;
                let mut r = Ok(());
                for &end in &self.frames {
                    if end > start {
                        if let Err(e) = ws.feed(Message::text(&self.out[start..end])).await {
                            r = Err(ConnError::WebSocket(e.to_string()));
                            break;
                        }
                    }
                    start = end;
                }
                match r {
                    Ok(()) => ws
                        .flush()
                        .await
                        .map_err(|e| ConnError::WebSocket(e.to_string())),
                    e => e,
                }
            }
            Io::Gone => Err(ConnError::Eof),
        };
        self.out.clear();
        self.frames.clear();
        r
    }

    pub async fn send(&mut self, s: &str) -> Result<(), ConnError> {
        self.push_str(s);
        self.flush().await
    }

    /// Stream restart (RFC 6120 §4.3.3) after SASL: the parser starts a new stream.
    pub fn restart(&mut self) {
        if let Io::Raw { parser, .. } = &mut self.io {
            parser.reset();
        }
    }

    /// STARTTLS (RFC 6120 §5.4.3.3): TLS on the TCP connection, then a fresh parser.
    pub async fn starttls(
        &mut self,
        connector: &TlsConnector,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<(), ConnError> {
        let Io::Raw {
            stream: Stream::Tcp(tcp),
            ..
        } = std::mem::replace(&mut self.io, Io::Gone)
        else {
            return Err(ConnError::Protocol("STARTTLS on a TLS stream".into()));
        };
        let tls = connector.connect(name, tcp).await.map_err(ConnError::Tls)?;
        self.io = Io::Raw {
            stream: Stream::Tls(Box::new(tls)),
            parser: StreamParser::new(limits()),
        };
        Ok(())
    }

    /// Gives back spare buffer capacity: call when the connection goes idle.
    pub fn shrink(&mut self) {
        self.out = String::new();
        self.frames = Vec::new();
        if let Io::Raw { parser, .. } = &mut self.io {
            parser.shrink();
        }
    }

    /// Ends the stream politely (`</stream:stream>` or `<close/>`) without waiting for the
    /// server's answer, then drops the connection.
    pub async fn close(self) {
        // A server that stopped reading must not hold up the end of a run.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.close_inner()).await;
    }

    async fn close_inner(mut self) {
        let tag = if self.is_ws() {
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
        } else {
            "</stream:stream>"
        };
        let _ = self.send(tag).await;
        match &mut self.io {
            Io::Raw { stream, .. } => {
                let _ = stream.shutdown().await;
            }
            Io::Ws(ws) => {
                let _ = ws.close(None).await;
            }
            Io::Gone => {}
        }
    }
}

/// Every RFC 7395 frame is a document of its own, so a stanza written for a stream (whose
/// header declares `jabber:client`) needs the declaration itself (§3.3.3); Prosody refuses
/// unqualified ones. Adds `xmlns='jabber:client'` to the element starting at `start` when its
/// start tag declares no default namespace.
fn qualify_ws_frame(out: &mut String, start: usize) {
    let frame = &out[start..];
    let Some(tag_end) = frame.find('>') else {
        return;
    };
    if !frame.starts_with('<') || frame[..tag_end].contains(" xmlns=") {
        return;
    }
    let name_end = frame[1..tag_end]
        .find([' ', '/', '\t', '\n', '\r'])
        .map_or(tag_end, |i| i + 1);
    out.insert_str(start + name_end, " xmlns='jabber:client'");
}

/// `<stream:error>` as an error naming its condition (and text, if any).
pub fn stream_error(e: &Element) -> ConnError {
    let cond = e
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".into());
    match e.children().find(|c| c.name() == "text") {
        Some(t) => ConnError::StreamError(format!("{cond} ({})", t.text())),
        None => ConnError::StreamError(cond),
    }
}

#[cfg(test)]
mod tests {
    use super::qualify_ws_frame;

    #[test]
    fn websocket_frames_carry_their_namespace() {
        for (input, want) in [
            ("<presence/>", "<presence xmlns='jabber:client'/>"),
            (
                "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
                "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
            ),
            (
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>x</auth>",
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>x</auth>",
            ),
            ("<message>", "<message xmlns='jabber:client'>"),
        ] {
            let mut out = String::from("<x/>");
            out.push_str(input);
            qualify_ws_frame(&mut out, 4);
            assert_eq!(&out[4..], want);
        }
    }
}
