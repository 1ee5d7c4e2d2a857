//! Opening a client stream up to the features a login or a registration starts from:
//! TCP (bound to the next `--source` address), then STARTTLS (RFC 6120 §5), Direct TLS
//! (XEP-0368) or a WebSocket (RFC 7395, over TLS for `wss://`).

use std::net::{IpAddr, SocketAddr};

use starling_xml::{ns, Element};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::stanza::{stream_open, NS_TLS};
use super::{Conn, Event, Stream};
use crate::ctx::{Ctx, Target, Transport};
use crate::error::ConnError;

/// A TCP connection from `source` (port chosen by the kernel) or from wherever the kernel
/// likes.
pub async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, ConnError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(ConnError::Connect)?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(ConnError::Connect)?;
    }
    let s = socket.connect(addr).await.map_err(ConnError::Connect)?;
    // Stanzas are small and latency is measured: no Nagle delay.
    s.set_nodelay(true).map_err(ConnError::Io)?;
    Ok(s)
}

/// Sends a stream header and returns the `<stream:features/>` that follows it.
pub async fn open_stream(conn: &mut Conn, domain: &str) -> Result<Element, ConnError> {
    let ws = conn.is_ws();
    conn.push(|o| stream_open(o, domain, ws));
    conn.flush().await?;
    match conn.next_event().await? {
        Event::Open(_) => {}
        Event::Stanza(e) if e.is("error", ns::STREAM) => return Err(super::stream_error(&e)),
        _ => {
            return Err(ConnError::Protocol(
                "no stream header from the server".into(),
            ))
        }
    }
    let features = conn.next_stanza().await?;
    if !features.is("features", ns::STREAM) {
        return Err(ConnError::Protocol(format!(
            "expected stream features, got <{}/>",
            features.name()
        )));
    }
    Ok(features)
}

/// A connection with TLS up (unless it is plain `ws://`) and the stream features to go on
/// from.
pub async fn connect(ctx: &Ctx) -> Result<(Conn, Element), ConnError> {
    let domain = &ctx.common.domain;
    match &ctx.target {
        Target::Tcp(addr) => {
            let tcp = tcp(*addr, ctx.sources.next()).await?;
            if ctx.common.transport == Transport::Tls {
                let tls = TlsConnector::from(ctx.tls.clone())
                    .connect(ctx.server_name.clone(), tcp)
                    .await
                    .map_err(ConnError::Tls)?;
                let mut conn = Conn::raw(Stream::Tls(Box::new(tls)));
                let features = open_stream(&mut conn, domain).await?;
                return Ok((conn, features));
            }
            let mut conn = Conn::raw(Stream::Tcp(tcp));
            let features = open_stream(&mut conn, domain).await?;
            if !features.has_child("starttls", NS_TLS) {
                return Err(ConnError::Protocol(
                    "the server does not offer STARTTLS".into(),
                ));
            }
            conn.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                .await?;
            let answer = conn.next_stanza().await?;
            if !answer.is("proceed", NS_TLS) {
                return Err(ConnError::Protocol(format!(
                    "STARTTLS refused: <{}/>",
                    answer.name()
                )));
            }
            conn.starttls(
                &TlsConnector::from(ctx.tls.clone()),
                ctx.server_name.clone(),
            )
            .await?;
            let features = open_stream(&mut conn, domain).await?;
            Ok((conn, features))
        }
        Target::Ws { addr, url, tls } => {
            let tcp = tcp(*addr, ctx.sources.next()).await?;
            let stream = if *tls {
                let t = TlsConnector::from(ctx.tls.clone())
                    .connect(ctx.server_name.clone(), tcp)
                    .await
                    .map_err(ConnError::Tls)?;
                Stream::Tls(Box::new(t))
            } else {
                Stream::Tcp(tcp)
            };
            let mut req = url
                .as_str()
                .into_client_request()
                .map_err(|e| ConnError::WebSocket(e.to_string()))?;
            // RFC 7395 §3.2: the subprotocol is "xmpp".
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
            // tungstenite's default is a 128 KiB read buffer per connection: far too much
            // for thousands of idle sessions of small stanzas.
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let (ws, _resp) =
                tokio_tungstenite::client_async_with_config(req, stream, Some(config))
                    .await
                    .map_err(|e| ConnError::WebSocket(e.to_string()))?;
            let mut conn = Conn::ws(ws);
            let features = open_stream(&mut conn, domain).await?;
            Ok((conn, features))
        }
    }
}
