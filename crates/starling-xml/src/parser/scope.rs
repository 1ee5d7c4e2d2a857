//! Namespace declarations in scope while parsing (Namespaces in XML 1.0 §3 and §6; RFC 6120
//! §11.2). Everything lives in one string arena: entering and leaving elements allocates
//! nothing once the arena has grown to the stream's usual depth.

use super::chars::{decode_attr, nwf, split_qname};
use super::XmlError;
use crate::ns;

const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// Longest namespace URI accepted, in bytes after decoding. Real ones are well under 100;
/// every element in a namespace holds a copy of it, so it must not be left to the stanza limit
/// alone.
pub(crate) const MAX_NS_BYTES: usize = 1024;

/// One declaration: prefix `arena[start..mid]` ("" for the default), URI `arena[mid..end]`.
struct Decl {
    start: usize,
    mid: usize,
    end: usize,
}

pub(crate) struct Scope {
    arena: String,
    decls: Vec<Decl>,
}

impl Scope {
    /// A scope with the `xml` prefix bound, as it is by definition.
    pub(crate) fn new() -> Self {
        let mut s = Scope {
            arena: String::new(),
            decls: Vec::new(),
        };
        s.declare("xml", ns::XML);
        s
    }

    /// Where the declarations of an element about to be opened will start.
    pub(crate) fn mark(&self) -> usize {
        self.decls.len()
    }

    /// Binds a trusted prefix.
    pub(crate) fn declare(&mut self, prefix: &str, uri: &str) {
        let start = self.arena.len();
        self.arena.push_str(prefix);
        let mid = self.arena.len();
        self.arena.push_str(uri);
        self.push(start, mid);
    }

    fn push(&mut self, start: usize, mid: usize) {
        let end = self.arena.len();
        self.decls.push(Decl { start, mid, end });
    }

    /// Binds `prefix` ("" for `xmlns=`) to an attribute value as written, enforcing the rules
    /// on reserved names and the [`MAX_NS_BYTES`] cap.
    pub(crate) fn declare_raw(&mut self, prefix: &str, raw_value: &str) -> Result<(), XmlError> {
        if !prefix.is_empty() && !split_qname(prefix)?.0.is_empty() {
            return Err(nwf("invalid namespace prefix"));
        }
        let start = self.arena.len();
        self.arena.push_str(prefix);
        let mid = self.arena.len();
        decode_attr(raw_value, &mut self.arena)?;
        let uri = &self.arena[mid..];
        if uri.len() > MAX_NS_BYTES {
            return Err(XmlError::LimitExceeded("namespace length"));
        }
        if !prefix.is_empty() && uri.is_empty() {
            return Err(nwf("a namespace prefix cannot be undeclared"));
        }
        if prefix == "xmlns" || uri == XMLNS_NS || (prefix == "xml") != (uri == ns::XML) {
            return Err(nwf("reserved namespace prefix or name"));
        }
        self.push(start, mid);
        Ok(())
    }

    /// The namespace bound to `prefix`; "" (no namespace) for an unprefixed name when no
    /// default is declared; an error for an unbound prefix (RFC 6120 §11.2).
    pub(crate) fn resolve(&self, prefix: &str) -> Result<&str, XmlError> {
        for d in self.decls.iter().rev() {
            if &self.arena[d.start..d.mid] == prefix {
                return Ok(&self.arena[d.mid..d.end]);
            }
        }
        if prefix.is_empty() {
            Ok("")
        } else {
            Err(XmlError::NotWellFormed(format!(
                "undeclared namespace prefix {prefix:?}"
            )))
        }
    }

    /// The default namespace declared since `mark`, if any (the stream header's own).
    pub(crate) fn default_since(&self, mark: usize) -> Option<&str> {
        self.decls
            .get(mark..)?
            .iter()
            .find(|d| d.start == d.mid)
            .map(|d| &self.arena[d.mid..d.end])
    }

    /// Drops the declarations made since `mark` (the element that made them closed).
    pub(crate) fn pop(&mut self, mark: usize) {
        self.decls.truncate(mark);
        self.arena.truncate(self.decls.last().map_or(0, |d| d.end));
    }

    pub(crate) fn shrink(&mut self) {
        self.arena.shrink_to_fit();
        self.decls.shrink_to_fit();
    }
}
