//! One peer's WireGuard session (Noise IK over X25519, ChaCha20-Poly1305, a replay window, rekey
//! timers and cookies under load), by one of two engines with the same wire format:
//! - boringtun's `noise` module (the default off Linux, `config::default_engine`): this file only maps its results onto the node's
//!   vocabulary. Known limit: boringtun reads the monotonic clock itself for its timers, so
//!   rekeying follows real time even when the rest of the node runs on a simulated clock.
//! - ours, `core::wg::session` (the default on Linux; `[dataplane] wireguard`): sans-IO, driven by the `now`
//!   every method takes, and its keys can be handed to data workers (issue 11). It answers a
//!   responder's cookie; the cookie replies it sends under load come from the node-wide
//!   `core::wg::cookie` guard, which `core::node` consults before handing it a handshake.

use super::wg::session::Session;
use crate::core::counters::DropReason;
use crate::core::keys::{PublicKey, SecretKey};
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use std::net::IpAddr;
use std::time::{Duration, Instant};

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

/// Which implementation carries the node's WireGuard sessions (see the module header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    #[default]
    Boringtun,
    Own,
}

impl Engine {
    /// Every engine, for `from_name` and its tests.
    pub const ALL: [Engine; 2] = [Engine::Boringtun, Engine::Own];

    /// The engine's name in a config file (`[dataplane] wireguard`).
    pub const fn name(self) -> &'static str {
        match self {
            Engine::Boringtun => "boringtun",
            Engine::Own => "own",
        }
    }

    /// The engine a config file names, if any.
    pub fn from_name(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// What a new session needs besides the keys: the engine, and for ours a wall-clock reading
/// (time since 1970) at a monotonic instant, for the handshake's TAI64N timestamps.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineConfig {
    pub engine: Engine,
    pub clock: Option<(Instant, Duration)>,
}

/// A WireGuard session with one peer.
pub struct PeerTunnel {
    inner: Inner,
}

enum Inner {
    Boringtun(Box<Tunn>),
    Own(Box<Session>),
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
    /// `index` is this side's 24-bit session index for the peer; each session's index is it
    /// shifted left by 8 with the low byte counting sessions (both engines).
    pub fn new(local: &SecretKey, peer: PublicKey, index: u32) -> Self {
        let tunn = Tunn::new(
            local.static_secret(),
            x25519_dalek::PublicKey::from(peer.0),
            None,
            Some(PERSISTENT_KEEPALIVE),
            index & 0x00ff_ffff,
            None,
        );
        PeerTunnel {
            inner: Inner::Boringtun(Box::new(tunn)),
        }
    }

    /// A session on the configured engine; `now` is the caller's clock.
    pub fn with_engine(
        local: &SecretKey,
        peer: PublicKey,
        index: u32,
        config: EngineConfig,
        now: Instant,
    ) -> Self {
        match (config.engine, config.clock) {
            (Engine::Own, Some((at, unix))) => {
                let unix_now = unix + now.saturating_duration_since(at);
                PeerTunnel {
                    inner: Inner::Own(Box::new(Session::new(
                        local,
                        peer,
                        index,
                        Some(PERSISTENT_KEEPALIVE),
                        now,
                        unix_now,
                    ))),
                }
            }
            _ => Self::new(local, peer, index),
        }
    }

    /// Encrypts one inner packet into `out`. Without a session the packet is queued and either
    /// a handshake initiation comes back (`Encapsulated::Handshake`) or one is already in flight
    /// (`Encapsulated::Queued`).
    /// `out` must hold `packet.len() + OVERHEAD` bytes and at least 148.
    pub fn encapsulate<'a>(
        &mut self,
        packet: &[u8],
        out: &'a mut [u8],
        now: Instant,
    ) -> Result<Encapsulated<'a>, DropReason> {
        let tunn = match &mut self.inner {
            Inner::Boringtun(t) => t,
            Inner::Own(s) => return s.encapsulate(packet, out, now),
        };
        match tunn.encapsulate(packet, out) {
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
        now: Instant,
    ) -> Result<Decapsulated<'a>, DropReason> {
        let tunn = match &mut self.inner {
            Inner::Boringtun(t) => t,
            Inner::Own(s) => return s.decapsulate(datagram, out, now),
        };
        match tunn.decapsulate(Some(from), datagram, out) {
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

    /// The keys the data workers may use, for sessions on our engine (boringtun's stay inside
    /// `Tunn`).
    pub fn worker_keys(&self, now: Instant) -> Option<super::wg::session::WorkerKeys> {
        match &self.inner {
            Inner::Own(s) => Some(s.worker_keys(now)),
            Inner::Boringtun(_) => None,
        }
    }

    /// See `Session::note_worker_activity`.
    pub fn note_worker_activity(
        &mut self,
        sent: Option<Instant>,
        received: Option<Instant>,
        tx_bytes: u64,
        rx_bytes: u64,
    ) {
        if let Inner::Own(s) = &mut self.inner {
            s.note_worker_activity(sent, received, tx_bytes, rx_bytes);
        }
    }

    /// After a handshake completes, packets queued while it ran come out one per call.
    pub fn poll_queued<'a>(&mut self, out: &'a mut [u8], now: Instant) -> Option<&'a [u8]> {
        let tunn = match &mut self.inner {
            Inner::Boringtun(t) => t,
            Inner::Own(s) => return s.poll_queued(out, now),
        };
        match tunn.decapsulate(None, &[], out) {
            TunnResult::WriteToNetwork(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// Runs the session's timers: handshake retries, rekeying, keepalives. Returns a message to
    /// send, or `Err` when the session expired and a new handshake is needed.
    pub fn update_timers<'a>(
        &mut self,
        out: &'a mut [u8],
        now: Instant,
    ) -> Result<Option<&'a [u8]>, Expired> {
        let tunn = match &mut self.inner {
            Inner::Boringtun(t) => t,
            Inner::Own(s) => return s.update_timers(out, now),
        };
        match tunn.update_timers(out) {
            TunnResult::WriteToNetwork(bytes) => Ok(Some(bytes)),
            TunnResult::Err(WireGuardError::ConnectionExpired) => Err(Expired),
            _ => Ok(None),
        }
    }

    /// Starts a handshake now (used to bring a path up before any traffic needs it).
    pub fn initiate<'a>(
        &mut self,
        out: &'a mut [u8],
        force: bool,
        now: Instant,
    ) -> Option<&'a [u8]> {
        let tunn = match &mut self.inner {
            Inner::Boringtun(t) => t,
            Inner::Own(s) => return s.initiate(out, force, now),
        };
        match tunn.format_handshake_initiation(out, force) {
            TunnResult::WriteToNetwork(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The handshake's round trip, measured on the initiating side.
    pub fn rtt_ms(&self) -> Option<u32> {
        match &self.inner {
            Inner::Boringtun(t) => t.stats().4,
            Inner::Own(s) => s.rtt_ms(),
        }
    }

    pub fn stats(&self, now: Instant) -> TunnelStats {
        let tunn = match &self.inner {
            Inner::Boringtun(t) => t,
            Inner::Own(s) => return s.stats(now),
        };
        let (since_handshake, tx, rx, _loss, rtt_ms) = tunn.stats();
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

    /// A config file's engine names read back as the engines they name, and nothing else does.
    #[test]
    fn engine_names_round_trip() {
        for e in Engine::ALL {
            assert_eq!(Engine::from_name(e.name()), Some(e));
        }
        assert_eq!(Engine::from_name("own"), Some(Engine::Own));
        assert_eq!(Engine::from_name("boringtun"), Some(Engine::Boringtun));
        assert_eq!(Engine::from_name("Own"), None);
        assert_eq!(Engine::from_name("kernel"), None);
    }

    fn icmp_packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[9] = 1;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    fn tunnel(local: &SecretKey, peer: PublicKey, index: u32, engine: Engine) -> PeerTunnel {
        let now = crate::test_now();
        let config = EngineConfig {
            engine,
            clock: Some((now, Duration::from_secs(1_800_000_000))),
        };
        PeerTunnel::with_engine(local, peer, index, config, now)
    }

    /// Every pairing of the two engines, in both roles: the wire format is the same, so a mesh
    /// can mix them during a rollout.
    #[test]
    fn two_sessions_handshake_and_carry_a_packet() {
        for a_engine in [Engine::Boringtun, Engine::Own] {
            for b_engine in [Engine::Boringtun, Engine::Own] {
                handshake_and_packet(a_engine, b_engine);
            }
        }
    }

    fn handshake_and_packet(a_engine: Engine, b_engine: Engine) {
        let now = crate::test_now();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (ka, kb) = (SecretKey::generate(&mut rng), SecretKey::generate(&mut rng));
        let mut a = tunnel(&ka, kb.public_key(), 1, a_engine);
        let mut b = tunnel(&kb, ka.public_key(), 2, b_engine);
        let (mut buf_a, mut buf_b) = (vec![0u8; 2048], vec![0u8; 2048]);
        let from = IpAddr::V4(Ipv4Addr::LOCALHOST);

        let pkt = icmp_packet([10, 0, 0, 1], [10, 0, 0, 2]);
        let init = match a.encapsulate(&pkt, &mut buf_a, now) {
            Ok(Encapsulated::Handshake(h)) => h.to_vec(),
            other => panic!("expected a handshake, got {other:?}"),
        };
        assert_eq!(initiator_of(&kb, &init), Ok(ka.public_key()));
        let resp = match b.decapsulate(from, &init, &mut buf_b, now) {
            Ok(Decapsulated::Reply(r)) => r.to_vec(),
            other => panic!("expected a response, got {other:?}"),
        };
        // The initiator confirms the session with a keepalive, then releases what it queued.
        let keepalive = match a.decapsulate(from, &resp, &mut buf_a, now) {
            Ok(Decapsulated::Reply(r)) => r.to_vec(),
            other => panic!("expected a keepalive, got {other:?}"),
        };
        assert!(matches!(
            b.decapsulate(from, &keepalive, &mut buf_b, now),
            Ok(Decapsulated::Nothing)
        ));
        let queued = a.poll_queued(&mut buf_a, now).map(|q| q.to_vec()).unwrap();
        assert!(a.poll_queued(&mut buf_a, now).is_none());
        match b.decapsulate(from, &queued, &mut buf_b, now) {
            Ok(Decapsulated::Tunnel { packet, src }) => {
                assert_eq!(packet, &pkt[..]);
                assert_eq!(src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
            }
            other => panic!("expected the inner packet, got {other:?}"),
        }
        // Replaying the same datagram is refused by the replay window.
        assert_eq!(
            b.decapsulate(from, &queued, &mut buf_b, now).err(),
            Some(DropReason::Replay)
        );
    }

    #[test]
    fn a_stranger_cannot_decrypt() {
        for engine in [Engine::Boringtun, Engine::Own] {
            stranger(engine);
        }
    }

    fn stranger(engine: Engine) {
        let now = crate::test_now();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let (ka, kb, kc) = (
            SecretKey::generate(&mut rng),
            SecretKey::generate(&mut rng),
            SecretKey::generate(&mut rng),
        );
        let mut a = tunnel(&ka, kb.public_key(), 1, engine);
        let mut c = tunnel(&kc, kb.public_key(), 3, engine);
        let mut buf = vec![0u8; 2048];
        let init = a
            .initiate(&mut buf, false, now)
            .map(|h| h.to_vec())
            .unwrap();
        // C is not B: the initiation was encrypted to B's static key.
        assert!(initiator_of(&kc, &init).is_err());
        let from = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(c.decapsulate(from, &init, &mut buf, now).is_err());
    }
}
