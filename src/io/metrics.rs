//! `--metrics ADDR`: Prometheus text exposition (format 0.0.4) of a node's or the server's
//! counters on `GET /metrics`. A few lines of HTTP/1.1 on a tokio listener rather than a web
//! framework: one path, one method, `Connection: close`. Loopback only, since the figures name
//! peers and their traffic; a reverse proxy can expose them further on purpose.

use crate::core::node::NodeStatus;
use crate::core::peers::Path;
use crate::core::relay::server::RelayNodeStats;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// A scrape: the loop that owns the state answers with the rendered text.
pub type Scrape = oneshot::Sender<String>;

/// Refuses an address other hosts could reach.
pub fn check_loopback(addr: SocketAddr, flag: &str) -> Result<()> {
    if !addr.ip().is_loopback() {
        bail!(
            "{flag} {addr}: metrics are served on loopback only (e.g. {flag} 127.0.0.1:{}); put \
             a reverse proxy in front to expose them",
            addr.port()
        );
    }
    Ok(())
}

/// Binds `addr` (after `check_loopback`) and answers scrapes with what `scrapes` returns.
pub async fn serve(addr: SocketAddr, flag: &str, scrapes: mpsc::Sender<Scrape>) -> Result<()> {
    check_loopback(addr, flag)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("{flag} {addr}: cannot listen"))?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let scrapes = scrapes.clone();
            tokio::spawn(async move {
                // A slow or silent client must not hold a task forever.
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), answer(stream, scrapes)).await;
            });
        }
    });
    Ok(())
}

async fn answer(mut stream: TcpStream, scrapes: mpsc::Sender<Scrape>) -> Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    let (status, body) = match (words.next(), words.next()) {
        (Some("GET"), Some("/metrics")) => {
            let (tx, rx) = oneshot::channel();
            scrapes.send(tx).await?;
            ("200 OK", rx.await.unwrap_or_default())
        }
        (Some("GET"), _) => ("404 Not Found", "try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

/// A label value with `\`, `"` and newlines escaped as the exposition format asks.
pub(super) fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(super) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A node's metrics, from the same snapshot `status` shows.
pub fn render_node(s: &NodeStatus) -> String {
    let mut o = String::new();
    let net = label(&s.network);
    header(
        &mut o,
        "p2pvpn_server_connected",
        "gauge",
        "1 when registered with the server.",
    );
    let _ = writeln!(
        o,
        "p2pvpn_server_connected{{network=\"{net}\"}} {}",
        u8::from(s.server.connected)
    );
    header(
        &mut o,
        "p2pvpn_peers",
        "gauge",
        "Peers by the path their traffic takes.",
    );
    for path in [Path::Direct, Path::Relay, Path::Connecting] {
        let n = s.peers.iter().filter(|p| p.path == path).count();
        let _ = writeln!(
            o,
            "p2pvpn_peers{{network=\"{net}\",path=\"{}\"}} {n}",
            path.as_str()
        );
    }
    type PeerFigure = fn(&crate::core::node::PeerStatus) -> Option<String>;
    let per_peer: [(&str, &str, &str, PeerFigure); 7] = [
        (
            "p2pvpn_peer_rx_bytes_total",
            "counter",
            "Bytes received from the peer.",
            |p| Some(p.rx_bytes.to_string()),
        ),
        (
            "p2pvpn_peer_tx_bytes_total",
            "counter",
            "Bytes sent to the peer.",
            |p| Some(p.tx_bytes.to_string()),
        ),
        (
            "p2pvpn_peer_direct",
            "gauge",
            "1 when the peer's path is direct.",
            |p| Some(u8::from(p.path == Path::Direct).to_string()),
        ),
        (
            "p2pvpn_peer_rtt_seconds",
            "gauge",
            "WireGuard round trip to the peer.",
            |p| p.rtt_ms.map(|ms| format!("{}", f64::from(ms) / 1000.0)),
        ),
        (
            "p2pvpn_peer_punch_attempts_total",
            "counter",
            "Hole-punch attempts.",
            |p| Some(p.punch.attempts.to_string()),
        ),
        (
            "p2pvpn_peer_punch_probes_total",
            "counter",
            "Hole-punch probes sent.",
            |p| Some(p.punch.probes_sent.to_string()),
        ),
        (
            "p2pvpn_peer_path_mtu_bytes",
            "gauge",
            "Probed path MTU to the peer (largest inner packet), once known.",
            |p| p.path_mtu.map(|m| m.to_string()),
        ),
    ];
    for (name, kind, help, figure) in per_peer {
        header(&mut o, name, kind, help);
        for p in &s.peers {
            if let Some(v) = figure(p) {
                let _ = writeln!(
                    o,
                    "{name}{{network=\"{net}\",peer=\"{}\",virtual_ip=\"{}\"}} {v}",
                    label(&p.name),
                    p.virtual_ip
                );
            }
        }
    }
    header(
        &mut o,
        "p2pvpn_drops_total",
        "counter",
        "Packets dropped, by reason.",
    );
    for (reason, n) in s.drops.to_map() {
        let _ = writeln!(
            o,
            "p2pvpn_drops_total{{network=\"{net}\",reason=\"{reason}\"}} {n}"
        );
    }
    if let Some(dns) = &s.dns {
        header(
            &mut o,
            "p2pvpn_dns_queries_total",
            "counter",
            "Queries to the node's DNS responder, by result (malformed ones are dropped).",
        );
        for (result, n) in dns.results() {
            let _ = writeln!(
                o,
                "p2pvpn_dns_queries_total{{network=\"{net}\",result=\"{result}\"}} {n}"
            );
        }
    }
    o
}

/// The server's figures, gathered by its loop.
pub struct ServerFigures {
    pub online_nodes: usize,
    /// (network, node key, relay figures) of every node holding a relay binding.
    pub relay: Vec<(String, String, RelayNodeStats)>,
    pub stun_answered: u64,
    pub udp_dropped: u64,
    pub relay_queue_dropped: u64,
    /// The control plane's counters (refusals, bad handshakes, deadlines, trimmed candidates).
    pub control: crate::core::rendezvous::server::ServerStats,
    /// The store's health and the deployment's other servers (`io::server_mesh`).
    pub mesh: super::server_mesh::MeshFigures,
}

pub fn render_server(f: &ServerFigures) -> String {
    let mut o = String::new();
    super::metrics_mesh::render(&mut o, &f.mesh);
    header(
        &mut o,
        "p2pvpn_server_online_nodes",
        "gauge",
        "Nodes with a registered control stream.",
    );
    let _ = writeln!(o, "p2pvpn_server_online_nodes {}", f.online_nodes);
    header(
        &mut o,
        "p2pvpn_server_stun_answers_total",
        "counter",
        "STUN requests answered.",
    );
    let _ = writeln!(o, "p2pvpn_server_stun_answers_total {}", f.stun_answered);
    header(
        &mut o,
        "p2pvpn_server_udp_dropped_total",
        "counter",
        "UDP datagrams dropped unread.",
    );
    let _ = writeln!(o, "p2pvpn_server_udp_dropped_total {}", f.udp_dropped);
    header(
        &mut o,
        "p2pvpn_server_relay_queue_dropped_total",
        "counter",
        "Relay datagrams admitted by the relay whose send failed.",
    );
    let _ = writeln!(
        o,
        "p2pvpn_server_relay_queue_dropped_total {}",
        f.relay_queue_dropped
    );
    let c = &f.control;
    let control: [(&str, &str, u64); 6] = [
        (
            "p2pvpn_server_joins_total",
            "Join tokens redeemed.",
            c.joins,
        ),
        (
            "p2pvpn_server_refused_total",
            "Joins and registrations refused (bad token, not a member, bad name).",
            c.connections_refused,
        ),
        (
            "p2pvpn_server_bad_handshakes_total",
            "Connections dropped during the Noise handshake.",
            c.bad_handshakes,
        ),
        (
            "p2pvpn_server_bad_messages_total",
            "Connections dropped for an undecodable or unauthenticated message.",
            c.bad_messages,
        ),
        (
            "p2pvpn_server_timed_out_total",
            "Connections closed by a deadline (handshake, join or idle).",
            c.timed_out,
        ),
        (
            "p2pvpn_server_candidates_dropped_total",
            "Endpoints and punch candidates removed because the member does not hold them.",
            c.candidates_dropped,
        ),
    ];
    for (name, help, value) in control {
        header(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {value}");
    }
    type RelayFigure = fn(&RelayNodeStats) -> u64;
    let per_node: [(&str, &str, RelayFigure); 4] = [
        (
            "p2pvpn_server_relay_bytes_total",
            "Bytes relayed from the node.",
            |s| s.bytes,
        ),
        (
            "p2pvpn_server_relay_packets_total",
            "Packets relayed from the node.",
            |s| s.packets,
        ),
        (
            "p2pvpn_server_relay_dropped_rate_total",
            "Relay packets dropped over the node's rate limit.",
            |s| s.dropped_rate,
        ),
        (
            "p2pvpn_server_relay_dropped_no_peer_total",
            "Relay packets to a peer with no relay binding.",
            |s| s.dropped_no_peer,
        ),
    ];
    for (name, help, figure) in per_node {
        header(&mut o, name, "counter", help);
        for (net, node, stats) in &f.relay {
            let _ = writeln!(
                o,
                "{name}{{network=\"{}\",node=\"{}\"}} {}",
                label(net),
                label(node),
                figure(stats)
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_accepted_and_the_flag_is_named() {
        assert!(check_loopback("127.0.0.1:9101".parse().unwrap(), "--metrics").is_ok());
        assert!(check_loopback("[::1]:9101".parse().unwrap(), "--metrics").is_ok());
        let err = check_loopback("0.0.0.0:9101".parse().unwrap(), "--metrics").unwrap_err();
        assert!(err.to_string().contains("--metrics 0.0.0.0:9101"), "{err}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn server_figures_render_one_sample_per_node() {
        let f = ServerFigures {
            online_nodes: 2,
            relay: vec![(
                "demo".into(),
                "KEY".into(),
                RelayNodeStats {
                    bytes: 10,
                    packets: 1,
                    dropped_rate: 0,
                    dropped_no_peer: 3,
                },
            )],
            stun_answered: 5,
            udp_dropped: 0,
            relay_queue_dropped: 0,
            control: crate::core::rendezvous::server::ServerStats {
                timed_out: 7,
                candidates_dropped: 4,
                ..Default::default()
            },
            mesh: Default::default(),
        };
        let text = render_server(&f);
        assert!(text.contains("p2pvpn_server_online_nodes 2\n"));
        assert!(text.contains("p2pvpn_server_timed_out_total 7\n"), "{text}");
        assert!(text.contains("p2pvpn_server_candidates_dropped_total 4\n"));
        assert!(
            text.contains("p2pvpn_server_relay_bytes_total{network=\"demo\",node=\"KEY\"} 10\n")
        );
        assert!(text.contains(
            "p2pvpn_server_relay_dropped_no_peer_total{network=\"demo\",node=\"KEY\"} 3\n"
        ));
        assert!(text.contains("# TYPE p2pvpn_server_stun_answers_total counter\n"));
    }

    #[tokio::test]
    async fn a_scrape_over_loopback_gets_the_text_and_other_paths_404() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (tx, mut rx) = mpsc::channel::<Scrape>(4);
        serve(addr, "--metrics", tx).await.unwrap();
        tokio::spawn(async move {
            while let Some(reply) = rx.recv().await {
                let _ = reply.send("p2pvpn_x 1\n".to_string());
            }
        });
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).await.unwrap();
            text
        };
        let ok = get("/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\np2pvpn_x 1\n"), "{ok}");
        assert!(get("/").await.starts_with("HTTP/1.1 404"));
    }
}
