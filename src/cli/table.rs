//! The human-readable form of `status`. Names come from the server (and, through it, from other
//! members), so they are printed through [`printable`].

use super::printable::printable;
use crate::core::node::{NodeStatus, PeerStatus};
use crate::core::peers::Path;
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

/// "1 attempt", "2 attempts".
pub(super) fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// How long ago `unix` was, in the largest unit that reads naturally; past a day, the date.
pub(super) fn ago(unix: Option<u64>, now: u64) -> String {
    let Some(t) = unix else {
        return "never".to_string();
    };
    let secs = now.saturating_sub(t);
    match secs {
        0..=1 => "just now".to_string(),
        2..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        7200..=86_399 => format!("{} h ago", secs / 3600),
        _ => date(t),
    }
}

/// A date for people, in UTC: `2026-11-26 13:20 UTC`.
pub(super) fn date(unix: u64) -> String {
    let rfc = crate::core::node::rfc3339(unix);
    // `YYYY-MM-DDTHH:MM:SSZ`: the minute is precise enough for a table.
    match (rfc.get(..10), rfc.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => rfc,
    }
}

/// Rows of cells printed with each column as wide as its widest cell, so long names do not
/// push the rest of a row out of line. Columns in `right` are right-aligned (numbers).
fn columns(rows: &[Vec<String>], right: &[usize]) -> Vec<String> {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let w = widths[i];
                    if right.contains(&i) {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

fn path_text(p: &PeerStatus) -> String {
    match (&p.path, &p.technique_detail, &p.relay) {
        (Path::Direct, Some(detail), _) => detail.clone(),
        (Path::Relay, _, Some(transport)) => format!("relay ({transport})"),
        (path, _, _) => path.as_str().to_string(),
    }
}

/// The TUN MTU on the first line (absent from an older node's status).
fn mtu_text(mtu: u16) -> String {
    if mtu == 0 {
        String::new()
    } else {
        format!("  mtu {mtu}")
    }
}

/// The MTU column: the peer's probed path MTU, `?` when the peer does not answer the probes,
/// `-` before anything is known.
fn path_mtu_text(p: &PeerStatus) -> String {
    match (p.path_mtu, p.path_mtu_search.as_str()) {
        (Some(m), _) => m.to_string(),
        (None, "unanswered") => "?".into(),
        (None, _) => "-".into(),
    }
}

/// What the LAST SEEN column says: `online` while the peer is up, else how long ago it was.
fn seen_text(p: &PeerStatus, now: u64) -> String {
    if p.path != Path::Offline {
        "online".to_string()
    } else {
        ago(p.last_seen_unix, now)
    }
}

pub fn render(s: &NodeStatus, unix_now: u64) -> String {
    let mut out = String::new();
    let addr = match (s.virtual_ip, s.cidr, s.ipv6) {
        (Some(ip), Some(c), Some(v6)) => format!("{ip}/{} {v6}", c.prefix_len()),
        (Some(ip), Some(c), None) => format!("{ip}/{}", c.prefix_len()),
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
        "network {}  node {}  address {addr}  interface {}  udp port {}{}",
        printable(&s.network),
        printable(s.name.as_deref().unwrap_or("?")),
        printable(&s.interface),
        s.listen_port,
        mtu_text(s.mtu)
    );
    let _ = writeln!(out, "server  {server}");
    if !s.server.others.is_empty() {
        let others: Vec<String> = s.server.others.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "        fails over to {}", others.join(", "));
    }
    let _ = writeln!(out, "key     {}", s.public_key);
    let nat = match &s.nat {
        Some(n) => {
            let public = n
                .public
                .filter(|_| n.behind_nat != Some(false))
                .map(|p| format!(", public {p}"))
                .unwrap_or_default();
            let own = n
                .public
                .filter(|_| n.behind_nat == Some(false))
                .map(|p| format!(" {p}"))
                .unwrap_or_default();
            // "none (public address)" names the address inside the brackets.
            let short = n
                .short()
                .replacen("public address", &format!("public address{own}"), 1);
            format!("{short}{public}")
        }
        None => "(not measured yet)".to_string(),
    };
    let _ = writeln!(out, "nat     {nat}");
    if let Some(m) = &s.port_mapping {
        let _ = writeln!(out, "mapping {} ({})", m.addr, m.technique);
    }
    if let Some(dns) = &s.dns {
        let _ = writeln!(out, "dns     {dns}");
    }
    let _ = writeln!(out);
    let mut rows = vec![[
        "PEER",
        "ADDRESS",
        "PATH",
        "ENDPOINT",
        "RTT",
        "MTU",
        "RX",
        "TX",
        "HANDSHAKE",
        "LAST SEEN",
    ]
    .map(String::from)
    .to_vec()];
    for p in &s.peers {
        rows.push(vec![
            printable(&p.name).to_string(),
            p.virtual_ip.to_string(),
            path_text(p),
            p.endpoint
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into()),
            p.rtt_ms
                .map(|r| format!("{r}ms"))
                .unwrap_or_else(|| "-".into()),
            path_mtu_text(p),
            bytes(p.rx_bytes),
            bytes(p.tx_bytes),
            ago(p.last_handshake_unix, unix_now),
            seen_text(p, unix_now),
        ]);
    }
    let lines = columns(&rows, &[4, 5, 6, 7]);
    let _ = writeln!(out, "{}", lines[0]);
    for (p, line) in s.peers.iter().zip(&lines[1..]) {
        let _ = writeln!(out, "{line}");
        let their_nat = p
            .nat
            .as_ref()
            .map(|n| n.short())
            .unwrap_or_else(|| "not measured".into());
        // The IPv6 address is long; it goes on the peer's second line, not in the table.
        let v6 = p.ipv6.map(|a| format!("ipv6 {a}; ")).unwrap_or_default();
        let mut punch = format!(
            "  {v6}nat: {their_nat}; punch: {}, {}",
            count(p.punch.attempts, "attempt"),
            count(p.punch.probes_sent, "probe")
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
    out.push_str(&super::access_status::section(s));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::PublicKey;
    use crate::core::nat::{Filtering, NatProfile};
    use crate::core::node::ServerStatus;

    const NOW: u64 = 1_795_000_000;

    fn peer(name: &str, ip: &str) -> PeerStatus {
        PeerStatus {
            name: name.into(),
            virtual_ip: ip.parse().unwrap(),
            ipv6: None,
            public_key: PublicKey([2; 32]),
            path: Path::Connecting,
            relay: None,
            online: true,
            endpoint: None,
            rtt_ms: None,
            rx_bytes: 0,
            tx_bytes: 0,
            last_handshake_unix: None,
            last_handshake: None,
            last_seen_unix: Some(NOW),
            last_seen: None,
            technique: None,
            technique_detail: None,
            nat: None,
            punch: Default::default(),
            path_mtu: None,
            path_mtu_search: String::new(),
            access: Vec::new(),
        }
    }

    fn node(peers: Vec<PeerStatus>) -> NodeStatus {
        NodeStatus {
            network: "lab".into(),
            name: Some("me".into()),
            virtual_ip: None,
            cidr: None,
            ipv6: None,
            public_key: PublicKey([1; 32]),
            listen_port: 0,
            interface: "p2p-lab".into(),
            server: ServerStatus {
                address: None,
                tls: false,
                connected: false,
                others: Vec::new(),
            },
            nat: None,
            port_mapping: None,
            peers,
            drops: Default::default(),
            mtu: 0,
            dns: None,
            access: None,
            workers: None,
        }
    }

    /// The table line of the peer named `name`.
    fn row<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name} in:\n{text}"))
    }

    #[test]
    fn both_addresses_are_shown() {
        let mut bob = peer("bob", "10.0.0.2");
        bob.ipv6 = Some("fd12:3456:789a::a00:2".parse().unwrap());
        let mut status = node(vec![bob, peer("carol", "10.0.0.3")]);
        status.virtual_ip = Some("10.0.0.1".parse().unwrap());
        status.cidr = Some("10.0.0.0/24".parse().unwrap());
        status.ipv6 = Some("fd12:3456:789a::a00:1/64".parse().unwrap());
        let text = render(&status, NOW);
        assert!(
            text.contains("address 10.0.0.1/24 fd12:3456:789a::a00:1/64 "),
            "{text}"
        );
        assert!(
            text.contains("\n  ipv6 fd12:3456:789a::a00:2; nat: "),
            "{text}"
        );
        // A peer without one (an older server) has no such line.
        assert_eq!(text.matches("ipv6 ").count(), 1, "{text}");
    }

    /// A peer name from an older server's database cannot forge a line or move the cursor.
    #[test]
    fn names_are_printed_escaped() {
        let mut status = node(vec![peer("evil\n\x1b[2Jbob", "10.0.0.2")]);
        status.name = Some("me\r".into());
        let text = render(&status, 0);
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("evil\\n\\x1b[2Jbob"), "{text}");
        assert!(text.contains("node me\\r "), "{text}");
    }

    #[test]
    fn an_offline_peer_reads_offline_with_the_time_since_it_was_seen() {
        let mut bob = peer("bob", "10.0.0.2");
        bob.path = Path::Offline;
        bob.online = false;
        bob.last_seen_unix = Some(NOW - 300);
        let mut carol = peer("carol", "10.0.0.3");
        carol.path = Path::Offline;
        carol.online = false;
        carol.last_seen_unix = None;
        let mut dave = peer("dave", "10.0.0.4");
        dave.path = Path::Offline;
        dave.online = false;
        dave.last_seen_unix = Some(NOW - 3 * 86_400);
        let text = render(&node(vec![bob, carol, dave, peer("erin", "10.0.0.5")]), NOW);
        let bob = row(&text, "bob");
        assert!(
            bob.contains(" offline ") && bob.ends_with("5 min ago"),
            "{bob}"
        );
        assert!(row(&text, "carol").ends_with("never"), "{text}");
        // Older than a day: a date, not a count of seconds.
        assert!(
            row(&text, "dave").ends_with("2026-11-15 11:06 UTC"),
            "{text}"
        );
        assert!(row(&text, "erin").ends_with("online"), "{text}");
    }

    #[test]
    fn columns_widen_to_fit_long_names() {
        let long = "build-server-in-the-basement-rack-7";
        let mut a = peer(long, "10.0.0.2");
        a.path = Path::Direct;
        a.technique_detail = Some("direct (predicted, +1)".into());
        a.endpoint = Some("203.0.113.77:54321".parse().unwrap());
        let text = render(&node(vec![a, peer("b", "10.0.0.3")]), NOW);
        let header = row(&text, "PEER");
        let col = |line: &str, cell: &str| line.find(cell).unwrap();
        // Every column starts where its header does, whatever the longest name.
        for (cell, line) in [
            ("10.0.0.2", row(&text, long)),
            ("10.0.0.3", row(&text, "b ")),
        ] {
            assert_eq!(col(line, cell), col(header, "ADDRESS"), "{text}");
        }
        assert_eq!(
            col(row(&text, "b "), "connecting"),
            col(header, "PATH"),
            "{text}"
        );
        assert!(row(&text, long).contains("direct (predicted, +1)  203.0.113.77:54321"));
    }

    #[test]
    fn counts_are_plural_only_when_they_are_not_one() {
        let mut a = peer("a", "10.0.0.2");
        a.punch.attempts = 1;
        a.punch.probes_sent = 1;
        let text = render(&node(vec![a]), NOW);
        assert!(text.contains("punch: 1 attempt, 1 probe"), "{text}");
        let mut b = peer("b", "10.0.0.2");
        b.punch.attempts = 2;
        let text = render(&node(vec![b]), NOW);
        assert!(text.contains("punch: 2 attempts, 0 probes"), "{text}");
    }

    #[test]
    fn a_public_host_has_no_nat() {
        let mut s = node(vec![]);
        s.nat = Some(NatProfile {
            behind_nat: Some(false),
            public: Some("198.51.100.7:51820".parse().unwrap()),
            filtering: Filtering::EndpointIndependent,
            ..NatProfile::default()
        });
        let text = render(&s, NOW);
        assert!(
            text.contains("nat     none (public address 198.51.100.7:51820)\n"),
            "{text}"
        );
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(Some(NOW - 42), NOW), "42 s ago");
        assert_eq!(ago(Some(NOW - 600), NOW), "10 min ago");
        assert_eq!(ago(Some(NOW - 3 * 3600), NOW), "3 h ago");
        assert_eq!(ago(None, NOW), "never");
    }
}
