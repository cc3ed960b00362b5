//! The NAT matrix of nat-lab.md in the simulator: every row's pair of NAT profiles, the real
//! server and node state machines, a virtual clock. Each pair must reach the outcome the matrix
//! expects (a direct path and packets through it, or for row 7 no direct path claimed), and the
//! run prints time to direct path, probes sent and the technique that won.

use crate::harness::{ping_packet, Sim};
use p2pvpn::core::peers::Path;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Direct,
    /// Direct, and the winning technique's label contains this.
    DirectBy(&'static str),
    NoDirect,
}

pub struct Row {
    pub row: &'static str,
    pub a: &'static str,
    pub b: &'static str,
    pub expect: Expect,
}

pub const ROWS: &[Row] = &[
    Row {
        row: "1",
        a: "FC",
        b: "PRC",
        expect: Expect::Direct,
    },
    Row {
        row: "1",
        a: "RC",
        b: "PRC",
        expect: Expect::Direct,
    },
    Row {
        row: "1",
        a: "PRC",
        b: "PRC",
        expect: Expect::Direct,
    },
    Row {
        row: "1",
        a: "OPEN",
        b: "PRC",
        expect: Expect::Direct,
    },
    Row {
        row: "2",
        a: "RC",
        b: "RND",
        expect: Expect::Direct,
    },
    Row {
        row: "2",
        a: "FC",
        b: "SEQ",
        expect: Expect::Direct,
    },
    Row {
        row: "3",
        a: "PRC",
        b: "SEQ",
        expect: Expect::DirectBy("predicted"),
    },
    Row {
        row: "3",
        a: "PRC",
        b: "SEQ4",
        expect: Expect::DirectBy("predicted"),
    },
    Row {
        row: "4",
        a: "PRC",
        b: "BLK",
        expect: Expect::DirectBy("port block"),
    },
    Row {
        row: "5",
        a: "PRC",
        b: "RND",
        expect: Expect::DirectBy("birthday"),
    },
    Row {
        row: "5",
        a: "PRC",
        b: "ADM",
        expect: Expect::DirectBy("port block"),
    },
    Row {
        row: "6",
        a: "SEQ",
        b: "SEQ",
        expect: Expect::DirectBy("predicted"),
    },
    Row {
        row: "7",
        a: "RND",
        b: "RND",
        expect: Expect::NoDirect,
    },
    Row {
        row: "7",
        a: "ADM",
        b: "ADM",
        expect: Expect::NoDirect,
    },
    Row {
        row: "8",
        a: "CGN+PRC",
        b: "PRC",
        expect: Expect::Direct,
    },
    Row {
        row: "10",
        a: "PRC@shared",
        b: "PRC@shared",
        expect: Expect::DirectBy("LAN"),
    },
    Row {
        row: "11",
        a: "PRC_INPUT",
        b: "PRC_INPUT",
        expect: Expect::Direct,
    },
];

/// What one pair did.
#[derive(Debug)]
pub struct Outcome {
    pub direct: bool,
    pub ping: bool,
    pub time_to_direct: Option<Duration>,
    pub probes: u64,
    pub technique: String,
    pub why_not: String,
}

const A_IP: [u8; 4] = [10, 99, 0, 1];
const B_IP: [u8; 4] = [10, 99, 0, 2];

/// Builds the two hosts of a row and runs them for up to `limit`.
pub fn run(row: &Row, seed: u64, limit: Duration) -> Outcome {
    let mut sim = Sim::new(seed);
    let shared = row.a.ends_with("@shared") && row.b.ends_with("@shared");
    let shared_nat = shared.then(|| sim.add_nat(row.a.trim_end_matches("@shared"), None));
    let place = |sim: &mut Sim, profile: &str, lan: &str, name: &str| -> usize {
        if let Some(nat) = shared_nat {
            return sim.add_node_at(name, lan, Some(nat));
        }
        match profile {
            "OPEN" => {
                let public = format!("192.0.2.{}:51000", 10 + sim.nodes.len());
                sim.add_node_at(name, &public, None)
            }
            p if p.starts_with("CGN+") => {
                let carrier = sim.add_nat("PRC", None);
                let home = sim.add_nat(&p[4..], Some(carrier));
                sim.add_node_at(name, lan, Some(home))
            }
            p => {
                let nat = sim.add_nat(p, None);
                sim.add_node_at(name, lan, Some(nat))
            }
        }
    };
    let a = place(&mut sim, row.a, "10.1.0.2:51000", "alice");
    let b_lan = if shared {
        "10.1.0.3:51000"
    } else {
        "10.2.0.2:51000"
    };
    let b = place(&mut sim, row.b, b_lan, "bob");
    let start = sim.now;
    let mut time_to_direct = None;
    while sim.now.duration_since(start) < limit {
        sim.advance(Duration::from_millis(250));
        let both = [a, b].iter().all(|&i| {
            sim.nodes[i].node.status(0).peers.first().map(|p| p.path) == Some(Path::Direct)
        });
        if both {
            time_to_direct = Some(sim.now.duration_since(start));
            break;
        }
    }
    let direct = time_to_direct.is_some();
    let mut ping = false;
    if direct {
        let packet = ping_packet(A_IP, B_IP, 0x77);
        let packet = fix_addresses(&sim, a, b, packet);
        sim.send_from_tun(a, &packet);
        sim.advance(Duration::from_millis(300));
        ping = sim.nodes[b].tun_out.iter().any(|p| p == &packet);
    }
    let sa = sim.nodes[a].node.status(0);
    let sb = sim.nodes[b].node.status(0);
    let pa = sa.peers.first();
    let pb = sb.peers.first();
    let probes =
        pa.map(|p| p.punch.probes_sent).unwrap_or(0) + pb.map(|p| p.punch.probes_sent).unwrap_or(0);
    let technique = [pa, pb]
        .iter()
        .map(|p| {
            p.and_then(|p| p.technique_detail.clone())
                .unwrap_or_else(|| "-".into())
        })
        .collect::<Vec<_>>()
        .join(" / ");
    let why_not = [pa, pb]
        .iter()
        .filter_map(|p| p.and_then(|p| p.punch.last_failure.clone()))
        .next()
        .unwrap_or_default();
    Outcome {
        direct,
        ping,
        time_to_direct,
        probes,
        technique,
        why_not,
    }
}

/// The ping must carry the addresses the server actually assigned.
fn fix_addresses(sim: &Sim, a: usize, b: usize, mut packet: Vec<u8>) -> Vec<u8> {
    let ip = |i: usize| sim.nodes[i].node.status(0).virtual_ip.map(|v| v.octets());
    if let (Some(src), Some(dst)) = (ip(a), ip(b)) {
        packet[12..16].copy_from_slice(&src);
        packet[16..20].copy_from_slice(&dst);
    }
    packet
}

fn check(row: &Row, o: &Outcome) -> Result<(), String> {
    match row.expect {
        Expect::NoDirect if o.direct => Err(format!("claimed a direct path ({})", o.technique)),
        Expect::NoDirect if o.why_not.is_empty() => Err("no reason given for no path".into()),
        Expect::NoDirect => Ok(()),
        _ if !o.direct => Err(format!("no direct path: {}", o.why_not)),
        _ if !o.ping => Err("direct path claimed but the ping did not arrive".into()),
        Expect::DirectBy(t) if !o.technique.contains(t) => {
            Err(format!("expected {t}, got {}", o.technique))
        }
        _ => Ok(()),
    }
}

#[test]
fn the_nat_matrix_holds_in_the_simulator() {
    let mut failures = Vec::new();
    println!(
        "{:<4} {:<12} {:<12} {:<10} {:>9} {:>7}  technique / why not",
        "row", "A", "B", "outcome", "direct@", "probes"
    );
    for row in ROWS {
        for seed in [1u64, 2, 3] {
            let limit = if row.expect == Expect::NoDirect {
                20
            } else {
                30
            };
            let o = run(row, seed, Duration::from_secs(limit));
            let verdict = check(row, &o);
            if seed == 1 || verdict.is_err() {
                println!(
                    "{:<4} {:<12} {:<12} {:<10} {:>9} {:>7}  {} {}",
                    row.row,
                    row.a,
                    row.b,
                    if o.direct { "direct" } else { "none" },
                    o.time_to_direct
                        .map(|t| format!("{:.2}s", t.as_secs_f64()))
                        .unwrap_or_else(|| "-".into()),
                    o.probes,
                    o.technique,
                    if o.direct {
                        String::new()
                    } else {
                        format!("({})", o.why_not)
                    },
                );
            }
            if let Err(e) = verdict {
                failures.push(format!(
                    "row {} {}-{} seed {seed}: {e}",
                    row.row, row.a, row.b
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
