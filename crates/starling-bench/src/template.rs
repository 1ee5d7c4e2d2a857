//! Command templates for `register --via-cli`: `{user}`, `{domain}` and `{password}` are
//! replaced, each value quoted for `sh` when it holds anything beyond a safe set of
//! characters, so a template needs no quotes of its own.

/// Expands a template; unknown `{names}` and lone braces are kept as written.
pub fn expand(template: &str, user: &str, domain: &str, password: &str) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let value = [
            ("{user}", user),
            ("{domain}", domain),
            ("{password}", password),
        ]
        .into_iter()
        .find(|(k, _)| after.starts_with(k));
        match value {
            Some((k, v)) => {
                out.push_str(&shell_quote(v));
                rest = &after[k.len()..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value as one `sh` word.
pub fn shell_quote(v: &str) -> String {
    let safe = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b));
    if safe {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(
            expand(
                "starling ctl register_identified {user} {domain} {password}",
                "bench7",
                "localhost",
                "pw"
            ),
            "starling ctl register_identified bench7 localhost pw"
        );
        assert_eq!(
            expand(
                "prosodyctl register {user} {domain} {password} {x} {",
                "u",
                "d",
                "p"
            ),
            "prosodyctl register u d p {x} {"
        );
        assert_eq!(
            expand("echo {password}{user}", "u", "d", "it's a $pw"),
            r"echo 'it'\''s a $pw'u"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("bench-1@x.org"), "bench-1@x.org");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("$(x)"), "'$(x)'");
    }
}
