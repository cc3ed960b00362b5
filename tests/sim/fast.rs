//! How soon a path turns direct, and that the order of the two sides' probes does not decide
//! whether it does: cone pairs punch with the candidates known at start instead of waiting for
//! the NAT check, symmetric ones move to prediction, port block or birthday as soon as the
//! check has measured their allocation, and a router that accepts unsolicited packets for
//! itself never ends a pair relayed however late one side hears the other's punch answer.

use crate::harness::Sim;
use crate::matrix::{run, Expect, ROWS};
use p2pvpn::core::peers::Path;
use std::time::Duration;

/// nat-lab.md rows whose pairs are cone on both sides (or one open host).
const CONE_ROWS: &[&str] = &["1", "8", "10", "11"];

#[test]
fn cone_pairs_go_direct_in_under_a_second_and_symmetric_ones_in_under_three() {
    let mut slow = Vec::new();
    for row in ROWS.iter().filter(|r| r.expect != Expect::NoDirect) {
        let limit = if CONE_ROWS.contains(&row.row) {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(3)
        };
        for seed in [1u64, 2, 3] {
            let o = run(row, seed, Duration::from_secs(10));
            match o.time_to_direct {
                Some(t) if t < limit => {}
                t => slow.push(format!(
                    "row {} {}-{} seed {seed}: direct after {t:?}, want under {limit:?} ({})",
                    row.row, row.a, row.b, o.technique
                )),
            }
        }
    }
    assert!(slow.is_empty(), "{slow:#?}");
}

fn direct_at(sim: &Sim, i: usize) -> bool {
    sim.nodes[i].node.status(0).peers.first().map(|p| p.path) == Some(Path::Direct)
}

/// A port-restricted router that accepts unsolicited packets for itself (PRC_INPUT) against a
/// plain port-restricted cone, with the control stream to one side slow enough that the punch
/// answer reaches it well after the other side's first probes could. Seeds vary which side has
/// the lower key (starts the attempt). Before, a probe that beat the slow side's priming left a
/// conntrack entry on its router that took the mapping, and the pair stayed relayed.
#[test]
fn a_router_that_accepts_input_ends_direct_whichever_side_probes_first() {
    let mut failures = Vec::new();
    let mut initiators = [0u32; 2];
    for slow_side in [0usize, 1] {
        for seed in 1u64..=6 {
            let mut sim = Sim::new(seed);
            let na = sim.add_nat("PRC_INPUT", None);
            let nb = sim.add_nat("PRC", None);
            let a = sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
            let b = sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
            sim.stream_delay
                .insert([a, b][slow_side], Duration::from_millis(700));
            let a_starts = sim.nodes[a].node.public_key() < sim.nodes[b].node.public_key();
            initiators[usize::from(!a_starts)] += 1;
            let start = sim.now;
            let mut direct = None;
            while sim.now.duration_since(start) < Duration::from_secs(15) {
                sim.advance(Duration::from_millis(250));
                if direct_at(&sim, a) && direct_at(&sim, b) {
                    direct = Some(sim.now.duration_since(start));
                    break;
                }
            }
            if direct.is_none() {
                let why = sim.nodes[a].node.status(0).peers[0]
                    .punch
                    .last_failure
                    .clone();
                failures.push(format!(
                    "seed {seed}, slow stream to {}, PRC_INPUT side {}: relayed after 15 s \
                     ({why:?})",
                    ["PRC_INPUT", "PRC"][slow_side],
                    if a_starts { "starts" } else { "answers" },
                ));
            }
        }
    }
    assert!(
        initiators.iter().all(|&n| n > 0),
        "the seeds must let each side start: {initiators:?}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
