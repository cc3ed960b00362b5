//! One peer's WireGuard session (Noise IK over X25519, ChaCha20-Poly1305, a replay window, rekey
//! timers and cookies under load), provided by boringtun's `noise` module. This file only maps
//! boringtun's results onto the node's vocabulary; it adds no cryptography of its own.
//!
//! Known limit: boringtun reads the monotonic clock itself for its timers, so rekeying follows
//! real time even when the rest of the node runs on a simulated clock.

use crate::core::counters::DropReason;
use crate::core::keys::{PublicKey, SecretKey};
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use std::net::IpAddr;
use std::time::Duration;

/// WireGuard's persistent keepalive, which also keeps NAT mappings open (whitepaper §6.5).
pub const PERSISTENT_KEEPALIVE: u16 = 25;

/// Bytes WireGuard adds to a packet: 16 header + 16 tag (whitepaper §5.4.6).
pub const OVERHEAD: usize = 32;

/// What decapsulating one datagram produced.
#[derive(Debug)]
pub enum Decapsulated<'a> {
    /// An inner IP packet for the TUN device, with the source address it claims.
    Tunnel { packet: &'a [u8], src: IpAddr },
    /// A message to send back to the sender (handshake response, cookie reply, keepalive).
    Reply(&'a [u8]),
    /// Authenticated and consumed (a keepalive); nothing to do.
    Nothing,
}

/// Counters and timings of a session, for `status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TunnelStats {
    pub since_handshake: Option<Duration>,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub rtt_ms: Option<u32>,
}

/// A WireGuard session with one peer.
pub struct PeerTunnel {
    tunn: Tunn,
}

fn drop_reason(err: WireGuardError) -> DropReason {
    match err {
        WireGuardError::DuplicateCounter | WireGuardError::InvalidCounter => DropReason::Replay,
        WireGuardError::InvalidMac
        | WireGuardError::InvalidAeadTag
        | WireGuardError::WrongKey
        | WireGuardError::InvalidTai64nTimestamp
        | WireGuardError::WrongTai64nTimestamp => DropReason::DecryptFailed,
        WireGuardError::WrongIndex
        | WireGuardError::NoCurrentSession
        | WireGuardError::UnexpectedPacket
        | WireGuardError::ConnectionExpired => DropReason::UnknownSession,
        WireGuardError::UnderLoad => DropReason::RateLimited,
        WireGuardError::DestinationBufferTooSmall
        | WireGuardError::IncorrectPacketLength
        | WireGuardError::WrongPacketType
        | WireGuardError::InvalidPacket
        | WireGuardError::LockFailed => DropReason::Malformed,
    }
}

impl PeerTunnel {
    /// `index` is this side's 24-bit session index for the peer; boringtun shifts it left by 8
    /// and uses the low byte for successive sessions.
    pub fn new(local: &SecretKey, peer: PublicKey, index: u32) -> Self {
        let tunn = Tunn::new(
            local.static_secret(),
            x25519_dalek::PublicKey::from(peer.0),
            None,
            Some(PERSISTENT_KEEPALIVE),
            index & 0x00ff_ffff,
            None,
        );
        PeerTunnel { tunn }
    }

    /// Encrypts one inner packet into `out`. `Ok(None)` means the packet was queued while a
    /// handshake starts; the handshake initiation is then returned by [`Self::poll_handshake`].
    /// `out` must hold `packet.len() + OVERHEAD` bytes and at least 148.
    pub fn encapsulate<'a>(
        &mut self,
        packet: &[u8],
        out: &'a mut [u8],
    ) -> Result<Encapsulated<'a>, DropReason> {
        match self.tunn.encapsulate(packet, out) {
            TunnResult::WriteToNetwork(bytes) => {
                if bytes.first() == Some(&1) {
                    Ok(Encapsulated::Handshake(bytes))
                } else {
                    Ok(Encapsulated::Data(bytes))
                }
            }
            TunnResult::Err(e) => Err(drop_reason(e)),
            TunnResult::Done => Ok(Encapsulated::Queued),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {
                Err(DropReason::Malformed)
            }
        }
    }

    /// Decrypts or processes one datagram from the peer.
    pub fn decapsulate<'a>(
        &mut self,
        from: IpAddr,
        datagram: &[u8],
        out: &'a mut [u8],
    ) -> Result<Decapsulated<'a>, DropReason> {
        match self.tunn.decapsulate(Some(from), datagram, out) {
            TunnResult::Done => Ok(Decapsulated::Nothing),
            TunnResult::Err(e) => Err(drop_reason(e)),
            TunnResult::WriteToNetwork(bytes) => Ok(Decapsulated::Reply(bytes)),
            TunnResult::WriteToTunnelV4(packet, src) => Ok(Decapsulated::Tunnel {
                packet,
                src: IpAddr::V4(src),
            }),
            TunnResult::WriteToTunnelV6(packet, src) => Ok(Decapsulated::Tunnel {
                packet,
                src: IpAddr::V6(src),
            }),
        }
    }

    /// After a handshake completes, packets queued while it ran come out one per call.
    pub fn poll_queued<'a>(&mut self, out: &'a mut [u8]) -> Option<&'a [u8]> {
        match self.tunn.decapsulate(None, &[], out) {
            TunnResult::WriteToNetwork(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// Runs the session's timers: handshake retries, rekeying, keepalives. Returns a message to
    /// send, or `Err` when the session expired and a new handshake is needed.
    pub fn update_timers<'a>(&mut self, out: &'a mut [u8]) -> Result<Option<&'a [u8]>, Expired> {
        match self.tunn.update_timers(out) {
            TunnResult::WriteToNetwork(bytes) => Ok(Some(bytes)),
            TunnResult::Err(WireGuardError::ConnectionExpired) => Err(Expired),
            _ => Ok(None),
        }
    }

    /// Starts a handshake now (used to bring a path up before any traffic needs it).
    pub fn initiate<'a>(&mut self, out: &'a mut [u8], force: bool) -> Option<&'a [u8]> {
        match self.tunn.format_handshake_initiation(out, force) {
            TunnResult::WriteToNetwork(bytes) => Some(bytes),
            _ => None,
        }
    }

    pub fn stats(&self) -> TunnelStats {
        let (since_handshake, tx, rx, _loss, rtt_ms) = self.tunn.stats();
        TunnelStats {
            since_handshake,
            tx_bytes: tx as u64,
            rx_bytes: rx as u64,
            rtt_ms,
        }
    }
}

/// What encapsulating one packet produced.
#[derive(Debug)]
pub enum Encapsulated<'a> {
    Data(&'a [u8]),
    /// The packet was queued and this handshake initiation must go out first.
    Handshake(&'a [u8]),
    /// Queued behind a handshake already in flight.
    Queued,
}

/// The session has been silent past WireGuard's reject-after time (whitepaper §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired;

/// Which static key sent this handshake initiation, learned by running the responder's first
/// steps (whitepaper §5.4.2) before we know which peer's session to hand it to.
pub fn initiator_of(local: &SecretKey, datagram: &[u8]) -> Result<PublicKey, DropReason> {
    let packet = match Tunn::parse_incoming_packet(datagram) {
        Ok(Packet::HandshakeInit(init)) => init,
        Ok(_) => return Err(DropReason::Malformed),
        Err(e) => return Err(drop_reason(e)),
    };
    let secret = local.static_secret();
    let public = x25519_dalek::PublicKey::from(&secret);
    parse_handshake_anon(&secret, &public, &packet)
        .map(|half| PublicKey(half.peer_static_public))
        .map_err(drop_reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::net::Ipv4Addr;

    fn icmp_packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[9] = 1;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    #[test]
    fn two_sessions_handshake_and_carry_a_packet() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (ka, kb) = (SecretKey::generate(&mut rng), SecretKey::generate(&mut rng));
        let mut a = PeerTunnel::new(&ka, kb.public_key(), 1);
        let mut b = PeerTunnel::new(&kb, ka.public_key(), 2);
        let (mut buf_a, mut buf_b) = (vec![0u8; 2048], vec![0u8; 2048]);
        let from = IpAddr::V4(Ipv4Addr::LOCALHOST);

        let pkt = icmp_packet([10, 0, 0, 1], [10, 0, 0, 2]);
        let init = match a.encapsulate(&pkt, &mut buf_a) {
            Ok(Encapsulated::Handshake(h)) => h.to_vec(),
            other => panic!("expected a handshake, got {other:?}"),
        };
        assert_eq!(initiator_of(&kb, &init), Ok(ka.public_key()));
        let resp = match b.decapsulate(from, &init, &mut buf_b) {
            Ok(Decapsulated::Reply(r)) => r.to_vec(),
            other => panic!("expected a response, got {other:?}"),
        };
        // The initiator confirms the session with a keepalive, then releases what it queued.
        let keepalive = match a.decapsulate(from, &resp, &mut buf_a) {
            Ok(Decapsulated::Reply(r)) => r.to_vec(),
            other => panic!("expected a keepalive, got {other:?}"),
        };
        assert!(matches!(
            b.decapsulate(from, &keepalive, &mut buf_b),
            Ok(Decapsulated::Nothing)
        ));
        let queued = a.poll_queued(&mut buf_a).map(|q| q.to_vec()).unwrap();
        assert!(a.poll_queued(&mut buf_a).is_none());
        match b.decapsulate(from, &queued, &mut buf_b) {
            Ok(Decapsulated::Tunnel { packet, src }) => {
                assert_eq!(packet, &pkt[..]);
                assert_eq!(src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
            }
            other => panic!("expected the inner packet, got {other:?}"),
        }
        // Replaying the same datagram is refused by the replay window.
        assert_eq!(
            b.decapsulate(from, &queued, &mut buf_b).err(),
            Some(DropReason::Replay)
        );
    }

    #[test]
    fn a_stranger_cannot_decrypt() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let (ka, kb, kc) = (
            SecretKey::generate(&mut rng),
            SecretKey::generate(&mut rng),
            SecretKey::generate(&mut rng),
        );
        let mut a = PeerTunnel::new(&ka, kb.public_key(), 1);
        let mut c = PeerTunnel::new(&kc, kb.public_key(), 3);
        let mut buf = vec![0u8; 2048];
        let init = a.initiate(&mut buf, false).map(|h| h.to_vec()).unwrap();
        // C is not B: the initiation was encrypted to B's static key.
        assert!(initiator_of(&kc, &init).is_err());
        let from = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(c.decapsulate(from, &init, &mut buf).is_err());
    }
}
