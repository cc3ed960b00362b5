//! The server's metrics about its deployment: the store's health and the other live servers
//! (`io::server_mesh`).

use super::metrics::{header, label};
use super::server_mesh::MeshFigures;
use std::fmt::Write;

pub fn render(o: &mut String, f: &MeshFigures) {
    header(
        o,
        "p2pvpn_server_store_up",
        "gauge",
        "1 when the last round trip to the store worked; 0: joins fail, tunnels keep working.",
    );
    let _ = writeln!(o, "p2pvpn_server_store_up {}", u8::from(f.store_up));
    header(
        o,
        "p2pvpn_server_store_tick_seconds",
        "gauge",
        "How long the last heartbeat and server-list read took (PostgreSQL store).",
    );
    let _ = writeln!(
        o,
        "p2pvpn_server_store_tick_seconds {:.6}",
        f.store_latency.as_secs_f64()
    );
    header(
        o,
        "p2pvpn_server_primary",
        "gauge",
        "1 when this server is the one every node of the deployment registers with.",
    );
    let _ = writeln!(o, "p2pvpn_server_primary {}", u8::from(f.primary));
    header(
        o,
        "p2pvpn_server_peer_servers",
        "gauge",
        "The other live servers sharing this server's store.",
    );
    let _ = writeln!(o, "p2pvpn_server_peer_servers {}", f.peers.len());
    header(
        o,
        "p2pvpn_server_peer_server",
        "gauge",
        "One sample per other live server, by the address nodes reach it at.",
    );
    for peer in &f.peers {
        let _ = writeln!(
            o,
            "p2pvpn_server_peer_server{{address=\"{}\"}} 1",
            label(peer)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_and_the_peer_servers_are_shown() {
        let mut o = String::new();
        render(
            &mut o,
            &MeshFigures {
                store_up: false,
                primary: false,
                peers: vec!["192.0.2.1:7000".into()],
                ..Default::default()
            },
        );
        assert!(o.contains("p2pvpn_server_store_up 0\n"), "{o}");
        assert!(o.contains("p2pvpn_server_primary 0\n"));
        assert!(o.contains("p2pvpn_server_peer_servers 1\n"));
        assert!(o.contains("p2pvpn_server_peer_server{address=\"192.0.2.1:7000\"} 1\n"));
    }
}
