//! XEP-0114 §3 handshake, sans I/O: the component proves it knows the shared secret by
//! sending `<handshake>` with hex(SHA-1(stream id ‖ secret)); the server recomputes it and
//! compares in constant time, so a wrong guess leaks nothing about the right one.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// The content namespace of component streams accepted by the server (XEP-0114 §2).
pub const NS_COMPONENT_ACCEPT: &str = "jabber:component:accept";

/// Lowercase hex of SHA-1(stream id ‖ secret) (XEP-0114 §3, step 3).
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// True when `received` (the `<handshake/>` text) is the digest for this stream and secret.
/// Hex is compared case-insensitively and surrounding whitespace is ignored; the comparison
/// itself takes the same time wherever the first difference is.
pub fn verify_handshake(stream_id: &str, secret: &str, received: &str) -> bool {
    let expected = handshake_digest(stream_id, secret);
    let received = received.trim().to_ascii_lowercase();
    expected.len() == received.len() && bool::from(expected.as_bytes().ct_eq(received.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_an_independent_sha1() {
        // python3 -c "import hashlib; print(hashlib.sha1(b'3BF96D32sesame').hexdigest())"
        assert_eq!(
            handshake_digest("3BF96D32", "sesame"),
            "7a98dc4c9e92493d7fd66a25364c862637789c45"
        );
    }

    #[test]
    fn verify_accepts_only_the_right_digest() {
        let d = handshake_digest("id1", "s3cret");
        assert!(verify_handshake("id1", "s3cret", &d));
        assert!(verify_handshake("id1", "s3cret", &d.to_ascii_uppercase()));
        assert!(verify_handshake("id1", "s3cret", &format!(" {d}\n")));
        assert!(!verify_handshake("id1", "wrong", &d));
        assert!(!verify_handshake("id2", "s3cret", &d));
        assert!(!verify_handshake("id1", "s3cret", ""));
        assert!(!verify_handshake("id1", "s3cret", &d[..39]));
    }
}
