//! Sans-I/O XMPP stream parser (placeholder: being written).
use crate::Element;

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub max_attrs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_stanza_bytes: 256 * 1024, max_depth: 64, max_attrs: 64 }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum XmlError {
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    #[error("restricted XML: {0}")]
    Restricted(&'static str),
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    Open { header: Element, default_ns: String },
    Stanza(Element),
    Close,
}

pub struct StreamParser { _limits: Limits }

impl StreamParser {
    pub fn new(limits: Limits) -> Self { StreamParser { _limits: limits } }
    pub fn feed(&mut self, _data: &[u8]) {}
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, XmlError> { Ok(None) }
    pub fn buffered_bytes(&self) -> usize { 0 }
    pub fn shrink(&mut self) {}
}

pub fn parse_document(_data: &[u8], _default_ns: &str, _limits: &Limits) -> Result<Element, XmlError> {
    Err(XmlError::NotWellFormed("unimplemented".into()))
}
