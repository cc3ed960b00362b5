//! WireGuard's handshake (whitepaper §5.4.2–§5.4.5) on snow, so that its transport keys come out
//! (`dangerously_get_raw_split`) and can be handed to the data workers. boringtun 0.7 keeps them
//! inside `Tunn` (its `Session` is private), which is why this exists: see ARCHITECTURE.md, "The
//! data thread and both cores".
//!
//! WireGuard's handshake is exactly `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s` with the prologue
//! "WireGuard v1 zx2c4 Jason@zx2c4.com" and an all-zero pre-shared key when none is set; the
//! framing around the Noise messages (type, indices, mac1/mac2) is added here.
//!
//! Both roles: [`Initiator`] (message 1 out, message 2 in) and [`respond`] (message 1 in,
//! message 2 out), each proven against boringtun in `interop_tests`. As initiator, a cookie reply
//! from a responder under load is opened ([`open_cookie_reply`]) and the next initiation carries
//! mac2 under it ([`set_mac2`], §5.4.7). As responder, the cookie replies we send under load
//! (§5.3, §5.4.7) are `cookie`'s: the node checks every initiation there, node-wide and before
//! any Diffie-Hellman, so an initiation reaches [`respond`] only when we are not under load or
//! its mac2 is right (responses are not checked: they reach [`Initiator::finish`] only under the
//! index of an initiation we sent). The per-peer timestamp check (§5.1) and the
//! timers (§6) are `session`'s.

use super::transport::{RecvKey, SendKey};
use crate::core::keys::{PublicKey, SecretKey};
use blake2::digest::{consts::U16, Digest, Mac};
use blake2::{Blake2s256, Blake2sMac};
use subtle::ConstantTimeEq;

const PARAMS: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// The prologue (whitepaper §5.4: IDENTIFIER).
const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
pub(super) const LABEL_MAC1: &[u8] = b"mac1----";
pub(super) const LABEL_COOKIE: &[u8] = b"cookie--";

pub const TYPE_INITIATION: u8 = 1;
pub const TYPE_RESPONSE: u8 = 2;
/// type/reserved 4, sender 4, ephemeral 32, static 32+16, timestamp 12+16, mac1 16, mac2 16.
pub const INITIATION_LEN: usize = 148;
/// type/reserved 4, sender 4, receiver 4, ephemeral 32, empty 0+16, mac1 16, mac2 16.
pub const RESPONSE_LEN: usize = 92;
pub const TYPE_COOKIE: u8 = 3;
/// type/reserved 4, receiver 4, nonce 24, cookie 16+16.
pub const COOKIE_REPLY_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("Noise: {0}")]
    Noise(#[from] snow::Error),
    #[error("not a handshake response of {RESPONSE_LEN} bytes")]
    NotResponse,
    #[error("the response is for session index {0}, not ours")]
    WrongIndex(u32),
    #[error("not a handshake initiation of {INITIATION_LEN} bytes")]
    NotInitiation,
    #[error("the message's mac1 does not match our public key")]
    Mac1,
    #[error("the initiator's static key is not a valid public key")]
    NoStatic,
    #[error("not a cookie reply to our initiation")]
    Cookie,
}

/// A TAI64N timestamp (whitepaper §5.4.2): seconds since 1970 plus 2^62, big-endian, then the
/// nanoseconds. The driver passes the wall clock; the responder only needs it to increase.
pub fn tai64n(unix_secs: u64, nanos: u32) -> [u8; 12] {
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&((1u64 << 62) + unix_secs).to_be_bytes());
    t[8..].copy_from_slice(&nanos.to_be_bytes());
    t
}

/// HASH(label ‖ public key) (whitepaper §5.4): the key of mac1 (`LABEL_MAC1`) and of the
/// cookie reply's encryption (`LABEL_COOKIE`) for the holder of `key`.
pub(super) fn label_key(label: &[u8], key: &PublicKey) -> [u8; 32] {
    Blake2s256::new()
        .chain_update(label)
        .chain_update(key.0)
        .finalize()
        .into()
}

/// MAC(key, msg) (whitepaper §5.4): keyed BLAKE2s-128, under a 32-byte key (mac1, τ) or a
/// 16-byte cookie (mac2).
pub(super) fn keyed_mac<const N: usize>(key: &[u8; N], msg: &[u8]) -> [u8; 16] {
    const { assert!(N >= 1 && N <= 32) };
    // The assertion above keeps the key within BLAKE2s's 1..=32 key length.
    let mac = <Blake2sMac<U16> as Mac>::new_from_slice(key);
    let mut mac = mac.expect("1..=32-byte key"); // ok: see above
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// mac1 (whitepaper §5.4.4): keyed BLAKE2s-128 under HASH(LABEL_MAC1 ‖ receiver's public key)
/// over the message up to the mac1 field.
fn mac1(receiver: &PublicKey, msg: &[u8]) -> [u8; 16] {
    keyed_mac(&label_key(LABEL_MAC1, receiver), msg)
}

/// mac2 (whitepaper §5.4.4): keyed BLAKE2s-128 under the responder's cookie over the message
/// up to the mac2 field.
pub(super) fn mac2(cookie: &[u8; 16], msg: &[u8]) -> [u8; 16] {
    keyed_mac(cookie, msg)
}

/// Writes mac2 under `cookie` into an initiation [`Initiator::start`] wrote (mac2 zero there).
pub fn set_mac2(msg: &mut [u8; INITIATION_LEN], cookie: &[u8; 16]) {
    let m = mac2(cookie, &msg[..132]);
    msg[132..].copy_from_slice(&m);
}

/// Opens a cookie reply (whitepaper §5.4.7) from `peer` to the initiation whose mac1 was `mac1`:
/// XChaCha20-Poly1305 under HASH("cookie--" ‖ peer's public key), with mac1 as associated
/// data. Returns the receiver index it names and the cookie.
pub fn open_cookie_reply(
    peer: &PublicKey,
    mac1: &[u8; 16],
    reply: &[u8],
) -> Result<(u32, [u8; 16]), HandshakeError> {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
    if reply.len() != COOKIE_REPLY_LEN || reply[..4] != [TYPE_COOKIE, 0, 0, 0] {
        return Err(HandshakeError::Cookie);
    }
    let mut b = [0u8; 4];
    b.copy_from_slice(&reply[4..8]);
    let index = u32::from_le_bytes(b);
    let key = label_key(LABEL_COOKIE, peer);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&key));
    let mut cookie = [0u8; 16];
    cookie.copy_from_slice(&reply[32..48]);
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(&reply[8..32]),
            mac1,
            &mut cookie,
            Tag::from_slice(&reply[48..64]),
        )
        .map_err(|_| HandshakeError::Cookie)?;
    Ok((index, cookie))
}

/// The transport keys of an established session, ready for the data workers.
pub struct Session {
    pub send: SendKey,
    pub recv: RecvKey,
}

/// An initiation sent and waiting for its response.
pub struct Initiator {
    noise: snow::HandshakeState,
    local_public: PublicKey,
    index: u32,
    /// Our initiation's mac1: a cookie reply to it is sealed with this as associated data.
    mac1: [u8; 16],
}

impl Initiator {
    /// Writes a handshake initiation to `peer` into `out` (mac2 zero: no cookie). `index` is our
    /// session index, which the peer's messages will carry; `timestamp` is [`tai64n`] of now.
    /// The ephemeral key comes from snow's resolver (the OS RNG, as for the control channel).
    pub fn start(
        local: &SecretKey,
        peer: &PublicKey,
        psk: Option<&[u8; 32]>,
        index: u32,
        timestamp: [u8; 12],
        out: &mut [u8; INITIATION_LEN],
    ) -> Result<Self, HandshakeError> {
        let params = PARAMS.parse().map_err(HandshakeError::Noise)?;
        let mut noise = snow::Builder::new(params)
            .local_private_key(local.as_bytes())
            .remote_public_key(&peer.0)
            .prologue(IDENTIFIER)
            .psk(2, psk.unwrap_or(&[0; 32]))
            .build_initiator()?;
        out[..4].copy_from_slice(&[TYPE_INITIATION, 0, 0, 0]);
        out[4..8].copy_from_slice(&index.to_le_bytes());
        let n = noise.write_message(&timestamp, &mut out[8..116])?;
        debug_assert_eq!(n, 108);
        let m = mac1(peer, &out[..116]);
        out[116..132].copy_from_slice(&m);
        out[132..].fill(0);
        Ok(Initiator {
            noise,
            local_public: local.public_key(),
            index,
            mac1: m,
        })
    }

    /// Our session index this initiation carries (the response names it as its receiver).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The initiation's mac1, to open a cookie reply to it.
    pub fn mac1(&self) -> &[u8; 16] {
        &self.mac1
    }

    /// Reads the peer's handshake response and returns the session's transport keys.
    pub fn finish(mut self, response: &[u8]) -> Result<Session, HandshakeError> {
        if response.len() != RESPONSE_LEN || response[..4] != [TYPE_RESPONSE, 0, 0, 0] {
            return Err(HandshakeError::NotResponse);
        }
        let field = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&response[at..at + 4]);
            u32::from_le_bytes(b)
        };
        let (peer_index, ours) = (field(4), field(8));
        if ours != self.index {
            return Err(HandshakeError::WrongIndex(ours));
        }
        let want = mac1(&self.local_public, &response[..60]);
        if !bool::from(want.ct_eq(&response[60..76])) {
            return Err(HandshakeError::Mac1);
        }
        let mut empty = [0u8; 0];
        self.noise.read_message(&response[12..60], &mut empty)?;
        // Noise Split (= whitepaper's KDF2(C, ε)): the initiator sends with the first key.
        let (send, recv) = self.noise.dangerously_get_raw_split();
        Ok(Session {
            send: SendKey::new(send, peer_index),
            recv: RecvKey::new(recv, self.index),
        })
    }
}

/// What answering an initiation produced.
pub struct Responded {
    /// The initiator's static public key, authenticated: the caller looks the peer up by it.
    pub peer: PublicKey,
    /// Its TAI64N timestamp; the caller accepts only one greater than the peer's last (byte
    /// order compares them, they are big-endian).
    pub timestamp: [u8; 12],
    /// The session; the caller publishes it once the peer is known and the timestamp newer.
    pub session: Session,
}

/// Which static key sent this initiation (whitepaper §5.4.2, the responder's first steps),
/// before we know which peer's session should answer it. Costs one Noise read (two DHs); the
/// chosen session then answers with [`respond`].
pub fn initiator_of(local: &SecretKey, initiation: &[u8]) -> Result<PublicKey, HandshakeError> {
    if initiation.len() != INITIATION_LEN || initiation[..4] != [TYPE_INITIATION, 0, 0, 0] {
        return Err(HandshakeError::NotInitiation);
    }
    let want = mac1(&local.public_key(), &initiation[..116]);
    if !bool::from(want.ct_eq(&initiation[116..132])) {
        return Err(HandshakeError::Mac1);
    }
    let params = PARAMS.parse().map_err(HandshakeError::Noise)?;
    let mut noise = snow::Builder::new(params)
        .local_private_key(local.as_bytes())
        .prologue(IDENTIFIER)
        .psk(2, &[0; 32])
        .build_responder()?;
    let mut timestamp = [0u8; 12];
    noise.read_message(&initiation[8..116], &mut timestamp)?;
    noise
        .get_remote_static()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .map(PublicKey)
        .ok_or(HandshakeError::NoStatic)
}

/// Answers a handshake initiation: checks mac1, runs Noise's responder, writes the response to
/// `out` (mac2 zero) and returns the session (the responder sends with Split's second key). The
/// caller must drop the result unless [`Responded::peer`] is a peer it knows (and, for that
/// peer's psk, `psk` must have been its key).
pub fn respond(
    local: &SecretKey,
    psk: Option<&[u8; 32]>,
    index: u32,
    initiation: &[u8],
    out: &mut [u8; RESPONSE_LEN],
) -> Result<Responded, HandshakeError> {
    if initiation.len() != INITIATION_LEN || initiation[..4] != [TYPE_INITIATION, 0, 0, 0] {
        return Err(HandshakeError::NotInitiation);
    }
    let local_public = local.public_key();
    let want = mac1(&local_public, &initiation[..116]);
    if !bool::from(want.ct_eq(&initiation[116..132])) {
        return Err(HandshakeError::Mac1);
    }
    let mut b = [0u8; 4];
    b.copy_from_slice(&initiation[4..8]);
    let peer_index = u32::from_le_bytes(b);
    let params = PARAMS.parse().map_err(HandshakeError::Noise)?;
    let mut noise = snow::Builder::new(params)
        .local_private_key(local.as_bytes())
        .prologue(IDENTIFIER)
        .psk(2, psk.unwrap_or(&[0; 32]))
        .build_responder()?;
    let mut timestamp = [0u8; 12];
    let n = noise.read_message(&initiation[8..116], &mut timestamp)?;
    if n != timestamp.len() {
        return Err(HandshakeError::NotInitiation);
    }
    let peer = noise
        .get_remote_static()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .map(PublicKey)
        .ok_or(HandshakeError::NoStatic)?;
    out[..4].copy_from_slice(&[TYPE_RESPONSE, 0, 0, 0]);
    out[4..8].copy_from_slice(&index.to_le_bytes());
    out[8..12].copy_from_slice(&peer_index.to_le_bytes());
    let n = noise.write_message(&[], &mut out[12..60])?;
    debug_assert_eq!(n, 48);
    let m = mac1(&peer, &out[..60]);
    out[60..76].copy_from_slice(&m);
    out[76..].fill(0);
    let (recv, send) = noise.dangerously_get_raw_split();
    Ok(Responded {
        peer,
        timestamp,
        session: Session {
            send: SendKey::new(send, peer_index),
            recv: RecvKey::new(recv, index),
        },
    })
}
