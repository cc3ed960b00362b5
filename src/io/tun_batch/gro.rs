//! Allocation-free GRO for the TUN write path: coalesces a batch of decrypted packets, each
//! held in its own preallocated slot, into TCP (and, when the device has USO, UDP)
//! super-packets with a virtio-net header, the way the kernel's GRO and wireguard-go's
//! `tcp_offload` do, so the receiving stack handles up to 64 KiB per write. Payloads are
//! appended in place into the spare (preallocated) capacity of the slot that heads a run;
//! nothing here allocates (tun-rs's `GROTable` copied every packet into a new `Vec`).
//!
//! Pure functions over byte buffers: no device, so unit and property tests drive it directly.
//! A slot is `[virtio-net header (HDR_LEN bytes) | IP packet]`; `Vec::len` of a slot is how
//! many bytes were ever initialised (the driver grows it once, never shrinks it) and the
//! packet's length is passed separately, so no byte is zero-filled per packet.
//!
//! Order: a run only takes the next in-order segment of its own flow; any other packet of the
//! same address pair that cannot join (a FIN, a pure ACK, an ICMP error, a fragment) closes the
//! open runs of that pair, so no packet is ever written ahead of one that preceded it in its
//! flow.

use super::csum::{fold, pseudo, sum};

/// Bytes of `struct virtio_net_hdr` (include/uapi/linux/virtio_net.h) before each packet.
pub const HDR_LEN: usize = 10;
/// The largest super-packet: IPv4's 16-bit total length (RFC 791 section 3.1), also the
/// kernel's GRO bound.
pub const MAX_PACKET: usize = 65535;
/// Segments per super-packet: the kernel refuses UDP GSO of more than UDP_MAX_SEGMENTS (64).
const MAX_SEGMENTS: usize = 64;

// virtio_net_hdr fields (include/uapi/linux/virtio_net.h).
pub(super) const F_NEEDS_CSUM: u8 = 1;
pub(super) const GSO_TCPV4: u8 = 1;
pub(super) const GSO_TCPV6: u8 = 4;
pub(super) const GSO_UDP_L4: u8 = 5;

pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
/// Offset of the checksum field in the TCP (RFC 9293 section 3.1) and UDP (RFC 768) headers.
pub(super) const TCP_CSUM_AT: usize = 16;
pub(super) const UDP_CSUM_AT: usize = 6;

/// An IPv4/IPv6 packet carrying TCP or UDP, as far as coalescing needs it.
#[derive(Clone, Copy, Debug)]
struct L4Packet {
    v6: bool,
    proto: u8,
    /// IP header length, then TCP (data offset) or UDP (8) header length.
    iph: usize,
    l4h: usize,
    /// Whether it may join or head a run: no IP options, extension headers or fragments, a
    /// payload, TCP flags ACK or ACK|PSH only, a UDP checksum present.
    candidate: bool,
}

/// One write: a packet, or the head of a run that later packets of its flow were appended to.
#[derive(Clone, Copy, Debug)]
struct Entry {
    slot: usize,
    /// IP packet length so far.
    len: usize,
    l4: Option<L4Packet>,
    /// Whether the next in-order segment of its flow may still be appended.
    open: bool,
    segments: usize,
    gso_size: usize,
    next_seq: u32,
    /// Whether the head's own transport checksum was verified (checked at the first append).
    verified: bool,
}

/// The coalescer; holds only per-batch bookkeeping, preallocated for `slots` packets.
pub struct Gro {
    entries: Vec<Entry>,
}

impl Gro {
    pub fn new(slots: usize) -> Self {
        Gro {
            entries: Vec::with_capacity(slots),
        }
    }

    /// Coalesces the packets `slots[i][HDR_LEN..HDR_LEN + lens[i]]` (in that order), writing
    /// each result's virtio-net header and fixing its IP and transport headers, and returns the
    /// writes in order: `(slot, bytes)` means write `slots[slot][..bytes]` (header included).
    /// `udp` says whether the device takes UDP_L4 segmentation (USO).
    ///
    /// A run grows within its slot's capacity (never reallocating), up to [`MAX_PACKET`].
    /// Panics if a slot is shorter than `HDR_LEN + lens[i]` (a driver bug, not input).
    pub fn coalesce(
        &mut self,
        slots: &mut [Vec<u8>],
        lens: &[usize],
        udp: bool,
    ) -> impl ExactSizeIterator<Item = (usize, usize)> + '_ {
        self.entries.clear();
        for (i, &len) in lens.iter().enumerate().take(slots.len()) {
            let (before, rest) = slots.split_at_mut(i);
            let pkt = &rest[0][HDR_LEN..HDR_LEN + len];
            let l4 = parse(pkt, udp);
            match l4 {
                Some(p) if p.candidate => {
                    if self.append(before, pkt, &p) {
                        continue;
                    }
                    let payload = len - p.iph - p.l4h;
                    // PSH only ever ends a run (the kernel's GRO flushes on it).
                    let psh = p.proto == TCP && pkt[p.iph + 13] & TCP_PSH != 0;
                    self.push(Entry {
                        slot: i,
                        len,
                        l4,
                        open: !psh,
                        segments: 1,
                        gso_size: payload,
                        next_seq: seq(pkt, &p).wrapping_add(payload as u32),
                        verified: false,
                    });
                }
                _ => {
                    self.close_pair(before, pkt);
                    self.push(Entry {
                        slot: i,
                        len,
                        l4,
                        open: false,
                        segments: 1,
                        gso_size: 0,
                        next_seq: 0,
                        verified: false,
                    });
                }
            }
        }
        for e in &self.entries {
            finish(&mut slots[e.slot], e);
        }
        self.entries.iter().map(|e| (e.slot, HDR_LEN + e.len))
    }

    fn push(&mut self, e: Entry) {
        // Within the capacity reserved in `new` when the batch fits; a larger batch grows it
        // once.
        self.entries.push(e);
    }

    /// Appends `pkt` to the latest run of its flow if it is that run's next segment.
    fn append(&mut self, before: &mut [Vec<u8>], pkt: &[u8], p: &L4Packet) -> bool {
        let Some(at) = self.entries.iter().rposition(|e| {
            e.l4.is_some_and(|h| same_flow(&before[e.slot][HDR_LEN..HDR_LEN + e.len], &h, pkt, p))
        }) else {
            return false;
        };
        let e = &mut self.entries[at];
        let Some(h) = e.l4 else {
            return false;
        };
        let buf = &mut before[e.slot];
        let head = &buf[HDR_LEN..HDR_LEN + e.len];
        let payload = &pkt[p.iph + p.l4h..];
        let limit = MAX_PACKET.min(buf.capacity() - HDR_LEN);
        if !e.open
            || e.segments >= MAX_SEGMENTS
            || payload.len() > e.gso_size
            || e.len + payload.len() > limit
            || !ip_fields_match(head, pkt, p.v6)
            || (p.proto == TCP && !tcp_follows(head, &h, e.next_seq, pkt, p))
        {
            return false;
        }
        // The kernel trusts a NEEDS_CSUM super-packet's data, so only verified segments join
        // (as the kernel's own GRO does); a bad one is written alone for the kernel to drop.
        if !e.verified {
            if !checksum_ok(head, &h) {
                e.open = false;
                return false;
            }
            e.verified = true;
        }
        if !checksum_ok(pkt, p) {
            return false;
        }
        let end = HDR_LEN + e.len + payload.len();
        if buf.len() < end {
            // First use of these bytes of the slot: initialise them once (within capacity).
            buf.resize(end, 0);
        }
        buf[HDR_LEN + e.len..end].copy_from_slice(payload);
        e.len += payload.len();
        e.segments += 1;
        e.next_seq = e.next_seq.wrapping_add(payload.len() as u32);
        // Nothing follows a shorter segment or a PSH (kept on the run's last segment).
        if payload.len() < e.gso_size {
            e.open = false;
        }
        if p.proto == TCP && pkt[p.iph + 13] & TCP_PSH != 0 {
            buf[HDR_LEN + p.iph + 13] |= TCP_PSH;
            e.open = false;
        }
        true
    }

    /// Closes the open runs between the addresses of `pkt`, which cannot join them.
    fn close_pair(&mut self, before: &[Vec<u8>], pkt: &[u8]) {
        let Some(addrs) = addresses(pkt) else {
            return;
        };
        for e in self.entries.iter_mut().filter(|e| e.open) {
            let head = &before[e.slot][HDR_LEN..HDR_LEN + e.len];
            if addresses(head) == Some(addrs) && head[0] >> 4 == pkt[0] >> 4 {
                e.open = false;
            }
        }
    }
}

/// Reads `pkt` as IPv4 or IPv6 with TCP or UDP; `None` for anything else.
fn parse(pkt: &[u8], udp: bool) -> Option<L4Packet> {
    let (v6, iph, proto, plain) = match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let iph = usize::from(pkt[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            // More-fragments flag or a fragment offset (RFC 791 section 3.1).
            let fragment = pkt[6] & 0x3f != 0 || pkt[7] != 0;
            if iph < 20 || total != pkt.len() {
                return None;
            }
            (false, iph, pkt[9], iph == 20 && !fragment)
        }
        // No extension headers: the next header is the transport (RFC 8200 section 3).
        6 if pkt.len() >= 40 => {
            let payload = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            if payload + 40 != pkt.len() {
                return None;
            }
            (true, 40, pkt[6], true)
        }
        _ => return None,
    };
    let l4 = pkt.get(iph..)?;
    let (l4h, candidate) = match proto {
        TCP if l4.len() >= 20 => {
            let l4h = usize::from(l4[12] >> 4) * 4;
            let flags_ok = l4[12] & 0x0f == 0 && (l4[13] == TCP_ACK || l4[13] == TCP_ACK | TCP_PSH);
            (l4h, l4h >= 20 && flags_ok)
        }
        UDP if l4.len() >= 8 => {
            let len_ok = usize::from(u16::from_be_bytes([l4[4], l4[5]])) == l4.len();
            let has_csum = l4[6] != 0 || l4[7] != 0;
            (8, udp && len_ok && has_csum)
        }
        _ => return None,
    };
    if l4h > l4.len() {
        return None;
    }
    Some(L4Packet {
        v6,
        proto,
        iph,
        l4h,
        candidate: plain && candidate && l4.len() > l4h,
    })
}

/// The source and destination addresses of an IPv4 or IPv6 packet.
fn addresses(pkt: &[u8]) -> Option<&[u8]> {
    match pkt.first()? >> 4 {
        4 => pkt.get(12..20),
        6 => pkt.get(8..40),
        _ => None,
    }
}

/// Same version, protocol, addresses and ports.
fn same_flow(a: &[u8], pa: &L4Packet, b: &[u8], pb: &L4Packet) -> bool {
    pa.v6 == pb.v6
        && pa.proto == pb.proto
        && addresses(a) == addresses(b)
        && a.get(pa.iph..pa.iph + 4) == b.get(pb.iph..pb.iph + 4)
}

/// The IP fields that must be equal for packets to share one header: TOS and TTL and the
/// DF/reserved flags for IPv4 (the ID is rewritten by segmentation), version, traffic class,
/// flow label and hop limit for IPv6.
fn ip_fields_match(a: &[u8], b: &[u8], v6: bool) -> bool {
    if v6 {
        a[..4] == b[..4] && a[7] == b[7]
    } else {
        a[1] == b[1] && a[6] >> 5 == b[6] >> 5 && a[8] == b[8]
    }
}

/// `pkt` is the in-order next segment of the run headed by `head`: same TCP header length,
/// ACK number, data offset byte and options (RFC 9293 section 3.1; the kernel's
/// `tcp_gro_receive` compares the same), and its sequence number follows the run.
fn tcp_follows(head: &[u8], h: &L4Packet, next_seq: u32, pkt: &[u8], p: &L4Packet) -> bool {
    h.l4h == p.l4h
        && head[h.iph + 8..h.iph + 13] == pkt[p.iph + 8..p.iph + 13]
        && head[h.iph + 20..h.iph + h.l4h] == pkt[p.iph + 20..p.iph + p.l4h]
        && seq(pkt, p) == next_seq
}

fn seq(pkt: &[u8], p: &L4Packet) -> u32 {
    if p.proto != TCP {
        return 0;
    }
    let s = &pkt[p.iph + 4..p.iph + 8];
    u32::from_be_bytes([s[0], s[1], s[2], s[3]])
}

/// Writes the virtio-net header of entry `e` and, for a run, the headers of its super-packet.
fn finish(buf: &mut [u8], e: &Entry) {
    let (hdr, rest) = buf.split_at_mut(HDR_LEN);
    let pkt = &mut rest[..e.len];
    hdr.fill(0);
    let Some(p) = e.l4.filter(|_| e.segments > 1) else {
        // No offload: the kernel checks the packet as it is.
        return;
    };
    let l4_len = e.len - p.iph;
    if p.v6 {
        pkt[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    } else {
        pkt[2..4].copy_from_slice(&(e.len as u16).to_be_bytes());
        pkt[10..12].fill(0);
        let csum = !fold(sum(&pkt[..p.iph]));
        pkt[10..12].copy_from_slice(&csum.to_be_bytes());
    }
    let (gso_type, csum_at) = match (p.proto, p.v6) {
        (TCP, false) => (GSO_TCPV4, TCP_CSUM_AT),
        (TCP, true) => (GSO_TCPV6, TCP_CSUM_AT),
        _ => {
            let at = p.iph + 4;
            pkt[at..at + 2].copy_from_slice(&(l4_len as u16).to_be_bytes());
            (GSO_UDP_L4, UDP_CSUM_AT)
        }
    };
    // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum (RFC 9293 section
    // 3.1, RFC 8200 section 8.1) and the kernel adds the header and data from csum_start.
    let partial = fold(pseudo_sum(pkt, &p, l4_len));
    let at = p.iph + csum_at;
    pkt[at..at + 2].copy_from_slice(&partial.to_be_bytes());
    hdr[0] = F_NEEDS_CSUM;
    hdr[1] = gso_type;
    // The kernel reads these in native byte order (a TUN without TUNSETVNETLE on a
    // little-endian host, as tun-rs opens it).
    let fields = [p.iph + p.l4h, e.gso_size, p.iph, csum_at];
    for (i, v) in fields.into_iter().enumerate() {
        hdr[2 + 2 * i..4 + 2 * i].copy_from_slice(&(v as u16).to_ne_bytes());
    }
}

/// Whether the transport checksum of `pkt` verifies (RFC 1071).
fn checksum_ok(pkt: &[u8], p: &L4Packet) -> bool {
    let l4_len = pkt.len() - p.iph;
    fold(pseudo_sum(pkt, p, l4_len) + sum(&pkt[p.iph..])) == 0xffff
}

/// The unfolded pseudo-header sum: addresses, protocol and transport length.
fn pseudo_sum(pkt: &[u8], p: &L4Packet, l4_len: usize) -> u64 {
    pseudo(pkt, p.v6, p.proto, l4_len)
}

#[cfg(test)]
#[path = "gro_tests.rs"]
mod tests;
