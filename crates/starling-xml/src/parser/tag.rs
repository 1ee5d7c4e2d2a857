//! Lexing of tags (XML 1.0 §3.1): finding where a start tag ends, and splitting a complete
//! tag body into attribute name and value ranges. Plain functions over the borrowed input,
//! inlinable into the reader's hot path.

use super::chars::{is_ws, nwf};
use super::XmlError;

/// Byte ranges of one attribute's name and (raw) value inside a tag.
#[derive(Clone, Copy)]
pub(super) struct RawAttr {
    pub(super) name: (usize, usize),
    pub(super) value: (usize, usize),
}

/// Finds the `>` ending a start tag, skipping quoted attribute values. `Ok(Err(..))` is the
/// state to resume from when the input ends first.
#[allow(clippy::type_complexity)]
#[inline]
pub(super) fn scan_tag(
    rest: &[u8],
    scan: usize,
    quote: u8,
) -> Result<Result<usize, (usize, u8)>, XmlError> {
    let mut i = scan;
    let mut q = quote;
    loop {
        if q != 0 {
            let Some(k) = rest[i..].iter().position(|&b| b == q) else {
                return Ok(Err((rest.len(), q)));
            };
            i += k + 1;
            q = 0;
        } else {
            let Some(k) = rest[i..]
                .iter()
                .position(|&b| matches!(b, b'>' | b'"' | b'\'' | b'<'))
            else {
                return Ok(Err((rest.len(), 0)));
            };
            i += k;
            match rest[i] {
                b'>' => return Ok(Ok(i)),
                b'<' => return Err(nwf("'<' in a tag")),
                c => {
                    q = c;
                    i += 1;
                }
            }
        }
    }
}

/// Splits `name='value'` pairs (XML 1.0 §3.1) of a complete tag body from `from` on.
#[inline]
pub(super) fn parse_attrs(
    body: &str,
    from: usize,
    out: &mut Vec<RawAttr>,
    max: usize,
) -> Result<(), XmlError> {
    out.clear();
    let b = body.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        i
    };
    let mut i = from;
    loop {
        let ws = i;
        i = skip_ws(i);
        if i == b.len() {
            return Ok(());
        }
        if i == ws {
            return Err(nwf("white space expected before an attribute"));
        }
        let name_start = i;
        while i < b.len() && b[i] != b'=' && !is_ws(b[i]) {
            i += 1;
        }
        let name = (name_start, i);
        i = skip_ws(i);
        if b.get(i) != Some(&b'=') {
            return Err(nwf("attribute without a value"));
        }
        i = skip_ws(i + 1);
        let q = match b.get(i) {
            Some(&q @ (b'"' | b'\'')) => q,
            _ => return Err(nwf("attribute value not quoted")),
        };
        let vs = i + 1;
        let ve = b[vs..]
            .iter()
            .position(|&c| c == q)
            .map(|k| vs + k)
            .ok_or_else(|| nwf("unterminated attribute value"))?;
        i = ve + 1;
        if out.len() >= max {
            return Err(XmlError::LimitExceeded("too many attributes"));
        }
        out.push(RawAttr {
            name,
            value: (vs, ve),
        });
    }
}
