//! Character-level rules of XML 1.0 (fifth edition) used by the tokenizer: `Char` (§2.2),
//! white space (§2.3), `Name` (§2.3) and QName (Namespaces in XML 1.0 §4), the predefined
//! entities and character references (§4.1, §4.6), end-of-line handling (§2.11) and
//! attribute-value normalization (§3.3.3). RFC 6120 §11.1 forbids every other entity.

use crate::parser::XmlError;

/// Longest reference body (between `&` and `;`) we wait for. `&#x10FFFF;` needs 8; leading
/// zeros are legal, so allow some slack, but never an unbounded scan.
pub(crate) const MAX_REF: usize = 32;

pub(crate) fn nwf(msg: &str) -> XmlError {
    XmlError::NotWellFormed(msg.to_owned())
}

/// XML white space (§2.3 `S`).
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// XML 1.0 `Char`: tab, LF, CR, and everything from U+0020 except surrogates (which `char`
/// cannot hold) and U+FFFE/U+FFFF.
#[inline]
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Checks already UTF-8-validated bytes against the `Char` production. Works on bytes: the
/// only non-characters above U+001F that UTF-8 can encode are U+FFFE/U+FFFF (`EF BF BE/BF`).
/// Returns whether a CR was seen (so callers can skip end-of-line handling when none was).
#[inline]
pub(crate) fn check_chars(bytes: &[u8]) -> Result<bool, XmlError> {
    let mut cr = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b < 0x20 {
            match b {
                b'\r' => cr = true,
                b'\t' | b'\n' => {}
                _ => return Err(nwf("control character")),
            }
        } else if b == 0xEF
            && bytes.get(i + 1) == Some(&0xBF)
            && matches!(bytes.get(i + 2), Some(0xBE | 0xBF))
        {
            return Err(nwf("non-character U+FFFE/U+FFFF"));
        }
    }
    Ok(cr)
}

/// Character data must not contain a literal `]]>` (§2.4). `brackets` carries how many `]`
/// ended the previous run of character data, so the check survives a split between feeds.
pub(crate) fn check_no_cdata_end(seg: &[u8], brackets: &mut u8) -> Result<(), XmlError> {
    let mut from = 0;
    while let Some(k) = seg[from..].iter().position(|&b| b == b'>') {
        let i = from + k;
        let before = match i {
            0 => *brackets >= 2,
            1 => seg[0] == b']' && *brackets >= 1,
            _ => seg[i - 1] == b']' && seg[i - 2] == b']',
        };
        if before {
            return Err(nwf("']]>' in character data"));
        }
        from = i + 1;
    }
    let trailing = seg.iter().rev().take(2).take_while(|&&b| b == b']').count() as u8;
    *brackets = if usize::from(trailing) == seg.len() {
        (*brackets + trailing).min(2)
    } else {
        trailing
    };
    Ok(())
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// An `NCName`: a `Name` without colons.
fn is_ncname(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.is_ascii() {
        // Fast path: every XMPP name in practice.
        (b[0].is_ascii_alphabetic() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
    } else {
        let mut chars = s.chars();
        chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
    }
}

/// Splits a QName into (prefix, local); the prefix is "" when absent.
pub(crate) fn split_qname(s: &str) -> Result<(&str, &str), XmlError> {
    let (prefix, local) = match s.find(':') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => ("", s),
    };
    if !is_ncname(local) || (s.len() != local.len() && !is_ncname(prefix)) {
        return Err(XmlError::NotWellFormed(format!("invalid name {s:?}")));
    }
    Ok((prefix, local))
}

fn parse_num(digits: &[u8], radix: u32) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for &d in digits {
        let x = char::from(d).to_digit(radix)?;
        v = v.checked_mul(radix)?.checked_add(x)?;
    }
    Some(v)
}

/// Decodes the body of a reference (between `&` and `;`) into `out`. Only the five predefined
/// entities and character references exist: with no DTD (RFC 6120 §11.1) any other name is
/// undefined, which XML 1.0 §4.1 makes a well-formedness error.
pub(crate) fn decode_ref(body: &[u8], out: &mut String) -> Result<(), XmlError> {
    let c = match body {
        b"lt" => '<',
        b"gt" => '>',
        b"amp" => '&',
        b"quot" => '"',
        b"apos" => '\'',
        [b'#', b'x', hex @ ..] => char_ref(parse_num(hex, 16))?,
        [b'#', dec @ ..] => char_ref(parse_num(dec, 10))?,
        _ => return Err(nwf("undefined entity reference")),
    };
    out.push(c);
    Ok(())
}

fn char_ref(v: Option<u32>) -> Result<char, XmlError> {
    v.and_then(char::from_u32)
        .filter(|&c| is_xml_char(c))
        .ok_or_else(|| nwf("invalid character reference"))
}

/// Appends `s` with end-of-line handling (§2.11): CRLF and lone CR become LF. `cr` says the
/// previous run ended in CR, so a LF starting this one belongs to that CRLF pair.
pub(crate) fn push_normalized(s: &str, out: &mut String, cr: &mut bool) {
    let mut rest = s;
    if *cr && rest.starts_with('\n') {
        rest = &rest[1..];
    }
    *cr = false;
    while let Some(i) = rest.find('\r') {
        out.push_str(&rest[..i]);
        out.push('\n');
        rest = &rest[i + 1..];
        if rest.is_empty() {
            *cr = true;
        } else if rest.starts_with('\n') {
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
}

/// Decodes an attribute value (already checked for UTF-8 and `Char`) into `out`: references
/// are expanded and literal white space becomes a space (§3.3.3, after §2.11 turned CRLF into
/// one LF). A literal `<` is forbidden (§3.1 `AttValue`).
pub(crate) fn decode_attr(raw: &str, out: &mut String) -> Result<(), XmlError> {
    let b = raw.as_bytes();
    let special = |c: &u8| matches!(c, b'&' | b'<' | b'\t' | b'\n' | b'\r');
    let Some(first) = b.iter().position(special) else {
        out.push_str(raw);
        return Ok(());
    };
    out.reserve(raw.len());
    let mut start = 0;
    let mut i = first;
    while i < b.len() {
        match b[i] {
            b'&' => {
                out.push_str(&raw[start..i]);
                let body = &b[i + 1..];
                let end = body
                    .iter()
                    .take(MAX_REF + 1)
                    .position(|&c| c == b';')
                    .ok_or_else(|| nwf("unterminated reference in attribute value"))?;
                decode_ref(&body[..end], out)?;
                i += end + 2;
                start = i;
            }
            b'<' => return Err(nwf("'<' in attribute value")),
            b'\t' | b'\n' | b'\r' => {
                out.push_str(&raw[start..i]);
                out.push(' ');
                i += if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&raw[start..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qnames() {
        assert_eq!(split_qname("stream:stream"), Ok(("stream", "stream")));
        assert_eq!(split_qname("body"), Ok(("", "body")));
        assert_eq!(split_qname("x.y-z_1"), Ok(("", "x.y-z_1")));
        assert_eq!(split_qname("été"), Ok(("", "été")));
        assert!(split_qname("a\u{B7}:b\u{300}x").is_ok());
        for bad in ["", ":a", "a:", "a:b:c", "1a", "-a", "a b", "\u{300}a"] {
            assert!(split_qname(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn references() {
        let mut s = String::new();
        for body in [
            "lt", "gt", "amp", "quot", "apos", "#65", "#x42", "#x1F600", "#0000067",
        ] {
            decode_ref(body.as_bytes(), &mut s).expect("valid reference");
        }
        assert_eq!(s, "<>&\"'AB😀C");
        for bad in [
            "",
            "nbsp",
            "#",
            "#x",
            "#X41",
            "#0",
            "#x1",
            "#xD800",
            "#x110000",
            "#99999999999",
            "#xFFFE",
            "LT",
        ] {
            assert!(decode_ref(bad.as_bytes(), &mut s).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn char_rules() {
        assert_eq!(check_chars(b"a\tb\nc"), Ok(false));
        assert_eq!(check_chars(b"a\r\nb"), Ok(true));
        assert!(check_chars(b"a\x00b").is_err());
        assert!(check_chars(b"\x1b[0m").is_err());
        assert!(check_chars("\u{FFFF}".as_bytes()).is_err());
        assert!(check_chars("\u{FFFD}".as_bytes()).is_ok());
    }

    #[test]
    fn cdata_end_in_text_across_splits() {
        let mut b = 0;
        assert!(check_no_cdata_end(b"a]]>", &mut b).is_err());
        let mut b = 0;
        check_no_cdata_end(b"a]", &mut b).expect("ok");
        check_no_cdata_end(b"]", &mut b).expect("ok");
        assert!(check_no_cdata_end(b">", &mut b).is_err());
        let mut b = 0;
        check_no_cdata_end(b"]]x>", &mut b).expect("ok");
        check_no_cdata_end(b"a>]>", &mut b).expect("ok");
    }

    #[test]
    fn end_of_line_and_attribute_normalization() {
        let mut out = String::new();
        let mut cr = false;
        push_normalized("a\r\nb\rc\r", &mut out, &mut cr);
        push_normalized("\nd", &mut out, &mut cr);
        assert_eq!(out, "a\nb\nc\nd");
        let mut v = String::new();
        decode_attr("a\tb\r\nc &amp; &#10;", &mut v).expect("valid");
        assert_eq!(v, "a b c & \n");
        assert!(decode_attr("a<b", &mut String::new()).is_err());
        assert!(decode_attr("a&b", &mut String::new()).is_err());
        assert!(decode_attr("&nbsp;", &mut String::new()).is_err());
    }
}
