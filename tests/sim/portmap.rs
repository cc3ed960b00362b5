//! Port mapping as a candidate (issue 13 part 1) in the simulator: row 7 (random symmetric NATs
//! on both sides) has no affordable direct path, but when one side's router forwards a port to
//! it (a granted UPnP/NAT-PMP/PCP mapping, modelled as the NAT's forward table) and the node
//! is told so, the pair goes direct through the mapping, both sides name it, and packets flow.

use crate::harness::Sim;
use p2pvpn::core::peers::Path;
use p2pvpn::core::portmap::{MapProtocol, Mapping};
use std::net::SocketAddr;
use std::time::Duration;

const MAPPED_PORT: u16 = 61000;

/// Two nodes behind RND NATs; alice's router forwards MAPPED_PORT to her when `forward`, and
/// she holds the mapping when `told`. Returns the sim once both are direct or after 20 s, with
/// alice's and bob's path details.
fn rnd_pair(forward: bool, told: bool, seed: u64) -> (Sim, [Option<String>; 2]) {
    let mut sim = Sim::new(seed);
    let na = sim.add_nat("RND", None);
    let nb = sim.add_nat("RND", None);
    let alice_lan: SocketAddr = "10.1.0.2:51000".parse().unwrap();
    let a = sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
    let b = sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
    let public = sim.net.nat(na).public_ip();
    if forward {
        sim.net
            .nat_mut(na)
            .set_forward(MAPPED_PORT, Some(alice_lan));
    }
    if told {
        sim.nodes[a].node.set_port_mapping(Some(Mapping {
            protocol: MapProtocol::Pcp,
            external: SocketAddr::new(public.into(), MAPPED_PORT),
            lifetime: Duration::from_secs(7200),
        }));
    }
    let start = sim.now;
    while sim.now.duration_since(start) < Duration::from_secs(20) {
        sim.advance(Duration::from_millis(250));
        let both = [a, b].iter().all(|&i| {
            sim.nodes[i].node.status(0).peers.first().map(|p| p.path) == Some(Path::Direct)
        });
        if both {
            break;
        }
    }
    let detail = |i: usize| {
        let s = sim.nodes[i].node.status(0);
        s.peers
            .first()
            .filter(|p| p.path == Path::Direct)
            .and_then(|p| p.technique_detail.clone())
    };
    let details = [detail(a), detail(b)];
    (sim, details)
}

#[test]
fn a_mapping_makes_two_random_symmetric_nats_direct() {
    for seed in [1u64, 2, 3] {
        let (sim, details) = rnd_pair(true, true, seed);
        assert_eq!(
            details,
            [
                Some("direct (PCP mapping)".to_string()),
                Some("direct (PCP mapping)".to_string())
            ],
            "seed {seed}"
        );
        // Bob reaches alice at the mapped address; the status shows her mapping.
        let bob = sim.nodes[1].node.status(0);
        assert_eq!(
            bob.peers[0].endpoint.map(|e| e.port()),
            Some(MAPPED_PORT),
            "seed {seed}"
        );
        let alice = sim.nodes[0].node.status(0);
        assert_eq!(alice.port_mapping.map(|c| c.addr.port()), Some(MAPPED_PORT));
    }
}

/// Without the candidate (the gateway refused, or the node never asked) the row stays as it
/// was: no direct path, whatever the router would forward.
#[test]
fn without_the_candidate_row_7_stays_off_direct() {
    let (_, details) = rnd_pair(true, false, 1);
    assert_eq!(details, [None, None]);
}

/// When the mapping is granted, relative to the punch attempts.
#[derive(Clone, Copy, Debug)]
enum Granted {
    /// While the node waits out its backoff after two failed attempts (UPnP answering late, a
    /// router that came back): 10 s and more by then.
    InBackoff,
    /// Two seconds into the first attempt (a NAT-PMP gateway answering after the first try):
    /// that attempt was planned without the candidate and has 8 s to run.
    InFirstAttempt,
}

/// Two nodes behind RND NATs; the initiator (lower key) or the answerer gets a mapping at
/// `when`. Returns how long after the grant both were direct, or what the holder's status said
/// 4 s after it.
fn late_mapping(initiator_holds: bool, when: Granted) -> Result<Duration, String> {
    let mut sim = Sim::new(7);
    let na = sim.add_nat("RND", None);
    let nb = sim.add_nat("RND", None);
    let x = sim.add_node_at("xena", "10.1.0.2:51000", Some(na));
    let y = sim.add_node_at("yuri", "10.2.0.2:51000", Some(nb));
    let x_lower = sim.nodes[x].node.public_key() < sim.nodes[y].node.public_key();
    let (holder, nat, lan) = if x_lower == initiator_holds {
        (x, na, "10.1.0.2:51000")
    } else {
        (y, nb, "10.2.0.2:51000")
    };
    let attempts = |sim: &Sim| {
        sim.nodes[holder]
            .node
            .status(0)
            .peers
            .first()
            .map_or(0, |p| p.punch.attempts)
    };
    let (wanted, then) = match when {
        // An attempt lasts 10 s: after the second one's end the initiator waits a 10 s backoff.
        Granted::InBackoff => (2, Duration::from_millis(10_500)),
        Granted::InFirstAttempt => (1, Duration::from_secs(2)),
    };
    let start = sim.now;
    while attempts(&sim) < wanted {
        assert!(
            sim.now.duration_since(start) < Duration::from_secs(60),
            "no attempt {wanted}"
        );
        sim.advance(Duration::from_millis(250));
    }
    sim.advance(then);
    let s = sim.nodes[holder].node.status(0);
    assert_eq!(
        s.peers[0].punch.attempts, wanted,
        "{when:?}: not where planned"
    );
    assert_ne!(s.peers[0].path, Path::Direct, "direct without the mapping");
    let public = sim.net.nat(nat).public_ip();
    sim.net
        .nat_mut(nat)
        .set_forward(MAPPED_PORT, Some(lan.parse().unwrap()));
    sim.nodes[holder].node.set_port_mapping(Some(Mapping {
        protocol: MapProtocol::Upnp,
        external: SocketAddr::new(public.into(), MAPPED_PORT),
        lifetime: Duration::from_secs(3600),
    }));
    let granted = sim.now;
    while sim.now.duration_since(granted) < Duration::from_secs(4) {
        sim.advance(Duration::from_millis(250));
        let direct = [x, y].iter().all(|&i| {
            sim.nodes[i].node.status(0).peers.first().map(|p| p.path) == Some(Path::Direct)
        });
        if direct {
            return Ok(sim.now.duration_since(granted));
        }
    }
    let s = sim.nodes[holder].node.status(0);
    Err(format!(
        "not direct within 4 s of the mapping: {:?}",
        s.peers.first().map(|p| (&p.path, &p.punch))
    ))
}

/// A mapping granted after failed attempts or during one: the pair is direct within seconds,
/// whichever side holds it. Each side on its own used to wait: the initiator for the end of
/// the attempt in flight and its backoff, the answerer for the initiator's next attempt.
#[test]
fn a_late_mapping_retries_at_once() {
    for initiator_holds in [true, false] {
        for when in [Granted::InBackoff, Granted::InFirstAttempt] {
            if let Err(why) = late_mapping(initiator_holds, when) {
                panic!("mapping on the initiator: {initiator_holds}, granted {when:?}: {why}");
            }
        }
    }
}
