//! The human-readable form of `status`. Names come from the server (and, through it, from other
//! members), so they are printed through [`printable`].

use super::printable::printable;
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
    // Said out loud because TLS means the plain control port is blocked from here.
    let via = if s.server.tls { ", TLS" } else { "" };
    let server = match (s.server.address, s.server.connected) {
        (Some(a), true) => format!("{a} (connected{via})"),
        (Some(a), false) => format!("{a} (connecting{via})"),
        (None, _) => "(none)".to_string(),
    };
    let _ = writeln!(
        out,
        "network {}  node {}  address {addr}  interface {}  udp port {}",
        printable(&s.network),
        printable(s.name.as_deref().unwrap_or("?")),
        printable(&s.interface),
        s.listen_port
    );
    let _ = writeln!(out, "server  {server}");
    let _ = writeln!(out, "key     {}", s.public_key);
    let nat = match &s.nat {
        Some(n) => {
            let public = n
                .public
                .map(|p| format!(", public {p}"))
                .unwrap_or_default();
            format!("{}{public}", n.short())
        }
        None => "(not measured yet)".to_string(),
    };
    let _ = writeln!(out, "nat     {nat}");
    let _ = writeln!(
        out,
        "\n{:<16} {:<15} {:<30} {:<22} {:>7} {:>10} {:>10} {:>14}",
        "PEER", "ADDRESS", "PATH", "ENDPOINT", "RTT", "RX", "TX", "HANDSHAKE"
    );
    for p in &s.peers {
        let path = match (&p.path, &p.technique_detail, &p.relay) {
            (crate::core::peers::Path::Direct, Some(detail), _) => detail.clone(),
            (crate::core::peers::Path::Relay, _, Some(transport)) => format!("relay ({transport})"),
            (path, _, _) => path.as_str().to_string(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<15} {:<30} {:<22} {:>7} {:>10} {:>10} {:>14}",
            printable(&p.name),
            p.virtual_ip.to_string(),
            path,
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
        let their_nat = p
            .nat
            .as_ref()
            .map(|n| n.short())
            .unwrap_or_else(|| "not measured".into());
        let mut punch = format!(
            "  nat: {their_nat}; punch: {} attempts, {} probes",
            p.punch.attempts, p.punch.probes_sent
        );
        if let Some(ms) = p.punch.time_to_direct_ms {
            let _ = write!(punch, ", direct after {ms} ms");
        }
        if let Some(why) = &p.punch.last_failure {
            let _ = write!(punch, "; last failure: {why}");
        }
        let _ = writeln!(out, "{punch}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::PublicKey;
    use crate::core::node::{PeerStatus, ServerStatus};

    /// A peer name from an older server's database cannot forge a line or move the cursor.
    #[test]
    fn names_are_printed_escaped() {
        let peer = PeerStatus {
            name: "evil\n\x1b[2Jbob".into(),
            virtual_ip: "10.0.0.2".parse().unwrap(),
            public_key: PublicKey([2; 32]),
            path: crate::core::peers::Path::Connecting,
            relay: None,
            online: true,
            endpoint: None,
            rtt_ms: None,
            rx_bytes: 0,
            tx_bytes: 0,
            last_handshake_unix: None,
            technique: None,
            technique_detail: None,
            nat: None,
            punch: Default::default(),
        };
        let status = NodeStatus {
            network: "lab".into(),
            name: Some("me\r".into()),
            virtual_ip: None,
            cidr: None,
            public_key: PublicKey([1; 32]),
            listen_port: 0,
            interface: "p2p-lab".into(),
            server: ServerStatus {
                address: None,
                tls: false,
                connected: false,
            },
            nat: None,
            peers: vec![peer],
            drops: Default::default(),
        };
        let text = render(&status, 0);
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("evil\\n\\x1b[2Jbob"), "{text}");
        assert!(text.contains("node me\\r "), "{text}");
    }
}
