//! Just enough DER (X.690) to read three things from an X.509 certificate (RFC 5280 §4.1): its
//! DNS subject alternative names (to serve certificates by SNI), its otherName alternative
//! names (XmppAddr and SRV-ID for federation, RFC 6120 §13.7.1.4, RFC 4985) and its signature
//! algorithm (to pick the `tls-server-end-point` hash, RFC 5929 §4.1). Never panics on
//! malformed input.

/// One TLV: (tag, contents, rest after it). Definite lengths only, as DER requires.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Iterates over the TLVs of a constructed value's contents.
fn items(mut input: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, body, rest) = tlv(input)?;
        input = rest;
        Some((tag, body))
    })
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT in TBSCertificate
const DNS_NAME: u8 = 0x82; // [2] IMPLICIT IA5String in GeneralName
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17

/// (tbsCertificate contents, signatureAlgorithm contents).
fn certificate(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, cert, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, rest) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, alg, _) = tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    Some((tbs, alg))
}

/// The values (OCTET STRING contents) of the extensions with `oid`.
fn extension_values<'a>(der: &'a [u8], oid: &[u8]) -> Vec<&'a [u8]> {
    let mut values = Vec::new();
    let Some((tbs, _)) = certificate(der) else {
        return values;
    };
    let Some((_, exts)) = items(tbs).find(|(tag, _)| *tag == EXTENSIONS) else {
        return values;
    };
    let Some((SEQUENCE, exts)) = items(exts).next() else {
        return values;
    };
    for (tag, ext) in items(exts) {
        if tag != SEQUENCE {
            continue;
        }
        let mut fields = items(ext);
        if !matches!(fields.next(), Some((OID, o)) if o == oid) {
            continue;
        }
        // An optional `critical` BOOLEAN comes before the OCTET STRING.
        if let Some((_, value)) = fields.find(|(tag, _)| *tag == OCTET_STRING) {
            values.push(value);
        }
    }
    values
}

const OID_NAME_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x1e]; // 2.5.29.30

/// Whether the certificate carries a nameConstraints extension (RFC 5280 §4.2.1.10). A
/// certificate that cannot be read counts as constrained (the safe answer).
pub(crate) fn has_name_constraints(der: &[u8]) -> bool {
    certificate(der).is_none() || !extension_values(der, OID_NAME_CONSTRAINTS).is_empty()
}

/// The GeneralNames of the subjectAltName extension, as (tag, contents).
fn alt_names(der: &[u8]) -> Vec<(u8, &[u8])> {
    let mut names = Vec::new();
    for value in extension_values(der, OID_SUBJECT_ALT_NAME) {
        let Some((SEQUENCE, general_names)) = items(value).next() else {
            continue;
        };
        names.extend(items(general_names));
    }
    names
}

/// The dNSName entries of the subjectAltName extension, lowercased.
pub(crate) fn dns_names(der: &[u8]) -> Vec<String> {
    alt_names(der)
        .into_iter()
        .filter(|(tag, _)| *tag == DNS_NAME)
        .filter_map(|(_, name)| std::str::from_utf8(name).ok())
        .map(str::to_ascii_lowercase)
        .collect()
}

const OTHER_NAME: u8 = 0xa0; // [0] IMPLICIT OtherName in GeneralName
const EXPLICIT_0: u8 = 0xa0; // value [0] EXPLICIT in OtherName
/// id-on-xmppAddr, 1.3.6.1.5.5.7.8.5 (RFC 6120 §13.7.1.4): a UTF8String.
pub(crate) const OID_XMPP_ADDR: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x05];
/// id-on-dnsSRV, 1.3.6.1.5.5.7.8.7 (RFC 4985): an IA5String like `_xmpp-server.example.com`.
pub(crate) const OID_DNS_SRV: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x07];
const UTF8_STRING: u8 = 0x0c;
const IA5_STRING: u8 = 0x16;

/// The otherName entries of the subjectAltName extension with type `oid` whose value is a
/// string (UTF8String or IA5String).
pub(crate) fn other_names(der: &[u8], oid: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for (tag, other) in alt_names(der) {
        if tag != OTHER_NAME {
            continue;
        }
        let mut fields = items(other);
        if !matches!(fields.next(), Some((OID, o)) if o == oid) {
            continue;
        }
        let Some((EXPLICIT_0, value)) = fields.next() else {
            continue;
        };
        if let Some((UTF8_STRING | IA5_STRING, text)) = items(value).next() {
            if let Ok(s) = std::str::from_utf8(text) {
                out.push(s.to_owned());
            }
        }
    }
    out
}

/// Hash for `tls-server-end-point` (RFC 5929 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndPointHash {
    Sha256,
    Sha384,
    Sha512,
    /// The signature uses no hash function (Ed25519, Ed448): the binding is undefined.
    Undefined,
}

const RSA_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]; // 1.2.840.113549.1.1
const ECDSA_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03]; // 1.2.840.10045.4.3
const HASH_PREFIX: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02]; // 2.16.840.1.101.3.4.2
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const ED448: &[u8] = &[0x2b, 0x65, 0x71];

/// RFC 5929 §4.1: the certificate's signature hash, except MD5 and SHA-1 become SHA-256.
pub(crate) fn end_point_hash(der: &[u8]) -> EndPointHash {
    let Some((_, alg)) = certificate(der) else {
        return EndPointHash::Sha256;
    };
    let mut fields = items(alg);
    let Some((OID, oid)) = fields.next() else {
        return EndPointHash::Sha256;
    };
    if oid == ED25519 || oid == ED448 {
        return EndPointHash::Undefined;
    }
    if let Some(last) = oid.strip_prefix(RSA_PREFIX) {
        return match last {
            [0x0c] => EndPointHash::Sha384,
            [0x0d] => EndPointHash::Sha512,
            // RSASSA-PSS: the hash is in the parameters' [0] hashAlgorithm (default SHA-1).
            [0x0a] => fields
                .next()
                .filter(|(tag, _)| *tag == SEQUENCE)
                .and_then(|(_, params)| items(params).find(|(tag, _)| *tag == 0xa0))
                .and_then(|(_, hash_alg)| items(hash_alg).next())
                .filter(|(tag, _)| *tag == SEQUENCE)
                .and_then(|(_, hash_alg)| items(hash_alg).next())
                .map_or(EndPointHash::Sha256, |(_, hash_oid)| {
                    hash_from_digest_oid(hash_oid)
                }),
            _ => EndPointHash::Sha256,
        };
    }
    if let Some(last) = oid.strip_prefix(ECDSA_PREFIX) {
        return match last {
            [0x03] => EndPointHash::Sha384,
            [0x04] => EndPointHash::Sha512,
            _ => EndPointHash::Sha256,
        };
    }
    EndPointHash::Sha256
}

fn hash_from_digest_oid(oid: &[u8]) -> EndPointHash {
    match oid.strip_prefix(HASH_PREFIX) {
        Some([0x02]) => EndPointHash::Sha384,
        Some([0x03]) => EndPointHash::Sha512,
        _ => EndPointHash::Sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn reads_dns_names() {
        let der = cert(
            &["Example.com", "*.example.com"],
            &rcgen::PKCS_ECDSA_P256_SHA256,
        );
        assert_eq!(dns_names(&der), vec!["example.com", "*.example.com"]);
    }

    #[test]
    fn picks_the_end_point_hash() {
        let p256 = cert(&["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(end_point_hash(&p256), EndPointHash::Sha256);
        let p384 = cert(&["a.test"], &rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(end_point_hash(&p384), EndPointHash::Sha384);
        let ed = cert(&["a.test"], &rcgen::PKCS_ED25519);
        assert_eq!(end_point_hash(&ed), EndPointHash::Undefined);
    }

    #[test]
    fn survives_garbage() {
        assert!(dns_names(&[]).is_empty());
        assert!(other_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], OID_XMPP_ADDR).is_empty());
        assert!(dns_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
        assert_eq!(
            end_point_hash(&[0x30, 0x03, 0x30, 0x01]),
            EndPointHash::Sha256
        );
        let der = cert(&["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        for cut in 0..der.len() {
            let _ = dns_names(&der[..cut]);
            let _ = end_point_hash(&der[..cut]);
        }
    }
}
