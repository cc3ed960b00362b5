//! The human-readable form of `status`.

use crate::core::node::NodeStatus;
use std::fmt::Write;

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn ago(unix: Option<u64>, now: u64) -> String {
    match unix {
        Some(t) => format!("{}s ago", now.saturating_sub(t)),
        None => "never".to_string(),
    }
}

pub fn render(s: &NodeStatus, unix_now: u64) -> String {
    let mut out = String::new();
    let addr = match (s.virtual_ip, s.cidr) {
        (Some(ip), Some(c)) => format!("{ip}/{}", c.prefix_len()),
        _ => "(not registered yet)".to_string(),
    };
    let server = match (s.server.address, s.server.connected) {
        (Some(a), true) => format!("{a} (connected)"),
        (Some(a), false) => format!("{a} (connecting)"),
        (None, _) => "(none)".to_string(),
    };
    let _ = writeln!(
        out,
        "network {}  node {}  address {addr}  interface {}  udp port {}",
        s.network,
        s.name.as_deref().unwrap_or("?"),
        s.interface,
        s.listen_port
    );
    let _ = writeln!(out, "server  {server}");
    let _ = writeln!(out, "key     {}", s.public_key);
    let _ = writeln!(
        out,
        "\n{:<16} {:<15} {:<11} {:<22} {:>7} {:>10} {:>10} {:>14}",
        "PEER", "ADDRESS", "PATH", "ENDPOINT", "RTT", "RX", "TX", "HANDSHAKE"
    );
    for p in &s.peers {
        let _ = writeln!(
            out,
            "{:<16} {:<15} {:<11} {:<22} {:>7} {:>10} {:>10} {:>14}",
            p.name,
            p.virtual_ip.to_string(),
            p.path.as_str(),
            p.endpoint
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into()),
            p.rtt_ms
                .map(|r| format!("{r}ms"))
                .unwrap_or_else(|| "-".into()),
            bytes(p.rx_bytes),
            bytes(p.tx_bytes),
            ago(p.last_handshake_unix, unix_now),
        );
    }
    if s.peers.is_empty() {
        let _ = writeln!(out, "(no peers yet)");
    }
    let drops: Vec<String> = s
        .drops
        .to_map()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    let _ = writeln!(
        out,
        "\ndropped packets: {}\n",
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(" ")
        }
    );
    out
}
