//! The one tokenizer and tree builder behind both [`StreamParser`](super::StreamParser) (an
//! XMPP stream, RFC 6120 §4) and [`parse_document`](super::parse_document) (one element per
//! RFC 7395 WebSocket frame). It enforces the restricted XML profile of RFC 6120 §11.1,
//! namespaces (§11.2, Namespaces in XML 1.0) and the size limits that keep a hostile peer from
//! making us buffer without bound.
//!
//! The reader is sans-I/O and borrows its input: each call gets the unconsumed bytes and
//! reports how many it used. Bytes are consumed token by token (character data eagerly, as
//! soon as it is complete UTF-8), and the scan position inside an unfinished tag is kept
//! between calls, so input that arrives one byte at a time still costs O(n) in total.

use super::chars::{
    check_chars, check_no_cdata_end, decode_attr, decode_ref, is_ws, nwf, push_normalized,
    split_qname, MAX_REF,
};
use super::scope::Scope;
use super::tag::{parse_attrs, scan_tag, RawAttr};
use super::{Limits, XmlError};
use crate::{ns, Element};
use std::borrow::Cow;

/// Cap on the prolog and stream header together (RFC 6120 §4.7): a real one is a few hundred
/// bytes, and nothing before it may be used to make us buffer.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;

const TOO_BIG: &str = "stanza too large";
const BUILT_TOO_BIG: &str = "stanza size";

/// Namespaces nearly every element of a stream is in: elements in them borrow the constant
/// instead of holding a copy (so they cost nothing against the built-size budget either).
const WELL_KNOWN_NS: [&str; 4] = [ns::CLIENT, ns::SERVER, ns::STREAM, ns::FRAMING];

fn element_ns(uri: &str) -> Cow<'static, str> {
    match WELL_KNOWN_NS.iter().find(|k| **k == uri) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(uri.to_owned()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// An XMPP stream: the root start tag is an event; its children are the stanzas.
    Stream,
    /// One standalone document: its root element is the result.
    Document,
}

pub(crate) enum Out {
    Open { header: Element, default_ns: String },
    Element(Element),
    Close,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Phase {
    /// Nothing consumed yet (except a BOM): the XML declaration may come here and only here.
    Start,
    /// Before the root element.
    Prolog,
    /// Inside the root element.
    Content,
    /// After the root element.
    End,
}

/// A markup token whose end has not arrived yet, with where to resume the search for it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pending {
    None,
    StartTag { scan: usize, quote: u8 },
    EndTag { scan: usize },
    Decl { scan: usize },
    Cdata { scan: usize },
}

pub(super) enum Step {
    More,
    Skip(usize),
    Emit(usize, Out),
}

/// An open element: its raw QName starts at `names[name..]`; its declarations start at
/// `decls[decls..]`.
struct OpenTag {
    name: usize,
    decls: usize,
}

pub(crate) struct Reader {
    mode: Mode,
    limits: Limits,
    pub(super) phase: Phase,
    pub(super) pending: Pending,
    failed: Option<XmlError>,
    /// A self-closing stream root: `Close` follows `Open`.
    close_next: bool,
    /// Elements of the stanza being built (the stream root is never here).
    pub(super) stack: Vec<Element>,
    /// Every open element including the stream root, for end-tag matching and scoping.
    open: Vec<OpenTag>,
    names: String,
    scope: Scope,
    /// Declarations made before the input (the `default_ns` of a document).
    base_decls: usize,
    pub(super) attrs: Vec<RawAttr>,
    /// Character data of the innermost open element, not yet attached to it.
    text: String,
    /// The last character data consumed ended in CR (for CRLF split between feeds).
    cr: bool,
    /// How many `]` ended the last character data (to find `]]>` split between feeds).
    brackets: u8,
    /// Raw bytes consumed so far by the stanza being built.
    stanza_bytes: usize,
    /// Bytes of strings held by the tree of the stanza being built (names, owned namespaces,
    /// attributes, text): an inherited namespace makes this grow faster than `stanza_bytes`.
    built_bytes: usize,
    /// Raw bytes consumed by the prolog and stream header.
    header_bytes: usize,
}

impl Reader {
    /// `default_ns` is in scope for unprefixed names when the input declares none ("" for
    /// streams: their root declares it).
    pub(crate) fn new(mode: Mode, limits: Limits, default_ns: &str) -> Self {
        let mut r = Reader {
            mode,
            limits,
            phase: Phase::Start,
            pending: Pending::None,
            failed: None,
            close_next: false,
            stack: Vec::new(),
            open: Vec::new(),
            names: String::new(),
            scope: Scope::new(),
            base_decls: 0,
            attrs: Vec::new(),
            text: String::new(),
            cr: false,
            brackets: 0,
            stanza_bytes: 0,
            built_bytes: 0,
            header_bytes: 0,
        };
        if !default_ns.is_empty() {
            r.scope.declare("", default_ns);
        }
        r.base_decls = r.scope.mark();
        r
    }

    /// Forgets everything but the configuration: a new stream follows (RFC 6120 §4.3.3).
    pub(crate) fn reset(&mut self) {
        self.phase = Phase::Start;
        self.pending = Pending::None;
        self.failed = None;
        self.close_next = false;
        self.stack.clear();
        self.open.clear();
        self.names.clear();
        self.scope.pop(self.base_decls);
        self.text.clear();
        self.cr = false;
        self.brackets = 0;
        self.stanza_bytes = 0;
        self.built_bytes = 0;
        self.header_bytes = 0;
    }

    /// Raw bytes already consumed into the stanza being built.
    pub(crate) fn partial_bytes(&self) -> usize {
        self.stanza_bytes
    }

    pub(crate) fn shrink(&mut self) {
        self.stack.shrink_to_fit();
        self.open.shrink_to_fit();
        self.names.shrink_to_fit();
        self.scope.shrink();
        self.attrs.shrink_to_fit();
        self.text.shrink_to_fit();
    }

    /// Consumes input from `buf[*pos..]` up to the next event; `Ok(None)` when the input is
    /// used up or ends inside a token. After an error every call returns that error.
    pub(crate) fn next(&mut self, buf: &[u8], pos: &mut usize) -> Result<Option<Out>, XmlError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.run(buf, pos);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn run(&mut self, buf: &[u8], pos: &mut usize) -> Result<Option<Out>, XmlError> {
        if self.close_next {
            self.close_next = false;
            self.phase = Phase::End;
            return Ok(Some(Out::Close));
        }
        loop {
            let rest = buf.get(*pos..).unwrap_or_default();
            if rest.is_empty() {
                return Ok(None);
            }
            match self.step(rest)? {
                Step::More => {
                    self.check_pending(rest.len())?;
                    return Ok(None);
                }
                Step::Skip(n) => *pos += n,
                Step::Emit(n, out) => {
                    *pos += n;
                    return Ok(Some(out));
                }
            }
        }
    }

    /// The input ends inside a token: refuse to wait for more if what is buffered already
    /// breaks a limit, so a peer cannot make us hold an oversized stanza until it completes.
    fn check_pending(&self, buffered: usize) -> Result<(), XmlError> {
        match self.phase {
            Phase::Start | Phase::Prolog if self.mode == Mode::Stream => {
                if self.header_bytes + buffered > MAX_HEADER_BYTES {
                    return Err(XmlError::LimitExceeded("stream header too large"));
                }
            }
            Phase::End => {}
            _ => {
                if self.stanza_bytes + buffered > self.limits.max_stanza_bytes {
                    return Err(XmlError::LimitExceeded(TOO_BIG));
                }
            }
        }
        Ok(())
    }

    /// Counts `n` consumed bytes against the header or stanza limit.
    pub(super) fn charge(&mut self, n: usize) -> Result<(), XmlError> {
        if self.mode == Mode::Stream && matches!(self.phase, Phase::Start | Phase::Prolog) {
            self.header_bytes += n;
            if self.header_bytes > MAX_HEADER_BYTES {
                return Err(XmlError::LimitExceeded("stream header too large"));
            }
        } else {
            self.stanza_bytes += n;
            if self.stanza_bytes > self.limits.max_stanza_bytes {
                return Err(XmlError::LimitExceeded(TOO_BIG));
            }
        }
        Ok(())
    }

    /// Counts `n` bytes added to the tree of the stanza being built against the stanza limit.
    fn charge_built(&mut self, n: usize) -> Result<(), XmlError> {
        self.built_bytes += n;
        if self.built_bytes > self.limits.max_stanza_bytes {
            return Err(XmlError::LimitExceeded(BUILT_TOO_BIG));
        }
        Ok(())
    }

    fn step(&mut self, rest: &[u8]) -> Result<Step, XmlError> {
        match self.pending {
            Pending::None => self.begin(rest),
            Pending::StartTag { scan, quote } => self.start_tag(rest, scan, quote),
            Pending::EndTag { scan } => self.end_tag(rest, scan),
            Pending::Decl { scan } => self.decl(rest, scan),
            Pending::Cdata { scan } => self.cdata(rest, scan),
        }
    }

    fn begin(&mut self, rest: &[u8]) -> Result<Step, XmlError> {
        if self.phase == Phase::End && self.mode == Mode::Stream {
            // The peer closed its stream; whatever follows is of no interest.
            return Ok(Step::Skip(rest.len()));
        }
        if self.phase == Phase::Start && self.header_bytes == 0 && rest[0] == 0xEF {
            // COMPAT: a UTF-8 byte order mark (XML 1.0 §4.3.3) before the declaration.
            if rest.len() < 3 {
                return Ok(Step::More);
            }
            if rest[..3] == [0xEF, 0xBB, 0xBF] {
                self.charge(3)?;
                return Ok(Step::Skip(3));
            }
        }
        if rest[0] == b'<' {
            self.markup(rest)
        } else if !self.stack.is_empty() {
            self.text(rest)
        } else {
            self.outside(rest)
        }
    }

    /// Text outside any stanza: only white space, which is how keepalives look (RFC 6120
    /// §4.6.1); it is dropped without an event.
    fn outside(&mut self, rest: &[u8]) -> Result<Step, XmlError> {
        let n = rest.iter().position(|&b| !is_ws(b)).unwrap_or(rest.len());
        if n == 0 {
            return Err(nwf(match self.phase {
                Phase::Start | Phase::Prolog => "text before the root element",
                Phase::Content => "text outside a stanza",
                Phase::End => "text after the document element",
            }));
        }
        if self.phase == Phase::Start {
            self.phase = Phase::Prolog;
        }
        Ok(Step::Skip(n))
    }

    fn markup(&mut self, rest: &[u8]) -> Result<Step, XmlError> {
        let Some(&b1) = rest.get(1) else {
            return Ok(Step::More);
        };
        match b1 {
            b'/' => self.end_tag(rest, 2),
            b'?' => self.pi(rest),
            b'!' => self.bang(rest),
            _ if self.phase == Phase::End => Err(nwf("content after the document element")),
            _ => self.start_tag(rest, 1, 0),
        }
    }

    pub(super) fn cdata(&mut self, rest: &[u8], scan: usize) -> Result<Step, XmlError> {
        let Some(k) = rest[scan..].windows(3).position(|w| w == b"]]>") else {
            // Resume two bytes back: the `]]` may already be here.
            let scan = rest.len().saturating_sub(2).max(scan);
            self.pending = Pending::Cdata { scan };
            return Ok(Step::More);
        };
        self.pending = Pending::None;
        let end = scan + k;
        let n = end + 3;
        self.charge(n)?;
        let content = &rest[9..end];
        let s = utf8(content)?;
        let cr = check_chars(content)?;
        self.push_text(s, cr);
        self.brackets = 0;
        Ok(Step::Skip(n))
    }

    fn push_text(&mut self, s: &str, has_cr: bool) {
        if has_cr || self.cr {
            push_normalized(s, &mut self.text, &mut self.cr);
        } else {
            self.text.push_str(s);
        }
    }

    /// Character data or a reference inside an element, consumed as soon as it is complete.
    fn text(&mut self, rest: &[u8]) -> Result<Step, XmlError> {
        if rest[0] == b'&' {
            let window = &rest[1..rest.len().min(MAX_REF + 2)];
            // Every reference that can be valid is ASCII alphanumerics and `#`; stop at the
            // first other byte so `&amp</body>` fails now rather than waiting for more input.
            let end = window
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || b == b'#'));
            return match end {
                Some(k) if window[k] != b';' => Err(nwf("unterminated reference")),
                Some(k) => {
                    let n = k + 2;
                    self.charge(n)?;
                    decode_ref(&window[..k], &mut self.text)?;
                    self.cr = false;
                    self.brackets = 0;
                    Ok(Step::Skip(n))
                }
                None if rest.len() < MAX_REF + 2 => Ok(Step::More),
                None => Err(nwf("unterminated reference")),
            };
        }
        let end = rest
            .iter()
            .position(|&b| b == b'<' || b == b'&')
            .unwrap_or(rest.len());
        let seg = &rest[..end];
        let s = match std::str::from_utf8(seg) {
            Ok(s) => s,
            // A multi-byte character split between feeds: take the complete part.
            Err(e) if e.error_len().is_none() && end == rest.len() => {
                if e.valid_up_to() == 0 {
                    return Ok(Step::More);
                }
                utf8(&seg[..e.valid_up_to()])?
            }
            Err(_) => return Err(nwf("invalid UTF-8")),
        };
        let n = s.len();
        self.charge(n)?;
        let cr = check_chars(s.as_bytes())?;
        check_no_cdata_end(s.as_bytes(), &mut self.brackets)?;
        self.push_text(s, cr);
        Ok(Step::Skip(n))
    }

    fn start_tag(&mut self, rest: &[u8], scan: usize, quote: u8) -> Result<Step, XmlError> {
        let end = match scan_tag(rest, scan, quote)? {
            Ok(end) => end,
            Err((scan, quote)) => {
                self.pending = Pending::StartTag { scan, quote };
                return Ok(Step::More);
            }
        };
        self.pending = Pending::None;
        let n = end + 1;
        self.charge(n)?;
        let raw = &rest[1..end];
        let tag = utf8(raw)?;
        check_chars(raw)?;
        Ok(match self.open_element(tag)? {
            Some(out) => Step::Emit(n, out),
            None => Step::Skip(n),
        })
    }

    /// Handles a complete start tag (the text between `<` and `>`).
    fn open_element(&mut self, tag: &str) -> Result<Option<Out>, XmlError> {
        let (body, empty) = match tag.strip_suffix('/') {
            Some(b) => (b, true),
            None => (tag, false),
        };
        let name_end = body.bytes().position(is_ws).unwrap_or(body.len());
        let qname = &body[..name_end];
        let (prefix, local) = split_qname(qname)?;
        let is_root = self.mode == Mode::Stream && self.phase != Phase::Content;
        if !is_root && self.stack.len() >= self.limits.max_depth {
            return Err(XmlError::LimitExceeded("elements nested too deeply"));
        }
        parse_attrs(body, name_end, &mut self.attrs, self.limits.max_attrs)?;
        for (i, a) in self.attrs.iter().enumerate() {
            let name = &body[a.name.0..a.name.1];
            if self.attrs[..i]
                .iter()
                .any(|b| &body[b.name.0..b.name.1] == name)
            {
                return Err(XmlError::NotWellFormed(format!(
                    "duplicate attribute {name:?}"
                )));
            }
        }

        // Declarations first: they scope this element's own name and attributes.
        let mark = self.scope.mark();
        let mut plain = 0;
        for i in 0..self.attrs.len() {
            let a = self.attrs[i];
            let name = &body[a.name.0..a.name.1];
            let prefix = match name.strip_prefix("xmlns") {
                Some("") => "",
                Some(p) if p.starts_with(':') => &p[1..],
                _ => {
                    plain += 1;
                    continue;
                }
            };
            self.scope
                .declare_raw(prefix, &body[a.value.0..a.value.1])?;
        }

        let ns = element_ns(self.scope.resolve(prefix)?);
        let mut built = local.len();
        if let Cow::Owned(uri) = &ns {
            built += uri.len();
        }
        let mut el = Element::with_ns(local.to_owned(), ns);
        el.reserve_attrs(plain);
        for i in 0..self.attrs.len() {
            let a = self.attrs[i];
            let name = &body[a.name.0..a.name.1];
            if name == "xmlns" || name.starts_with("xmlns:") {
                continue;
            }
            let (p, _) = split_qname(name)?;
            if !p.is_empty() {
                // Prefixed attributes are stored as written ("p:attr"); their prefix must be
                // bound, and unless it is `xml` its declaration is kept as an `xmlns:p`
                // attribute so the element serializes well-formed (see `Element`).
                let uri = self.scope.resolve(p)?;
                if p != "xml" && !el.attrs().any(|(k, _)| k.strip_prefix("xmlns:") == Some(p)) {
                    let decl = format!("xmlns:{p}");
                    built += decl.len() + uri.len();
                    el.push_attr(decl, uri.to_owned());
                }
            }
            let raw = &body[a.value.0..a.value.1];
            let mut value = String::with_capacity(raw.len());
            decode_attr(raw, &mut value)?;
            built += name.len() + value.len();
            el.push_attr(name.to_owned(), value);
        }
        if !is_root {
            self.charge_built(built)?;
        }

        self.flush_text()?;
        self.open.push(OpenTag {
            name: self.names.len(),
            decls: mark,
        });
        self.names.push_str(qname);

        if is_root {
            let default_ns = self
                .scope
                .default_since(mark)
                .unwrap_or_default()
                .to_owned();
            self.phase = Phase::Content;
            self.close_next = empty;
            return Ok(Some(Out::Open {
                header: el,
                default_ns,
            }));
        }
        self.phase = Phase::Content;
        self.stack.push(el);
        if empty {
            return self.close_element();
        }
        Ok(None)
    }

    /// Attaches pending character data to the innermost open element.
    fn flush_text(&mut self) -> Result<(), XmlError> {
        self.cr = false;
        self.brackets = 0;
        if self.text.is_empty() {
            return Ok(());
        }
        if self.stack.is_empty() {
            self.text.clear();
            return Ok(());
        }
        self.charge_built(self.text.len())?;
        // Small runs are copied so our buffer keeps its capacity; a big one is handed over.
        let text = if self.text.capacity() > 4096 {
            std::mem::take(&mut self.text)
        } else {
            let t = self.text.clone();
            self.text.clear();
            t
        };
        if let Some(top) = self.stack.last_mut() {
            top.append_text(text);
        }
        Ok(())
    }

    fn end_tag(&mut self, rest: &[u8], scan: usize) -> Result<Step, XmlError> {
        let end = match rest[scan..].iter().position(|&b| b == b'>' || b == b'<') {
            Some(k) if rest[scan + k] == b'>' => scan + k,
            Some(_) => return Err(nwf("'<' in end tag")),
            None => {
                self.pending = Pending::EndTag { scan: rest.len() };
                return Ok(Step::More);
            }
        };
        self.pending = Pending::None;
        let n = end + 1;
        let mut name = &rest[2..end];
        while let [head @ .., last] = name {
            if !is_ws(*last) {
                break;
            }
            name = head;
        }
        let Some(open) = self.open.last() else {
            return Err(nwf("end tag before any start tag"));
        };
        if name != &self.names.as_bytes()[open.name..] {
            return Err(XmlError::NotWellFormed(format!(
                "mismatched end tag </{}>, expected </{}>",
                String::from_utf8_lossy(name),
                &self.names[open.name..]
            )));
        }
        if self.stack.is_empty() {
            // The stream root: the peer closes its stream (RFC 6120 §4.4).
            self.phase = Phase::End;
            return Ok(Step::Emit(n, Out::Close));
        }
        self.charge(n)?;
        Ok(match self.close_element()? {
            Some(out) => Step::Emit(n, out),
            None => Step::Skip(n),
        })
    }

    fn close_element(&mut self) -> Result<Option<Out>, XmlError> {
        self.flush_text()?;
        if let Some(open) = self.open.pop() {
            self.names.truncate(open.name);
            self.scope.pop(open.decls);
        }
        let el = self
            .stack
            .pop()
            .ok_or_else(|| nwf("end tag without a start tag"))?;
        match self.stack.last_mut() {
            Some(parent) => {
                parent.append_child(el);
                Ok(None)
            }
            None => {
                if self.mode == Mode::Document {
                    self.phase = Phase::End;
                }
                self.stanza_bytes = 0;
                self.built_bytes = 0;
                Ok(Some(Out::Element(el)))
            }
        }
    }
}

pub(super) fn utf8(b: &[u8]) -> Result<&str, XmlError> {
    std::str::from_utf8(b).map_err(|_| nwf("invalid UTF-8"))
}
