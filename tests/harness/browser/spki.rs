//! The value of Chromium's `--ignore-certificate-errors-spki-list`: base64 of the SHA-256 of a
//! certificate's DER SubjectPublicKeyInfo. Pinning the broker's one key this way keeps every
//! other certificate error an error, where `--ignore-certificate-errors` would hide them all.
//!
//! A PEM decoder and a walk over the few DER headers in front of the SPKI are enough here; an
//! X.509 parser would be a dependency for four fields the walk skips without reading.

use ring::digest::{digest, SHA256};

/// The pin for the first certificate in `pem` (the broker's `tls-cert.pem`).
pub fn spki_pin_of_pem(pem: &str) -> String {
    let der = pem_to_der(pem, "CERTIFICATE")
        .unwrap_or_else(|e| panic!("not a PEM certificate ({e}):\n{pem}"));
    spki_pin(&der).unwrap_or_else(|e| panic!("cannot find the certificate's SPKI: {e}"))
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of a DER certificate.
pub fn spki_pin(cert_der: &[u8]) -> Result<String, String> {
    let spki = spki_der(cert_der)?;
    Ok(data_encoding::BASE64.encode(digest(&SHA256, spki).as_ref()))
}

/// The first `-----BEGIN {label}-----` block of `pem`, decoded.
pub fn pem_to_der(pem: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or_else(|| format!("no `{begin}` line"))?
        + begin.len();
    let len = pem[start..]
        .find(&end)
        .ok_or_else(|| format!("no `{end}` line"))?;
    let body: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    data_encoding::BASE64
        .decode(body.as_bytes())
        .map_err(|e| format!("bad base64: {e}"))
}

/// The SubjectPublicKeyInfo of a DER certificate, its own header included (RFC 5280 4.1:
/// Certificate = SEQUENCE { tbsCertificate = SEQUENCE { `[0]` version OPTIONAL, serialNumber,
/// signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }).
pub fn spki_der(cert_der: &[u8]) -> Result<&[u8], String> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const VERSION: u8 = 0xa0;
    let (cert, _) = tlv(cert_der, SEQUENCE, "Certificate")?;
    let (tbs, _) = tlv(cert.content, SEQUENCE, "tbsCertificate")?;
    let mut tbs = tbs.content;
    if tbs.first() == Some(&VERSION) {
        tbs = tlv(tbs, VERSION, "version")?.1;
    }
    tbs = tlv(tbs, INTEGER, "serialNumber")?.1;
    for field in ["signature", "issuer", "validity", "subject"] {
        tbs = tlv(tbs, SEQUENCE, field)?.1;
    }
    let (spki, _) = tlv(tbs, SEQUENCE, "subjectPublicKeyInfo")?;
    Ok(spki.whole)
}

struct Tlv<'a> {
    whole: &'a [u8],
    content: &'a [u8],
}

/// One DER element of tag `tag` at the start of `input`, and what follows it.
fn tlv<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(Tlv<'a>, &'a [u8]), String> {
    let err = |why: &str| format!("{what}: {why}");
    match input.first() {
        Some(&t) if t == tag => {}
        Some(&t) => return Err(err(&format!("tag {t:#04x}, expected {tag:#04x}"))),
        None => return Err(err("missing")),
    }
    let first = *input.get(1).ok_or_else(|| err("no length"))?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        // Long form; DER certificates stay far below 2^32 bytes, so 4 length octets suffice.
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(err("unsupported length form"));
        }
        let octets = input.get(2..2 + n).ok_or_else(|| err("truncated length"))?;
        let len = octets
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, 2 + n)
    };
    let end = header + len;
    let whole = input.get(..end).ok_or_else(|| err("truncated"))?;
    Ok((
        Tlv {
            whole,
            content: &whole[header..],
        },
        &input[end..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made() -> rcgen::CertifiedKey {
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("rcgen")
    }

    #[test]
    fn spki_is_the_key_pairs_public_key_der() {
        let made = made();
        let spki = spki_der(made.cert.der()).expect("spki");
        assert_eq!(spki, made.key_pair.public_key_der().as_slice());
    }

    #[test]
    fn pin_from_pem_hashes_the_spki() {
        let made = made();
        let want =
            data_encoding::BASE64.encode(digest(&SHA256, &made.key_pair.public_key_der()).as_ref());
        assert_eq!(spki_pin_of_pem(&made.cert.pem()), want);
        // Another key gives another pin: the hash covers the key, not a constant header.
        assert_ne!(spki_pin_of_pem(&self::made().cert.pem()), want);
    }

    #[test]
    fn pem_round_trips_to_the_der() {
        let made = made();
        let der = pem_to_der(&made.cert.pem(), "CERTIFICATE").expect("pem");
        assert_eq!(der, made.cert.der().as_ref());
        assert!(pem_to_der(&made.cert.pem(), "PRIVATE KEY").is_err());
    }

    #[test]
    fn truncated_and_foreign_input_is_refused() {
        let made = made();
        let der = made.cert.der();
        assert!(spki_der(&der[..der.len() / 3]).is_err());
        assert!(spki_der(&made.key_pair.public_key_der()).is_err());
        assert!(spki_der(&[]).is_err());
    }
}
