//! Listeners and transports: TCP with STARTTLS (RFC 6120 §5), Direct TLS (XEP-0368), WebSocket
//! (RFC 7395) with host-meta discovery (XEP-0156), the certificate resolver (files or a
//! generated self-signed certificate) and channel-binding data (RFC 5929, RFC 9266).
//!
//! Everything here implements [`starling_core::transport::Transport`] or feeds connections to a
//! [`StreamHandler`]; net never names core's server type, so stream logic stays testable without
//! sockets and transports stay testable without a server.

mod der;
pub mod listener;
pub mod tcp;
pub mod tls;
pub mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use listener::{bind_c2s, bind_http, raise_fd_limit, ConnLimits, ListenerSet, StreamHandler};
pub use tcp::{ClientTls, TcpOptions, TcpTransport};
pub use tls::{build_tls, CertConfig, TlsSetup};
pub use websocket::{router, WsConfig, WsTransport};

/// Errors of setting up listeners and TLS (per-connection errors are
/// [`starling_core::transport::TransportError`]).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("generating a self-signed certificate: {0}")]
    CertGen(#[from] rcgen::Error),
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
}
