//! The element tree every layer speaks: a namespaced XML element with attributes and children,
//! and its serializer (RFC 6120 §11: XML restrictions apply to what we emit too).

use std::borrow::Cow;
use std::fmt;

/// A child node: an element or character data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// A namespaced XML element.
///
/// Attribute names are stored as written: unprefixed ones as they are (`to`, `type`), prefixed
/// ones with their prefix (`xml:lang`, `p:attr`). The default namespace declaration is not an
/// attribute: an element's namespace is in [`Element::ns`], and the serializer declares it
/// (`xmlns='…'`) when it differs from the parent's. Prefix declarations are not attributes
/// either, with one exception that keeps prefixed attributes well-formed: when the parser
/// builds an element carrying an attribute with a prefix other than `xml` (`p:attr`), it also
/// stores that prefix's declaration as the attribute `xmlns:p` (value: the namespace URI in
/// scope there, whether declared on this element or an ancestor), placed just before the first
/// attribute using it. The serializer writes attributes verbatim, so the output declares the
/// prefix where it is used, and parsing it again gives an equal element. Code building elements
/// with prefixed attributes must add the `xmlns:p` attribute itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    name: String,
    /// Borrowed for the well-known namespaces the parser recognizes (no allocation per element
    /// for `jabber:client`), owned otherwise.
    ns: Cow<'static, str>,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

impl Element {
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element::with_ns(name.into(), Cow::Owned(ns.into()))
    }

    /// Parser fast path: the namespace may be a borrowed well-known one.
    pub(crate) fn with_ns(name: String, ns: Cow<'static, str>) -> Self {
        Element {
            name,
            ns,
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Local name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    pub fn set_ns(&mut self, ns: impl Into<String>) {
        self.ns = Cow::Owned(ns.into());
    }

    /// True when this element has the given local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets (or replaces) an attribute.
    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        if let Some(slot) = self.attrs.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = value;
        } else {
            self.attrs.push((name, value));
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(pos).1)
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: sets the attribute only when a value is given.
    pub fn with_opt_attr(self, name: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.with_attr(name, v),
            None => self,
        }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    pub fn nodes_mut(&mut self) -> &mut Vec<Node> {
        &mut self.children
    }

    /// Child elements, skipping text.
    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn children_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// A copy with the same name, namespace and attributes but no children: what a reply
    /// needs of a request, without copying its payload.
    pub fn shallow_clone(&self) -> Element {
        Element {
            name: self.name.clone(),
            ns: self.ns.clone(),
            attrs: self.attrs.clone(),
            children: Vec::new(),
        }
    }

    /// The first child with this local name and namespace.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children().find(|e| e.is(name, ns))
    }

    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children_mut().find(|e| e.is(name, ns))
    }

    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.get_child(name, ns).is_some()
    }

    /// The first child element, whatever its name (the payload of an IQ).
    pub fn first_child(&self) -> Option<&Element> {
        self.children().next()
    }

    /// Removes and returns the first child with this name and namespace.
    pub fn remove_child(&mut self, name: &str, ns: &str) -> Option<Element> {
        let pos = self
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if e.is(name, ns)))?;
        match self.children.remove(pos) {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        }
    }

    /// Removes every child element matching the predicate.
    pub fn retain_children(&mut self, mut keep: impl FnMut(&Element) -> bool) {
        self.children.retain(|n| match n {
            Node::Element(e) => keep(e),
            Node::Text(_) => true,
        });
    }

    pub fn append_child(&mut self, child: Element) -> &mut Element {
        self.children.push(Node::Element(child));
        match self.children.last_mut() {
            Some(Node::Element(e)) => e,
            _ => unreachable!("just pushed an element"),
        }
    }

    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    pub fn append_text(&mut self, text: impl Into<String>) {
        let text = text.into();
        if text.is_empty() {
            return;
        }
        if let Some(Node::Text(t)) = self.children.last_mut() {
            t.push_str(&text);
        } else {
            self.children.push(Node::Text(text));
        }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.append_text(text);
        self
    }

    /// All direct character data, concatenated.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                out.push_str(t);
            }
        }
        out
    }

    /// Text of the first child with this name and namespace.
    pub fn child_text(&self, name: &str, ns: &str) -> Option<String> {
        self.get_child(name, ns).map(|c| c.text())
    }

    pub fn clear_children(&mut self) {
        self.children.clear();
    }

    /// Roughly how many bytes this element takes when serialized (and, within a small
    /// factor, in memory): for budgets such as a session's queue, without serializing.
    pub fn size_hint(&self) -> usize {
        let mut n = 2 * self.name.len() + 5;
        for (k, v) in &self.attrs {
            n += k.len() + v.len() + 4;
        }
        for c in &self.children {
            n += match c {
                Node::Element(e) => e.size_hint(),
                Node::Text(t) => t.len(),
            };
        }
        n
    }

    /// Serializes as a standalone fragment: the namespace is declared on this element.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(128);
        self.write_to(&mut out, "");
        out
    }

    /// Serializes into `out`, declaring `xmlns` only where the namespace differs from
    /// `parent_ns` (so a stanza written inside a `jabber:client` stream carries none).
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        self.write_tagged(out, None, self.ns != parent_ns, &self.ns);
    }

    /// Serializes a top-level element with a namespace prefix (`<stream:features>`), as stream
    /// elements are written inside a stream whose default namespace is the content namespace.
    /// `declare` adds `xmlns:prefix` (needed where no enclosing stream declares it, as in
    /// RFC 7395 WebSocket frames). Children are written against `default_ns`.
    pub fn write_prefixed(&self, out: &mut String, prefix: &str, default_ns: &str, declare: bool) {
        self.write_tagged(out, Some(prefix), declare, default_ns);
    }

    /// The one serializer: the tag (with `prefix:` when given), the namespace declaration
    /// when `declare` (`xmlns` or `xmlns:prefix`), the attributes, then the children written
    /// against `children_ns`.
    fn write_tagged(
        &self,
        out: &mut String,
        prefix: Option<&str>,
        declare: bool,
        children_ns: &str,
    ) {
        out.push('<');
        push_qname(out, prefix, &self.name);
        if declare {
            out.push_str(" xmlns");
            if let Some(p) = prefix {
                out.push(':');
                out.push_str(p);
            }
            out.push_str("='");
            escape_attr(&self.ns, out);
            out.push('\'');
        }
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("='");
            escape_attr(v, out);
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for n in &self.children {
            match n {
                Node::Element(e) => e.write_to(out, children_ns),
                Node::Text(t) => escape_text(t, out),
            }
        }
        out.push_str("</");
        push_qname(out, prefix, &self.name);
        out.push('>');
    }
}

impl Element {
    /// Parser fast path: appends an attribute known not to be present yet.
    pub(crate) fn push_attr(&mut self, name: String, value: String) {
        self.attrs.push((name, value));
    }

    /// Parser fast path: room for `n` more attributes without regrowing.
    pub(crate) fn reserve_attrs(&mut self, n: usize) {
        self.attrs.reserve_exact(n);
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml())
    }
}

fn push_qname(out: &mut String, prefix: Option<&str>, name: &str) {
    if let Some(p) = prefix {
        out.push_str(p);
        out.push(':');
    }
    out.push_str(name);
}

/// Escapes character data (`&`, `<`, `>`).
pub fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // A raw CR would be normalized to LF by the reader (XML 1.0 §2.11).
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
}

/// Escapes an attribute value written between single quotes.
pub fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            // Attribute-value normalization (XML 1.0 §3.3.3) would turn these into spaces.
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_namespaces_only_where_they_change() {
        let msg = Element::new("message", "jabber:client")
            .with_attr("to", "juliet@example.com")
            .with_child(Element::new("body", "jabber:client").with_text("a < b & 'c'"))
            .with_child(Element::new(
                "active",
                "http://jabber.org/protocol/chatstates",
            ));
        assert_eq!(
            {
                let mut s = String::new();
                msg.write_to(&mut s, "jabber:client");
                s
            },
            "<message to='juliet@example.com'><body>a &lt; b &amp; 'c'</body>\
             <active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        );
        assert!(msg.to_xml().starts_with("<message xmlns='jabber:client'"));
    }

    #[test]
    fn prefixed_stream_elements() {
        let f = Element::new("features", crate::ns::STREAM)
            .with_child(Element::new("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
        let mut s = String::new();
        f.write_prefixed(&mut s, "stream", crate::ns::CLIENT, true);
        assert_eq!(
            s,
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
             <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        );
    }

    #[test]
    fn attribute_values_are_escaped() {
        let e = Element::new("x", "ns").with_attr("a", "it's \"q\" <&>");
        assert_eq!(
            e.to_xml(),
            "<x xmlns='ns' a='it&apos;s &quot;q&quot; &lt;&amp;&gt;'/>"
        );
    }

    #[test]
    fn child_lookup_and_removal() {
        let mut e = Element::new("iq", "jabber:client")
            .with_child(Element::new("query", "jabber:iq:roster"))
            .with_text(" ");
        assert!(e.has_child("query", "jabber:iq:roster"));
        assert_eq!(e.first_child().map(|c| c.name()), Some("query"));
        assert!(e.remove_child("query", "jabber:iq:roster").is_some());
        assert!(e.first_child().is_none());
        e.set_attr("type", "get");
        e.set_attr("type", "set");
        assert_eq!(e.attr("type"), Some("set"));
    }
}
