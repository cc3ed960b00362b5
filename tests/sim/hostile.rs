//! Hostile members: a member that registers or offers addresses it does not hold, to turn other
//! nodes' punch probes into a flood at a third party (project issue 9, defect 3). The member is a
//! raw control client (its own Noise channel to the real server core), so it can say anything a
//! modified binary could; the victim is a real node behind a simulated NAT, and the third party
//! is a host in the simulated network whose arrivals are counted.

use crate::harness::{Sim, UNIX_NOW};
use p2pvpn::core::keys::{PublicKey, SecretKey};
use p2pvpn::core::nat::{Filtering, Mapping, NatProfile, PortAllocation};
use p2pvpn::core::punch::{Candidate, Prediction, PunchOffer, Technique};
use p2pvpn::core::rendezvous::channel::SecureChannel;
use p2pvpn::core::rendezvous::messages::{decode, encode, ClientMessage, ServerMessage};
use p2pvpn::core::rendezvous::server::ConnId;
use rand::SeedableRng;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// A public host that is not part of the VPN (the flood's intended target).
const THIRD_PARTY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// A host on the victim's own LAN (its router, a printer).
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
/// Where the hostile member's control stream comes from.
const MALLORY: &str = "198.51.100.66:40000";
/// The most datagrams a victim may send a never-answering address in the 10 s of an attack. It
/// is the node's per-address budget for addresses that never answered (`punch::budget`).
const BOUND: u64 = 32;
/// The report's figure: an offer of this many made-up candidates.
const FLOOD: u16 = 1100;

/// A member speaking the control protocol directly.
struct RawMember {
    key: PublicKey,
    channel: SecureChannel,
    conn: ConnId,
}

impl RawMember {
    /// Joins with the sim's token and registers over a stream from `remote`.
    fn register(sim: &mut Sim, name: &str, remote: &str, seed: u64, hello: ClientMessage) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let secret = SecretKey::generate(&mut rng);
        let token = sim.token();
        sim.join(&secret, &token, name).expect("join accepted");
        let conn = sim.open_raw_conn(remote.parse().unwrap());
        let channel = SecureChannel::initiator(&secret, &sim.server.public_key()).unwrap();
        let mut member = RawMember {
            key: secret.public_key(),
            channel,
            conn,
        };
        member.flush(sim);
        member.receive(sim);
        assert!(member.channel.is_established(), "handshake finished");
        member.send(sim, &hello);
        member
    }

    fn flush(&mut self, sim: &mut Sim) {
        while let Some(bytes) = self.channel.take_outgoing() {
            sim.server
                .handle_bytes(self.conn, &bytes, sim.now, UNIX_NOW);
        }
        sim.settle();
    }

    fn send(&mut self, sim: &mut Sim, message: &ClientMessage) {
        self.channel.send(&encode(message)).unwrap();
        self.flush(sim);
    }

    /// Everything the server sent this member since the last call.
    fn receive(&mut self, sim: &mut Sim) -> Vec<ServerMessage> {
        let (mine, rest) = std::mem::take(&mut sim.unclaimed)
            .into_iter()
            .partition(|(c, _)| *c == self.conn);
        sim.unclaimed = rest;
        let mine: Vec<(ConnId, Vec<u8>)> = mine;
        for (_, bytes) in mine {
            self.channel.handle_bytes(&bytes).unwrap();
        }
        self.flush(sim);
        std::iter::from_fn(|| self.channel.poll_message())
            .filter_map(|m| decode::<ServerMessage>(&m).ok())
            .collect()
    }
}

fn hello(endpoints: Vec<SocketAddr>, nat: Option<NatProfile>) -> ClientMessage {
    ClientMessage::Hello {
        network: "sim".into(),
        endpoints,
        nat,
        run: None,
    }
}

fn cone() -> NatProfile {
    NatProfile {
        behind_nat: Some(false),
        mapping: Mapping::EndpointIndependent,
        filtering: Filtering::EndpointIndependent,
        allocation: PortAllocation::Preserving,
        ..NatProfile::default()
    }
}

/// A victim node behind a port-restricted cone NAT (it needs the exact port of a symmetric
/// peer, so a claimed random-port peer makes it sweep), with a neighbour on its LAN, a third
/// party on the internet, and a hostile member registered from `MALLORY`.
fn victim_and_mallory(seed: u64) -> (Sim, RawMember) {
    let mut sim = Sim::new(seed);
    let nat = sim.add_nat("PRC", None);
    sim.add_node_at("victim", "10.1.0.2:51000", Some(nat));
    sim.net.add_private_host_ip(NEIGHBOUR, nat);
    sim.net.add_public_ip(THIRD_PARTY);
    let mallory = RawMember::register(
        &mut sim,
        "mallory",
        MALLORY,
        seed + 50,
        hello(Vec::new(), None),
    );
    // The victim measures its NAT (about 2.5 s) and learns of mallory.
    sim.advance(Duration::from_secs(5));
    assert_eq!(sim.nodes[0].node.status(0).peers.len(), 1);
    (sim, mallory)
}

/// Mallory sends `offer` to the victim every 2 s for 10 s (each one restarts the attempt);
/// returns the datagrams that reached `target` meanwhile.
fn attack(sim: &mut Sim, mallory: &mut RawMember, offer: PunchOffer, target: Ipv4Addr) -> u64 {
    let victim = sim.nodes[0].node.public_key();
    let before = sim.arrivals.get(&IpAddr::V4(target)).copied().unwrap_or(0);
    for round in 0..5u64 {
        let mut offer = offer.clone();
        offer.attempt = 1000 + round;
        mallory.send(
            sim,
            &ClientMessage::Punch {
                peer: victim,
                offer,
            },
        );
        sim.advance(Duration::from_secs(2));
        mallory.receive(sim);
    }
    sim.arrivals.get(&IpAddr::V4(target)).copied().unwrap_or(0) - before
}

fn flood_of(ip: Ipv4Addr, technique: Technique) -> Vec<Candidate> {
    (0..FLOOD)
        .map(|i| Candidate {
            addr: SocketAddr::new(IpAddr::V4(ip), 1024 + i),
            technique,
        })
        .collect()
}

#[test]
fn an_offer_of_1100_candidates_at_a_third_party_sends_it_almost_nothing() {
    let (mut sim, mut mallory) = victim_and_mallory(61);
    let mut candidates = flood_of(THIRD_PARTY, Technique::Lan);
    candidates.extend(flood_of(THIRD_PARTY, Technique::ServerReflexive).drain(..10));
    let offer = PunchOffer {
        attempt: 0,
        answer: false,
        candidates,
        nat: cone(),
        prediction: None,
    };
    let got = attack(&mut sim, &mut mallory, offer, THIRD_PARTY);
    println!("third party received {got} datagrams in 10 s");
    assert!(got <= BOUND, "the third party received {got} datagrams");
}

#[test]
fn an_offer_of_1100_lan_candidates_at_a_neighbour_sends_it_at_most_a_budget() {
    // Private addresses pass the server (it cannot check a LAN), so the node's own budget for
    // addresses that never answered is what holds here.
    let (mut sim, mut mallory) = victim_and_mallory(62);
    let offer = PunchOffer {
        attempt: 0,
        answer: false,
        candidates: flood_of(NEIGHBOUR, Technique::Lan),
        nat: cone(),
        prediction: None,
    };
    let got = attack(&mut sim, &mut mallory, offer, NEIGHBOUR);
    println!("LAN neighbour received {got} datagrams in 10 s");
    assert!(got <= BOUND, "the neighbour received {got} datagrams");
    // The server cut the offer to its LAN cap; the node withheld the rest and says so.
    assert!(sim.server.stats().candidates_dropped >= u64::from(FLOOD) - 8);
    let punch = sim.nodes[0].node.status(0).peers[0].punch.clone();
    assert!(punch.probes_withheld > 0, "{punch:?}");
}

#[test]
fn a_claimed_random_port_nat_cannot_aim_a_birthday_sweep_at_a_third_party() {
    let (mut sim, mut mallory) = victim_and_mallory(63);
    let third: SocketAddr = SocketAddr::new(IpAddr::V4(THIRD_PARTY), 5000);
    let offer = PunchOffer {
        attempt: 0,
        answer: false,
        candidates: vec![Candidate {
            addr: third,
            technique: Technique::ServerReflexive,
        }],
        nat: NatProfile {
            behind_nat: Some(true),
            public: Some(third),
            mapping: Mapping::AddressAndPortDependent,
            filtering: Filtering::AddressAndPortDependent,
            allocation: PortAllocation::Random,
            ..NatProfile::default()
        },
        prediction: Some(Prediction {
            ip: IpAddr::V4(THIRD_PARTY),
            next_port: 6000,
            delta: 30_000,
        }),
    };
    let got = attack(&mut sim, &mut mallory, offer, THIRD_PARTY);
    println!("third party received {got} datagrams in 10 s (claimed random-port NAT)");
    assert!(got <= BOUND, "the third party received {got} datagrams");
}

#[test]
fn the_server_trims_what_a_member_claims_to_what_it_observed() {
    let mut sim = Sim::new(64);
    let observed = "198.51.100.66:51820".parse().unwrap();
    let lan = "10.0.0.5:51820".parse().unwrap();
    let spoofed: SocketAddr = SocketAddr::new(IpAddr::V4(THIRD_PARTY), 5000);
    let public_lan = "8.8.8.8:53".parse().unwrap();
    let mut endpoints = vec![spoofed, public_lan, lan, observed];
    endpoints.extend(
        (0..1000u16).map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)), 2000 + i)),
    );
    let nat = NatProfile {
        public: Some(spoofed),
        ..cone()
    };
    let mut watcher = RawMember::register(
        &mut sim,
        "watcher",
        "198.51.100.70:40000",
        70,
        hello(Vec::new(), None),
    );
    let mut mallory = RawMember::register(
        &mut sim,
        "mallory",
        MALLORY,
        71,
        hello(endpoints, Some(nat.clone())),
    );
    // Peer-map changes go out in batches at most every 100 ms.
    sim.advance(std::time::Duration::from_millis(200));
    let seen = watcher.receive(&mut sim);
    let info = seen
        .iter()
        .flat_map(|m| match m {
            ServerMessage::Peer { peer } => vec![peer.clone()],
            ServerMessage::Peers { peers } => peers.clone(),
            _ => Vec::new(),
        })
        .rev()
        .find(|peer| peer.public_key == mallory.key)
        .expect("the watcher learns of mallory");
    assert!(
        info.endpoints.len() <= 8,
        "{} endpoints passed",
        info.endpoints.len()
    );
    assert!(
        info.endpoints.contains(&observed) && info.endpoints.contains(&lan),
        "{:?}",
        info.endpoints
    );
    assert!(
        !info.endpoints.contains(&spoofed) && !info.endpoints.contains(&public_lan),
        "{:?}",
        info.endpoints
    );
    assert_eq!(
        info.nat.and_then(|n| n.public),
        None,
        "a public address the server did not see is dropped"
    );

    // The same rules hold for a punch offer, relayed to the watcher.
    let mut candidates = flood_of(Ipv4Addr::new(10, 9, 0, 1), Technique::Lan);
    candidates.insert(
        0,
        Candidate {
            addr: spoofed,
            technique: Technique::ServerReflexive,
        },
    );
    candidates.insert(
        1,
        Candidate {
            addr: observed,
            technique: Technique::ServerReflexive,
        },
    );
    let offer = PunchOffer {
        attempt: 1,
        answer: false,
        candidates,
        nat,
        prediction: Some(Prediction {
            ip: IpAddr::V4(THIRD_PARTY),
            next_port: 6000,
            delta: 1,
        }),
    };
    mallory.send(
        &mut sim,
        &ClientMessage::Punch {
            peer: watcher.key,
            offer,
        },
    );
    let relayed = watcher
        .receive(&mut sim)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Punch { offer, .. } => Some(offer),
            _ => None,
        })
        .expect("the offer is relayed");
    assert!(
        relayed.candidates.len() <= 8,
        "{} candidates passed",
        relayed.candidates.len()
    );
    assert!(relayed.candidates.iter().all(|c| c.addr != spoofed));
    assert!(relayed.candidates.iter().any(|c| c.addr == observed));
    assert_eq!(relayed.prediction, None);
    assert_eq!(relayed.nat.public, None);
}
