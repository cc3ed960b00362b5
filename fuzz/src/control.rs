//! The `control` target's driver. Input: a mode byte, then plaintext control messages separated
//! by 0xFE (a byte valid JSON never holds). Mode bit 0 picks the side:
//!
//! - server: `ServerCore` with an honest online member B and the fuzzer's connection X (a member
//!   when mode bit 1 is set; it may also `join` with the network's credential). Checked: each
//!   message yields a bounded number of outputs; everything B receives decrypts and decodes; B is
//!   never told about itself; a punch offer reaching B names X, its real sender; relayed datagrams
//!   are well-framed.
//! - node: a real `Node` whose server is the fuzzer. Checked: bounded transmits, events and
//!   control output per message, and everything the node says decodes.

use crate::{fixed_public, fixed_secret};
use p2pvpn::core::keys::{PublicKey, SecretKey};
use p2pvpn::core::node::{Node, NodeConfig, PunchConfig, SocketId};
use p2pvpn::core::relay::server::{RelayLimits, RelayServer};
use p2pvpn::core::relay::wire;
use p2pvpn::core::rendezvous::channel::SecureChannel;
use p2pvpn::core::rendezvous::messages::{decode, encode, ClientMessage, ServerMessage};
use p2pvpn::core::rendezvous::registry::{Member, MemoryRegistry, Registry, TokenRecord};
use p2pvpn::core::rendezvous::server::{ConnId, ServerCore, ServerOutput};
use p2pvpn::core::rendezvous::token::Credential;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub const NETWORK: &str = "fuzz";
pub const UNIX_NOW: u64 = 1_800_000_000;
/// The network's join credential (the fuzzer knows it, as an invited user would).
pub const CREDENTIAL: [u8; 32] = [7; 32];
/// Key seeds: the server, honest member B, the fuzzer's identity X.
pub const SERVER_SEED: u64 = 20;
pub const B_SEED: u64 = 21;
pub const X_SEED: u64 = 22;
/// More outputs than this for one message would be a flood (a network holds at most a few
/// members here).
const MAX_OUTPUTS_PER_MESSAGE: usize = 64;
/// The node side: no single server message may make a node queue more than this.
const MAX_NODE_QUEUE: usize = 4096;

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let messages = rest.split(|&x| x == 0xFE);
    if mode & 1 == 0 {
        server_side(mode & 2 != 0, messages);
    } else {
        node_side(messages);
    }
}

/// Completes a Noise handshake between `node` and the server's connection `conn`.
fn connect(
    server: &mut ServerCore<MemoryRegistry>,
    conn: ConnId,
    node: &SecretKey,
    now: Instant,
) -> SecureChannel {
    let remote: SocketAddr = SocketAddr::from((Ipv4Addr::new(192, 0, 2, conn as u8), 40000));
    server.handle_open(conn, remote, now);
    let mut channel =
        SecureChannel::initiator(node, &server.public_key()).expect("a Noise initiator starts");
    if let Some(bytes) = channel.take_outgoing() {
        server.handle_bytes(conn, &bytes, now, UNIX_NOW);
    }
    while let Some(out) = server.poll_output() {
        if let ServerOutput::Send(c, bytes) = out {
            assert_eq!(c, conn);
            channel
                .handle_bytes(&bytes)
                .expect("the server's handshake reply");
        }
    }
    assert!(channel.is_established());
    channel
}

fn send(
    server: &mut ServerCore<MemoryRegistry>,
    conn: ConnId,
    ch: &mut SecureChannel,
    m: &[u8],
    now: Instant,
) {
    if ch.send(m).is_ok() {
        if let Some(bytes) = ch.take_outgoing() {
            server.handle_bytes(conn, &bytes, now, UNIX_NOW);
        }
    }
}

fn member(name: &str, key: PublicKey, last: u8) -> Member {
    Member {
        network: NETWORK.into(),
        name: name.into(),
        public_key: key,
        virtual_ip: Ipv4Addr::new(10, 99, 0, last),
        ipv6: None,
    }
}

fn server_side<'a>(x_is_member: bool, messages: impl Iterator<Item = &'a [u8]>) {
    let mut now = crate::epoch();
    let server_secret = fixed_secret(SERVER_SEED);
    let (b, x) = (fixed_secret(B_SEED), fixed_secret(X_SEED));
    let mut registry = MemoryRegistry::default();
    registry.create_network(NETWORK, "10.99.0.0/24".parse().expect("constant CIDR"));
    let credential = Credential(CREDENTIAL);
    let record = TokenRecord {
        uses: 0,
        max_uses: 5,
        expires_unix: None,
    };
    registry.add_token(NETWORK, credential.hash(), record);
    let hash = credential.hash();
    registry
        .admit(&member("b", b.public_key(), 2), &hash)
        .expect("memory registry");
    if x_is_member {
        registry
            .admit(&member("x", x.public_key(), 3), &hash)
            .expect("memory registry");
    }
    let relay = RelayServer::new(RelayLimits::default(), ChaCha8Rng::seed_from_u64(4), now);
    let mut server = ServerCore::new(server_secret, registry, relay);

    let b_conn: ConnId = 1;
    let mut b_channel = connect(&mut server, b_conn, &b, now);
    let hello = ClientMessage::Hello {
        network: NETWORK.into(),
        endpoints: vec![SocketAddr::from((Ipv4Addr::new(203, 0, 113, 2), 5000))],
        nat: None,
        run: None,
    };
    send(&mut server, b_conn, &mut b_channel, &encode(&hello), now);
    while let Some(out) = server.poll_output() {
        if let ServerOutput::Send(c, bytes) = out {
            assert_eq!(c, b_conn);
            b_channel.handle_bytes(&bytes).expect("B reads its welcome");
        }
    }
    let mut b_open = true;
    let mut x_conn: ConnId = 2;
    let mut x_channel = connect(&mut server, x_conn, &x, now);
    for (i, message) in messages.take(64).enumerate() {
        now += Duration::from_millis(500);
        if i % 8 == 7 {
            server.handle_timeout(now);
        }
        send(&mut server, x_conn, &mut x_channel, message, now);
        let mut outputs = 0;
        let mut x_closed = false;
        while let Some(out) = server.poll_output() {
            outputs += 1;
            assert!(outputs <= MAX_OUTPUTS_PER_MESSAGE, "server flooded outputs");
            match out {
                ServerOutput::Send(c, bytes) | ServerOutput::Relay(c, bytes) if c == b_conn => {
                    if !b_open {
                        continue;
                    }
                    b_channel
                        .handle_bytes(&bytes)
                        .expect("B reads what the server sends");
                    while let Some(m) = b_channel.poll_message() {
                        check_for_b(&m, &b.public_key(), &x.public_key());
                    }
                }
                ServerOutput::Send(c, bytes) | ServerOutput::Relay(c, bytes) if c == x_conn => {
                    if x_channel.handle_bytes(&bytes).is_ok() {
                        while let Some(m) = x_channel.poll_message() {
                            let framed = wire::parse_stream_frame(&m).is_some();
                            assert!(framed || decode::<ServerMessage>(&m).is_ok());
                        }
                    }
                }
                ServerOutput::Send(..) | ServerOutput::Relay(..) => {}
                ServerOutput::Udp { datagram, .. } => {
                    let parsed = wire::parse(&datagram);
                    assert!(matches!(parsed, Some(wire::RelayDatagram::FromPeer { .. })));
                }
                ServerOutput::Close(c) if c == b_conn => {
                    server.handle_closed(c);
                    b_open = false;
                }
                ServerOutput::Close(c) => {
                    server.handle_closed(c);
                    x_closed |= c == x_conn;
                }
            }
        }
        if x_closed {
            // The fuzzer reconnects (after a join, say) on a fresh connection.
            x_conn += 1;
            x_channel = connect(&mut server, x_conn, &x, now);
        }
    }
}

/// What honest member B may be told: decodable messages, never itself as a peer, and punch
/// offers only from the member who sent them.
fn check_for_b(message: &[u8], b: &PublicKey, x: &PublicKey) {
    if wire::parse_stream_frame(message).is_some() {
        return;
    }
    let decoded = decode::<ServerMessage>(message).expect("B decodes the server's message");
    match decoded {
        ServerMessage::Peer { peer } => assert_ne!(peer.public_key, *b, "B told about itself"),
        ServerMessage::Punch { peer, .. } => assert_eq!(peer, *x, "a punch offer's sender forged"),
        _ => {}
    }
}

fn node_side<'a>(messages: impl Iterator<Item = &'a [u8]>) {
    let mut now = crate::epoch();
    let server_secret = fixed_secret(SERVER_SEED);
    let server_addr: SocketAddr = SocketAddr::from((Ipv4Addr::new(198, 51, 100, 1), 7400));
    let config = NodeConfig {
        network: NETWORK.into(),
        secret: fixed_secret(B_SEED),
        server_key: fixed_public(SERVER_SEED),
        servers: vec![server_addr],
        tls_servers: Vec::new(),
        punch: PunchConfig::default(),
    };
    let mut node = Node::new(config, ChaCha8Rng::seed_from_u64(5), now);
    node.handle_socket_opened(
        SocketId::MAIN,
        "203.0.113.2:5000".parse().expect("constant"),
        now,
    );
    let mut channel = SecureChannel::responder(&server_secret).expect("a Noise responder");
    if node.poll_connect(now).is_none() {
        return;
    }
    node.handle_control_connected(now);
    pump_node(&mut node, &mut channel, now);
    assert!(channel.is_established(), "the node completes the handshake");
    for (i, message) in messages.take(64).enumerate() {
        now += Duration::from_millis(300);
        if channel.send(message).is_ok() {
            if let Some(bytes) = channel.take_outgoing() {
                node.handle_control_bytes(&bytes, now);
            }
        }
        if i % 4 == 3 {
            node.handle_timeout(now);
        }
        pump_node(&mut node, &mut channel, now);
    }
}

/// Drains everything the node queued, checking the bounds and that its messages decode.
fn pump_node(node: &mut Node, channel: &mut SecureChannel, now: Instant) {
    let mut count = 0;
    let mut bump = || {
        count += 1;
        assert!(count <= MAX_NODE_QUEUE, "node queued without bound");
    };
    while node.poll_transmit().is_some() {
        bump();
    }
    while node.poll_event().is_some() {
        bump();
    }
    while node.poll_socket_command().is_some() {
        bump();
    }
    while node.poll_tun_packet().is_some() {
        bump();
    }
    while let Some(bytes) = node.poll_control_bytes() {
        bump();
        if channel.handle_bytes(&bytes).is_err() {
            continue;
        }
        while let Some(m) = channel.poll_message() {
            let framed = wire::parse_stream_frame(&m).is_some();
            assert!(
                framed || decode::<ClientMessage>(&m).is_ok(),
                "node sent garbage"
            );
        }
        if let Some(reply) = channel.take_outgoing() {
            node.handle_control_bytes(&reply, now);
        }
    }
}
