//! `p2pvpn ping PEER`: asks the running node to send ICMP echo requests from its own virtual
//! address (one control-socket request per echo), so each reply line can say which path it took,
//! which the kernel's `ping` cannot know. Ends with ping's usual summary.

use super::printable::printable;
use crate::config::{self, Dirs};
use crate::core::node::{NodeStatus, PingReply};
use crate::core::peers::Path;
use crate::io::control_socket::{self, Request};
use anyhow::{bail, Context, Result};
use std::time::Duration;
use tokio::time::Instant;

/// The network to use: the one named, else the only running one.
fn pick_network(network: Option<&str>, dirs: &Dirs) -> Result<String> {
    if let Some(n) = network {
        config::validate_network_name(n)?;
        return Ok(n.to_string());
    }
    let running = super::node::running_networks(dirs)?;
    match running.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no network is running (no control socket under {}); start one with `p2pvpn up \
             --network NAME`",
            dirs.state.display()
        ),
        many => bail!(
            "several networks are running ({}); pick one with --network",
            many.join(", ")
        ),
    }
}

/// How `ping` runs (the command-line options).
pub struct Options {
    /// Stop after this many requests (0: until interrupted).
    pub count: u32,
    /// Seconds between requests.
    pub interval: f64,
    /// One JSON object at the end instead of lines.
    pub json: bool,
}

/// Round trips seen so far, for the summary.
#[derive(Default)]
struct Tally {
    sent: u32,
    rtts_ms: Vec<f64>,
    /// Every answer, for `--json`: a reply's fields, or `{"seq": N, "timeout": true}`.
    replies: Vec<serde_json::Value>,
}

impl Tally {
    fn summary(&self, peer: &str) -> String {
        let received = self.rtts_ms.len() as u32;
        let loss = if self.sent == 0 {
            0.0
        } else {
            100.0 * f64::from(self.sent - received) / f64::from(self.sent)
        };
        let mut text = format!(
            "--- {peer} p2pvpn ping statistics ---\n{} sent, {received} received, {loss:.0}% \
             loss\n",
            self.sent
        );
        if received > 0 {
            let min = self.rtts_ms.iter().copied().fold(f64::INFINITY, f64::min);
            let max = self.rtts_ms.iter().copied().fold(0.0, f64::max);
            let avg = self.rtts_ms.iter().sum::<f64>() / f64::from(received);
            text += &format!("rtt min/avg/max = {min:.2}/{avg:.2}/{max:.2} ms\n");
        }
        text
    }

    /// `ping --json`: the summary and every reply (fields in README, "JSON output").
    fn json(&self, network: &str, peer: &str) -> serde_json::Value {
        let received = self.rtts_ms.len() as u32;
        let stat = |f: fn(&[f64]) -> f64| (received > 0).then(|| f(&self.rtts_ms));
        serde_json::json!({
            "network": network,
            "peer": peer,
            "sent": self.sent,
            "received": received,
            "loss_percent": if self.sent == 0 { 0.0 } else {
                100.0 * f64::from(self.sent - received) / f64::from(self.sent)
            },
            "rtt_min_ms": stat(|v| v.iter().copied().fold(f64::INFINITY, f64::min)),
            "rtt_avg_ms": stat(|v| v.iter().sum::<f64>() / v.len() as f64),
            "rtt_max_ms": stat(|v| v.iter().copied().fold(0.0, f64::max)),
            "replies": self.replies,
        })
    }
}

/// One reply line, e.g. `reply from bob (10.77.0.2): seq=1 time=0.41 ms path=relay (udp)`.
pub fn reply_line(r: &PingReply) -> String {
    format!(
        "reply from {} ({}): seq={} time={:.2} ms path={}",
        printable(&r.name),
        r.virtual_ip,
        r.seq,
        r.rtt_us as f64 / 1000.0,
        r.path
    )
}

/// "bob is offline (last seen 5 min ago)" when the node knows `peer` is offline, so the user
/// reads that rather than a timeout or the name of a drop counter.
async fn offline_message(socket: &std::path::Path, network: &str, peer: &str) -> Option<String> {
    let reply = control_socket::request(socket, network, Request::Status)
        .await
        .ok()?;
    let status: NodeStatus = serde_json::from_str(&reply).ok()?;
    let p = status
        .peers
        .iter()
        .find(|p| p.name == peer || p.virtual_ip.to_string() == peer)?;
    (p.path == Path::Offline).then(|| {
        format!(
            "{} is offline (last seen {}); it is reachable again once `p2pvpn up` runs on it",
            printable(&p.name),
            super::table::ago(p.last_seen_unix, crate::io::unix_now())
        )
    })
}

pub async fn run(peer: &str, network: Option<&str>, opts: Options, dirs: &Dirs) -> Result<()> {
    let Options {
        count,
        interval,
        json,
    } = opts;
    if !(0.01..=3600.0).contains(&interval) {
        bail!("--interval must be between 0.01 and 3600 seconds, not {interval}");
    }
    let interval = Duration::from_secs_f64(interval);
    let network = pick_network(network, dirs)?;
    let socket = dirs.control_socket(&network);
    if let Some(offline) = offline_message(&socket, &network, peer).await {
        bail!("{offline}");
    }
    let mut tally = Tally::default();
    let ping_all = async {
        // The node matches replies by (peer, wire seq); starting from the process id keeps two
        // `p2pvpn ping` runs at once from claiming each other's replies. Lines show 1, 2, ...
        let base = std::process::id() as u16;
        let mut seq: u16 = 0;
        loop {
            seq = seq.wrapping_add(1);
            let started = Instant::now();
            let request = Request::Ping {
                peer: peer.to_string(),
                seq: base.wrapping_add(seq),
            };
            let reply = control_socket::request(&socket, &network, request).await?;
            let reply = reply.trim();
            tally.sent += 1;
            if let Some(err) = reply.strip_prefix("error: ") {
                // The peer may have left since the last request: say so, not the drop reason.
                if let Some(offline) = offline_message(&socket, &network, peer).await {
                    bail!("{offline}");
                }
                bail!("cannot ping {peer} in {network}: {err}");
            } else if reply == "timeout" {
                if json {
                    tally
                        .replies
                        .push(serde_json::json!({ "seq": seq, "timeout": true }));
                } else {
                    println!("no reply from {peer}: seq={seq} timeout");
                }
            } else if reply == "stopping" {
                bail!("the node for {network} stopped");
            } else {
                let mut r: PingReply = serde_json::from_str(reply)
                    .with_context(|| format!("the node for {network} sent {reply:?}"))?;
                r.seq = seq;
                if json {
                    tally.replies.push(serde_json::json!({
                        "seq": seq,
                        "name": r.name,
                        "virtual_ip": r.virtual_ip,
                        "rtt_ms": r.rtt_us as f64 / 1000.0,
                        "path": r.path,
                    }));
                } else {
                    println!("{}", reply_line(&r));
                }
                tally.rtts_ms.push(r.rtt_us as f64 / 1000.0);
            }
            if count != 0 && tally.sent >= count {
                return Ok(());
            }
            tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
        }
    };
    let result = tokio::select! {
        r = ping_all => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    result?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&tally.json(&network, peer))?
        );
    } else {
        print!("{}", tally.summary(peer));
    }
    if tally.rtts_ms.is_empty() {
        if let Some(offline) = offline_message(&socket, &network, peer).await {
            bail!("no reply from {peer}: {offline}");
        }
        bail!("no reply from {peer}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summary_read_like_ping() {
        let r = PingReply {
            name: "bob".into(),
            virtual_ip: "10.77.0.2".parse().unwrap(),
            seq: 1,
            rtt_us: 410,
            path: "direct (predicted, +1)".into(),
        };
        assert_eq!(
            reply_line(&r),
            "reply from bob (10.77.0.2): seq=1 time=0.41 ms path=direct (predicted, +1)"
        );
        let t = Tally {
            sent: 4,
            rtts_ms: vec![0.3, 0.5, 0.4],
            ..Default::default()
        };
        let s = t.summary("bob");
        assert!(s.contains("4 sent, 3 received, 25% loss"), "{s}");
        assert!(s.contains("rtt min/avg/max = 0.30/0.40/0.50 ms"), "{s}");
    }

    #[test]
    fn a_peer_name_with_an_escape_sequence_is_printed_escaped() {
        let r = PingReply {
            name: "bob\x1b[2J\nforged".into(),
            virtual_ip: "10.77.0.2".parse().unwrap(),
            seq: 1,
            rtt_us: 410,
            path: "relay (udp)".into(),
        };
        let line = reply_line(&r);
        assert!(!line.contains('\x1b') && !line.contains('\n'), "{line:?}");
        assert!(line.contains("bob\\x1b[2J\\nforged"), "{line}");
    }
}
