//! One read from the TUN device with virtio-net headers, split into IP packets one at a time.
//!
//! With TSO/USO on (tun-rs `offload`), the kernel hands the device a TCP or UDP super-packet of
//! up to 64 KiB with one `struct virtio_net_hdr` (include/uapi/linux/virtio_net.h) in front and
//! leaves the segmentation to the reader: per packet, the IPv4 total length, identification and
//! header checksum (RFC 791 section 3.1) or the IPv6 payload length (RFC 8200 section 3), and
//! the TCP sequence number, flags and checksum (RFC 9293 section 3.1) or the UDP length and
//! checksum (RFC 768). This is what wireguard-go's `tun_linux.go` and tun-rs's `gso_split` do,
//! but lazily: [`Super::segment`] writes packet `i` into one slot just before it is sealed.
//! tun-rs splits the whole read at once into an array of 128 buffers of an MTU each, which a
//! bulk sender kept resident (about 75 KiB at 48 packets per read, and more at a smaller MSS)
//! and which copied every packet once more on its way to the cipher.
//!
//! A read that is one packet (`GSO_NONE`: a ping, an ACK, anything without offload) is used
//! where it was read, after its checksum is completed if the kernel left it partial.
//!
//! Pure functions over byte buffers: the unit tests and the property test against tun-rs's own
//! `gso_split` drive them without a device.

use super::csum::{fold, pseudo, sum};
use super::gro::{
    F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, HDR_LEN, TCP, TCP_CSUM_AT, UDP, UDP_CSUM_AT,
};
use std::io;

/// `VIRTIO_NET_HDR_GSO_ECN`: the TCP segments carry ECN (CWR on the first only).
const GSO_ECN: u8 = 0x80;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
/// Offset of the flags byte in the TCP header (RFC 9293 section 3.1).
const TCP_FLAGS_AT: usize = 13;
/// Packets one super-packet may give: 64 KiB at TCP's smallest MSS (88 bytes, the kernel's
/// TCP_MIN_MSS) is 745, UDP GSO at most UDP_MAX_SEGMENTS (128). More is not a packet the kernel
/// makes. The driver seals them a batch's room at a time (`tun_batch::parts`).
const MAX_COUNT: usize = 1024;

/// What one read holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// Nothing (before the first read, or after a read that was dropped).
    Empty,
    /// One packet, `len` bytes at `start` in the read buffer, ready to seal.
    Single { start: usize, len: usize },
    /// A super-packet to split: [`Super::segment`] gives its packets.
    Super(Super),
}

impl Read {
    /// How many packets the read gives.
    pub fn count(&self) -> usize {
        match self {
            Read::Empty => 0,
            Read::Single { .. } => 1,
            Read::Super(s) => s.count,
        }
    }
}

/// A TCP or UDP super-packet, checked: every segment fits the slot it will be written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Super {
    v6: bool,
    tcp: bool,
    /// Where the transport header starts (`csum_start`: IP header and options or extension
    /// headers before it), where its checksum is, and where the payload starts.
    l4: usize,
    csum_at: usize,
    hdr_len: usize,
    gso_size: usize,
    /// Bytes of the super-packet (without the virtio-net header).
    len: usize,
    first_seq: u32,
    count: usize,
}

/// Parses the read `buf` (the bytes read). `vnet`: the device was opened with virtio-net
/// headers. Every packet must fit a slot of `slot` bytes. Errors are about one malformed read,
/// which is dropped (`InvalidData`).
pub fn parse(buf: &mut [u8], vnet: bool, slot: usize) -> io::Result<Read> {
    // A packet is at most a slot: the device's MTU bounds what the kernel hands it unsegmented,
    // and the batch's room for each sealed datagram is sized from the same MTU.
    let single = |start: usize, len: usize| {
        if len > slot {
            return Err(bad("packet larger than the device's MTU"));
        }
        Ok(Read::Single { start, len })
    };
    if !vnet {
        return single(0, buf.len());
    }
    let Some((hdr, packet)) = buf.split_first_chunk_mut::<HDR_LEN>() else {
        return Err(bad("read shorter than its virtio-net header"));
    };
    if packet.is_empty() {
        return Err(bad("read without a packet after its virtio-net header"));
    }
    let u16_at = |at: usize| usize::from(u16::from_ne_bytes([hdr[at], hdr[at + 1]]));
    let (flags, gso_type) = (hdr[0], hdr[1]);
    let (gso_size, csum_start, csum_offset) = (u16_at(4), u16_at(6), u16_at(8));
    if gso_type == 0 {
        if flags & F_NEEDS_CSUM != 0 {
            complete_checksum(packet, csum_start, csum_offset)?;
        }
        return single(HDR_LEN, packet.len());
    }
    let v6 = match packet[0] >> 4 {
        4 => false,
        6 => true,
        _ => return Err(bad("super-packet that is neither IPv4 nor IPv6")),
    };
    let tcp = match (gso_type & !GSO_ECN, v6) {
        (GSO_TCPV4, false) | (GSO_TCPV6, true) => true,
        (GSO_UDP_L4, _) if gso_type & GSO_ECN == 0 => false,
        _ => return Err(bad("virtio-net GSO type that does not match the packet")),
    };
    if gso_size == 0 {
        return Err(bad("super-packet with a segment size of 0"));
    }
    let (min_ip, csum_field) = (
        if v6 { 40 } else { 20 },
        if tcp { TCP_CSUM_AT } else { UDP_CSUM_AT },
    );
    if csum_start < min_ip || csum_offset != csum_field {
        return Err(bad(
            "super-packet whose checksum fields do not match its headers",
        ));
    }
    // The header length from the transport header itself, not from `hdr_len`: the kernel may
    // set that to the whole first packet on its forwarding path (wireguard-go does the same).
    let hdr_len = if tcp {
        let data_offset = packet.get(csum_start + 12).copied().unwrap_or(0);
        let tcp_len = usize::from(data_offset >> 4) * 4;
        if !(20..=60).contains(&tcp_len) {
            return Err(bad("super-packet with a malformed TCP header"));
        }
        csum_start + tcp_len
    } else {
        csum_start + 8
    };
    if packet.len() < hdr_len {
        return Err(bad("super-packet shorter than its headers"));
    }
    let payload = packet.len() - hdr_len;
    let count = payload.div_ceil(gso_size);
    if count > MAX_COUNT {
        return Err(bad(
            "super-packet of more segments than TCP or UDP GSO makes",
        ));
    }
    if hdr_len + gso_size.min(payload) > slot.min(usize::from(u16::MAX)) {
        return Err(bad(
            "super-packet whose segments are larger than the MTU allows",
        ));
    }
    let first_seq = if tcp {
        u32::from_be_bytes(be4(&packet[csum_start + 4..]))
    } else {
        0
    };
    Ok(Read::Super(Super {
        v6,
        tcp,
        l4: csum_start,
        csum_at: csum_start + csum_offset,
        hdr_len,
        gso_size,
        len: packet.len(),
        first_seq,
        count,
    }))
}

impl Super {
    /// Writes packet `i` (below [`Read::count`]) of the super-packet `read` (the buffer given to
    /// [`parse`]) into `out`, which holds at least the slot's bytes; returns its length.
    pub fn segment(&self, read: &[u8], i: usize, out: &mut [u8]) -> usize {
        let input = &read[HDR_LEN..HDR_LEN + self.len];
        let data_at = self.hdr_len + i * self.gso_size;
        let data_end = (data_at + self.gso_size).min(self.len);
        let total = self.hdr_len + (data_end - data_at);
        let out = &mut out[..total];
        out[..self.hdr_len].copy_from_slice(&input[..self.hdr_len]);
        out[self.hdr_len..].copy_from_slice(&input[data_at..data_end]);
        let l4_len = total - self.l4;
        if self.v6 {
            put16(out, 4, total - 40);
        } else {
            // Total length, identification (consecutive from the first), header checksum.
            put16(out, 2, total);
            let id = u16::from_be_bytes([input[4], input[5]]).wrapping_add(i as u16);
            out[4..6].copy_from_slice(&id.to_be_bytes());
            out[10..12].fill(0);
            let c = !fold(sum(&out[..self.l4]));
            out[10..12].copy_from_slice(&c.to_be_bytes());
        }
        if self.tcp {
            let seq = self
                .first_seq
                .wrapping_add((self.gso_size * i) as u32)
                .to_be_bytes();
            out[self.l4 + 4..self.l4 + 8].copy_from_slice(&seq);
            let flags = &mut out[self.l4 + TCP_FLAGS_AT];
            if i > 0 {
                // Linux's ECN segmentation keeps CWR on the first segment only.
                *flags &= !TCP_CWR;
            }
            if data_end != self.len {
                *flags &= !(TCP_FIN | TCP_PSH);
            }
        } else {
            put16(out, self.l4 + 4, l4_len);
        }
        out[self.csum_at..self.csum_at + 2].fill(0);
        let proto = if self.tcp { TCP } else { UDP };
        let mut c = !fold(pseudo(out, self.v6, proto, l4_len) + sum(&out[self.l4..]));
        if !self.tcp && c == 0 {
            // RFC 768: a computed 0 is sent as all ones (0 means "no checksum").
            c = 0xffff;
        }
        out[self.csum_at..self.csum_at + 2].copy_from_slice(&c.to_be_bytes());
        total
    }
}

/// Completes a checksum the kernel left partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`, the skb's
/// CHECKSUM_PARTIAL): the field holds the pseudo-header sum, and the sum from `start` on goes
/// into it.
fn complete_checksum(packet: &mut [u8], start: usize, offset: usize) -> io::Result<()> {
    let at = start + offset;
    if at + 2 > packet.len() {
        return Err(bad("partial checksum outside the packet"));
    }
    let initial = u64::from(u16::from_be_bytes([packet[at], packet[at + 1]]));
    packet[at..at + 2].fill(0);
    let c = !fold(initial + sum(&packet[start..]));
    packet[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

fn put16(out: &mut [u8], at: usize, value: usize) {
    // Every length here is below 64 KiB: `parse` bounds segments by the slot.
    out[at..at + 2].copy_from_slice(&(value as u16).to_be_bytes());
}

fn be4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

fn bad(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
#[path = "tso_tests.rs"]
mod tests;
