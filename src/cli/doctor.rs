//! `p2pvpn doctor [PEER]`: checks of this host (privileges, TUN, config, the running node, its
//! interface and route, the server over UDP and TCP) and, for a peer, why it is on the path it
//! is on: both NAT profiles, each technique the punch planner tries for that pair and what came
//! of it, and what would fix it. The technique list is recomputed with the node's own planner
//! (`core::punch::plan`) from the two profiles `status` reports, so it cannot drift from what
//! the node does.

use super::printable::printable;
use crate::config::{self, Dirs};
use crate::core::nat::{NatProfile, PortAllocation};
use crate::core::node::{NodeStatus, PeerStatus};
use crate::core::peers::Path;
use crate::core::punch::plan::{plan, PlanInput, Sweep};
use crate::core::punch::{Candidate, Technique};
use crate::core::stun::{binding_request, parse_binding_response, ChangeRequest, TransactionId};
use crate::io::control_socket::{self, Request};
use anyhow::{Context, Result};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The checks' results: printed as they come, or with `--json` gathered into one object
/// (fields in README, "JSON output").
struct Report {
    failed: usize,
    json: bool,
    checks: Vec<serde_json::Value>,
    details: Vec<String>,
}

impl Report {
    fn ok(&mut self, what: &str) {
        if self.json {
            self.checks
                .push(serde_json::json!({ "result": "ok", "check": what }));
        } else {
            println!("ok    {what}");
        }
    }

    fn fail(&mut self, what: &str, fix: &str) {
        self.failed += 1;
        if self.json {
            self.checks
                .push(serde_json::json!({ "result": "fail", "check": what, "fix": fix }));
        } else {
            println!("FAIL  {what}\n      fix: {fix}");
        }
    }

    fn note(&mut self, what: &str) {
        if self.json {
            self.checks
                .push(serde_json::json!({ "result": "note", "check": what }));
        } else {
            println!("      {what}");
        }
    }

    /// A line of the peer explanation.
    fn say(&mut self, line: String) {
        if self.json {
            self.details.push(line.trim().to_string());
        } else {
            println!("{line}");
        }
    }
}

pub async fn run(network: &str, peer: Option<&str>, json: bool, dirs: &Dirs) -> Result<()> {
    config::validate_network_name(network)?;
    let mut r = Report {
        failed: 0,
        json,
        checks: Vec::new(),
        details: Vec::new(),
    };
    if !json {
        println!("p2pvpn doctor: network {network}\n");
    }
    check_privileges(&mut r);
    check_tun(&mut r);
    let settings = match config::load(dirs, network) {
        Ok(s) => {
            r.ok(&format!("config {}", dirs.config_file(network).display()));
            Some(s)
        }
        Err(e) => {
            r.fail(
                &format!("config: {e:#}"),
                "join the network with `p2pvpn join TOKEN`",
            );
            None
        }
    };
    if let Some(s) = &settings {
        if let Some(server) = s.servers.first().copied() {
            let tcp = check_server_tcp(&mut r, server).await;
            check_server_udp(&mut r, server, tcp).await;
        }
    }
    let status =
        match control_socket::request(&dirs.control_socket(network), network, Request::Status)
            .await
            .and_then(|reply| {
                serde_json::from_str::<NodeStatus>(&reply)
                    .context("the node sent an unreadable status")
            }) {
            Ok(s) => {
                r.ok("the node is running (control socket answers)");
                Some(s)
            }
            Err(e) => {
                r.fail(
                    &format!("the node is not running: {e:#}"),
                    &format!("start it with `sudo p2pvpn up --network {network}`"),
                );
                None
            }
        };
    if let Some(s) = &status {
        check_node(&mut r, s);
        if let Some(name) = peer {
            match s
                .peers
                .iter()
                .find(|p| p.name == name || p.virtual_ip.to_string() == name)
            {
                Some(p) => explain_peer(&mut r, s, p),
                None => r.fail(
                    &format!("no peer named {name:?} in {network}"),
                    "see `p2pvpn status` for the peers' names and addresses",
                ),
            }
        }
    }
    if json {
        let report = serde_json::json!({
            "network": network,
            "peer": peer,
            "problems": r.failed,
            "checks": r.checks,
            "peer_details": r.details,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!();
    if r.failed == 0 {
        println!("no problems found");
        return Ok(());
    }
    let found = format!("{} found", super::table::count(r.failed as u64, "problem"));
    println!("{found}");
    // A non-zero exit lets scripts and monitoring act on it (`doctor --help`, Exit status).
    Err(super::exit_code::Exit {
        code: super::exit_code::PROBLEMS_FOUND,
        message: format!("doctor: {found}"),
    }
    .into())
}

/// The privilege and the TUN driver `up` needs; what they are is per OS (`crate::os`).
fn check_privileges(r: &mut Report) {
    match crate::os::privilege_report() {
        Ok(line) => r.ok(line),
        Err((problem, fix)) => r.fail(problem, fix),
    }
}

fn check_tun(r: &mut Report) {
    match crate::os::tun_driver_report() {
        Ok(line) => r.ok(line),
        Err((problem, fix)) => r.fail(problem, fix),
    }
}

/// Whether the server's control port accepts a TCP connection.
async fn check_server_tcp(r: &mut Report, server: SocketAddr) -> bool {
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(server)).await;
    let answered = matches!(outcome, Ok(Ok(_)));
    match outcome {
        Ok(Ok(_)) => r.ok(&format!(
            "server {server} answers over TCP (control channel)"
        )),
        Ok(Err(e)) => r.fail(
            &format!("server {server} over TCP: {e}"),
            "check that the server runs and that outbound TCP to that port is allowed",
        ),
        Err(_) => r.fail(
            &format!("server {server} over TCP: no answer within 3 s"),
            "a firewall drops TCP to that port; allow it, or ask the server's owner for a TLS \
             address on 443 (`server --tls-listen`) and join again",
        ),
    }
    answered
}

/// `tcp`: the server answered over TCP; without that, silence over UDP says nothing about UDP.
async fn check_server_udp(r: &mut Report, server: SocketAddr, tcp: bool) {
    let outcome = async {
        let socket = tokio::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
        let tid = TransactionId::random(&mut rand::rngs::OsRng);
        let request = binding_request(tid, ChangeRequest::NONE, None);
        let mut buf = [0u8; 1500];
        for _ in 0..3 {
            socket.send_to(&request, server).await?;
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await
            {
                if let Ok(resp) = parse_binding_response(&buf[..n]) {
                    if resp.tid == tid {
                        return Ok(Some(resp.mapped));
                    }
                }
            }
        }
        Ok::<_, std::io::Error>(None)
    }
    .await;
    match outcome {
        Ok(Some(mapped)) => r.ok(&format!(
            "server {server} answers over UDP (STUN); this host is seen as {mapped}"
        )),
        Ok(None) if !tcp => r.fail(
            &format!(
                "server {server} unreachable: no STUN answer over UDP and no TCP connection \
                 either, so the server is down or the address is wrong (not a UDP block)"
            ),
            "start the server, or check its address in the network's config",
        ),
        Ok(None) => r.fail(
            &format!("server {server} over UDP: no STUN answer in 3 s"),
            "outbound UDP is blocked: allow UDP to the server's port for direct paths and the \
             UDP relay; until then peers are reached through the TCP/TLS relay",
        ),
        Err(e) => r.fail(
            &format!("server {server} over UDP: {e}"),
            "check the network",
        ),
    }
}

fn check_node(r: &mut Report, s: &NodeStatus) {
    if s.server.connected {
        r.ok("the node is registered with the server");
    } else {
        r.fail(
            "the node is not registered with the server",
            "see the server checks above, and the node's log (journalctl -u p2pvpn@NETWORK)",
        );
    }
    let iface = std::path::Path::new("/sys/class/net").join(&s.interface);
    if iface.exists() {
        r.ok(&format!("interface {} exists", s.interface));
    } else if s.virtual_ip.is_some() {
        r.fail(
            &format!("interface {} is missing", s.interface),
            "restart the node (`p2pvpn down`, then `up`); another program may have removed it",
        );
    }
    if let Some(cidr) = s.cidr {
        if has_route(&s.interface, cidr.network(), cidr.netmask()) {
            r.ok(&format!("route {cidr} via {}", s.interface));
        } else if s.virtual_ip.is_some() {
            r.fail(
                &format!("no route for {cidr} via {}", s.interface),
                "restart the node; check that no other VPN claims the same range",
            );
        }
    }
    check_kernel_routes(r, s);
    if let Some(nat) = &s.nat {
        r.note(&format!("this node's NAT: {}", nat.short()));
    }
    if let Some(m) = &s.port_mapping {
        r.note(&format!(
            "the gateway forwards {} to this node ({})",
            m.addr, m.technique
        ));
    }
}

/// Which interface the kernel really sends each peer's address to (as `ip route get` would):
/// a more specific route of another VPN or LAN steals traffic while the node looks healthy.
fn check_kernel_routes(r: &mut Report, s: &NodeStatus) {
    let (Some(cidr), Some(ours)) = (s.cidr, s.virtual_ip) else {
        return;
    };
    // With no peers yet, any other address of the range shows where the kernel sends it.
    let mut addrs: Vec<Ipv4Addr> = s.peers.iter().map(|p| p.virtual_ip).collect();
    if addrs.is_empty() {
        addrs.extend(cidr.hosts().find(|a| *a != ours));
    }
    let mut bad = Vec::new();
    for addr in &addrs {
        match crate::io::routes::kernel_route(*addr) {
            Ok(route) if route.as_ref().is_some_and(|r| r.interface == s.interface) => {}
            Ok(route) => bad.push((*addr, route)),
            Err(e) => return r.note(&format!("cannot ask the kernel for routes: {e:#}")),
        }
    }
    for (addr, route) in &bad {
        let via = route
            .as_ref()
            .map_or("no route at all".to_string(), |r| format!("route {r}"));
        r.fail(
            &format!("the kernel sends {addr} to {via}, not to {}", s.interface),
            "another VPN or LAN claims part of the network's range: remove that route, or ask \
             the server's admin for a network with another range",
        );
    }
    if bad.is_empty() {
        let checked: Vec<String> = addrs.iter().take(4).map(|a| a.to_string()).collect();
        r.ok(&format!(
            "the kernel sends {}{} to {}",
            checked.join(", "),
            if addrs.len() > 4 { ", ..." } else { "" },
            s.interface
        ));
    }
}

/// Whether /proc/net/route has `dst/mask` on `iface` (values are little-endian hex).
fn has_route(iface: &str, dst: Ipv4Addr, mask: Ipv4Addr) -> bool {
    let hex = |ip: Ipv4Addr| format!("{:08X}", u32::from_le_bytes(ip.octets()));
    std::fs::read_to_string("/proc/net/route")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .any(|f| f.len() > 7 && f[0] == iface && f[1] == hex(dst) && f[7] == hex(mask))
}

fn explain_peer(r: &mut Report, s: &NodeStatus, p: &PeerStatus) {
    r.say(format!("\npeer {} ({})", printable(&p.name), p.virtual_ip));
    let path = match (&p.path, &p.technique_detail, &p.relay) {
        (Path::Direct, Some(d), _) => d.clone(),
        (Path::Relay, _, Some(t)) => format!("relay ({t})"),
        (path, _, _) => path.as_str().to_string(),
    };
    r.say(format!("  path       {path}"));
    for line in &p.access {
        r.say(format!("  {line}"));
    }
    let mine = s.nat.clone().unwrap_or_default();
    let theirs = p.nat.clone().unwrap_or_default();
    r.say(format!("  this node  {}", describe(&mine)));
    r.say(format!("  the peer   {}", describe(&theirs)));
    r.say(format!(
        "  punching   {}, {}{}",
        super::table::count(p.punch.attempts, "attempt"),
        super::table::count(p.punch.probes_sent, "probe"),
        p.punch
            .time_to_direct_ms
            .map(|ms| format!(", direct after {ms} ms"))
            .unwrap_or_default()
    ));
    if p.path == Path::Offline {
        let seen = super::table::ago(p.last_seen_unix, crate::io::unix_now());
        r.fail(
            &format!("{} is offline (last seen {seen})", printable(&p.name)),
            "start the node on the peer (`p2pvpn up`)",
        );
        return;
    }
    r.say("  techniques for this pair (as the planner chooses them):".into());
    let mut rows = techniques(&mine, &theirs);
    if let Some(t @ Technique::PortMapping(_)) = p.technique {
        rows.push((t, "a gateway's port mapping, probed right after LAN".into()));
    }
    for (technique, line) in rows {
        let outcome = match (&p.path, p.technique) {
            (Path::Direct, Some(won)) if won == technique => "won",
            (Path::Direct, _) => "not needed",
            _ if p.punch.attempts == 0 => "not tried yet",
            _ => "tried, no answer",
        };
        r.say(format!("    {:<16} {line}: {outcome}", technique.as_str()));
    }
    if let Some(why) = &p.punch.last_failure {
        r.say(format!("  last failure: {why}"));
    }
    if p.path != Path::Direct {
        r.fail(
            &format!("no direct path to {}", printable(&p.name)),
            &fix_for(&mine, &theirs, s.listen_port),
        );
    } else {
        r.ok(&format!("direct path to {}", printable(&p.name)));
    }
}

fn describe(p: &NatProfile) -> String {
    let public = p
        .public
        .map(|a| format!(", public {a}"))
        .unwrap_or_default();
    format!(
        "{} (mapping {}, filtering {}, ports {}){public}",
        p.short(),
        p.mapping,
        p.filtering,
        p.allocation
    )
}

/// What the planner does for this pair, from this node's side.
fn techniques(mine: &NatProfile, theirs: &NatProfile) -> Vec<(Technique, String)> {
    let mut candidates = Vec::new();
    if let Some(public) = theirs.public {
        candidates.push(Candidate {
            addr: public,
            technique: Technique::ServerReflexive,
        });
    }
    let prediction = match (theirs.allocation, theirs.public) {
        (PortAllocation::Sequential { delta }, Some(public)) => {
            Some(crate::core::punch::Prediction {
                ip: public.ip(),
                next_port: public.port(),
                delta,
            })
        }
        _ => None,
    };
    let plan = plan(&PlanInput {
        mine,
        theirs,
        their_candidates: &candidates,
        their_prediction: prediction,
        birthday: true,
    });
    let mut out = vec![
        (
            Technique::Lan,
            "the peer's LAN addresses, TTL-primed".to_string(),
        ),
        (
            Technique::ServerReflexive,
            "the peer's public address, TTL-primed".to_string(),
        ),
        (
            Technique::PeerReflexive,
            "answering the address the peer's probes come from".to_string(),
        ),
    ];
    let window = plan
        .targets
        .iter()
        .filter(|t| t.technique == Technique::Predicted)
        .count();
    if window > 0 {
        out.push((
            Technique::Predicted,
            format!("a window of {window} predicted ports"),
        ));
    }
    match &plan.sweep {
        Some(Sweep::Range { low, high, .. }) => out.push((
            Technique::PortBlock,
            format!("sweeping the peer's port block {low}-{high}"),
        )),
        Some(Sweep::Random { count, .. }) => out.push((
            Technique::Birthday,
            format!("{count} random probes while the peer holds 256 sockets open"),
        )),
        None => {}
    }
    if plan.birthday_sockets > 0 {
        out.push((
            Technique::Birthday,
            format!("{} sockets open toward the peer", plan.birthday_sockets),
        ));
    }
    out
}

fn fix_for(mine: &NatProfile, theirs: &NatProfile, listen_port: u16) -> String {
    if mine.server_unreachable {
        return "the server was unreachable when this node measured its NAT: start the server or \
                check its address; the node measures again once it answers"
            .into();
    }
    if mine.udp_blocked {
        return "UDP from this host is blocked: allow outbound UDP (the node then punches and uses \
                the UDP relay); until then traffic takes the TCP/TLS relay"
            .into();
    }
    if theirs.udp_blocked {
        return "the peer's UDP is blocked: allow outbound UDP on the peer's network".into();
    }
    let unpredictable =
        |p: &NatProfile| !p.is_cone() && matches!(p.allocation, PortAllocation::Random);
    if unpredictable(mine) {
        return format!(
            "this host's NAT picks a random port for every destination: forward UDP port \
             {listen_port} on the router to this host (set `listen_port` in the network's config \
             if it is 0), or enable UPnP, NAT-PMP or PCP on the router (the node then asks it \
             for a port by itself); meanwhile the relay carries the traffic"
        );
    }
    if unpredictable(theirs) {
        return "the peer's NAT picks a random port for every destination: forward the peer's \
                UDP listen port on its router, or enable UPnP, NAT-PMP or PCP there; meanwhile \
                the relay carries the traffic"
            .into();
    }
    "punching should work for these NATs; it retries with backoff (see the last failure above), \
     and the relay carries the traffic meanwhile"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::nat::{Filtering, Mapping};

    fn nat(mapping: Mapping, allocation: PortAllocation) -> NatProfile {
        NatProfile {
            behind_nat: Some(true),
            public: Some("203.0.113.5:40000".parse().unwrap()),
            mapping,
            filtering: Filtering::AddressAndPortDependent,
            allocation,
            ..NatProfile::default()
        }
    }

    #[test]
    fn the_fix_names_the_side_that_needs_it() {
        let rnd = nat(Mapping::AddressAndPortDependent, PortAllocation::Random);
        let prc = nat(Mapping::EndpointIndependent, PortAllocation::Preserving);
        let fix = fix_for(&rnd, &rnd, 51820);
        assert!(fix.contains("forward UDP port 51820"), "{fix}");
        assert!(fix_for(&prc, &rnd, 1).contains("the peer's NAT"));
        let blocked = NatProfile {
            udp_blocked: true,
            ..NatProfile::default()
        };
        assert!(fix_for(&blocked, &prc, 1).contains("UDP from this host is blocked"));
    }

    #[test]
    fn techniques_follow_the_planner() {
        let prc = nat(Mapping::EndpointIndependent, PortAllocation::Preserving);
        let seq = nat(
            Mapping::AddressAndPortDependent,
            PortAllocation::Sequential { delta: 1 },
        );
        let rnd = nat(Mapping::AddressAndPortDependent, PortAllocation::Random);
        let names = |v: Vec<(Technique, String)>| v.into_iter().map(|(t, _)| t).collect::<Vec<_>>();
        assert!(names(techniques(&prc, &seq)).contains(&Technique::Predicted));
        assert!(names(techniques(&prc, &rnd)).contains(&Technique::Birthday));
        assert!(!names(techniques(&prc, &prc)).contains(&Technique::Birthday));
    }
}
