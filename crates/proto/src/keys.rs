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

/// A peer's X25519 public key. Construction rejects the low-order points, whose Diffie-Hellman
/// output is all zeroes and would let anyone compute the session keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        // A clamped scalar is a multiple of the cofactor 8, so multiplying any low-order point
        // by it gives the identity; `was_contributory` is false exactly then.
        let probe = x25519_dalek::StaticSecret::from([0x42; 32]);
        let shared = probe.diffie_hellman(&x25519_dalek::PublicKey::from(bytes));
        if !shared.was_contributory() {
            return Err(KeyError::LowOrder);
        }
        Ok(Self(bytes))
    }

    /// A key this program checked with [`PublicKey::from_bytes`] before it stored it (the
    /// broker's database), decoded without repeating the low-order check, which costs a
    /// scalar multiplication: three per lease issued, and one per lease in every lease set,
    /// were most of the broker's arithmetic. Never for keys from the network or a person.
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
