//! RFC 6238 TOTP codes (SHA-1, 30 s steps), computed by the test the way an authenticator app
//! would, independent of the broker's own implementation.

use ring::hmac;

pub const STEP_SECS: u64 = 30;

/// Decodes a base32 secret as the broker prints it (no padding; case and `=` tolerated).
pub fn decode_secret(base32: &str) -> Vec<u8> {
    let clean: String = base32
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    data_encoding::BASE32_NOPAD
        .decode(clean.as_bytes())
        .unwrap_or_else(|e| panic!("TOTP secret {base32:?} is not base32: {e}"))
}

/// The 6-digit code for the step holding `unix_secs`.
pub fn code_at(secret: &[u8], unix_secs: u64) -> String {
    code_digits(secret, unix_secs / STEP_SECS, 6)
}

/// The 6-digit code for an explicit step counter.
pub fn code_for_step(secret: &[u8], step: u64) -> String {
    code_digits(secret, step, 6)
}

/// A 6-digit code the broker must refuse at `unix_secs`: valid for no step within ±2.
pub fn wrong_code(secret: &[u8], unix_secs: u64) -> String {
    let step = unix_secs / STEP_SECS;
    let valid: Vec<String> = (step.saturating_sub(2)..=step + 2)
        .map(|s| code_for_step(secret, s))
        .collect();
    (0..)
        .map(|n: u32| format!("{:06}", (n * 111_111) % 1_000_000))
        .find(|c| !valid.contains(c))
        .unwrap_or_else(|| "000000".to_owned())
}

fn code_digits(secret: &[u8], step: u64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &step.to_be_bytes());
    let h = mac.as_ref();
    // RFC 4226 §5.3 dynamic truncation.
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    let modulus = 10u32.pow(digits);
    format!("{:0width$}", bin % modulus, width = digits as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (secret "12345678901234567890", 8 digits).
    const RFC6238_SHA1: &[(u64, &str)] = &[
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    #[test]
    fn rfc6238_appendix_b_vectors() {
        let secret = b"12345678901234567890";
        for (t, want) in RFC6238_SHA1 {
            assert_eq!(code_digits(secret, t / STEP_SECS, 8), *want, "T = {t}");
            // Six digits are the same value modulo 10^6.
            assert_eq!(code_at(secret, *t), want[2..], "T = {t}");
        }
    }

    #[test]
    fn base32_secret_round_trip() {
        // "12345678901234567890" in base32, as an authenticator app would be given it.
        let b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        assert_eq!(decode_secret(b32), b"12345678901234567890");
        assert_eq!(decode_secret(&b32.to_lowercase()), b"12345678901234567890");
    }

    #[test]
    fn wrong_code_is_wrong_for_the_whole_window() {
        let secret = b"12345678901234567890";
        let t = 1_111_111_111;
        let wrong = wrong_code(secret, t);
        for s in (t / STEP_SECS - 2)..=(t / STEP_SECS + 2) {
            assert_ne!(code_for_step(secret, s), wrong);
        }
    }
}
