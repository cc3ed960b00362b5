//! WireGuard's transport data message (whitepaper §5.4.6), ours rather than boringtun's so that
//! two data workers can seal and open at once: every method takes `&self`.
//!
//! ```text
//! type (1) = 4 | reserved (3) = 0 | receiver index (4, LE) | counter (8, LE) | AEAD(packet)
//! ```
//!
//! The AEAD is ChaCha20-Poly1305 (RFC 8439) with empty associated data and the counter as nonce:
//! 32 zero bits, then the counter little-endian (whitepaper §5.4.6). It is ring's (already in the
//! tree through rustls), as boringtun's is: `cargo bench --bench dataplane` measured the
//! chacha20poly1305 crate at about twice ring's time per 1400-byte packet on this machine.
//!
//! No padding: the whitepaper pads the plaintext to a multiple of 16, but never past the MTU,
//! which this step does not know; boringtun does not pad either. Unpadded, a datagram is exactly
//! the packet plus [`OVERHEAD`], which is what the path MTU search (`core::pmtu`) sizes its
//! probes by: padded, the sim found paths up to 15 bytes short. The receiver still trims by the
//! inner IP header's length, so padded datagrams from other implementations open too.
//!
//! Shared state per key, and why it is safe without the core's lock:
//! - [`SendKey`]: the key is immutable; the counter is an `AtomicU64` taken with `fetch_add`, so
//!   no two datagrams ever share a nonce, whichever worker seals them.
//! - [`RecvKey`]: the key is immutable; the replay window is the only mutable state and sits
//!   behind its own `Mutex`, held only to check and to mark (never while decrypting or for I/O).

use super::replay::{ReplayWindow, REJECT_AFTER_MESSAGES};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The message type of transport data.
pub const TYPE_DATA: u8 = 4;
/// Type, reserved, receiver index, counter.
pub const HEADER: usize = 16;
/// The Poly1305 tag.
pub const TAG: usize = 16;
/// What a transport message adds to the packet.
pub const OVERHEAD: usize = HEADER + TAG;

/// Why a datagram could not be sealed or opened. Each maps onto one drop counter.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    #[error("not a WireGuard transport data message")]
    NotData,
    #[error("the message is for session index {0}, not this one")]
    WrongIndex(u32),
    #[error("counter {0} was already received or is too old (replay window)")]
    Replay(u64),
    #[error("the message does not authenticate under this session's key")]
    Decrypt,
    #[error("the output buffer is too small: {need} bytes needed")]
    BufferTooSmall { need: usize },
    #[error("this key has sent its last message; a new handshake is needed")]
    Exhausted,
}

/// The whitepaper's nonce: 4 zero bytes, then the 64-bit counter little-endian.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    // Unique per key: the sender's counter is one fetch_add per message, never reset.
    Nonce::assume_unique_for_key(n)
}

fn cipher(key: &[u8; 32]) -> LessSafeKey {
    // ChaCha20-Poly1305 takes exactly a 32-byte key, which the type guarantees.
    let key = UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"); // ok: see above
    LessSafeKey::new(key)
}

/// The receiver index of a transport data message, to find its [`RecvKey`] before opening it.
pub fn receiver_index(datagram: &[u8]) -> Option<u32> {
    match datagram {
        [TYPE_DATA, 0, 0, 0, a, b, c, d, ..] if datagram.len() >= OVERHEAD => {
            Some(u32::from_le_bytes([*a, *b, *c, *d]))
        }
        _ => None,
    }
}

/// One direction's sending half of a session: the key, the peer's index, the next counter.
pub struct SendKey {
    cipher: LessSafeKey,
    /// The index the peer chose for this session, written into every message.
    receiver: u32,
    counter: AtomicU64,
}

impl SendKey {
    pub fn new(key: [u8; 32], receiver: u32) -> Self {
        SendKey {
            cipher: cipher(&key),
            receiver,
            counter: AtomicU64::new(0),
        }
    }

    /// Messages sealed so far (the core reads it for Reject-After-Messages and rekeying).
    pub fn sent(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    /// Seals `packet` into `out` as one transport data message and returns its length. An empty
    /// `packet` is a keepalive.
    pub fn seal(&self, packet: &[u8], out: &mut [u8]) -> Result<usize, TransportError> {
        let body = packet.len();
        let need = HEADER + body + TAG;
        let Some(out) = out.get_mut(..need) else {
            return Err(TransportError::BufferTooSmall { need });
        };
        // Relaxed is enough: only uniqueness matters, and fetch_add gives it.
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        if counter >= REJECT_AFTER_MESSAGES {
            // Keep it saturated so the counter can never wrap back to a used nonce.
            self.counter.store(REJECT_AFTER_MESSAGES, Ordering::Relaxed);
            return Err(TransportError::Exhausted);
        }
        let (header, rest) = out.split_at_mut(HEADER);
        header[..4].copy_from_slice(&[TYPE_DATA, 0, 0, 0]);
        header[4..8].copy_from_slice(&self.receiver.to_le_bytes());
        header[8..16].copy_from_slice(&counter.to_le_bytes());
        let (text, tag) = rest.split_at_mut(body);
        text.copy_from_slice(packet);
        let t = self
            .cipher
            .seal_in_place_separate_tag(nonce(counter), Aad::empty(), text)
            // Only fails beyond ChaCha20's 256 GiB per message; `text` is one datagram.
            .map_err(|_| TransportError::BufferTooSmall { need })?;
        tag.copy_from_slice(t.as_ref());
        Ok(need)
    }
}

/// One direction's receiving half of a session: the key, our index, the replay window.
pub struct RecvKey {
    cipher: LessSafeKey,
    /// The index we chose for this session; messages carry it as their receiver index.
    index: u32,
    window: Mutex<ReplayWindow>,
}

impl RecvKey {
    pub fn new(key: [u8; 32], index: u32) -> Self {
        RecvKey {
            cipher: cipher(&key),
            index,
            window: Mutex::new(ReplayWindow::default()),
        }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    fn window(&self) -> std::sync::MutexGuard<'_, ReplayWindow> {
        // A panic elsewhere cannot leave the window half-updated (`update` is one store per
        // field after all checks), so a poisoned lock is still a valid window.
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens one transport data message into `out` and returns the plaintext, as sent with any padding (empty for
    /// a keepalive). The counter is checked before decrypting and marked only after the tag
    /// verified, so neither a replay nor a forgery costs more than a lookup or moves the window.
    pub fn open<'a>(&self, datagram: &[u8], out: &'a mut [u8]) -> Result<&'a [u8], TransportError> {
        let index = receiver_index(datagram).ok_or(TransportError::NotData)?;
        if index != self.index {
            return Err(TransportError::WrongIndex(index));
        }
        let mut c = [0u8; 8];
        c.copy_from_slice(&datagram[8..HEADER]); // ok: receiver_index checked len >= OVERHEAD
        let counter = u64::from_le_bytes(c);
        if !self.window().check(counter) {
            return Err(TransportError::Replay(counter));
        }
        let body = datagram.len() - OVERHEAD;
        let Some(text) = out.get_mut(..body) else {
            return Err(TransportError::BufferTooSmall { need: body });
        };
        text.copy_from_slice(&datagram[HEADER..HEADER + body]);
        let tag = Tag::try_from(&datagram[HEADER + body..]).map_err(|_| TransportError::NotData)?;
        self.cipher
            .open_in_place_separate_tag(nonce(counter), Aad::empty(), tag, text, 0..)
            .map_err(|_| TransportError::Decrypt)?;
        // Another worker may have accepted the same counter meanwhile: `update` re-checks.
        if !self.window().update(counter) {
            return Err(TransportError::Replay(counter));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (SendKey, RecvKey) {
        (SendKey::new([7; 32], 0x1234), RecvKey::new([7; 32], 0x1234))
    }

    #[test]
    fn sealed_messages_open_once_and_carry_the_header() {
        let (tx, rx) = pair();
        let mut wire = [0u8; 128];
        let mut out = [0u8; 128];
        let n = tx.seal(b"hello", &mut wire).unwrap();
        assert_eq!(n, OVERHEAD + 5, "not padded");
        assert_eq!(&wire[..8], &[4, 0, 0, 0, 0x34, 0x12, 0, 0]);
        assert_eq!(&rx.open(&wire[..n], &mut out).unwrap()[..5], b"hello");
        assert_eq!(
            rx.open(&wire[..n], &mut out),
            Err(TransportError::Replay(0))
        );
    }

    #[test]
    fn a_flipped_bit_fails_and_does_not_burn_the_counter() {
        let (tx, rx) = pair();
        let mut wire = [0u8; 128];
        let mut out = [0u8; 128];
        let n = tx.seal(b"hello", &mut wire).unwrap();
        let mut bad = wire;
        bad[HEADER] ^= 1;
        assert_eq!(rx.open(&bad[..n], &mut out), Err(TransportError::Decrypt));
        assert!(rx.open(&wire[..n], &mut out).is_ok());
    }

    #[test]
    fn another_index_short_input_and_small_buffers_are_refused() {
        let (tx, rx) = pair();
        let mut wire = [0u8; 128];
        let n = tx.seal(b"x", &mut wire).unwrap();
        let other = RecvKey::new([7; 32], 9);
        let mut out = [0u8; 128];
        assert_eq!(
            other.open(&wire[..n], &mut out),
            Err(TransportError::WrongIndex(0x1234))
        );
        assert_eq!(rx.open(&wire[..20], &mut out), Err(TransportError::NotData));
        assert!(matches!(
            tx.seal(&[0; 100], &mut [0u8; 64]),
            Err(TransportError::BufferTooSmall { need: 132 })
        ));
    }

    #[test]
    fn two_threads_sealing_never_reuse_a_counter() {
        let (tx, rx) = pair();
        let tx = std::sync::Arc::new(tx);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    (0..500)
                        .map(|_| {
                            let mut wire = vec![0u8; 64];
                            let n = tx.seal(b"p", &mut wire).unwrap();
                            wire.truncate(n);
                            wire
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = [0u8; 64];
        let mut opened = 0;
        for h in handles {
            for wire in h.join().unwrap() {
                // Within the window (1000 < 1984), so every one must open exactly once.
                rx.open(&wire, &mut out).unwrap();
                opened += 1;
            }
        }
        assert_eq!((opened, tx.sent()), (1000, 1000));
    }
}
