//! WireGuard keys made on the device. The private key never leaves it: only the public half
//! goes to the broker, and the private half only into the local profile or QR code.

use grantwire_proto::PrivateKey;
use rand::rngs::OsRng;
use rand::RngCore as _;
use zeroize::Zeroize as _;

/// A fresh X25519 private key from the operating system's CSPRNG. `OsRng` panics only when the
/// OS has no randomness to give, in which case no key could be made safely anyway.
pub fn generate() -> PrivateKey {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let key = PrivateKey::from_random_bytes(bytes);
    // `from_random_bytes` took a copy; this one would otherwise stay on the stack.
    bytes.zeroize();
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_and_clamped() {
        let a = generate();
        let b = generate();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(a.as_bytes()[0] & 7, 0);
        assert_eq!(a.as_bytes()[31] & 0xc0, 0x40);
        assert_ne!(a.public_key(), b.public_key());
    }
}
