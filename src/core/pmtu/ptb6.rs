//! ICMPv6 "Packet Too Big" (RFC 4443 §3.2: type 2, code 0, the MTU in the 32-bit field after the
//! checksum) for an IPv6 packet read from the TUN device that the peer's path cannot carry. IPv6
//! routers never fragment (RFC 8200 §5), so there is no DF bit to look at: every oversized
//! packet is answered, and the sender's stack lowers its path MTU for the destination.
//!
//! The message is written into a caller's buffer: nothing is allocated per packet.

use super::ptb::TooBig;
use std::net::Ipv6Addr;

const IPV6_HEADER: usize = 40;
const ICMPV6_HEADER: usize = 8;
const NEXT_ICMPV6: u8 = 58;
const PACKET_TOO_BIG: u8 = 2;
/// The IPv6 minimum link MTU (RFC 8200 §5): no host lowers its path MTU below it.
pub const IPV6_MIN_MTU: u16 = 1280;
/// RFC 4443 §2.4(c): an ICMPv6 error carries as much of the invoking packet as fits without the
/// error exceeding the minimum MTU.
const MAX_ICMPV6_ERROR: usize = IPV6_MIN_MTU as usize;
/// Extension headers walked at most when looking for an ICMPv6 error behind them.
const MAX_EXTENSIONS: usize = 8;

/// True when `packet` (a complete fixed IPv6 header at least) carries an ICMPv6 error message,
/// or may carry one as far as can be told: RFC 4443 §2.4(e.1) forbids answering one. Walks the
/// hop-by-hop, routing and destination options headers and a first fragment's header (RFC 8200
/// §4); types 0-127 are errors (RFC 4443 §2.1).
fn may_be_icmpv6_error(packet: &[u8]) -> bool {
    let mut next = packet[6];
    let mut at = IPV6_HEADER;
    for _ in 0..MAX_EXTENSIONS {
        match next {
            NEXT_ICMPV6 => return packet.get(at).is_none_or(|&t| t < 128),
            // Hop-by-hop options, routing, destination options: length in 8-byte units past
            // the first 8 (RFC 8200 §4.3, §4.4, §4.6).
            0 | 43 | 60 => {
                let (Some(&n), Some(&len)) = (packet.get(at), packet.get(at + 1)) else {
                    return true;
                };
                next = n;
                at += (usize::from(len) + 1) * 8;
            }
            // Fragment header (RFC 8200 §4.5): a later fragment has no upper-layer header, so
            // nothing tells what it carries; an ICMPv6 error is at most 1280 bytes and is
            // never fragmented by a sane sender, so a later fragment is answered.
            44 => {
                let Some(h) = packet.get(at..at + 8) else {
                    return true;
                };
                if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                    return false;
                }
                next = h[0];
                at += 8;
            }
            _ => return false,
        }
    }
    // Too deep to tell: stay on the safe side.
    true
}

/// Writes into `out` the "Packet Too Big" answer to `packet`, naming `mtu` (at least
/// IPV6_MIN_MTU: a smaller value is raised to it, since no node lowers its path MTU below
/// that, RFC 8201 §4), from
/// `packet`'s destination (the peer's overlay address) to its source.
///
/// Why the peer's address and not ours: the message arrives on the TUN device, and a packet
/// whose source is one of the host's own addresses fails strict reverse-path filtering there
/// (netfilter `rpfilter` / nftables `fib saddr . iif`, on by default with firewalld), while the
/// peer's address routes back through the TUN device and passes. The IPv4 answer (`ptb`) does
/// the same for the same reason. The sender's stack only reads the quoted packet to find the
/// connection and the destination whose path MTU to lower (RFC 8201 §4).
pub fn packet_too_big(packet: &[u8], mtu: u16, out: &mut [u8]) -> TooBig {
    if packet.len() < IPV6_HEADER || packet[0] >> 4 != 6 {
        return TooBig::Drop;
    }
    let src = ipv6_at(packet, 8);
    let dst = ipv6_at(packet, 24);
    // RFC 4443 §2.4(e): never about an ICMPv6 error, nor to a source that does not name one
    // node (unspecified or multicast). A multicast destination may get a Packet Too Big
    // (§2.4(e.3)), but the overlay routes none, so that case does not arise here.
    if src.is_unspecified() || src.is_multicast() || dst.is_multicast() {
        return TooBig::Drop;
    }
    if may_be_icmpv6_error(packet) {
        return TooBig::Drop;
    }
    let quoted = packet
        .len()
        .min(MAX_ICMPV6_ERROR - IPV6_HEADER - ICMPV6_HEADER);
    let total = IPV6_HEADER + ICMPV6_HEADER + quoted;
    if out.len() < total {
        return TooBig::Drop;
    }
    let p = &mut out[..total];
    p[..IPV6_HEADER].fill(0);
    p[0] = 0x60;
    // ok: total <= 1280
    let payload_len = (total - IPV6_HEADER) as u16;
    p[4..6].copy_from_slice(&payload_len.to_be_bytes());
    p[6] = NEXT_ICMPV6;
    p[7] = 64;
    p[8..24].copy_from_slice(&dst.octets());
    p[24..40].copy_from_slice(&src.octets());
    let icmp = &mut p[IPV6_HEADER..];
    icmp[0] = PACKET_TOO_BIG;
    icmp[1] = 0;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&u32::from(mtu.max(IPV6_MIN_MTU)).to_be_bytes());
    icmp[ICMPV6_HEADER..].copy_from_slice(&packet[..quoted]);
    let sum = checksum6(&dst, &src, icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    TooBig::Answer(total)
}

fn ipv6_at(packet: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&packet[at..at + 16]);
    Ipv6Addr::from(o)
}

/// The ICMPv6 checksum (RFC 4443 §2.3) over the IPv6 pseudo-header (RFC 8200 §8.1: source,
/// destination, 32-bit upper-layer length, three zero bytes and next header 58) and `body`,
/// summed in place without building the pseudo-header.
fn checksum6(src: &Ipv6Addr, dst: &Ipv6Addr, body: &[u8]) -> u16 {
    let mut sum = sum_words(&src.octets()) + sum_words(&dst.octets());
    // ok: body is at most 1240 bytes
    let len = body.len() as u32;
    sum += (len >> 16) + (len & 0xffff) + u32::from(NEXT_ICMPV6);
    sum += sum_words(body);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // ok: folded to 16 bits above
    !(sum as u16)
}

/// The unfolded sum of `data`'s 16-bit words (a lone last byte padded with zero). At most
/// 1280 bytes here, far from overflowing 32 bits.
fn sum_words(data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    let mut sum: u32 = chunks
        .by_ref()
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

#[cfg(test)]
#[path = "ptb6_tests.rs"]
mod tests;
