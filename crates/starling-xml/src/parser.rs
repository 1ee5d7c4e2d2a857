//! Sans-I/O XMPP stream parser: bytes in, stream events out (RFC 6120 §4 streams, §11 XML
//! usage), and a one-shot parser for RFC 7395 WebSocket frames.
//!
//! What is enforced, and why:
//! - Restricted XML (RFC 6120 §11.1): no DTD or `DOCTYPE`, no comments, no processing
//!   instructions except the XML declaration at the very start, no entities beyond the five
//!   predefined ones and character references. Those give [`XmlError::Restricted`]; an
//!   undefined entity is a well-formedness error (XML 1.0 §4.1) and gives
//!   [`XmlError::NotWellFormed`].
//! - Well-formedness (XML 1.0, Namespaces in XML 1.0; RFC 6120 §11.2 for prefixes): UTF-8 and
//!   `Char` rules, names, quoting, unique attributes, matching end tags, bound prefixes.
//! - Limits ([`Limits`]): stanza size is checked on what is buffered, before the stanza ends, so
//!   a peer cannot make us hold more than the limit; depth and attribute counts are checked per
//!   element; the prolog and stream header together are capped at 16 KiB.
//! - What is built is bounded too, not just what is read: every element holds its own copy of
//!   its namespace URI, so a long URI inherited by many small elements would turn a stanza of
//!   a few hundred KiB into gigabytes. Namespace URIs are capped at 1024 bytes
//!   ([`XmlError::LimitExceeded`]`("namespace length")`), and the strings the tree of one
//!   stanza holds (names, namespaces, attributes, text) count against `max_stanza_bytes` as
//!   well (`"stanza size"`), checked as each element and text run is added.
//!
//! Prefixed attributes: [`Element`] stores attributes by their name as written and the
//! serializer writes them verbatim, so an attribute `p:attr` keeps its namespace only if the
//! declaration of `p` goes with it. The parser therefore stores, on each element carrying an
//! attribute with a prefix other than `xml`, that prefix's declaration as the attribute
//! `xmlns:p` (the URI in scope, wherever it was declared), just before the first attribute
//! using it. Serialized output stays well-formed, and parsing it again gives an equal element.
//!
//! Both entry points share one tokenizer (`reader.rs`), which keeps its scan position across
//! feeds and consumes input token by token.

mod chars;
mod decl;
mod reader;
mod scope;
mod tag;

use crate::Element;
use reader::{Mode, Out, Reader};

/// Resource limits applied to untrusted input.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest stanza (a child of the stream root, or a whole [`parse_document`] input), in raw
    /// bytes from its `<` to the end of its end tag. Also caps the bytes the stanza's tree holds:
    /// element local names, namespace URIs (except the stream namespaces `jabber:client`,
    /// `jabber:server`, the streams and framing ones, which are shared constants), attribute
    /// names and decoded values, and decoded text.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza (the stanza itself is depth 1; the stream root
    /// does not count).
    pub max_depth: usize,
    /// Most attributes on one element, namespace declarations included.
    pub max_attrs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 64,
            max_attrs: 64,
        }
    }
}

/// Why input was rejected; each maps to a stream error at the session edge (RFC 6120 §4.9.3:
/// `not-well-formed`, `restricted-xml`, `policy-violation`).
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
    /// The stream header (RFC 6120 §4.7): the root element without children, its namespace
    /// declarations removed (except those kept for its prefixed attributes other than `xml:`,
    /// as on every element); `default_ns` is the default namespace it declares ("" if none).
    Open { header: Element, default_ns: String },
    /// A complete child of the stream root, namespaces resolved.
    Stanza(Element),
    /// The closing `</stream:stream>` (RFC 6120 §4.4).
    Close,
}

/// Incremental parser for one XMPP stream.
///
/// Feed it bytes as they arrive, in pieces of any size, then call
/// [`next_event`](Self::next_event) until it returns `Ok(None)`. Call `next_event` after every
/// `feed`: limits are checked there. After an error it keeps returning that error.
pub struct StreamParser {
    buf: Vec<u8>,
    /// Start of the unconsumed input in `buf`.
    pos: usize,
    reader: Reader,
}

impl StreamParser {
    pub fn new(limits: Limits) -> Self {
        StreamParser {
            buf: Vec::new(),
            pos: 0,
            reader: Reader::new(Mode::Stream, limits, ""),
        }
    }

    /// Appends bytes received from the network; any split is fine, even inside a UTF-8
    /// sequence.
    pub fn feed(&mut self, data: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// The next event, or `Ok(None)` when more bytes are needed. Whitespace between stanzas
    /// (keepalives) produces no event. Input after the stream's close is ignored.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        let out = self.reader.next(&self.buf, &mut self.pos)?;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        Ok(out.map(|o| match o {
            Out::Open { header, default_ns } => StreamEvent::Open { header, default_ns },
            Out::Element(e) => StreamEvent::Stanza(e),
            Out::Close => StreamEvent::Close,
        }))
    }

    /// Bytes received but not yet returned as events: unparsed input plus the raw size of the
    /// stanza being built. Drops back after each stanza.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() - self.pos + self.reader.partial_bytes()
    }

    /// Gives back the input buffer when every byte in it was parsed (cheap: call it before
    /// waiting for more input, so an idle stream holds no input buffer).
    pub fn release_input(&mut self) {
        if self.pos == self.buf.len() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }

    /// Bytes the input buffer holds allocated (for checks that idle streams hold none).
    pub fn input_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Releases spare capacity (call when the connection goes idle).
    pub fn shrink(&mut self) {
        self.compact();
        if self.buf.is_empty() {
            self.buf = Vec::new();
        } else {
            self.buf.shrink_to_fit();
        }
        self.reader.shrink();
    }

    /// Starts over for a new stream on the same connection (a stream restart, RFC 6120
    /// §4.3.3), keeping bytes not parsed yet. Equivalent to a new parser with the same limits
    /// fed those bytes.
    pub fn reset(&mut self) {
        self.reader.reset();
    }

    /// Drops consumed bytes from the front of the buffer. Done when bytes are appended, so a
    /// run of `next_event` calls moves nothing.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// Parses one complete standalone document (an RFC 7395 WebSocket frame such as `<open/>` or
/// a stanza) under the same restrictions and limits as a stream; the whole input counts
/// against `max_stanza_bytes`. Unprefixed elements are in `default_ns` unless the document
/// declares a default namespace. An XML declaration and surrounding white space are allowed;
/// anything else after the element, or an incomplete element, is not well-formed.
pub fn parse_document(data: &[u8], default_ns: &str, limits: &Limits) -> Result<Element, XmlError> {
    if data.len() > limits.max_stanza_bytes {
        return Err(XmlError::LimitExceeded("stanza too large"));
    }
    let mut reader = Reader::new(Mode::Document, limits.clone(), default_ns);
    let mut pos = 0;
    let mut root = None;
    while let Some(out) = reader.next(data, &mut pos)? {
        match out {
            Out::Element(e) => root = Some(e),
            Out::Open { .. } | Out::Close => {
                return Err(XmlError::NotWellFormed("unexpected event".into()))
            }
        }
    }
    match root {
        Some(e) if pos == data.len() => Ok(e),
        Some(_) => Err(XmlError::NotWellFormed(
            "incomplete content after the element".into(),
        )),
        None => Err(XmlError::NotWellFormed("incomplete document".into())),
    }
}
