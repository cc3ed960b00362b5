//! The key table the core publishes to the data workers (issue 11, ARCHITECTURE.md): per
//! peer with an established session on a direct path or on the server's UDP relay, the sending
//! key and where datagrams go, and per receiving session index, the receiving key and the inner
//! sources that peer may use.
//!
//! Ownership: only the core builds a [`KeyTable`] and [`Published::store`]s it; workers
//! [`Published::load`] it once per batch and use it read-only. A table is immutable once published;
//! the only mutable state reached through it is each key's own (the sending counter, atomic; the
//! replay window, behind its lock), the activity counters (relaxed atomics the core reads on its
//! timer) and the node's access rule state (`core::acl::shared`, behind its lock: every packet
//! sealed is recorded as a flow, every packet opened is checked against the rules, exactly as the
//! core does). Anything the table cannot handle falls back to the core ([`Sealed::ToCore`],
//! [`Opened::ToCore`]): handshakes, cookies, unknown indices (an old session the core still holds,
//! or none), packets for peers without an entry (no session, relayed on the control stream, routed
//! subnets), packets larger than the path MTU (the core answers with ICMP), outgoing TCP SYNs (the
//! core clamps their MSS, as today; they are rare) and a key that ran out of counters. Received
//! SYNs are clamped here, in place, because a datagram once opened cannot be handed to the core to
//! open again (its counter is spent); for the same reason an opened packet the core must see (IPv4
//! ICMP echoes under the path MTU probes' or `p2pvpn ping`'s identifier) comes back as
//! [`Opened::Core`], already decrypted. A datagram from another address than the peer's path goes
//! to the core unopened, so the core sees the peer roam (whitepaper §2.1).

use super::transport::{receiver_index, RecvKey, SendKey, TransportError};
use crate::core::acl::shared::SharedAcl;
use crate::core::counters::DropReason;
use crate::core::ip::ip_endpoints;
use crate::core::pmtu::mss;
use crate::core::pmtu::search::BASE_PLPMTU;
use crate::core::relay::wire::{self, RelayDatagram, DATA_HEADER};
use crate::core::transmit::SocketId;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What the workers report per peer, for the core's keepalive, rekey and `status` decisions.
/// Times are milliseconds since an origin the core chose (the workers are passed `now_ms`).
#[derive(Debug, Default)]
pub struct Activity {
    pub sent_at_ms: AtomicU64,
    /// The last packet above the PMTU search's base size (the core's `last_big_tx`: the search
    /// only probes upward while the peer is sent big packets).
    pub big_sent_at_ms: AtomicU64,
    pub received_at_ms: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_bytes: AtomicU64,
}

/// How one peer's packets leave: its current sending key and path (direct, or the server's UDP
/// relay).
pub struct SendEntry {
    /// The peer's overlay IPv4 address, which names it in the access rules' flow table.
    pub peer: Ipv4Addr,
    pub key: Arc<SendKey>,
    pub socket: SocketId,
    /// The peer's direct address, or the server's relay address.
    pub dst: SocketAddr,
    /// Through the server's UDP relay: the peer's relay id, for the ToPeer header
    /// (`core::relay::wire`) written before each message.
    pub relay: Option<u32>,
    /// The largest inner packet the path takes (the core's PMTU result).
    pub mtu: u16,
    pub activity: Arc<Activity>,
}

/// How one receiving session's datagrams are accepted.
pub struct RecvEntry {
    /// The peer's overlay IPv4 address (the access rules' name for it).
    pub peer: Ipv4Addr,
    pub key: Arc<RecvKey>,
    /// The peer's path: datagrams from elsewhere go to the core (roaming, a new path).
    pub from: SocketAddr,
    /// Through the server's UDP relay: the peer's relay id, which the FromPeer header of each
    /// datagram from `from` must name.
    pub relay: Option<u32>,
    /// Inner source addresses this peer may send from (its addresses and its routes): the
    /// cryptokey routing check of the whitepaper §2.
    pub allowed: Vec<IpNet>,
    /// The path MTU the core's search confirmed, to clamp received TCP SYNs (None: no clamp).
    pub path_mtu: Option<u16>,
    pub activity: Arc<Activity>,
}

/// One immutable snapshot. Cloning it clones `Arc`s only, so the core derives the next table
/// from the last one.
#[derive(Clone, Default)]
pub struct KeyTable {
    send: HashMap<IpAddr, Arc<SendEntry>>,
    recv: HashMap<u32, Arc<RecvEntry>>,
    /// This node's overlay addresses: an opened packet to anything else is dropped, as the
    /// core's `filter::inbound` does.
    local: Vec<IpAddr>,
    /// The node's access rules and flow table, shared with the core, and the instant the
    /// workers' `now_ms` counts from (the flow table's clock is the core's `Instant`). `None`
    /// (tests of the table alone): no flows are recorded and nothing is checked.
    acl: Option<(SharedAcl, Instant)>,
}

/// What sealing one TUN packet produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Sealed {
    /// `len` bytes at the start of `out`, to `dst` on `socket`.
    Datagram {
        socket: SocketId,
        dst: SocketAddr,
        len: usize,
    },
    /// Not for the workers: hand the packet to the core.
    ToCore,
}

/// What opening one datagram produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened<'a> {
    /// An inner packet for the TUN device, trimmed to its IP length.
    Packet(&'a [u8]),
    /// An authenticated keepalive: nothing to write.
    Keepalive,
    /// Opened, but the core's to look at (IPv4 ICMP echoes under the PMTU probes' or
    /// `p2pvpn ping`'s identifier); it decides whether the packet goes on to the TUN device.
    Core(&'a [u8]),
    /// Dropped here; the worker counts it under this reason.
    Dropped(DropReason),
    /// Not for the workers: hand the datagram to the core.
    ToCore,
}

/// The IP length of a decrypted packet, which drops the transport's zero padding.
fn ip_len(packet: &[u8]) -> Option<usize> {
    let len = match packet.first()? >> 4 {
        4 => usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?])),
        6 => 40 + usize::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?])),
        _ => return None,
    };
    (len <= packet.len()).then_some(len)
}

impl KeyTable {
    /// This node's overlay addresses, the only destinations an opened packet may have.
    pub fn set_local(&mut self, addresses: &[IpAddr]) {
        self.local.clear();
        self.local.extend_from_slice(addresses);
    }

    /// Records flows and checks received packets against the node's access rules (`acl`,
    /// shared with the core), with `now_ms` counted from `origin`.
    pub fn set_acl(&mut self, acl: SharedAcl, origin: Instant) {
        self.acl = Some((acl, origin));
    }

    /// The access rules' clock for a worker's `now_ms`.
    fn acl_at(&self, now_ms: u64) -> Option<(&SharedAcl, Instant)> {
        self.acl
            .as_ref()
            .map(|(acl, origin)| (acl, *origin + Duration::from_millis(now_ms)))
    }

    /// True when nothing goes through the workers.
    pub fn is_empty(&self) -> bool {
        self.send.is_empty() && self.recv.is_empty()
    }

    /// Routes packets for `addresses` (the peer's own addresses) through `entry`.
    pub fn set_send(&mut self, addresses: &[IpAddr], entry: Arc<SendEntry>) {
        for a in addresses {
            self.send.insert(*a, entry.clone());
        }
    }

    /// Stops routing packets for `addresses` through the workers.
    pub fn remove_send(&mut self, addresses: &[IpAddr]) {
        for a in addresses {
            self.send.remove(a);
        }
    }

    /// Accepts datagrams for `entry`'s session index (a new session, or the previous one kept
    /// for datagrams still in flight after a rekey).
    pub fn add_recv(&mut self, entry: Arc<RecvEntry>) {
        self.recv.insert(entry.key.index(), entry);
    }

    pub fn remove_recv(&mut self, index: u32) {
        self.recv.remove(&index);
    }

    /// Seals one TUN packet for its peer, or says it is the core's.
    pub fn seal(&self, packet: &[u8], out: &mut [u8], now_ms: u64) -> Sealed {
        let Ok(ends) = ip_endpoints(packet) else {
            return Sealed::ToCore;
        };
        let Some(entry) = self.send.get(&ends.dst) else {
            return Sealed::ToCore;
        };
        if packet.len() > usize::from(entry.mtu) || mss::tcp_syn_offset(packet).is_some() {
            return Sealed::ToCore;
        }
        let header = if entry.relay.is_some() {
            DATA_HEADER
        } else {
            0
        };
        let Some(body) = out.get_mut(header..) else {
            return Sealed::ToCore;
        };
        // Remembered as a flow, rules or not, so that the peer's replies pass the rules (also
        // rules that arrive later: `Acl::set_policy` keeps the flows this node opened).
        if let Some((acl, now)) = self.acl_at(now_ms) {
            acl.lock().outbound(entry.peer, packet, now);
        }
        match entry.key.seal(packet, body) {
            Ok(len) => {
                if let Some(id) = entry.relay {
                    wire::write_to_peer_header(out, id);
                }
                let a = &entry.activity;
                a.sent_at_ms.store(now_ms, Ordering::Relaxed);
                if packet.len() > usize::from(BASE_PLPMTU) {
                    a.big_sent_at_ms.store(now_ms, Ordering::Relaxed);
                }
                a.tx_bytes.fetch_add(packet.len() as u64, Ordering::Relaxed);
                Sealed::Datagram {
                    socket: entry.socket,
                    dst: entry.dst,
                    len: header + len,
                }
            }
            // Exhausted: the core rekeys. Too small a buffer: the core has the room.
            Err(_) => Sealed::ToCore,
        }
    }

    /// Opens one datagram that came from `from` on the main socket, or says it is the core's.
    pub fn open<'a>(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        out: &'a mut [u8],
        now_ms: u64,
    ) -> Opened<'a> {
        // A relayed message: its FromPeer header names the sending peer's relay id; anything
        // else from the relay (binds, challenges) is the core's.
        let (datagram, relay) = match wire::parse(datagram) {
            Some(RelayDatagram::FromPeer { src, payload }) => (payload, Some(src)),
            Some(_) => return Opened::ToCore,
            None => (datagram, None),
        };
        // Opened into `out` first: the length is the padded one until the IP header is read.
        let Some(entry) = receiver_index(datagram).and_then(|i| self.recv.get(&i)) else {
            return Opened::ToCore;
        };
        if entry.from != from || entry.relay != relay {
            return Opened::ToCore;
        }
        let len = match entry.key.open(datagram, out) {
            Ok(text) => text.len(),
            Err(TransportError::Replay(_)) => return Opened::Dropped(DropReason::Replay),
            Err(TransportError::Decrypt) => return Opened::Dropped(DropReason::DecryptFailed),
            Err(_) => return Opened::ToCore,
        };
        let a = &entry.activity;
        a.received_at_ms.store(now_ms, Ordering::Relaxed);
        if len == 0 {
            return Opened::Keepalive;
        }
        let Some(len) = ip_len(&out[..len]) else {
            return Opened::Dropped(DropReason::Malformed);
        };
        let packet = &mut out[..len];
        let Ok(ends) = ip_endpoints(packet) else {
            return Opened::Dropped(DropReason::Malformed);
        };
        if !entry.allowed.iter().any(|net| net.contains(&ends.src)) {
            return Opened::Dropped(DropReason::SpoofedSource);
        }
        if !self.local.contains(&ends.dst) {
            return Opened::Dropped(DropReason::WrongDestination);
        }
        a.rx_bytes.fetch_add(len as u64, Ordering::Relaxed);
        // The core's own echoes first, as the core orders it: they are not traffic to the
        // host, so the access rules do not see them (`Node::handle_worker_packet` checks the
        // rest of what it is handed).
        if packet[0] >> 4 == 4 && packet.get(9) == Some(&1) && core_consumes(packet) {
            return Opened::Core(packet);
        }
        if let Some((acl, now)) = self.acl_at(now_ms) {
            if acl.lock().inbound(entry.peer, packet, now).is_err() {
                return Opened::Dropped(DropReason::AccessDenied);
            }
        }
        if let Some(mtu) = entry.path_mtu {
            // What the core's `clamp_received_syn` does: our side's replies fit the path too.
            let max = mss::max_mss(packet, mtu);
            mss::clamp_mss(packet, max);
        }
        Opened::Packet(packet)
    }
}

/// Where the core publishes tables and the workers pick them up. A read lock held for one
/// `Arc` clone per batch: uncontended in practice, since the core writes only on a handshake, a
/// rekey or a path change.
#[derive(Default)]
pub struct Published {
    current: RwLock<Arc<KeyTable>>,
}

impl Published {
    /// The table to use for the next batch.
    pub fn load(&self) -> Arc<KeyTable> {
        // Poisoning needs a panic while the lock is held, which only swaps an Arc: the value
        // is always a whole table.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the table; workers see it from their next batch.
    pub fn store(&self, table: KeyTable) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }
}

/// Whether the core may consume this IPv4 ICMP packet (`Node::handle_worker_packet`): an echo
/// under the path MTU probes' identifier or `p2pvpn ping`'s. Any other ICMP (a user's ping, an
/// error) goes straight to the TUN device, so that a ping's reply is written by the thread that
/// opened its request, without waking the node task.
fn core_consumes(packet: &[u8]) -> bool {
    crate::core::icmp::parse_echo(packet).is_some_and(|e| {
        e.id == crate::core::pmtu::probe::PROBE_ID || e.id == crate::core::icmp::PING_ID
    })
}
