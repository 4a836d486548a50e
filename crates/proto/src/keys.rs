//! WireGuard key newtypes: base64 on the wire, checked on parse, secrets redacted in `Debug`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key is not valid base64")]
    Base64,
    #[error("key must be 32 bytes, got {0}")]
    Length(usize),
    #[error("key is a low-order Curve25519 point")]
    LowOrder,
}

fn decode32(s: &str) -> Result<[u8; 32], KeyError> {
    let bytes = STANDARD.decode(s.trim()).map_err(|_| KeyError::Base64)?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyError::Length(len))
}

/// The u-coordinates of the points of order 1, 2, 4 and 8 on Curve25519 and on its twist
/// (0, 1, p-1 and the two of order 8), and the other encodings of 0 and 1 below 2^255 (p and
/// p+1); the same list as libsodium's `has_small_order`. A clamped X25519 scalar is a multiple
/// of the cofactor 8, so exactly these points give an all-zero shared secret; the test
/// `small_order_list_agrees_with_a_scalar_multiplication` checks that against x25519-dalek.
/// Comparing is a table lookup where the scalar multiplication it replaces cost ~50 µs: most
/// of the time an edge took to parse a lease set of 10,000 keys.
const SMALL_ORDER: [[u8; 32]; 7] = [
    [0; 32],
    [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ],
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

/// Whether `u` is a small-order point. X25519 ignores bit 255 of `u`, so this does too.
fn has_small_order(u: &[u8; 32]) -> bool {
    let mut masked = *u;
    masked[31] &= 0x7f;
    SMALL_ORDER.contains(&masked)
}

/// A peer's X25519 public key. Construction rejects the low-order points, whose Diffie-Hellman
/// output is all zeroes and would let anyone compute the session keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        if has_small_order(&bytes) {
            return Err(KeyError::LowOrder);
        }
        Ok(Self(bytes))
    }

    /// A key this program checked with [`PublicKey::from_bytes`] before it stored it (the
    /// broker's database), decoded without repeating the check. (The check is a table lookup
    /// now; this predates that, when it cost a scalar multiplication.) Never for keys from the
    /// network or a person.
    pub fn from_stored_base64(s: &str) -> Result<Self, KeyError> {
        Ok(Self(decode32(s)?))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::from_bytes(decode32(s)?)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// A WireGuard private key. Never sent over the wire by grantwire: the client makes it on the
/// device and only writes it into the local profile. Zeroed on drop, redacted in `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    /// Takes 32 random bytes from the caller (proto has no randomness of its own) and clamps
    /// them as X25519 requires.
    pub fn from_random_bytes(mut bytes: [u8; 32]) -> Self {
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        let key = Self(bytes);
        bytes.zeroize();
        key
    }

    pub fn public_key(&self) -> PublicKey {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl FromStr for PrivateKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Ok(Self(decode32(s)?))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A WireGuard preshared key: a fresh one per lease, made by the broker, pushed to the edge and
/// handed to the client in its profile. Zeroed on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; 32]);

impl PresharedKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl FromStr for PresharedKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Ok(Self(decode32(s)?))
    }
}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(<redacted>)")
    }
}

macro_rules! base64_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_base64())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

base64_serde!(PublicKey);
base64_serde!(PrivateKey);
base64_serde!(PresharedKey);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition the table stands for: a clamped scalar times the point is the identity.
    fn zero_shared_secret(u: [u8; 32]) -> bool {
        let probe = x25519_dalek::StaticSecret::from([0x42; 32]);
        !probe
            .diffie_hellman(&x25519_dalek::PublicKey::from(u))
            .was_contributory()
    }

    #[test]
    fn small_order_list_agrees_with_a_scalar_multiplication() {
        for point in SMALL_ORDER {
            for top in [0, 0x80] {
                let mut u = point;
                u[31] |= top;
                assert!(zero_shared_secret(u), "{u:02x?} is not of small order");
                assert_eq!(PublicKey::from_bytes(u), Err(KeyError::LowOrder));
            }
        }
        // Neighbours of the listed points are ordinary keys.
        for point in SMALL_ORDER {
            let mut u = point;
            u[0] ^= 0x02;
            assert_eq!(has_small_order(&u), zero_shared_secret(u), "{u:02x?}");
        }
    }

    proptest! {
        #[test]
        fn small_order_check_agrees_with_a_scalar_multiplication(u in any::<[u8; 32]>()) {
            prop_assert_eq!(has_small_order(&u), zero_shared_secret(u));
        }
    }

    #[test]
    fn rejects_bad_base64_and_length() {
        assert_eq!("not base64!".parse::<PublicKey>(), Err(KeyError::Base64));
        assert_eq!(
            STANDARD.encode([1u8; 31]).parse::<PublicKey>(),
            Err(KeyError::Length(31))
        );
    }

    #[test]
    fn a_stored_key_is_decoded_as_is_but_still_length_checked() {
        let pk = PrivateKey::from_random_bytes([5; 32]).public_key();
        assert_eq!(PublicKey::from_stored_base64(&pk.to_base64()), Ok(pk));
        assert_eq!(
            PublicKey::from_stored_base64(&STANDARD.encode([1u8; 31])),
            Err(KeyError::Length(31))
        );
        assert_eq!(PublicKey::from_stored_base64("%%"), Err(KeyError::Base64));
    }

    #[test]
    fn rejects_low_order_points() {
        // The all-zero point and the point of order 8 with u = 1 (RFC 7748 section 5 list).
        for point in [[0u8; 32], {
            let mut p = [0u8; 32];
            p[0] = 1;
            p
        }] {
            assert_eq!(PublicKey::from_bytes(point), Err(KeyError::LowOrder));
        }
    }

    #[test]
    fn private_key_debug_is_redacted() {
        let k = PrivateKey::from_random_bytes([7; 32]);
        assert!(!format!("{k:?}").contains(&k.to_base64()));
        let p = PresharedKey::from_bytes([9; 32]);
        assert!(!format!("{p:?}").contains(&p.to_base64()));
    }

    #[test]
    fn known_public_key_derivation() {
        // RFC 7748 section 6.1: Alice's private and public keys.
        let sk = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let pk = PrivateKey::from_random_bytes(sk).public_key();
        assert_eq!(
            pk.as_bytes()[..4],
            [0x85, 0x20, 0xf0, 0x09],
            "{}",
            pk.to_base64()
        );
    }

    proptest! {
        #[test]
        fn public_key_base64_round_trips(bytes in any::<[u8; 32]>()) {
            let pk = PrivateKey::from_random_bytes(bytes).public_key();
            let parsed: PublicKey = pk.to_base64().parse().unwrap();
            prop_assert_eq!(parsed, pk);
            let json = serde_json::to_string(&pk).unwrap();
            prop_assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), pk);
        }
    }
}
