//! WireGuard's cookies as responder (whitepaper §5.3, §5.4.7): a node-wide load detector for
//! incoming handshake messages and, under load, a cookie reply instead of the Diffie-Hellman
//! work to a message whose mac2 does not prove that its sender can receive at its source
//! address. Sans-IO: the caller passes `now`, the datagram's source and an RNG.
//!
//! What it does, as boringtun's `RateLimiter` does for its engine:
//! - mac1 is checked first, always (§5.3): a message not addressed to our public key is refused
//!   before anything else, under load or not.
//! - Handshake messages with a valid mac1 are counted in windows of one second; past
//!   [`HANDSHAKE_LIMIT`] in a window the node is under load until the window ends.
//! - Under load, a message with the right mac2 for its source goes on; any other is answered by
//!   a cookie reply (§5.4.7) and goes no further. Not under load, every message goes on.
//!
//! The cookie τ = MAC(Rm, source IP address ‖ UDP port) with a secret Rm that is drawn afresh
//! when it is two minutes old (§5.4.7), so a cookie stops validating mac2 by then at the latest.
//! One guard serves the whole node (not one per peer, unlike boringtun's `Tunn` without a shared
//! limiter): a flood spread over many claimed peers is the same load on the one core that does
//! the handshakes. The node (`Node::check_handshake_load`) asks it about initiations only: a
//! response gets to its DH only under a receiver index of an initiation we sent, which a flood
//! cannot guess.

use super::handshake::{
    self, keyed_mac, COOKIE_REPLY_LEN, INITIATION_LEN, RESPONSE_LEN, TYPE_COOKIE,
};
use crate::core::keys::PublicKey;
use rand::{CryptoRng, RngCore};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Handshake messages with a valid mac1 (the node asks about initiations only) a second before
/// the node is under load. boringtun's device uses the same node-wide figure (`HANDSHAKE_RATE_LIMIT`). A
/// member's peers each handshake about once per REKEY_AFTER_TIME (120 s), so 100 a second is
/// 12,000 peers' rekeying or a burst of 100 peers starting at once, while it stays a small share
/// of what the core can do: an initiation costs five X25519 operations here (one in the node's
/// `initiator_of`, four in Noise's responder), some 250 µs at an assumed 50 µs each (not
/// measured here), so 100 a second is a few percent of one core.
pub const HANDSHAKE_LIMIT: u32 = 100;

/// The load is counted over windows of this length (boringtun: `RESET_PERIOD`).
pub const LOAD_WINDOW: Duration = Duration::from_secs(1);

/// How long the secret Rm is used (§5.4.7: "changes every two minutes").
pub const COOKIE_SECRET_MAX_AGE: Duration = Duration::from_secs(120);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("not a handshake initiation or response")]
    NotHandshake,
    #[error("the message's mac1 does not match our public key")]
    Mac1,
    #[error("sealing the cookie reply failed")]
    Seal,
}

/// What to do with a handshake message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Go on with it: not under load, or its mac2 is right for its source.
    Proceed,
    /// Under load and without a valid mac2: send this cookie reply back to the source and drop
    /// the message (no DH work for it).
    CookieReply(&'a [u8]),
}

/// The node's handshake load and the cookie secret (see the module header).
pub struct CookieGuard {
    /// HASH(LABEL_MAC1 ‖ our public key) (§5.4.4), to check mac1 without hashing it each time.
    mac1_key: [u8; 32],
    /// HASH(LABEL_COOKIE ‖ our public key): the key the cookie reply is sealed under (§5.4.7).
    cookie_key: [u8; 32],
    limit: u32,
    /// The current load window's start and how many messages it counted.
    window: Option<(Instant, u32)>,
    /// Rm and when it was drawn; drawn when first needed.
    secret: Option<([u8; 32], Instant)>,
}

impl CookieGuard {
    /// `local` is our static public key; `limit` the messages per [`LOAD_WINDOW`] before the
    /// node is under load ([`HANDSHAKE_LIMIT`]; tests pass a tiny one).
    pub fn new(local: &PublicKey, limit: u32) -> Self {
        CookieGuard {
            mac1_key: handshake::label_key(handshake::LABEL_MAC1, local),
            cookie_key: handshake::label_key(handshake::LABEL_COOKIE, local),
            limit,
            window: None,
            secret: None,
        }
    }

    /// Checks a handshake initiation or response that arrived from `from`, before any DH work
    /// on it: mac1, then the load, then under load mac2 (§5.3). A cookie reply goes into `out`.
    pub fn check<'a, R: RngCore + CryptoRng>(
        &mut self,
        msg: &[u8],
        from: SocketAddr,
        now: Instant,
        rng: &mut R,
        out: &'a mut [u8; COOKIE_REPLY_LEN],
    ) -> Result<Verdict<'a>, CookieError> {
        let handshake = matches!(
            (msg.first(), msg.len()),
            (Some(&handshake::TYPE_INITIATION), INITIATION_LEN)
                | (Some(&handshake::TYPE_RESPONSE), RESPONSE_LEN)
        ) && msg.get(1..4) == Some(&[0, 0, 0][..]);
        if !handshake {
            return Err(CookieError::NotHandshake);
        }
        // mac1 and mac2 are the last 32 bytes of both messages (§5.4.2, §5.4.3).
        let (body, macs) = msg.split_at(msg.len() - 32);
        let (mac1, mac2) = macs.split_at(16);
        let want = keyed_mac(&self.mac1_key, body);
        if !bool::from(want.ct_eq(mac1)) {
            return Err(CookieError::Mac1);
        }
        if !self.under_load(now) {
            return Ok(Verdict::Proceed);
        }
        let cookie = self.cookie(from, now, rng);
        if bool::from(handshake::mac2(&cookie, &msg[..msg.len() - 16]).ct_eq(mac2)) {
            return Ok(Verdict::Proceed);
        }
        // §5.4.7: type 3, three zero bytes, the message's sender index as receiver, a random
        // nonce, then τ sealed with XChaCha20-Poly1305 under HASH(LABEL_COOKIE ‖ our public key)
        // with the message's mac1 as associated data (what `handshake::open_cookie_reply`
        // opens). The sender index is bytes 4..8 of both messages.
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
        out[..4].copy_from_slice(&[TYPE_COOKIE, 0, 0, 0]);
        out[4..8].copy_from_slice(&msg[4..8]);
        rng.fill_bytes(&mut out[8..32]);
        let (head, sealed) = out.split_at_mut(32);
        let (text, tag) = sealed.split_at_mut(16);
        text.copy_from_slice(&cookie);
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&self.cookie_key));
        match cipher.encrypt_in_place_detached(XNonce::from_slice(&head[8..32]), mac1, text) {
            Ok(t) => tag.copy_from_slice(&t),
            // Only a plaintext beyond the cipher's limit fails; 16 bytes never do. Should it,
            // the message still gets no DH work.
            Err(_) => return Err(CookieError::Seal),
        }
        Ok(Verdict::CookieReply(&out[..]))
    }

    /// Counts one message; true once the window holds more than the limit (boringtun's
    /// `is_under_load`: the count before this one reached it).
    fn under_load(&mut self, now: Instant) -> bool {
        let (start, count) = match self.window {
            Some((start, count)) if now.saturating_duration_since(start) < LOAD_WINDOW => {
                (start, count)
            }
            _ => (now, 0),
        };
        self.window = Some((start, count.saturating_add(1)));
        count >= self.limit
    }

    /// τ = MAC(Rm, Am') (§5.4.7), Am' being the source IP address and UDP port; Rm is redrawn
    /// once it is [`COOKIE_SECRET_MAX_AGE`] old.
    fn cookie<R: RngCore + CryptoRng>(
        &mut self,
        from: SocketAddr,
        now: Instant,
        rng: &mut R,
    ) -> [u8; 16] {
        let secret = match self.secret {
            Some((rm, born)) if now.saturating_duration_since(born) < COOKIE_SECRET_MAX_AGE => rm,
            _ => {
                let mut rm = [0u8; 32];
                rng.fill_bytes(&mut rm);
                self.secret = Some((rm, now));
                rm
            }
        };
        let mut addr = [0u8; 18];
        let n = match from.ip() {
            IpAddr::V4(ip) => {
                addr[..4].copy_from_slice(&ip.octets());
                4
            }
            IpAddr::V6(ip) => {
                addr[..16].copy_from_slice(&ip.octets());
                16
            }
        };
        addr[n..n + 2].copy_from_slice(&from.port().to_be_bytes());
        keyed_mac(&secret, &addr[..n + 2])
    }
}
