//! The node's state as `status` shows it, as plain data (serialised for `status --json`).

use super::Node;
use crate::core::counters::DropCounters;
use crate::core::keys::PublicKey;
use crate::core::nat::NatProfile;
use crate::core::peers::{Path, Peer};
use crate::core::punch::session::PunchStatus;
use crate::core::punch::Technique;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerStatus {
    pub address: Option<SocketAddr>,
    /// The control channel runs inside TLS (the node's plain TCP attempts failed).
    #[serde(default)]
    pub tls: bool,
    pub connected: bool,
    /// The deployment's other servers, in the order this node would fail over to them
    /// (`core::rendezvous::deployment`); empty with one server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<SocketAddr>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerStatus {
    pub name: String,
    pub virtual_ip: Ipv4Addr,
    /// The peer's IPv6 overlay address, when its network has a prefix.
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    pub public_key: PublicKey,
    pub path: Path,
    /// The relay transport ("udp", "tcp", "tls") when `path` is relay.
    #[serde(default)]
    pub relay: Option<String>,
    pub online: bool,
    pub endpoint: Option<SocketAddr>,
    pub rtt_ms: Option<u32>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub last_handshake_unix: Option<u64>,
    /// The same instant as a date (RFC 3339, UTC), for people reading the JSON.
    #[serde(default)]
    pub last_handshake: Option<String>,
    /// When the peer was last known up (the server said it was online, or a packet came from
    /// it); `None` if not since this node started. Now, for an online peer.
    #[serde(default)]
    pub last_seen_unix: Option<u64>,
    /// `last_seen_unix` as a date (RFC 3339, UTC).
    #[serde(default)]
    pub last_seen: Option<String>,
    /// How the direct path was found, and a line saying so ("direct (predicted, +3)").
    #[serde(default)]
    pub technique: Option<Technique>,
    #[serde(default)]
    pub technique_detail: Option<String>,
    /// The peer's NAT as it measured it.
    #[serde(default)]
    pub nat: Option<NatProfile>,
    #[serde(default)]
    pub punch: PunchStatus,
    /// The largest inner packet the path to the peer carries, as probed (RFC 8899); `None`
    /// until the search confirms a size.
    #[serde(default)]
    pub path_mtu: Option<u16>,
    /// Where that search is: "idle", "searching", "complete", or "unanswered" (the peer does
    /// not answer echo requests; nothing is enforced beyond the TUN MTU).
    #[serde(default)]
    pub path_mtu_search: String,
    /// Why what this peer sends passes this node's access rules or not (`core::acl`); empty
    /// when the network has no rules.
    #[serde(default)]
    pub access: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub network: String,
    pub name: Option<String>,
    pub virtual_ip: Option<Ipv4Addr>,
    pub cidr: Option<Ipv4Net>,
    /// This node's IPv6 address with the network's prefix length (`fd..::a4d:1/64`).
    #[serde(default)]
    pub ipv6: Option<Ipv6Net>,
    pub public_key: PublicKey,
    /// Filled in by the driver, which owns the socket and the device.
    pub listen_port: u16,
    pub interface: String,
    pub server: ServerStatus,
    /// This node's NAT, once measured.
    #[serde(default)]
    pub nat: Option<NatProfile>,
    /// The public address the gateway forwards to this node (`core::portmap`), if any.
    #[serde(default)]
    pub port_mapping: Option<crate::core::punch::Candidate>,
    pub peers: Vec<PeerStatus>,
    pub drops: DropCounters,
    /// The TUN device's MTU (the largest inner packet, every path search's upper bound).
    #[serde(default)]
    pub mtu: u16,
    /// The DNS responder for the network's names, when it runs (filled in by the driver).
    #[serde(default)]
    pub dns: Option<crate::core::dns::DnsStatus>,
    /// The access rules this node enforces on what its peers send, with their counts.
    #[serde(default)]
    pub access: Option<crate::core::acl::AclStatus>,
    /// The TX/RX data workers' counters, when `[dataplane] workers = 2` (filled in by the
    /// driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<super::workers::WorkersStatus>,
}

impl Node {
    /// A snapshot; `unix_now` turns handshake ages into timestamps.
    pub fn status(&self, unix_now: u64) -> NodeStatus {
        let tls = self.control.current_server().is_some_and(|s| s.tls);
        let mut peers: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|p| {
                let stats = p.tunnel.stats(self.now_hint);
                let route = self.route_to(p);
                let path = shown_path(p, route, self.now_hint);
                let ago = |t: Instant| self.now_hint.saturating_duration_since(t).as_secs();
                let last_seen_unix = if p.is_offline(self.now_hint) {
                    p.last_seen.map(|t| unix_now.saturating_sub(ago(t)))
                } else {
                    Some(unix_now)
                };
                let last_handshake_unix = stats
                    .since_handshake
                    .map(|d| unix_now.saturating_sub(d.as_secs()));
                PeerStatus {
                    name: p.name.clone(),
                    virtual_ip: p.virtual_ip,
                    ipv6: p.ipv6,
                    public_key: p.key,
                    path,
                    relay: match path {
                        Path::Relay => route.and_then(|r| r.relay_name(tls)),
                        _ => None,
                    }
                    .map(String::from),
                    online: p.online,
                    endpoint: match (path, route) {
                        // Where it was is no address to reach it at.
                        (Path::Offline, _) => None,
                        (Path::Relay, Some(super::Route::RelayStream { .. })) => {
                            self.control.current_server().map(|s| s.addr)
                        }
                        (Path::Relay, _) => self.stun_server,
                        (_, Some(super::Route::Direct { dst, .. })) => Some(dst),
                        _ => p.endpoint,
                    },
                    rtt_ms: p.rtt_ms(),
                    rx_bytes: stats.rx_bytes,
                    tx_bytes: stats.tx_bytes,
                    last_handshake_unix,
                    last_handshake: last_handshake_unix.map(rfc3339),
                    last_seen_unix,
                    last_seen: last_seen_unix.map(rfc3339),
                    technique: p.punch.nominated().map(|n| n.technique),
                    technique_detail: p.punch.nominated().map(|n| n.detail.clone()),
                    nat: p.punch.their_nat.clone(),
                    punch: p.punch.status().clone(),
                    path_mtu: self.path_mtu(p.virtual_ip).mtu,
                    path_mtu_search: self.path_mtu(p.virtual_ip).phase.as_str().to_string(),
                    access: {
                        let acl = self.acl.lock();
                        match acl.policy() {
                            Some(_) => acl.explain(p.virtual_ip, &p.name, self.now_hint),
                            None => Vec::new(),
                        }
                    },
                }
            })
            .collect();
        peers.sort_by_key(|p| p.virtual_ip);
        NodeStatus {
            network: self.network.clone(),
            name: self.assignment.as_ref().map(|a| a.name.clone()),
            virtual_ip: self.assignment.as_ref().map(|a| a.virtual_ip),
            cidr: self.assignment.as_ref().map(|a| a.cidr),
            ipv6: self.assignment.as_ref().and_then(|a| a.ipv6),
            public_key: self.public,
            listen_port: 0,
            interface: String::new(),
            server: ServerStatus {
                address: self.control.current_server().map(|s| s.addr),
                tls: self.control.current_server().is_some_and(|s| s.tls),
                connected: self.control.is_registered(),
                others: self.other_servers(),
            },
            nat: self.discovery.profile().cloned(),
            port_mapping: self.port_mapping,
            peers,
            drops: self.drops.clone(),
            mtu: self.tun_mtu(),
            dns: None,
            access: Some(self.acl.lock().status(self.now_hint)),
            workers: None,
        }
    }

    pub fn path_of(&self, ip: Ipv4Addr) -> Option<Path> {
        self.peers
            .iter()
            .find(|p| p.virtual_ip == ip)
            .map(|p| shown_path(p, self.route_to(p), self.now_hint))
    }
}

/// The path `status` and the path-change log show: `offline` once the server says the peer
/// left and nothing came from it since (its old direct path would otherwise read `direct`, then
/// `connecting` for ever), else the route's.
pub(super) fn shown_path(peer: &Peer, route: Option<super::Route>, now: Instant) -> Path {
    if peer.is_offline(now) {
        Path::Offline
    } else {
        super::relaying::path(peer, route, now)
    }
}

/// Unix seconds as an RFC 3339 date in UTC, e.g. `2026-11-26T13:20:05Z`.
pub fn rfc3339(unix: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(t).to_string()
}
