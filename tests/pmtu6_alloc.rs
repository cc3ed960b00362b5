//! No allocation per packet on the IPv6 size path (issue 11 meets issue 14): answering an
//! oversized IPv6 packet with ICMPv6 "packet too big" and clamping the MSS of IPv6 SYNs write
//! into buffers the caller owns. A counting allocator (this binary's own, per thread so the test
//! harness's threads do not count) proves it over a steady run of packets.

use p2pvpn::core::pmtu::mss;
use p2pvpn::core::pmtu::ptb::TooBig;
use p2pvpn::core::pmtu::ptb6;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

/// An IPv6 packet of `len` bytes, next header `next`, between two overlay addresses.
fn packet6(len: usize, next: u8) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8] = 0xfd;
    p[23] = 1;
    p[24] = 0xfd;
    p[39] = 2;
    p
}

#[test]
fn packet_too_big_and_the_ipv6_mss_clamp_do_not_allocate() {
    let big = packet6(1400, 17);
    let mut syn = packet6(40 + 24, 6);
    syn[40 + 12] = 6 << 4;
    syn[40 + 13] = 0x02;
    syn[40 + 20..40 + 22].copy_from_slice(&[2, 4]);
    let mut out = vec![0u8; 65535];
    let before = allocations();
    let mut answered = 0;
    let mut clamped = 0;
    for i in 0..10_000u16 {
        if let TooBig::Answer(_) = ptb6::packet_too_big(&big, 1280 + i % 100, &mut out) {
            answered += 1;
        }
        syn[40 + 22..40 + 24].copy_from_slice(&1440u16.to_be_bytes());
        let max = mss::max_mss(&syn, 1300 + i % 100);
        if mss::clamp_mss(&mut syn, max) {
            clamped += 1;
        }
    }
    let during = allocations() - before;
    assert_eq!((answered, clamped), (10_000, 10_000), "the work was done");
    assert_eq!(during, 0, "allocations over 10 000 packets");
}
