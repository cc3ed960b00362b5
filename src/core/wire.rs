//! Tells apart the datagrams that share a node's one UDP socket by their first bytes.
//!
//! - STUN (RFC 5389 §6): the two top bits of the first byte are zero and bytes 4..8 hold the magic
//!   cookie 0x2112A442.
//! - Punch probes (`core::punch::probe`): the magic 0xF0 'p' '2' 'p' and a fixed length.
//! - Relay frames (`core::relay::wire`): the magic 0xF0 'r' 'l' 'y'.
//! - WireGuard (whitepaper §5.4): a little-endian u32 message type 1-4, i.e. the type byte then
//!   three zero bytes, with a fixed length for the three handshake messages and at least 32 bytes
//!   for transport data.

/// The STUN magic cookie, RFC 5389 §6.
pub const STUN_MAGIC_COOKIE: u32 = 0x2112_A442;

/// WireGuard message types (whitepaper §5.4.2-§5.4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WgMessage {
    HandshakeInit,
    HandshakeResponse,
    CookieReply,
    Data,
}

/// What a datagram is, judged only by its framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramKind {
    Stun,
    Probe,
    /// The server's relay framing (`core::relay::wire`).
    Relay,
    WireGuard(WgMessage),
    Unknown,
}

const HANDSHAKE_INIT_LEN: usize = 148;
const HANDSHAKE_RESPONSE_LEN: usize = 92;
const COOKIE_REPLY_LEN: usize = 64;
const DATA_MIN_LEN: usize = 32;

pub fn classify(datagram: &[u8]) -> DatagramKind {
    if datagram.len() >= 20
        && datagram[0] & 0xC0 == 0
        && datagram[4..8] == STUN_MAGIC_COOKIE.to_be_bytes()
    {
        return DatagramKind::Stun;
    }
    if crate::core::punch::probe::is_probe(datagram) {
        return DatagramKind::Probe;
    }
    if crate::core::relay::wire::is_relay(datagram) {
        return DatagramKind::Relay;
    }
    if datagram.len() < 4 || datagram[1..4] != [0, 0, 0] {
        return DatagramKind::Unknown;
    }
    let kind = match (datagram[0], datagram.len()) {
        (1, HANDSHAKE_INIT_LEN) => WgMessage::HandshakeInit,
        (2, HANDSHAKE_RESPONSE_LEN) => WgMessage::HandshakeResponse,
        (3, COOKIE_REPLY_LEN) => WgMessage::CookieReply,
        (4, n) if n >= DATA_MIN_LEN => WgMessage::Data,
        _ => return DatagramKind::Unknown,
    };
    DatagramKind::WireGuard(kind)
}

/// The receiver index of a WireGuard response, cookie reply or data message: the index the
/// receiving side chose for its session (whitepaper §5.4.3-§5.4.6).
pub fn receiver_index(datagram: &[u8], kind: WgMessage) -> Option<u32> {
    let range = match kind {
        WgMessage::HandshakeInit => return None,
        // type(4) sender(4) receiver(4)
        WgMessage::HandshakeResponse => 8..12,
        // type(4) receiver(4)
        WgMessage::CookieReply | WgMessage::Data => 4..8,
    };
    let bytes: [u8; 4] = datagram.get(range)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn recognises_each_message() {
        let mut init = vec![0u8; 148];
        init[0] = 1;
        assert_eq!(
            classify(&init),
            DatagramKind::WireGuard(WgMessage::HandshakeInit)
        );
        let mut data = vec![0u8; 60];
        data[0] = 4;
        data[4..8].copy_from_slice(&0x0102_0304u32.to_le_bytes());
        assert_eq!(classify(&data), DatagramKind::WireGuard(WgMessage::Data));
        assert_eq!(receiver_index(&data, WgMessage::Data), Some(0x0102_0304));
        let mut stun = vec![0u8; 20];
        stun[1] = 1;
        stun[4..8].copy_from_slice(&STUN_MAGIC_COOKIE.to_be_bytes());
        assert_eq!(classify(&stun), DatagramKind::Stun);
    }

    #[test]
    fn wrong_lengths_are_unknown() {
        let mut init = vec![0u8; 147];
        init[0] = 1;
        assert_eq!(classify(&init), DatagramKind::Unknown);
        assert_eq!(classify(&[4, 0, 0]), DatagramKind::Unknown);
        assert_eq!(
            classify(b"hello world, this is not wireguard"),
            DatagramKind::Unknown
        );
    }

    proptest! {
        #[test]
        fn classify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let kind = classify(&bytes);
            if let DatagramKind::WireGuard(k) = kind {
                let _ = receiver_index(&bytes, k);
            }
        }
    }
}
