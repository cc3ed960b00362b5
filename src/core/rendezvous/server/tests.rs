//! The server's connection deadlines, driven with a simulated clock: a frame dribbled a byte at a
//! time, a stranger with a random key, and a member that stops sending whole messages are all
//! closed on time; a member that pings stays.

use super::*;
use crate::core::relay::server::RelayLimits;
use crate::core::rendezvous::registry::MemoryRegistry;
use rand::SeedableRng;

const S: Duration = Duration::from_secs(1);
const CONN: ConnId = 1;

struct Lab {
    server: ServerCore<MemoryRegistry>,
    server_key: PublicKey,
    member: SecretKey,
    t0: Instant,
}

fn lab() -> Lab {
    let t0 = crate::test_now();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let secret = SecretKey::generate(&mut rng);
    let member = SecretKey::generate(&mut rng);
    let mut registry = MemoryRegistry::default();
    let cidr = "10.66.0.0/24".parse().unwrap(); // ok: constant
    registry.create_network("lab", cidr);
    let m = Member {
        network: "lab".into(),
        name: "alice".into(),
        public_key: member.public_key(),
        virtual_ip: "10.66.0.1".parse().unwrap(), // ok: constant
        ipv6: None,
    };
    registry.admit(&m, &[0; 32]).unwrap();
    let relay = RelayServer::new(RelayLimits::default(), rng, t0);
    let server = ServerCore::new(secret.clone(), registry, relay);
    Lab {
        server_key: secret.public_key(),
        server,
        member,
        t0,
    }
}

impl Lab {
    fn open(&mut self) {
        let remote = "192.0.2.7:40000".parse().unwrap(); // ok: constant
        self.server.handle_open(CONN, remote, self.t0);
    }

    /// Outputs so far: the bytes sent to `CONN`, and whether it was closed.
    fn drain(&mut self) -> (Vec<u8>, bool) {
        let (mut sent, mut closed) = (Vec::new(), false);
        while let Some(out) = self.server.poll_output() {
            match out {
                ServerOutput::Send(CONN, b) | ServerOutput::Relay(CONN, b) => {
                    sent.extend_from_slice(&b)
                }
                ServerOutput::Close(CONN) => closed = true,
                _ => {}
            }
        }
        (sent, closed)
    }

    /// Runs the server's timers up to `at` (as the driver would) and says whether `CONN` was
    /// closed by then.
    fn closed_by(&mut self, at: Instant) -> bool {
        while let Some(due) = self.server.poll_timeout().filter(|d| *d <= at) {
            self.server.handle_timeout(due);
        }
        self.drain().1
    }

    /// A completed Noise handshake with `key` at `at`; returns the node's channel.
    fn handshake(&mut self, key: &SecretKey, at: Instant) -> SecureChannel {
        let mut node = SecureChannel::initiator(key, &self.server_key).unwrap();
        let first = node.take_outgoing().unwrap();
        self.server.handle_bytes(CONN, &first, at, 0);
        let (reply, closed) = self.drain();
        assert!(!closed);
        node.handle_bytes(&reply).unwrap();
        assert!(node.is_established());
        node
    }

    fn send(&mut self, node: &mut SecureChannel, message: &ClientMessage, at: Instant) -> bool {
        node.send(&encode(message)).unwrap();
        let bytes = node.take_outgoing().unwrap();
        self.server.handle_bytes(CONN, &bytes, at, 0);
        let (reply, closed) = self.drain();
        if !reply.is_empty() {
            node.handle_bytes(&reply).unwrap();
        }
        closed
    }
}

fn hello() -> ClientMessage {
    ClientMessage::Hello {
        network: "lab".into(),
        endpoints: vec![],
        nat: None,
        run: None,
    }
}

#[test]
fn a_frame_dribbled_before_the_handshake_is_cut_off_at_the_handshake_deadline() {
    let mut lab = lab();
    lab.open();
    // A 64 KB frame announced, then one byte a second: each byte is progress of a kind, none a
    // whole message.
    lab.server.handle_bytes(CONN, &[0xff, 0xff], lab.t0, 0);
    for i in 1..10 {
        lab.server.handle_bytes(CONN, &[0], lab.t0 + i * S, 0);
        assert!(!lab.closed_by(lab.t0 + i * S), "closed early at {i} s");
    }
    assert!(lab.closed_by(lab.t0 + 10 * S));
    assert_eq!(lab.server.stats().timed_out, 1);
}

#[test]
fn a_stranger_that_completes_the_handshake_is_not_answered_and_is_closed() {
    let mut lab = lab();
    lab.open();
    let stranger = SecretKey::generate(&mut rand_chacha::ChaCha8Rng::seed_from_u64(12));
    let mut node = lab.handshake(&stranger, lab.t0 + S);
    node.send(&encode(&ClientMessage::Ping)).unwrap();
    let ping = node.take_outgoing().unwrap();
    lab.server.handle_bytes(CONN, &ping, lab.t0 + 2 * S, 0);
    let (reply, closed) = lab.drain();
    assert!(reply.is_empty(), "the stranger's ping was answered");
    assert!(closed);
}

#[test]
fn a_stranger_that_says_nothing_after_the_handshake_is_closed_at_the_join_deadline() {
    let mut lab = lab();
    lab.open();
    let stranger = SecretKey::generate(&mut rand_chacha::ChaCha8Rng::seed_from_u64(13));
    let _node = lab.handshake(&stranger, lab.t0 + 3 * S);
    // The handshake deadline (10 s after opening) no longer applies...
    assert!(!lab.closed_by(lab.t0 + 12 * S));
    // ...the join deadline (10 s after the handshake) does.
    assert!(lab.closed_by(lab.t0 + 13 * S));
}

#[test]
fn a_member_is_closed_when_whole_messages_stop_even_if_bytes_trickle() {
    let mut lab = lab();
    lab.open();
    let member = lab.member.clone();
    let mut node = lab.handshake(&member, lab.t0);
    assert!(!lab.send(&mut node, &hello(), lab.t0 + S));
    assert!(lab.server.is_member(CONN));
    // A frame announced but never finished: a byte every 20 s.
    lab.server
        .handle_bytes(CONN, &[0xff, 0xff], lab.t0 + 2 * S, 0);
    for i in 1..3 {
        let at = lab.t0 + 2 * S + i * 20 * S;
        lab.server.handle_bytes(CONN, &[0], at, 0);
        assert!(!lab.closed_by(at));
    }
    // 60 s after the Hello, its last whole message.
    assert!(lab.closed_by(lab.t0 + 61 * S));
}

#[test]
fn a_member_that_pings_stays_and_gets_its_pongs() {
    let mut lab = lab();
    lab.open();
    let member = lab.member.clone();
    let mut node = lab.handshake(&member, lab.t0);
    assert!(!lab.send(&mut node, &hello(), lab.t0));
    while node.poll_message().is_some() {}
    for i in 1..=20 {
        let at = lab.t0 + i * 15 * S;
        assert!(!lab.closed_by(at));
        assert!(!lab.send(&mut node, &ClientMessage::Ping, at));
        let pong = node.poll_message().unwrap();
        assert_eq!(decode::<ServerMessage>(&pong).unwrap(), ServerMessage::Pong);
    }
}

#[test]
fn a_member_that_leaves_is_forgotten_and_a_stranger_cannot_leave_for_it() {
    let mut lab = lab();
    lab.open();
    let stranger = SecretKey::generate(&mut rand_chacha::ChaCha8Rng::seed_from_u64(14));
    let mut node = lab.handshake(&stranger, lab.t0);
    let leave = ClientMessage::Leave {
        network: "lab".into(),
    };
    assert!(lab.send(&mut node, &leave, lab.t0));
    let reply = decode::<ServerMessage>(&node.poll_message().unwrap()).unwrap();
    assert!(
        matches!(
            reply,
            ServerMessage::Refused {
                refusal: Refusal::NotAMember { .. }
            }
        ),
        "{reply:?}"
    );
    assert_eq!(lab.server.registry_mut().members("lab").unwrap().len(), 1);

    lab.server.handle_closed(CONN);
    lab.open();
    let member = lab.member.clone();
    let mut node = lab.handshake(&member, lab.t0 + S);
    assert!(
        lab.send(&mut node, &leave, lab.t0 + S),
        "not closed after Left"
    );
    let reply = decode::<ServerMessage>(&node.poll_message().unwrap()).unwrap();
    assert_eq!(
        reply,
        ServerMessage::Left {
            network: "lab".into()
        }
    );
    assert!(lab.server.registry_mut().members("lab").unwrap().is_empty());
}
