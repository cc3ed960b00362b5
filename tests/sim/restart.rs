//! A node process that restarts at once (`systemctl restart`): same key, same host, the same
//! UDP port or (`listen_port = 0`) a new one, none of its old state. Its peer, still running,
//! holds a WireGuard session and a direct path to the old run. The new run must see the peer
//! direct within a second, and the first ping either way must be answered within a second
//! after that, whether or not the server saw the old run leave and whichever side has the
//! lower key. A reconnection of the same run (the server restarted) must keep the session.

use crate::harness::{ping_packet, Sim};
use p2pvpn::core::peers::Path;
use std::time::Duration;

fn path_to_peer(sim: &Sim, i: usize) -> Option<Path> {
    sim.nodes[i].node.status(0).peers.first().map(|p| p.path)
}

fn vip(sim: &Sim, i: usize) -> [u8; 4] {
    match sim.nodes[i].node.status(0).virtual_ip {
        Some(ip) => ip.octets(),
        None => panic!("node {i} has no address"),
    }
}

/// One echo from node `a` to node `b` and its answer, as the hosts behind their TUN devices
/// would exchange them: true when the answer is back at `a` within `limit`.
fn round_trip(sim: &mut Sim, a: usize, b: usize, tag: u8, limit: Duration) -> bool {
    let (src, dst) = (vip(sim, a), vip(sim, b));
    let request = ping_packet(src, dst, tag);
    let reply = ping_packet(dst, src, tag);
    sim.nodes[b].tun_out.clear();
    sim.nodes[a].tun_out.clear();
    sim.send_from_tun(a, &request);
    let start = sim.now;
    let mut answered = false;
    while sim.now.duration_since(start) < limit {
        sim.advance(Duration::from_millis(50));
        if !answered && sim.nodes[b].tun_out.contains(&request) {
            // b's host answers the echo the moment it arrives.
            sim.send_from_tun(b, &reply);
            answered = true;
        }
        if sim.nodes[a].tun_out.contains(&reply) {
            return true;
        }
    }
    false
}

/// `ping -c 10 -W 1` from `a` to `b`: how long until the first answer, if any came.
fn first_answer(sim: &mut Sim, a: usize, b: usize) -> Option<Duration> {
    let start = sim.now;
    for tag in 0..10u8 {
        if round_trip(sim, a, b, 10 + tag, Duration::from_secs(1)) {
            return Some(sim.now.duration_since(start));
        }
    }
    None
}

#[derive(Clone, Copy, Debug)]
struct Case {
    nat: Option<&'static str>,
    restarted: usize,
    server_saw_it_leave: bool,
    /// The new run's port; None: the old one.
    port: Option<u16>,
    /// Who pings first: the new run (true) or the peer that stayed up.
    new_run_pings: bool,
    /// The survivor's control stream is slow: the new run's handshake reaches it before the
    /// server's record of the new run does.
    late_record: bool,
}

struct Outcome {
    /// From the restart until the new run shows its peer "direct".
    direct_after: Duration,
    /// From then until the first echo answered (None: none in 10 s).
    answered_after: Option<Duration>,
    /// Two seconds later, after whatever the restart set in motion, echoes still cross.
    still_answered: bool,
}

/// Two nodes with a direct path and a live session; one restarts after traffic has flowed,
/// and once the new run shows its peer direct, `ping` runs one way.
fn restart_and_ping(c: Case) -> Outcome {
    let mut sim = Sim::new(11);
    let (na, nb) = match c.nat {
        Some(profile) => (
            Some(sim.add_nat(profile, None)),
            Some(sim.add_nat(profile, None)),
        ),
        None => (None, None),
    };
    // Behind a NAT the hosts have private addresses; on the open internet, public ones.
    let (ha, hb) = match c.nat {
        Some(_) => ("10.1.0.2:51000", "10.2.0.2:51000"),
        None => ("198.51.100.11:51000", "198.51.100.12:51000"),
    };
    sim.add_node_at("alice", ha, na);
    sim.add_node_at("bob", hb, nb);
    sim.advance(Duration::from_secs(5));
    assert_eq!(path_to_peer(&sim, 0), Some(Path::Direct), "{c:?}: alice");
    assert_eq!(path_to_peer(&sim, 1), Some(Path::Direct), "{c:?}: bob");
    let survivor = 1 - c.restarted;
    assert!(
        round_trip(&mut sim, c.restarted, survivor, 1, Duration::from_secs(1)),
        "{c:?}: no round trip before the restart"
    );
    // The process lived a little, then restarts within a second.
    sim.advance(Duration::from_millis(500));
    if c.late_record {
        sim.stream_delay
            .insert(survivor, Duration::from_millis(300));
    }
    sim.restart_node(c.restarted, c.server_saw_it_leave, c.port);

    let start = sim.now;
    while path_to_peer(&sim, c.restarted) != Some(Path::Direct) {
        assert!(
            sim.now.duration_since(start) < Duration::from_secs(20),
            "{c:?}: the new run never saw its peer direct: {:?}",
            path_to_peer(&sim, c.restarted)
        );
        sim.advance(Duration::from_millis(50));
    }
    let direct_after = sim.now.duration_since(start);
    let (a, b) = if c.new_run_pings {
        (c.restarted, survivor)
    } else {
        (survivor, c.restarted)
    };
    let answered_after = first_answer(&mut sim, a, b);
    sim.advance(Duration::from_secs(2));
    let still_answered = round_trip(&mut sim, a, b, 30, Duration::from_secs(1))
        && round_trip(&mut sim, b, a, 31, Duration::from_secs(1));
    Outcome {
        direct_after,
        answered_after,
        still_answered,
    }
}

fn check(cases: impl IntoIterator<Item = Case>) {
    let mut failures = Vec::new();
    for c in cases {
        let o = restart_and_ping(c);
        let line =
            format!(
            "{c:?}: peer direct after {:?}, first echo answered after {:?}, 2 s later both ways \
             {}",
            o.direct_after,
            o.answered_after,
            if o.still_answered { "answered" } else { "NOT answered" }
        );
        eprintln!("{line}");
        let quick = o
            .answered_after
            .is_some_and(|t| t <= Duration::from_secs(1));
        if o.direct_after > Duration::from_secs(1) || !quick || !o.still_answered {
            failures.push(line);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_node_restarted_at_once_is_direct_and_answered_within_a_second() {
    let mut cases = Vec::new();
    for nat in [None, Some("PRC")] {
        for restarted in [0usize, 1] {
            for server_saw_it_leave in [true, false] {
                for port in [None, Some(52000)] {
                    for new_run_pings in [true, false] {
                        cases.push(Case {
                            nat,
                            restarted,
                            server_saw_it_leave,
                            port,
                            new_run_pings,
                            late_record: false,
                        });
                    }
                }
            }
        }
    }
    check(cases);
}

#[test]
fn a_restart_is_handled_when_the_new_runs_handshake_beats_the_servers_record() {
    let mut cases = Vec::new();
    for restarted in [0usize, 1] {
        for new_run_pings in [true, false] {
            cases.push(Case {
                nat: None,
                restarted,
                server_saw_it_leave: true,
                port: Some(52000),
                new_run_pings,
                late_record: true,
            });
        }
    }
    check(cases);
}

/// The server restarting makes every node register again on a new connection: that is the
/// same run, and the tunnel between them must not start over (its byte counters would).
#[test]
fn a_reconnection_of_the_same_run_keeps_the_session() {
    let mut sim = crate::two_nodes();
    assert!(round_trip(&mut sim, 0, 1, 1, Duration::from_secs(1)));
    let rx_before: Vec<u64> = (0..2)
        .map(|i| sim.nodes[i].node.status(0).peers[0].rx_bytes)
        .collect();
    assert!(rx_before.iter().all(|&b| b > 0), "{rx_before:?}");
    sim.stop_server();
    sim.advance(Duration::from_secs(2));
    sim.restart_server();
    sim.advance(Duration::from_secs(70));
    assert_eq!(sim.server.online_count(), 2);
    for (i, before) in rx_before.iter().enumerate() {
        let p = &sim.nodes[i].node.status(0).peers[0];
        assert!(
            p.rx_bytes >= *before,
            "node {i}: the session started over ({} bytes received, {before} before)",
            p.rx_bytes
        );
        assert_eq!(p.path, Path::Direct, "node {i}");
    }
}
