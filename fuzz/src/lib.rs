//! Shared set-ups of the fuzz targets, so the seed program (`examples/seeds.rs`) builds its
//! seeds against the very keys, relay ids and tokens the targets use (all derived from fixed
//! seeds), and the state-machine driver (`sim`).

pub mod control;
pub mod sim;

use p2pvpn::core::keys::{PublicKey, SecretKey};
use p2pvpn::core::relay::client::RelayClient;
use p2pvpn::core::relay::server::{RelayLimits, RelayServer, RelayTicket, UdpVerdict};
use p2pvpn::core::relay::wire::{self, RelayDatagram};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

/// The server's relay address in the relay targets.
pub const RELAY_LOCAL: &str = "198.51.100.1:7400";
/// Node A's and node B's UDP addresses in the relay targets.
pub const RELAY_A: &str = "203.0.113.1:5000";
pub const RELAY_B: &str = "203.0.113.2:5000";

/// The origin of every target's virtual clock: the core never reads the clock, and the targets
/// read it once per run only to have an `Instant` to count from.
#[allow(clippy::disallowed_methods)]
pub fn epoch() -> Instant {
    Instant::now()
}

/// A constant address; the strings above are valid.
pub fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|_| unreachable!("constant address {text}"))
}

/// A relay with two nodes in one network: A on connection 1, B on connection 2.
pub fn relay_with_two_nodes(now: Instant) -> (RelayServer, RelayTicket, RelayTicket) {
    // The keys once per process (an X25519 multiplication each), the relay afresh per run.
    static KEYS: OnceLock<(PublicKey, PublicKey, ChaCha8Rng)> = OnceLock::new();
    let (key_a, key_b, rng) = KEYS.get_or_init(|| {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let key_a = SecretKey::generate(&mut rng).public_key();
        let key_b = SecretKey::generate(&mut rng).public_key();
        (key_a, key_b, rng)
    });
    let (key_a, key_b) = (*key_a, *key_b);
    let mut relay = RelayServer::new(RelayLimits::default(), rng.clone(), now);
    let a = relay.register(1, "fuzz", key_a, now);
    let b = relay.register(2, "fuzz", key_b, now);
    match (a, b) {
        (Some(a), Some(b)) => (relay, a, b),
        _ => unreachable!("an empty relay with default limits takes two nodes"),
    }
}

/// Binds `ticket`'s node to `from` as a real node does (`RelayClient`: a keyed Bind, the relay's
/// Challenge to that address, the Bind again with its cookie, BindOk), and returns the datagrams
/// that crossed, so targets and seeds start from a working binding. Empty if it did not bind.
pub fn bind_udp(
    relay: &mut RelayServer,
    ticket: RelayTicket,
    from: SocketAddr,
    now: Instant,
) -> Vec<Vec<u8>> {
    let server = addr(RELAY_LOCAL);
    let mut client = RelayClient::new(Some(server));
    client.set_ticket(Some(ticket), now);
    let mut out = VecDeque::new();
    client.handle_timeout(now, &mut out);
    let mut crossed = Vec::new();
    while let Some(t) = out.pop_front() {
        crossed.push(t.payload.clone());
        let mut buf = t.payload;
        let UdpVerdict::Reply(reply) = relay.handle_udp(server, from, &mut buf, now) else {
            return Vec::new();
        };
        crossed.push(reply.clone());
        match wire::parse(&reply) {
            Some(RelayDatagram::Challenge(c)) => client.handle_challenge(&c, &mut out),
            Some(RelayDatagram::BindOk(ok)) => {
                client.handle_bind_ok(&ok, now);
                return crossed;
            }
            _ => return Vec::new(),
        }
        if crossed.len() > 8 {
            break;
        }
    }
    Vec::new()
}

/// A fixed key pair for targets that need a peer's key.
pub fn fixed_secret(seed: u64) -> SecretKey {
    SecretKey::generate(&mut ChaCha8Rng::seed_from_u64(seed))
}

/// Public key of `fixed_secret(seed)`.
pub fn fixed_public(seed: u64) -> PublicKey {
    fixed_secret(seed).public_key()
}

/// Splits an input into records, each a two-byte big-endian length and that many bytes (the
/// last one possibly short), so one input carries several datagrams or stream writes whatever
/// bytes they hold.
pub fn records(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (head, rest) = (data.get(..2)?, &data[2..]);
        let len = usize::from(u16::from_be_bytes([head[0], head[1]])).min(rest.len());
        let (record, tail) = rest.split_at(len);
        data = tail;
        Some(record)
    })
}

/// The inverse of [`records`], for the seed program.
pub fn join_records<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&(r.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        out.extend_from_slice(&r[..r.len().min(usize::from(u16::MAX))]);
    }
    out
}
