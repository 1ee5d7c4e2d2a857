//! Typed errors of the load tool: what went wrong on one connection ([`ConnError`], counted
//! as a failure and reported by reason) and what stops a whole run ([`BenchError`]).

use std::io;

use starling_proto::sasl::ClientError;
use starling_xml::XmlError;

/// Why one connection, login or request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connect: {}", explain_connect(.0))]
    Connect(io::Error),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("TLS: {0}")]
    Tls(io::Error),
    #[error("WebSocket: {0}")]
    WebSocket(String),
    #[error("XML from the server: {0}")]
    Xml(#[from] XmlError),
    #[error("the server closed the connection")]
    Eof,
    #[error("the server closed the stream")]
    Closed,
    #[error("stream error from the server: {0}")]
    StreamError(String),
    #[error("timed out ({0})")]
    Timeout(&'static str),
    #[error("{0}")]
    Protocol(String),
    #[error("SASL failure: {0}")]
    SaslFailure(String),
    #[error("SASL: {0}")]
    Sasl(#[from] ClientError),
    #[error("{step}: error {condition}")]
    Iq {
        step: &'static str,
        condition: String,
    },
}

impl ConnError {
    /// A short reason for the failure table: the same for every connection that failed the
    /// same way (no JIDs, ids or counts), so reasons can be grouped.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// True when the local process ran out of file descriptors: every later connect fails
    /// the same way, so the run says so loudly.
    pub fn is_emfile(&self) -> bool {
        matches!(self, ConnError::Connect(e) if e.raw_os_error() == Some(EMFILE))
    }
}

const EMFILE: i32 = 24;
const EADDRNOTAVAIL: i32 = 99;

fn explain_connect(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(EMFILE) => format!(
            "{e}: this tool is out of file descriptors; raise the hard limit \
             (ulimit -Hn, or LimitNOFILE) — the soft limit is already raised to it"
        ),
        Some(EADDRNOTAVAIL) => format!(
            "{e}: out of local ports for this source address; spread connections over \
             more addresses with --source 127.0.0.2-127.0.0.9"
        ),
        _ => e.to_string(),
    }
}

/// What stops a run before it produces a report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bad option value (exit code 2).
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Conn(#[from] ConnError),
}
