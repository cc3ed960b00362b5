//! Writes the seed corpora, `fuzz/corpus/<target>/seed-*`, from real encodings made with the
//! crate's own encoders and the targets' fixed keys, relay ids and tokens, so the fuzzer starts
//! from inputs that reach deep into each parser. Run from `fuzz/`:
//! `cargo run --example seeds` (it replaces only the `seed-*` files; the fuzzer's own finds stay).

use p2pvpn::core::icmp::{echo_reply_for, echo_request};
use p2pvpn::core::keys::PublicKey;
use p2pvpn::core::nat::NatProfile;
use p2pvpn::core::punch::probe::{Probe, ProbeKey, ProbeKind};
use p2pvpn::core::punch::{Candidate, PunchOffer, Technique};
use p2pvpn::core::relay::server::{RelayLimits, RelayServer, RelayTicket};
use p2pvpn::core::relay::wire;
use p2pvpn::core::rendezvous::channel::SecureChannel;
use p2pvpn::core::rendezvous::messages::{encode, ClientMessage, PeerInfo, Refusal, ServerMessage};
use p2pvpn::core::rendezvous::token::{Credential, JoinToken};
use p2pvpn::core::stun::{binding_request, ChangeRequest, StunResponder, TransactionId};
use p2pvpn_fuzz::control::{B_SEED, CREDENTIAL, NETWORK, X_SEED};
use p2pvpn_fuzz::sim::{op, ATTACKER, NODE_ADDRS};
use p2pvpn_fuzz::{
    addr, bind_udp, fixed_public, fixed_secret, join_records, relay_with_two_nodes, RELAY_A,
    RELAY_B,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let targets: [(&str, Vec<Vec<u8>>); 12] = [
        ("datagram", datagrams()),
        ("stun", stun()),
        ("probe", probes()),
        ("relay_udp", relay_udp()),
        ("relay_stream", relay_stream()),
        ("control", control()),
        ("noise_frames", noise_frames()),
        ("token", tokens()),
        ("config", configs()),
        ("ipv4_icmp", ipv4_icmp()),
        ("state_machine", state_machine()),
        ("dns", dns()),
    ];
    for (target, seeds) in targets {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("seed-") {
                std::fs::remove_file(&path)?;
            }
        }
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}

fn tid(n: u8) -> TransactionId {
    TransactionId([n; 12])
}

fn stun() -> Vec<Vec<u8>> {
    let plain = binding_request(tid(1), ChangeRequest::default(), None);
    let change = ChangeRequest {
        change_ip: true,
        change_port: true,
    };
    let mut classic = plain.clone();
    classic[4..8].copy_from_slice(&[1, 2, 3, 4]);
    let responder = StunResponder::new(
        &[addr("198.51.100.1:3478"), addr("198.51.100.2:3478")],
        Some(3479),
    )
    .expect("a valid layout");
    let from = addr("203.0.113.7:40000");
    let mut seeds = vec![
        plain.clone(),
        binding_request(tid(2), change, Some(40001)),
        binding_request(tid(3), ChangeRequest::default(), Some(0)),
        classic,
    ];
    let answers: Vec<Vec<u8>> = seeds
        .iter()
        .filter_map(|s| responder.respond(addr("198.51.100.1:3478"), from, s))
        .map(|r| r.bytes)
        .collect();
    seeds.extend(answers);
    seeds
}

fn probe_keys() -> (ProbeKey, ProbeKey) {
    // The order of the `probe` target: A's then B's key from one ChaCha8 stream seeded 1.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let a = p2pvpn::core::keys::SecretKey::generate(&mut rng);
    let b = p2pvpn::core::keys::SecretKey::generate(&mut rng);
    (
        ProbeKey::new(&a, &b.public_key()),
        ProbeKey::new(&b, &a.public_key()),
    )
}

fn probes() -> Vec<Vec<u8>> {
    let (theirs, _) = probe_keys();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let ping = Probe {
        kind: ProbeKind::Ping,
        tx: [1; 12],
        technique: Technique::ServerReflexive,
        offset: 0,
        observed: None,
    };
    let pong = Probe {
        kind: ProbeKind::Pong,
        tx: [2; 12],
        technique: Technique::Predicted,
        offset: -3,
        observed: Some(addr("203.0.113.9:40001")),
    };
    let pong6 = Probe {
        observed: Some(addr("[2001:db8::1]:443")),
        ..pong
    };
    [ping, pong, pong6]
        .iter()
        .map(|p| theirs.seal(p, &mut rng))
        .collect()
}

fn datagrams() -> Vec<Vec<u8>> {
    let mut seeds = vec![binding_request(tid(4), ChangeRequest::default(), None)];
    seeds.extend(probes().into_iter().take(1));
    // A keyed Bind, the relay's Challenge, the Bind with its cookie and the BindOk, as a real
    // node and relay exchange them.
    let (mut relay, a, _) = relay_with_two_nodes(p2pvpn_fuzz::epoch());
    seeds.extend(bind_udp(&mut relay, a, addr(RELAY_A), p2pvpn_fuzz::epoch()));
    let mut to_peer = vec![0u8; wire::DATA_HEADER + 32];
    wire::write_to_peer_header(&mut to_peer, 77);
    seeds.push(to_peer.clone());
    wire::rewrite_to_from_peer(&mut to_peer, 78);
    seeds.push(to_peer);
    // WireGuard framing (whitepaper §5.4): type, three zero bytes, fixed or minimum lengths.
    for (kind, len) in [(1u8, 148usize), (2, 92), (3, 64), (4, 48)] {
        let mut m = vec![0u8; len];
        m[0] = kind;
        m[4..8].copy_from_slice(&[1, 2, 3, 4]);
        seeds.push(m);
    }
    seeds
}

fn relay_udp() -> Vec<Vec<u8>> {
    // The relay is built the same way in every run (fixed keys and RNG), so the binds a real
    // client makes here, Challenge cookies included, are the ones the target's relay accepts.
    let now = p2pvpn_fuzz::epoch();
    let (mut relay, a, b) = relay_with_two_nodes(now);
    let ca = bind_udp(&mut relay, a, addr(RELAY_A), now);
    let cb = bind_udp(&mut relay, b, addr(RELAY_B), now);
    let (a1, a2) = (&ca[0][..], &ca[2][..]);
    let (b1, b2) = (&cb[0][..], &cb[2][..]);
    let mut to_b = vec![0u8; wire::DATA_HEADER + 32];
    wire::write_to_peer_header(&mut to_b, b.id);
    let mut to_a = to_b.clone();
    wire::write_to_peer_header(&mut to_a, a.id);
    // Records go from A, A, B, A, A, B, ... (see the target).
    vec![
        join_records([a1, a2, b1, &to_b, &to_b, b2, &to_b, &to_a]),
        join_records([a1, a2, &to_a]),
        join_records([a1, a1, &to_b]),
        join_records([&to_b[..]]),
    ]
}

fn relay_stream() -> Vec<Vec<u8>> {
    let (_, a, b) = relay_with_two_nodes(p2pvpn_fuzz::epoch());
    let to_b = wire::stream_frame(b.id, &[4, 0, 0, 0, 9, 9, 9, 9]);
    let to_a = wire::stream_frame(a.id, &[4, 0, 0, 0, 8, 8, 8, 8]);
    let nobody = wire::stream_frame(12345, b"x");
    // Records alternate between A and B as senders.
    vec![
        join_records([&to_b[..], &to_a, &to_b, &nobody]),
        join_records([&to_a[..]]),
    ]
}

fn offer(candidates: Vec<SocketAddr>) -> PunchOffer {
    PunchOffer {
        attempt: 1,
        answer: false,
        candidates: candidates
            .into_iter()
            .map(|addr| Candidate {
                addr,
                technique: Technique::ServerReflexive,
            })
            .collect(),
        nat: NatProfile::default(),
        prediction: None,
    }
}

fn control() -> Vec<Vec<u8>> {
    let sep = |messages: Vec<Vec<u8>>| messages.join(&0xFE);
    let hello = encode(&ClientMessage::Hello {
        network: NETWORK.into(),
        endpoints: vec![addr("192.0.2.9:7000")],
        nat: Some(NatProfile::default()),
    });
    let join = encode(&ClientMessage::Join {
        network: NETWORK.into(),
        credential: Credential(CREDENTIAL).to_base64(),
        name: "x".into(),
    });
    let punch = encode(&ClientMessage::Punch {
        peer: fixed_public(B_SEED),
        offer: offer(vec![addr("192.0.2.9:7000")]),
    });
    let endpoints = encode(&ClientMessage::Endpoints {
        endpoints: vec![addr("192.0.2.9:7001")],
        nat: None,
    });
    let ping = encode(&ClientMessage::Ping);
    // B registers first on a relay seeded like the target's, so its relay id is this one.
    let mut relay = RelayServer::new(
        RelayLimits::default(),
        ChaCha8Rng::seed_from_u64(4),
        p2pvpn_fuzz::epoch(),
    );
    let b_ticket: Option<RelayTicket> =
        relay.register(1, NETWORK, fixed_public(B_SEED), p2pvpn_fuzz::epoch());
    let frame = wire::stream_frame(b_ticket.map_or(1, |t| t.id), &[4, 0, 0, 0, 1, 2, 3, 4]);
    let mut server_side_member = vec![2u8];
    server_side_member.extend(sep(vec![
        hello.clone(),
        punch.clone(),
        frame,
        endpoints,
        ping.clone(),
    ]));
    let mut server_side_join = vec![0u8];
    server_side_join.extend(sep(vec![join, hello, punch]));

    // The node side: the fuzzer is the server.
    let x = PeerInfo {
        name: "x".into(),
        public_key: fixed_public(X_SEED),
        virtual_ip: Ipv4Addr::new(10, 99, 0, 3),
        endpoints: vec![addr("192.0.2.9:7000")],
        online: true,
        nat: Some(NatProfile::default()),
        relay_id: Some(7),
        ipv6: None,
    };
    let welcome = encode(&ServerMessage::Welcome {
        network: NETWORK.into(),
        name: "b".into(),
        virtual_ip: Ipv4Addr::new(10, 99, 0, 2),
        cidr: "10.99.0.0/24".parse().expect("constant CIDR"),
        relay: Some(RelayTicket {
            id: 5,
            key: [6; 32],
            token: [7; 16],
        }),
        ipv6: None,
        acl: None,
    });
    let peer = encode(&ServerMessage::Peer { peer: x });
    let their_punch = encode(&ServerMessage::Punch {
        peer: fixed_public(X_SEED),
        offer: offer(vec![addr("192.0.2.9:7000"), addr("10.1.1.1:7000")]),
    });
    let gone = encode(&ServerMessage::PeerGone {
        public_key: fixed_public(X_SEED),
    });
    let refused = encode(&ServerMessage::Refused {
        refusal: Refusal::ServerError,
    });
    let relayed = wire::stream_frame(7, &[4, 0, 0, 0, 1, 2, 3, 4]);
    let mut node_side = vec![1u8];
    node_side.extend(sep(vec![
        welcome.clone(),
        peer.clone(),
        their_punch,
        relayed,
        gone,
    ]));
    let mut node_refused = vec![1u8];
    node_refused.extend(sep(vec![
        welcome,
        peer,
        encode(&ServerMessage::Pong),
        refused,
    ]));
    vec![
        server_side_member,
        server_side_join,
        node_side,
        node_refused,
    ]
}

fn noise_frames() -> Vec<Vec<u8>> {
    // A genuine first handshake message to the target's server key, then framed junk.
    let mut initiator = SecureChannel::initiator(&fixed_secret(11), &fixed_public(10))
        .expect("a Noise initiator starts");
    let first = initiator.take_outgoing().unwrap_or_default();
    let junk = [0u8, 32, 1, 2, 3];
    let mut genuine = vec![0u8];
    genuine.extend(join_records([&first[..], &junk]));
    let mut established = vec![1u8];
    established.extend(join_records([&junk[..], &[0, 0][..]]));
    vec![genuine, established]
}

fn tokens() -> Vec<Vec<u8>> {
    let token = JoinToken {
        network: "office".into(),
        servers: vec![addr("203.0.113.1:7400"), addr("[2001:db8::1]:7400")],
        tls_servers: vec![addr("203.0.113.1:443")],
        server_key: PublicKey([7; 32]),
        credential: Credential([1; 32]),
    };
    let plain = JoinToken {
        tls_servers: Vec::new(),
        ..token.clone()
    };
    vec![token.encode().into_bytes(), plain.encode().into_bytes()]
}

fn configs() -> Vec<Vec<u8>> {
    let key = PublicKey([7; 32]).to_base64();
    let minimal = format!(
        "network = \"office\"\nname = \"alice\"\nservers = [\"203.0.113.1:7400\"]\n\
         server_public_key = \"{key}\"\n"
    );
    let full = format!(
        "{minimal}tls_servers = [\"203.0.113.1:443\"]\nlisten_port = 51820\n\
         interface = \"p2p-office\"\nmtu = 1380\n\n[punch]\nbirthday = false\npriming_ttl = 3\n"
    );
    let example = include_str!("../../config/node.example.toml").to_string();
    vec![
        minimal.into_bytes(),
        full.into_bytes(),
        example.into_bytes(),
    ]
}

fn ipv4_icmp() -> Vec<Vec<u8>> {
    let (a, b) = (Ipv4Addr::new(10, 99, 0, 2), Ipv4Addr::new(10, 99, 0, 3));
    let request = echo_request(a, b, 7);
    let reply = echo_reply_for(&request).unwrap_or_default();
    let mut udp = request.clone();
    udp[9] = 17;
    vec![request, reply, udp]
}

/// Operations for `sim::World` (see its `op` module for the encoding).
fn state_machine() -> Vec<Vec<u8>> {
    let advance = |ms: u16| {
        let [hi, lo] = ms.to_be_bytes();
        vec![op::ADVANCE, hi, lo]
    };
    let mut settle = Vec::new();
    for _ in 0..8 {
        settle.extend(advance(2500));
    }
    // Both nodes online, punched and pinging each other.
    let mut ping = settle.clone();
    ping.extend([op::TUN_PING, 0, 0, 1, op::STEP, op::TUN_PING, 1, 0, 2]);
    ping.extend(advance(1000));
    // Hostile datagrams once paths are up: junk, mutations and replays, from the attacker's
    // address and from spoofed ones, to nodes and to the server.
    let mut hostile = settle.clone();
    hostile.extend([op::INJECT, 2, 0, 4, 1, 0, 0, 0]);
    hostile.extend([
        op::MUTATE,
        3,
        0,
        0,
        40,
        1,
        op::REPLAY,
        5,
        0,
        op::REPLAY,
        6,
        3,
    ]);
    hostile.extend([
        op::MUTATE,
        7,
        2,
        0,
        1,
        0x80,
        op::INJECT,
        0,
        0,
        4,
        0xF0,
        b'r',
        b'l',
        b'y',
    ]);
    hostile.extend(advance(5000));
    // A lossy, reordering start: drops and reorders while the handshakes run.
    let mut lossy = Vec::new();
    for _ in 0..20 {
        lossy.extend(advance(300));
        lossy.extend([
            op::DROP_ONE,
            op::REORDER,
            op::DUPLICATE_ONE,
            op::DELIVER_ONE,
        ]);
    }
    lossy.extend(advance(10000));
    // A malicious member: says hello with the attacker's address, offers a punch to node A.
    let mut member = advance(2500);
    for message in [
        p2pvpn_fuzz::sim::attacker_hello(vec![ATTACKER]),
        encode(&ClientMessage::Punch {
            peer: fixed_public(31),
            offer: offer(vec![ATTACKER, NODE_ADDRS[1]]),
        }),
    ] {
        let [hi, lo] = (message.len() as u16).to_be_bytes();
        member.extend([op::ATTACKER_CONTROL, hi, lo]);
        member.extend(message);
    }
    member.extend(advance(5000));
    member.extend(advance(5000));
    // Control streams cut and restored.
    let mut cut = settle.clone();
    cut.extend([op::CLOSE_STREAM, 0, op::CLOSE_STREAM, 1]);
    cut.extend(advance(30000));
    cut.extend([op::TUN_PING, 0, 0, 3]);
    cut.extend(advance(1000));
    vec![settle, ping, hostile, lossy, member, cut]
}

/// Queries as resolvers send them: A, AAAA and ANY under the suffix (case mixed, a two-label
/// name), an unknown name, a name outside the suffix, and one with EDNS.
fn dns() -> Vec<Vec<u8>> {
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    let q = |name: &str, qtype: RecordType, edns: bool| {
        let mut m = Message::new();
        m.set_id(0x2a2a).set_recursion_desired(true);
        if let Ok(n) = Name::from_ascii(name) {
            m.add_query(Query::query(n, qtype));
        }
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().unwrap_or_default()
    };
    vec![
        q("bob.office.p2p.", RecordType::A, false),
        q("BoB.Office.P2P.", RecordType::AAAA, false),
        q("db.eu.office.p2p.", RecordType::ANY, false),
        q("carol.office.p2p.", RecordType::A, false),
        q("example.com.", RecordType::A, false),
        q("alice.office.p2p.", RecordType::A, true),
    ]
}
