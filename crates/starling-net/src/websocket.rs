//! XMPP over WebSocket (RFC 7395): the upgrade with subprotocol `xmpp` (§3.2), one XML
//! element per text message with `<open/>`/`<close/>` framing (§3.3-§3.6), and the discovery
//! documents `/.well-known/host-meta` and `host-meta.json` (XEP-0156 §3).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use futures_util::SinkExt;
use starling_core::transport::{Transport, TransportError};
use starling_proto::sasl::ChannelBindings;
use starling_xml::{escape_attr, ns, parse_document, Element, Limits, StreamEvent};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use crate::listener::StreamHandler;

/// The WebSocket subprotocol registered for XMPP (RFC 7395 §3.1).
pub const SUBPROTOCOL: &str = "xmpp";
/// The link relation for WebSocket endpoints (XEP-0156 §3).
pub const REL_WEBSOCKET: &str = "urn:xmpp:alt-connections:websocket";
const XRD_NS: &str = "http://docs.oasis-open.org/ns/xri/xrd-1.0";
/// Room for framing around the largest allowed stanza: the XML parser's own limit then
/// answers first, with a stream error rather than a dropped connection.
const MESSAGE_SLACK: usize = 4096;

/// What the HTTP connection under a WebSocket knows: the peer and its TLS layer.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The HTTP connection is HTTPS.
    pub tls: bool,
    pub sni: Option<String>,
    pub bindings: ChannelBindings,
}

/// How the WebSocket endpoint is served.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// The endpoint path, `/xmpp-websocket` by default.
    pub path: String,
    pub limits: Limits,
    /// The listener is HTTPS: host-meta advertises `wss://`.
    pub tls: bool,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            path: "/xmpp-websocket".into(),
            limits: Limits::default(),
            tls: false,
        }
    }
}

/// The stream budget an upgraded WebSocket takes a slot of, put in each request's extensions
/// by the listener. Without it (the router served some other way) upgrades are not counted.
#[derive(Clone)]
pub(crate) struct StreamBudget(pub(crate) Arc<Semaphore>);

#[derive(Clone)]
struct WsState {
    handler: Arc<dyn StreamHandler>,
    config: Arc<WsConfig>,
}

/// The HTTP routes of the WebSocket transport. The upgrade needs the connection's
/// [`ConnInfo`] as a `ConnectInfo<ConnInfo>` request extension, which [`crate::bind_http`]
/// puts on every request it serves.
pub fn router(handler: Arc<dyn StreamHandler>, config: WsConfig) -> Router {
    let path = if config.path.starts_with('/') {
        config.path.clone()
    } else {
        format!("/{}", config.path)
    };
    let state = WsState {
        handler,
        config: Arc::new(WsConfig { path, ..config }),
    };
    Router::new()
        .route(&state.config.path, get(upgrade))
        .route("/.well-known/host-meta", get(host_meta))
        .route("/.well-known/host-meta.json", get(host_meta_json))
        .with_state(state)
}

async fn upgrade(
    State(state): State<WsState>,
    ConnectInfo(info): ConnectInfo<ConnInfo>,
    budget: Option<Extension<StreamBudget>>,
    ws: WebSocketUpgrade,
) -> Response {
    let ws = ws.protocols([SUBPROTOCOL]);
    // RFC 7395 §3.2: without `xmpp` among the offered subprotocols the server must not
    // complete the handshake.
    if ws.selected_protocol().is_none() {
        debug!(peer = %info.peer, "WebSocket upgrade without the xmpp subprotocol refused");
        return (
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol 'xmpp' is required (RFC 7395)\n",
        )
            .into_response();
    }
    // An upgraded WebSocket is an XMPP stream: it counts against the stream budget shared
    // with c2s, taken before the upgrade is answered so a full server says so in HTTP.
    let permit = match budget {
        Some(Extension(StreamBudget(streams))) => match streams.try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                debug!(peer = %info.peer, "WebSocket upgrade refused: connection limit reached");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is at its connection limit\n",
                )
                    .into_response();
            }
        },
        None => None,
    };
    let limits = state.config.limits.clone();
    let max = limits.max_stanza_bytes.saturating_add(MESSAGE_SLACK);
    let peer = info.peer;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(move |e| debug!(%peer, "WebSocket upgrade failed: {e}"))
        .on_upgrade(move |socket| async move {
            let mut transport = WsTransport::new(socket, info, limits);
            if let Some(permit) = permit {
                transport.hold_permit(permit);
            }
            state.handler.ws(transport);
        })
}

/// `ws://` or `wss://` plus the host the client used and the endpoint path.
fn endpoint_href(config: &WsConfig, headers: &HeaderMap) -> String {
    // A TLS-terminating proxy in front of a plain listener says so in X-Forwarded-Proto.
    let forwarded_tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(|p| p.eq_ignore_ascii_case("https") || p.eq_ignore_ascii_case("wss"));
    let scheme = if forwarded_tls.unwrap_or(config.tls) {
        "wss"
    } else {
        "ws"
    };
    // Only a plausible host[:port] is echoed back, so the documents need no escaping
    // beyond what is applied anyway.
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}{}", config.path)
}

async fn host_meta(State(state): State<WsState>, headers: HeaderMap) -> Response {
    let href = endpoint_href(&state.config, &headers);
    let mut body = String::with_capacity(256);
    body.push_str("<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='");
    body.push_str(XRD_NS);
    body.push_str("'>\n  <Link rel='");
    body.push_str(REL_WEBSOCKET);
    body.push_str("' href='");
    escape_attr(&href, &mut body);
    body.push_str("'/>\n</XRD>\n");
    (
        [
            (CONTENT_TYPE, "application/xrd+xml; charset=utf-8"),
            (ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

async fn host_meta_json(State(state): State<WsState>, headers: HeaderMap) -> Response {
    let href = endpoint_href(&state.config, &headers);
    let body = format!(
        "{{\"links\":[{{\"rel\":\"{}\",\"href\":\"{}\"}}]}}\n",
        REL_WEBSOCKET,
        json_escape(&href)
    );
    (
        [
            (CONTENT_TYPE, "application/json"),
            (ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// An XMPP stream over one WebSocket connection (RFC 7395).
pub struct WsTransport {
    socket: WebSocket,
    out: VecDeque<Message>,
    out_bytes: usize,
    limits: Limits,
    info: ConnInfo,
    /// We queued `<close/>`.
    sent_close: bool,
    /// The client sent `<close/>`.
    got_close: bool,
    /// We sent the WebSocket close frame.
    ws_closed: bool,
    /// The connection's slot in the stream budget, released when the transport is dropped.
    _permit: Option<OwnedSemaphorePermit>,
}

impl WsTransport {
    pub fn new(socket: WebSocket, info: ConnInfo, limits: Limits) -> Self {
        WsTransport {
            socket,
            out: VecDeque::new(),
            out_bytes: 0,
            limits,
            info,
            sent_close: false,
            got_close: false,
            ws_closed: false,
            _permit: None,
        }
    }

    pub(crate) fn hold_permit(&mut self, permit: OwnedSemaphorePermit) {
        self._permit = Some(permit);
    }

    fn queue_text(&mut self, text: String) {
        self.out_bytes += text.len();
        self.out.push_back(Message::Text(text.into()));
    }

    /// RFC 7395 §3.6: once both sides sent `<close/>`, the WebSocket connection is closed.
    async fn close_websocket(&mut self) {
        if self.ws_closed {
            return;
        }
        self.ws_closed = true;
        let frame = CloseFrame {
            code: 1000,
            reason: "".into(),
        };
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }
}

fn ws_err(e: axum::Error) -> TransportError {
    TransportError::Io(std::io::Error::other(e))
}

fn message_len(m: &Message) -> usize {
    match m {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) => 0,
    }
}

impl Transport for WsTransport {
    fn kind(&self) -> &'static str {
        "websocket"
    }

    async fn recv(&mut self) -> Result<Option<StreamEvent>, TransportError> {
        loop {
            let Some(message) = self.socket.recv().await else {
                return Ok(None);
            };
            let text = match message.map_err(ws_err)? {
                Message::Text(text) => text,
                Message::Binary(_) => {
                    return Err(TransportError::Framing(
                        "binary WebSocket messages are not allowed (RFC 7395 §3.3.3)".into(),
                    ))
                }
                // Pings are answered by the WebSocket layer.
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => return Ok(None),
            };
            // COMPAT: some clients send whitespace keepalives as messages; RFC 7395 §3.3.3
            // has each message be one element, so they carry nothing.
            if text.as_str().trim().is_empty() {
                continue;
            }
            let element = parse_document(text.as_bytes(), ns::CLIENT, &self.limits)?;
            if element.ns() == ns::FRAMING {
                match element.name() {
                    "open" => {
                        return Ok(Some(StreamEvent::Open {
                            header: element,
                            default_ns: ns::CLIENT.into(),
                        }))
                    }
                    "close" => {
                        self.got_close = true;
                        if self.sent_close {
                            self.close_websocket().await;
                        }
                        return Ok(Some(StreamEvent::Close));
                    }
                    _ => {}
                }
            }
            return Ok(Some(StreamEvent::Stanza(element)));
        }
    }

    fn send_open(&mut self, attrs: &[(&str, &str)]) {
        let mut s = String::with_capacity(128);
        s.push_str("<open xmlns='");
        s.push_str(ns::FRAMING);
        s.push('\'');
        for (k, v) in attrs {
            s.push(' ');
            s.push_str(k);
            s.push_str("='");
            escape_attr(v, &mut s);
            s.push('\'');
        }
        s.push_str("/>");
        self.queue_text(s);
    }

    /// Every message is a standalone document (RFC 7395 §3.3.3), so namespaces are declared
    /// on each: `xmlns:stream` on stream elements, `xmlns='jabber:client'` on stanzas.
    fn send_element(&mut self, element: &Element) {
        let mut s = String::with_capacity(256);
        if element.ns() == ns::STREAM {
            element.write_prefixed(&mut s, "stream", ns::CLIENT, true);
        } else {
            element.write_to(&mut s, "");
        }
        self.queue_text(s);
    }

    /// RFC 7395 §3.5 defers keepalives to WebSocket pings.
    fn send_keepalive(&mut self) {
        self.out.push_back(Message::Ping(Bytes::new()));
    }

    fn send_close(&mut self) {
        self.sent_close = true;
        let mut s = String::with_capacity(64);
        s.push_str("<close xmlns='");
        s.push_str(ns::FRAMING);
        s.push_str("'/>");
        self.queue_text(s);
    }

    /// Cancel-safe: a message leaves the queue only once the socket accepted it.
    async fn flush(&mut self) -> Result<(), TransportError> {
        while !self.out.is_empty() {
            futures_util::future::poll_fn(|cx| self.socket.poll_ready_unpin(cx))
                .await
                .map_err(ws_err)?;
            let Some(message) = self.out.pop_front() else {
                break;
            };
            self.out_bytes = self.out_bytes.saturating_sub(message_len(&message));
            self.socket.start_send_unpin(message).map_err(ws_err)?;
        }
        SinkExt::flush(&mut self.socket).await.map_err(ws_err)?;
        if self.sent_close && self.got_close {
            self.close_websocket().await;
        }
        Ok(())
    }

    fn pending_bytes(&self) -> usize {
        self.out_bytes
    }

    fn can_starttls(&self) -> bool {
        false
    }

    async fn starttls(&mut self) -> Result<(), TransportError> {
        Err(TransportError::Tls(
            "STARTTLS is not available over WebSocket".into(),
        ))
    }

    /// Each message is parsed on its own: there is no parser state to forget.
    fn reset(&mut self) {}

    /// RFC 7395 §3 leaves security to the HTTP layer: secure when HTTPS, and also when the
    /// peer is on loopback, which is either a browser on the same machine (the usual
    /// development set-up, where browsers treat localhost as a secure context) or a reverse
    /// proxy that terminated TLS in front of us.
    fn is_secure(&self) -> bool {
        self.info.tls || self.info.peer.ip().to_canonical().is_loopback()
    }

    fn channel_bindings(&self) -> ChannelBindings {
        self.info.bindings.clone()
    }

    fn sni(&self) -> Option<String> {
        self.info.sni.clone()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        Some(self.info.peer)
    }

    fn shrink(&mut self) {
        if self.out.is_empty() {
            self.out = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn href_uses_host_header_and_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, "example.com:5280".parse().expect("header"));
        let mut config = WsConfig::default();
        assert_eq!(
            endpoint_href(&config, &headers),
            "ws://example.com:5280/xmpp-websocket"
        );
        config.tls = true;
        assert_eq!(
            endpoint_href(&config, &headers),
            "wss://example.com:5280/xmpp-websocket"
        );
        headers.insert(HOST, "evil'\"<x>".parse().expect("header"));
        assert_eq!(
            endpoint_href(&config, &headers),
            "wss://localhost/xmpp-websocket"
        );
    }
}
