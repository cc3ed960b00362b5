//! Static X25519 identities shared by the control plane and the data plane, and their base64 text
//! form (the same encoding WireGuard tools use, so keys can be compared by eye).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Errors when reading a key from text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is not valid base64")]
    Base64,
    #[error("key must be 32 bytes, got {0}")]
    Length(usize),
}

fn decode32(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = STANDARD.decode(text.trim()).map_err(|_| KeyError::Base64)?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyError::Length(len))
}

/// A node's or server's public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode32(text).map(PublicKey)
    }

    /// The first characters of the base64 form, for log lines.
    pub fn short(&self) -> String {
        self.to_base64().chars().take(8).collect()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PublicKey::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// A static private key. Never printed; `Debug` shows only the public half.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        // Clamping happens inside X25519 itself (RFC 7748 §5); store the raw scalar.
        SecretKey(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode32(text).map(SecretKey)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn static_secret(&self) -> x25519_dalek::StaticSecret {
        x25519_dalek::StaticSecret::from(self.0)
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.static_secret()).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key().short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn public_key_round_trips_through_base64() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let secret = SecretKey::generate(&mut rng);
        let public = secret.public_key();
        assert_eq!(PublicKey::from_base64(&public.to_base64()), Ok(public));
        let again = SecretKey::from_base64(&secret.to_base64()).map(|s| s.public_key());
        assert_eq!(again, Ok(public));
    }

    #[test]
    fn wrong_length_is_reported() {
        assert_eq!(PublicKey::from_base64("AAAA"), Err(KeyError::Length(3)));
        assert_eq!(PublicKey::from_base64("not base64!"), Err(KeyError::Base64));
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,80}") {
            let _ = PublicKey::from_base64(&text);
        }
    }
}
