//! Authenticated punch probes: the ping/pong pair that proves a path works in both directions
//! before any session traffic uses it.
//!
//! A stranger must not be able to make a node adopt a path, so every probe is sealed with
//! XChaCha20-Poly1305 under a key only the two peers can compute: HKDF-SHA256 over their static
//! X25519 Diffie-Hellman (RFC 7748 §6.1, RFC 5869), bound to both public keys. This is the shape
//! of Tailscale's disco messages (static-static box); the server, which knows only public keys,
//! can neither forge nor read probes. A pong echoes the transaction id of its ping and the source
//! address the pinger was seen from (like STUN's XOR-MAPPED-ADDRESS), so the pinger learns its
//! peer-reflexive address. Replays are harmless: a pong is accepted only for a transaction this
//! node sent to that exact address and has not seen answered.
//!
//! Wire format (111 bytes):
//! `magic 0xF0 'p' '2' 'p' | kind (1 ping, 2 pong) | sender public key (32) | nonce (24) |
//!  sealed { tx id (12) | technique (1) | window offset (i16) | address family (1) | ip (16) |
//!  port (2) } | tag (16)`.
//! The first byte has its top two bits set, so it is never STUN (RFC 5389 §6), and bytes 1-3 are
//! not zero, so it is never WireGuard.

use super::Technique;
use crate::core::keys::{PublicKey, SecretKey};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const MAGIC: [u8; 4] = [0xF0, b'p', b'2', b'p'];
const HEADER_LEN: usize = 4 + 1 + 32;
const NONCE_LEN: usize = 24;
const PLAIN_LEN: usize = 12 + 1 + 2 + 1 + 16 + 2;
const TAG_LEN: usize = 16;
pub const PROBE_LEN: usize = HEADER_LEN + NONCE_LEN + PLAIN_LEN + TAG_LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Ping,
    Pong,
}

/// A probe after opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub kind: ProbeKind,
    pub tx: [u8; 12],
    /// The technique the pinger used for this probe (echoed in the pong).
    pub technique: Technique,
    /// For a predicted probe: which step of the prediction window it targeted.
    pub offset: i16,
    /// In a pong: where the ping came from, as the ponger saw it.
    pub observed: Option<SocketAddr>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("not a probe (wrong length or magic)")]
    NotAProbe,
    #[error("probe failed authentication")]
    Unauthenticated,
    #[error("probe has an unknown kind or field")]
    Malformed,
}

/// Whether `datagram` is framed as a probe (checked before any crypto).
pub fn is_probe(datagram: &[u8]) -> bool {
    datagram.len() == PROBE_LEN && datagram[..4] == MAGIC
}

/// The claimed sender of a probe, to find the pairwise key. Unauthenticated until `open`.
pub fn sender_of(datagram: &[u8]) -> Result<PublicKey, ProbeError> {
    if !is_probe(datagram) {
        return Err(ProbeError::NotAProbe);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&datagram[5..HEADER_LEN]);
    Ok(PublicKey(key))
}

/// The key two peers share for probes.
#[derive(Clone)]
pub struct ProbeKey {
    cipher: XChaCha20Poly1305,
    local: PublicKey,
}

impl ProbeKey {
    pub fn new(local: &SecretKey, peer: &PublicKey) -> Self {
        let shared = local
            .static_secret()
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        let me = local.public_key();
        let (lo, hi) = if me.0 <= peer.0 {
            (me.0, peer.0)
        } else {
            (peer.0, me.0)
        };
        let mut info = [0u8; 64];
        info[..32].copy_from_slice(&lo);
        info[32..].copy_from_slice(&hi);
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"p2pvpn probe v1"), shared.as_bytes());
        let mut okm = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 255*32 limit, so expand cannot fail.
        let _ = hk.expand(&info, &mut okm);
        ProbeKey {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&okm)),
            local: me,
        }
    }

    /// Seals a probe into `out` (at least `PROBE_LEN` bytes); returns the datagram.
    pub fn seal(&self, probe: &Probe, rng: &mut impl RngCore) -> Vec<u8> {
        let mut out = vec![0u8; PROBE_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = match probe.kind {
            ProbeKind::Ping => 1,
            ProbeKind::Pong => 2,
        };
        out[5..HEADER_LEN].copy_from_slice(&self.local.0);
        rng.fill_bytes(&mut out[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
        let body_at = HEADER_LEN + NONCE_LEN;
        {
            let body = &mut out[body_at..body_at + PLAIN_LEN];
            body[..12].copy_from_slice(&probe.tx);
            body[12] = probe.technique.code();
            body[13..15].copy_from_slice(&probe.offset.to_be_bytes());
            match probe.observed {
                None => body[15] = 0,
                Some(SocketAddr::V4(a)) => {
                    body[15] = 4;
                    body[16..20].copy_from_slice(&a.ip().octets());
                    body[32..34].copy_from_slice(&a.port().to_be_bytes());
                }
                Some(SocketAddr::V6(a)) => {
                    body[15] = 6;
                    body[16..32].copy_from_slice(&a.ip().octets());
                    body[32..34].copy_from_slice(&a.port().to_be_bytes());
                }
            }
        }
        let (head, rest) = out.split_at_mut(HEADER_LEN);
        let (nonce, body) = rest.split_at_mut(NONCE_LEN);
        let (plain, tag_out) = body.split_at_mut(PLAIN_LEN);
        // Encryption of a fixed-size buffer with a fresh nonce has no failure mode.
        if let Ok(tag) =
            self.cipher
                .encrypt_in_place_detached(XNonce::from_slice(nonce), head, plain)
        {
            tag_out.copy_from_slice(&tag);
        }
        out
    }

    /// Authenticates and decodes a probe.
    pub fn open(&self, datagram: &[u8]) -> Result<Probe, ProbeError> {
        if !is_probe(datagram) {
            return Err(ProbeError::NotAProbe);
        }
        let kind = match datagram[4] {
            1 => ProbeKind::Ping,
            2 => ProbeKind::Pong,
            _ => return Err(ProbeError::Malformed),
        };
        let head = &datagram[..HEADER_LEN];
        let nonce = XNonce::from_slice(&datagram[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
        let body_at = HEADER_LEN + NONCE_LEN;
        let mut plain = [0u8; PLAIN_LEN];
        plain.copy_from_slice(&datagram[body_at..body_at + PLAIN_LEN]);
        let tag = chacha20poly1305::Tag::from_slice(&datagram[body_at + PLAIN_LEN..]);
        self.cipher
            .decrypt_in_place_detached(nonce, head, &mut plain, tag)
            .map_err(|_| ProbeError::Unauthenticated)?;
        let mut tx = [0u8; 12];
        tx.copy_from_slice(&plain[..12]);
        let technique = Technique::from_code(plain[12]).ok_or(ProbeError::Malformed)?;
        let offset = i16::from_be_bytes([plain[13], plain[14]]);
        let port = u16::from_be_bytes([plain[32], plain[33]]);
        let observed = match plain[15] {
            0 => None,
            4 => {
                let ip = Ipv4Addr::new(plain[16], plain[17], plain[18], plain[19]);
                Some(SocketAddr::new(IpAddr::V4(ip), port))
            }
            6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&plain[16..32]);
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
            }
            _ => return Err(ProbeError::Malformed),
        };
        Ok(Probe {
            kind,
            tx,
            technique,
            offset,
            observed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn pair() -> (ProbeKey, ProbeKey, ProbeKey) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let a = SecretKey::generate(&mut rng);
        let b = SecretKey::generate(&mut rng);
        let m = SecretKey::generate(&mut rng);
        (
            ProbeKey::new(&a, &b.public_key()),
            ProbeKey::new(&b, &a.public_key()),
            ProbeKey::new(&m, &b.public_key()),
        )
    }

    #[test]
    fn both_peers_derive_the_same_key_and_strangers_cannot_forge() {
        let (a, b, mallory) = pair();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let pong = Probe {
            kind: ProbeKind::Pong,
            tx: [7; 12],
            technique: Technique::Predicted,
            offset: -2,
            observed: Some("203.0.113.9:40001".parse().unwrap()),
        };
        let bytes = a.seal(&pong, &mut rng);
        assert!(is_probe(&bytes));
        assert_eq!(b.open(&bytes), Ok(pong));
        let forged = mallory.seal(&pong, &mut rng);
        assert_eq!(b.open(&forged), Err(ProbeError::Unauthenticated));
        let mut flipped = bytes.clone();
        flipped[PROBE_LEN - 20] ^= 1;
        assert_eq!(b.open(&flipped), Err(ProbeError::Unauthenticated));
        // The claimed sender is bound into the tag as associated data.
        let mut resent = bytes.clone();
        resent[5] ^= 1;
        assert_eq!(b.open(&resent), Err(ProbeError::Unauthenticated));
    }

    proptest! {
        #[test]
        fn opening_garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..200), framed in any::<bool>()) {
            let (_, b, _) = pair();
            if framed && bytes.len() >= 4 {
                bytes.resize(PROBE_LEN, 0);
                bytes[..4].copy_from_slice(&MAGIC);
            }
            let _ = sender_of(&bytes);
            prop_assert!(b.open(&bytes).is_err());
        }
    }
}
