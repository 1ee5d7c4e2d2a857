//! `<?` and `<!` markup other than CDATA sections: the XML declaration (XML 1.0 §2.8), and the
//! processing instructions, comments and DTD markup that RFC 6120 §11.1 forbids.

use super::chars::{is_ws, nwf};
use super::reader::{utf8, Pending, Phase, Reader, Step};
use super::tag::parse_attrs;
use super::XmlError;

const RESTRICTED_DTD: &str = "document type declarations and DTD markup are not allowed";
const RESTRICTED_PI: &str = "processing instructions are not allowed";
const RESTRICTED_COMMENT: &str = "comments are not allowed";

impl Reader {
    /// `<?`: the XML declaration at the very start, else a processing instruction, which RFC
    /// 6120 §11.1 forbids.
    pub(super) fn pi(&mut self, rest: &[u8]) -> Result<Step, XmlError> {
        const XML: &[u8] = b"<?xml";
        if self.phase != Phase::Start {
            return Err(XmlError::Restricted(RESTRICTED_PI));
        }
        let k = rest.len().min(XML.len());
        if rest[..k] != XML[..k] {
            return Err(XmlError::Restricted(RESTRICTED_PI));
        }
        match rest.get(XML.len()) {
            None => Ok(Step::More),
            Some(&b) if is_ws(b) || b == b'?' => self.decl(rest, XML.len()),
            Some(_) => Err(XmlError::Restricted(RESTRICTED_PI)),
        }
    }

    /// `<!`: a CDATA section, or a comment or DTD markup, which RFC 6120 §11.1 forbids.
    pub(super) fn bang(&mut self, rest: &[u8]) -> Result<Step, XmlError> {
        const CDATA: &[u8] = b"<![CDATA[";
        match rest.get(2) {
            None => Ok(Step::More),
            Some(b'-') => Err(XmlError::Restricted(RESTRICTED_COMMENT)),
            Some(b'[') => {
                let k = rest.len().min(CDATA.len());
                if rest[..k] != CDATA[..k] {
                    // `<![INCLUDE[` and friends: DTD conditional sections.
                    return Err(XmlError::Restricted(RESTRICTED_DTD));
                }
                if k < CDATA.len() {
                    return Ok(Step::More);
                }
                if self.stack.is_empty() {
                    return Err(nwf("CDATA section outside an element"));
                }
                self.cdata(rest, CDATA.len())
            }
            Some(_) => Err(XmlError::Restricted(RESTRICTED_DTD)),
        }
    }

    pub(super) fn decl(&mut self, rest: &[u8], scan: usize) -> Result<Step, XmlError> {
        let mut i = scan;
        let end = loop {
            let Some(k) = rest[i..].iter().position(|&b| b == b'?') else {
                self.pending = Pending::Decl { scan: rest.len() };
                return Ok(Step::More);
            };
            i += k;
            match rest.get(i + 1) {
                None => {
                    self.pending = Pending::Decl { scan: i };
                    return Ok(Step::More);
                }
                Some(b'>') => break i,
                Some(_) => i += 1,
            }
        };
        self.pending = Pending::None;
        let n = end + 2;
        self.charge(n)?;
        let body = utf8(&rest[5..end])?;
        parse_attrs(body, 0, &mut self.attrs, 8)?;
        // version, then optional encoding, then optional standalone, in that order (§2.8).
        let mut stage = 0;
        for a in &self.attrs {
            let value = &body[a.value.0..a.value.1];
            stage = match (&body[a.name.0..a.name.1], stage) {
                ("version", 0) if value.len() > 2 && value.starts_with("1.") => 1,
                ("encoding", 1) if value.eq_ignore_ascii_case("UTF-8") => 2,
                ("encoding", 1) => return Err(nwf("unsupported encoding (only UTF-8 is allowed)")),
                ("standalone", 1 | 2) if value == "yes" || value == "no" => 3,
                _ => return Err(nwf("malformed XML declaration")),
            };
        }
        if stage == 0 {
            return Err(nwf("XML declaration without a version"));
        }
        self.phase = Phase::Prolog;
        Ok(Step::Skip(n))
    }
}
