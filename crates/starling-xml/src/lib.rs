//! Incremental, restricted XML for XMPP streams (RFC 6120 §11): an element tree, a serializer,
//! and a sans-I/O stream parser with limits.

pub mod element;
pub mod parser;

pub use element::{escape_attr, escape_text, Element, Node};
pub use parser::{parse_document, Limits, StreamEvent, StreamParser, XmlError};

/// Namespaces used across the layers.
pub mod ns {
    pub const STREAM: &str = "http://etherx.jabber.org/streams";
    pub const CLIENT: &str = "jabber:client";
    pub const SERVER: &str = "jabber:server";
    pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
    pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
}
