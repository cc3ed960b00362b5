//! The node's side of the data workers (the data thread of `[dataplane] workers = 1` on our
//! engine on Linux, or the TX and RX workers of `workers = 2`; issue 11): it builds the
//! `KeyTable` they use, publishes a new one whenever what it would contain
//! changes, and reads back what the workers did (the `Activity` counters) on its timer, so that
//! keepalives, rekeys, `status` and the path MTU search see the traffic the core no longer
//! carries.
//!
//! Which peers the workers may carry: a peer with a session on our engine whose current path is
//! direct on the main socket (IPv4 or IPv6: the driver sends from the half of the destination's
//! family, `io::main_socket`) or the server's UDP relay (each message framed with the peer's
//! relay id), access rules or not: the table shares the core's rule state
//! (`core::acl::shared`), recording each packet sealed as a flow and checking each packet opened.
//! Both of the peer's overlay addresses are routed through the table. One size limit serves both
//! families: the table sends what fits the path MTU and leaves larger packets to the core, whose
//! gate answers IPv4 with "fragmentation needed" and sends IPv6 up to 1280 bytes whatever the path
//! (RFC 8200 §5; `pmtu_gate`). Everything else (the relay over the control stream, probing sockets,
//! handshakes, the responder's unconfirmed session, datagrams from a new address) falls back to the
//! core.
//!
//! Publishing is by comparison, not by event: `poll_key_table` derives a small signature of the
//! table from the peers (key identities, path, MTUs) and publishes when it differs from the last
//! one. So every change that matters (handshake done, rekey, a key too old to send, path
//! direct <-> relay, path MTU change, peer removed) is caught in one place,
//! however it came about. Key identities are `Arc` addresses, sound because the last table is
//! kept and holds those `Arc`s alive.

use super::Node;
use crate::core::keys::PublicKey;
use crate::core::node::Route;
use crate::core::transmit::SocketId;
use crate::core::wg::table::{Activity, KeyTable, RecvEntry, SendEntry};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `status --json` shows of the workers (`workers.tx`, `workers.rx`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkersStatus {
    pub tx: WorkerStatus,
    pub rx: WorkerStatus,
}

/// One worker thread's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerStatus {
    /// Packets sealed (TX) or datagrams opened (RX) on that thread.
    pub crypto_packets: u64,
    /// Packets or datagrams handed to the node task.
    pub to_core: u64,
    /// Of those, dropped because the node task's channel was full.
    pub to_core_full: u64,
}

/// The workers' state in the core.
pub(super) struct Workers {
    enabled: bool,
    /// Time zero of the workers' `now_ms` (their activity timestamps).
    origin: Instant,
    activity: HashMap<PublicKey, Seen>,
    /// What the last published table was made of, and the table (which keeps the keys alive).
    last: Option<(Vec<Sig>, Vec<IpAddr>)>,
    table: KeyTable,
}

/// A peer's activity counters and the values the core read from them last.
struct Seen {
    activity: Arc<Activity>,
    sent: u64,
    received: u64,
    big: u64,
    tx: u64,
    rx: u64,
}

impl Seen {
    fn new() -> Self {
        Seen {
            activity: Arc::new(Activity::default()),
            sent: 0,
            received: 0,
            big: 0,
            tx: 0,
            rx: 0,
        }
    }
}

/// One peer's part of a table.
#[derive(Debug, PartialEq, Eq)]
struct Sig {
    ip: Ipv4Addr,
    ipv6: Option<Ipv6Addr>,
    send: Option<usize>,
    recv: Vec<usize>,
    dst: SocketAddr,
    relay: Option<u32>,
    mtu: u16,
    path_mtu: Option<u16>,
}

impl Workers {
    pub(super) fn new(origin: Instant) -> Self {
        Workers {
            enabled: false,
            origin,
            activity: HashMap::new(),
            last: None,
            table: KeyTable::default(),
        }
    }
}

/// What a worker-relative millisecond stamp means on the core's clock (0: never).
fn at(origin: Instant, ms: u64) -> Option<Instant> {
    (ms != 0).then(|| origin + Duration::from_millis(ms))
}

impl Node {
    /// Switches the workers on: from now on `poll_key_table` publishes tables.
    pub fn enable_workers(&mut self) {
        self.workers.enabled = true;
    }

    /// Time zero for the workers' `now_ms`: they stamp activity with milliseconds since it
    /// (never 0: a stamp of 0 means "never", so workers use at least 1).
    pub fn worker_origin(&self) -> Instant {
        self.workers.origin
    }

    /// Drops the workers decided (replays, forgeries, spoofed sources), for `status`.
    pub fn count_drops(&mut self, reason: crate::core::counters::DropReason, n: u64) {
        self.drops.bump_by(reason, n);
    }

    /// The table the workers should use, when it differs from the last one returned.
    pub fn poll_key_table(&mut self, now: Instant) -> Option<KeyTable> {
        if !self.workers.enabled {
            return None;
        }
        let local: Vec<IpAddr> = self
            .assignment
            .iter()
            .flat_map(|a| {
                std::iter::once(IpAddr::V4(a.virtual_ip))
                    .chain(a.ipv6.map(|n| IpAddr::V6(n.addr())))
            })
            .collect();
        let mut sigs = Vec::new();
        let mut parts = Vec::new();
        if !local.is_empty() {
            for peer in self.peers.iter() {
                // Direct, or through the server's UDP relay (a header before each message);
                // never the control stream's relay, whose frames go out on the node task.
                let (socket, dst, relay) = match self.route_to(peer) {
                    Some(Route::Direct { socket, dst }) => (socket, dst, None),
                    Some(Route::RelayUdp { server, id }) => (SocketId::MAIN, server, Some(id)),
                    _ => continue,
                };
                // Either half of the main socket (the driver sends by the destination's
                // family); probing sockets stay with the node task.
                if socket != SocketId::MAIN {
                    continue;
                }
                let Some(keys) = peer.tunnel.worker_keys(now) else {
                    continue;
                };
                let path_mtu = self.pmtu_of(peer.virtual_ip);
                let sig = Sig {
                    ip: peer.virtual_ip,
                    ipv6: peer.ipv6,
                    send: keys.send.as_ref().map(|k| Arc::as_ptr(k) as usize),
                    recv: keys.recv.iter().map(|k| Arc::as_ptr(k) as usize).collect(),
                    dst,
                    relay,
                    mtu: path_mtu.unwrap_or(self.tun_mtu()),
                    path_mtu,
                };
                if sig.send.is_none() && sig.recv.is_empty() {
                    continue;
                }
                sigs.push(sig);
                parts.push((peer.key, peer.ipv6, keys));
            }
        }
        sigs.sort_by_key(|s| s.ip);
        parts.sort_by_key(|(k, ..)| *k);
        let changed = self
            .workers
            .last
            .as_ref()
            .is_none_or(|(s, l)| *s != sigs || *l != local);
        if !changed {
            return None;
        }
        let mut table = KeyTable::default();
        table.set_local(&local);
        table.set_acl(self.acl.clone(), self.workers.origin);
        for (key, ipv6, keys) in parts {
            let Some(peer) = self.peers.get(&key) else {
                continue;
            };
            let Some(sig) = sigs.iter().find(|s| s.ip == peer.virtual_ip) else {
                continue;
            };
            let activity = self
                .workers
                .activity
                .entry(key)
                .or_insert_with(Seen::new)
                .activity
                .clone();
            let mut allowed = vec![IpNet::from(IpAddr::V4(peer.virtual_ip))];
            allowed.extend(ipv6.map(|v6| IpNet::from(IpAddr::V6(v6))));
            if let Some(send) = keys.send {
                let mut addresses = vec![IpAddr::V4(peer.virtual_ip)];
                addresses.extend(ipv6.map(IpAddr::V6));
                table.set_send(
                    &addresses,
                    Arc::new(SendEntry {
                        peer: peer.virtual_ip,
                        key: send,
                        socket: SocketId::MAIN,
                        dst: sig.dst,
                        relay: sig.relay,
                        mtu: sig.mtu,
                        activity: activity.clone(),
                    }),
                );
            }
            for recv in keys.recv {
                table.add_recv(Arc::new(RecvEntry {
                    peer: peer.virtual_ip,
                    key: recv,
                    from: sig.dst,
                    relay: sig.relay,
                    allowed: allowed.clone(),
                    path_mtu: sig.path_mtu,
                    activity: activity.clone(),
                }));
            }
        }
        // Peers gone from the network: their activity is read no more.
        let peers = &self.peers;
        self.workers.activity.retain(|k, _| peers.get(k).is_some());
        self.workers.last = Some((sigs, local));
        self.workers.table = table.clone();
        Some(table)
    }

    /// Reads what the workers did since the last call into the sessions, the peers and the
    /// path MTU search (on the timer tick, before the session timers run).
    pub(super) fn read_worker_activity(&mut self) {
        let origin = self.workers.origin;
        for (key, seen) in self.workers.activity.iter_mut() {
            let a = &seen.activity;
            let (sent, received, big, tx, rx) = (
                a.sent_at_ms.load(Ordering::Relaxed),
                a.received_at_ms.load(Ordering::Relaxed),
                a.big_sent_at_ms.load(Ordering::Relaxed),
                a.tx_bytes.load(Ordering::Relaxed),
                a.rx_bytes.load(Ordering::Relaxed),
            );
            let new_sent = (sent != seen.sent).then(|| at(origin, sent)).flatten();
            let new_received = (received != seen.received)
                .then(|| at(origin, received))
                .flatten();
            let new_big = (big != seen.big).then(|| at(origin, big)).flatten();
            let (dtx, drx) = (tx.wrapping_sub(seen.tx), rx.wrapping_sub(seen.rx));
            *seen = Seen {
                activity: seen.activity.clone(),
                sent,
                received,
                big,
                tx,
                rx,
            };
            if new_sent.is_none() && new_received.is_none() {
                continue;
            }
            let Some(peer) = self.peers.get_mut(key) else {
                continue;
            };
            // As the node's own loop: a relayed message proves neither the peer's direct path
            // nor that UDP reaches past our NAT.
            let direct = peer.punch.nominated().is_some();
            peer.tunnel
                .note_worker_activity(new_sent, new_received, dtx, drx);
            if let Some(t) = new_received {
                peer.note_heard(t);
                if direct {
                    self.discovery.note_udp_works(t);
                }
            }
            if let (Some(t), true) = (new_sent, direct) {
                peer.punch.note_tx(t);
            }
            if let Some(t) = new_big {
                self.pmtu.note_big_tx(peer.virtual_ip, t);
            }
        }
    }

    /// An inner packet a worker opened but left to the core ([`Opened::Core`]: IPv4 ICMP, which
    /// may be a path MTU probe, its answer or a `p2pvpn ping` reply). Returns the packet when it
    /// is for the TUN device after all.
    ///
    /// [`Opened::Core`]: crate::core::wg::table::Opened::Core
    pub fn handle_worker_packet<'a>(&mut self, packet: &'a [u8], now: Instant) -> Option<&'a [u8]> {
        self.now_hint = now;
        let Ok(ends) = crate::core::ip::ip_endpoints(packet) else {
            return None;
        };
        let IpAddr::V4(peer_ip) = ends.src else {
            return Some(packet);
        };
        let key = self.peers.by_addr(ends.src)?;
        // The workers carry direct paths and the server's UDP relay only.
        let detail = |node: &Node| {
            node.peers
                .get(&key)
                .and_then(|p| p.punch.nominated())
                .map_or_else(|| "relay (udp)".to_string(), |n| n.detail.clone())
        };
        let consumed = self.take_pmtu_answer(packet, peer_ip, now)
            || self.answer_pmtu_probe(packet, peer_ip)
            || self.take_ping_reply(packet, peer_ip, detail, now);
        if consumed {
            return None;
        }
        // What the table handed over unchecked because the core might consume it: the access
        // rules now, as the core's own receive path does after its probes and pings.
        if self.acl.lock().inbound(peer_ip, packet, now).is_err() {
            self.drops
                .bump(crate::core::counters::DropReason::AccessDenied);
            return None;
        }
        Some(packet)
    }
}
