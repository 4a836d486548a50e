//! TOTP (RFC 6238) with HMAC-SHA-1, 6 digits and 30-second steps, which is what every
//! authenticator app implements. Verification accepts one step either side for clock drift and
//! reports the matched step, so the caller can refuse a step it has already accepted.

use data_encoding::BASE32_NOPAD;
use ring::hmac;
use subtle::ConstantTimeEq;

/// Seconds per time step.
pub const PERIOD: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Accepted drift either side of the current step.
pub const SKEW_STEPS: u64 = 1;
/// Secret length: 160 bits, RFC 4226's recommendation for HMAC-SHA-1.
pub const SECRET_LEN: usize = 20;

/// The 6-digit code for `secret` at unix time `unix_secs`.
pub fn code_at(secret: &[u8], unix_secs: u64) -> String {
    hotp(secret, unix_secs / PERIOD, DIGITS)
}

/// The time step a unix time falls in.
pub fn step_of(unix_secs: u64) -> u64 {
    unix_secs / PERIOD
}

/// Checks `code` against the steps around `unix_secs` and returns the matching step. Every
/// candidate is compared (constant time, no early exit) so timing says nothing about which step
/// or digit was wrong.
pub fn verify(secret: &[u8], code: &str, unix_secs: u64) -> Option<u64> {
    let now = step_of(unix_secs);
    let code = code.trim();
    let mut found = None;
    for step in now.saturating_sub(SKEW_STEPS)..=now + SKEW_STEPS {
        let expected = hotp(secret, step, DIGITS);
        let same: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
        if same && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// Base32 (RFC 4648, no padding), the form authenticator apps take.
pub fn secret_to_base32(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// The `otpauth://` URI authenticator apps scan.
pub fn otpauth_uri(user: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/grantwire:{user}?secret={}&issuer=grantwire&algorithm=SHA1&digits={DIGITS}&period={PERIOD}",
        secret_to_base32(secret)
    )
}

/// HOTP (RFC 4226) with dynamic truncation to `digits` decimal digits.
fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    let modulus = 10u32.pow(digits);
    format!("{:0width$}", bin % modulus, width = digits as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_appendix_b_sha1_vectors() {
        let vectors = [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (t, want) in vectors {
            assert_eq!(hotp(RFC_SECRET, t / PERIOD, 8), want, "t={t}");
            // The 6-digit code is the same number modulo 10^6.
            assert_eq!(code_at(RFC_SECRET, t), want[2..], "t={t}");
        }
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        let want = ["755224", "287082", "359152", "969429", "338314"];
        for (counter, w) in want.iter().enumerate() {
            assert_eq!(hotp(RFC_SECRET, counter as u64, 6), *w);
        }
    }

    #[test]
    fn verify_accepts_one_step_of_drift_and_reports_it() {
        let t = 1_234_567_890;
        let now = step_of(t);
        assert_eq!(verify(RFC_SECRET, &code_at(RFC_SECRET, t), t), Some(now));
        assert_eq!(
            verify(RFC_SECRET, &code_at(RFC_SECRET, t - PERIOD), t),
            Some(now - 1)
        );
        assert_eq!(
            verify(RFC_SECRET, &code_at(RFC_SECRET, t + PERIOD), t),
            Some(now + 1)
        );
        assert_eq!(
            verify(RFC_SECRET, &code_at(RFC_SECRET, t - 2 * PERIOD), t),
            None
        );
        assert_eq!(verify(RFC_SECRET, "", t), None);
        assert_eq!(verify(RFC_SECRET, "12345", t), None);
    }

    #[test]
    fn uri_has_the_documented_form() {
        let uri = otpauth_uri("alice", RFC_SECRET);
        assert_eq!(
            uri,
            "otpauth://totp/grantwire:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=grantwire&algorithm=SHA1&digits=6&period=30"
        );
    }
}
