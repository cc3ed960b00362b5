//! TCP MSS clamping on SYNs (the second line behind ICMP "fragmentation needed"): a connection
//! opened through the tunnel never agrees on segments larger than the peer's path carries, even
//! when ICMP is filtered on the hosts. The checksum is updated incrementally (RFC 1624 eqn. 3)
//! over the 16-bit words the change touches, so no pass over the payload and no allocation.
//! The same holds for IPv6: the TCP header sits right after the fixed IPv6 header when the next
//! header is TCP, and the pseudo-header (RFC 8200 §8.1) does not change when the MSS does. A SYN
//! behind IPv6 extension headers is left alone (none of the stacks we carry sends one so).

const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_HEADER: usize = 20;
const PROTO_TCP: u8 = 6;
const SYN: u8 = 0x02;
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
/// IPv4 (20) and TCP (20) headers: the MSS is the MTU minus these (RFC 879, RFC 6691).
pub const TCP_IPV4_HEADERS: u16 = 40;
/// IPv6 (40) and TCP (20) headers (RFC 8200 §8.3: the MSS is the path MTU minus 60).
pub const TCP_IPV6_HEADERS: u16 = 60;

/// The largest MSS a SYN in `packet` may announce on a path of `path_mtu` bytes: the path MTU
/// less the IP and TCP headers of the packet's family. For IPv6 this holds below 1280 too:
/// hosts never lower their IPv6 path MTU under 1280 (RFC 8200 §5), but they do honour a small
/// MSS, so on such a path the clamp is what keeps TCP over IPv6 flowing.
pub fn max_mss(packet: &[u8], path_mtu: u16) -> u16 {
    let headers = match packet.first().map(|b| b >> 4) {
        Some(6) => TCP_IPV6_HEADERS,
        _ => TCP_IPV4_HEADERS,
    };
    path_mtu.saturating_sub(headers)
}

/// Where the TCP header starts, if `packet` is an unfragmented IPv4 TCP segment or an IPv6
/// packet whose next header is TCP, with SYN set. Cheap enough for every packet: a few byte
/// reads.
pub fn tcp_syn_offset(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    if first >> 4 == 6 {
        // Next header TCP directly: no extension headers, so no fragment header either.
        let tcp = packet.get(6) == Some(&PROTO_TCP);
        let syn = packet.get(IPV6_HEADER + 13).is_some_and(|f| f & SYN != 0);
        let whole = packet.len() >= IPV6_HEADER + TCP_HEADER;
        return (tcp && syn && whole).then_some(IPV6_HEADER);
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < IPV4_HEADER || packet.len() < ihl + TCP_HEADER {
        return None;
    }
    let fragment = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff != 0;
    if packet[9] != PROTO_TCP || fragment || packet[ihl + 13] & SYN == 0 {
        return None;
    }
    Some(ihl)
}

/// Lowers the MSS option of a TCP SYN (or SYN-ACK) in `packet` to `max_mss`. Returns true when
/// the packet changed. A SYN without the option is left alone (its peer assumes 536, RFC 9293
/// §3.7.1, which fits every path).
pub fn clamp_mss(packet: &mut [u8], max_mss: u16) -> bool {
    let Some(ihl) = tcp_syn_offset(packet) else {
        return false;
    };
    let tcp = &mut packet[ihl..];
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    if data_offset < TCP_HEADER || tcp.len() < data_offset {
        return false;
    }
    let mut i = TCP_HEADER;
    while i < data_offset {
        match tcp[i] {
            OPT_END => return false,
            OPT_NOP => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || i + len > data_offset {
                    return false;
                }
                if kind == OPT_MSS && len == 4 {
                    let at = i + 2;
                    let mss = u16::from_be_bytes([tcp[at], tcp[at + 1]]);
                    if mss <= max_mss {
                        return false;
                    }
                    set_u16(tcp, at, max_mss);
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// Writes `value` at `at` in the TCP segment `tcp` and fixes its checksum (bytes 16-17) for
/// the 16-bit words that changed. The option may sit at an odd offset, so the words are the
/// segment's own (aligned to its start), not the field's.
fn set_u16(tcp: &mut [u8], at: usize, value: u16) {
    let first = at & !1;
    let last = (at + 2).min(tcp.len() - 1) | 1;
    // At most three words (an odd offset spans two, plus the field's own).
    let mut old = [0u16; 3];
    let words = (first..=last).step_by(2);
    for (slot, w) in old.iter_mut().zip(words.clone()) {
        *slot = word(tcp, w);
    }
    tcp[at..at + 2].copy_from_slice(&value.to_be_bytes());
    let mut sum = u32::from(!u16::from_be_bytes([tcp[16], tcp[17]]));
    for (old, w) in old.iter().zip(words) {
        // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')
        sum += u32::from(!*old) + u32::from(word(tcp, w));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // ok: folded to 16 bits above
    tcp[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// The 16-bit word at `i` (a lone last byte is padded with zero, as the checksum does).
fn word(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([
        b.get(i).copied().unwrap_or(0),
        b.get(i + 1).copied().unwrap_or(0),
    ])
}

#[cfg(test)]
#[path = "mss_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "mss6_tests.rs"]
mod tests6;
