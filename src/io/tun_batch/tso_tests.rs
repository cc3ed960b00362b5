//! Tests of the lazy TSO/USO split: every packet equals what tun-rs's `gso_split` (the eager
//! split the driver used before) makes of the same read, every checksum verifies, and malformed
//! reads are refused without a panic.

use super::*;
use proptest::prelude::*;

/// The slot of a 1420-byte MTU (`tun_batch::slot_len`).
const SLOT: usize = 1564;

/// A read as the kernel writes it: virtio-net header, then a TCP or UDP super-packet whose
/// transport checksum field holds the pseudo-header sum (CHECKSUM_PARTIAL).
fn read(v6: bool, udp: bool, flags: u8, gso_size: u16, payload: usize) -> Vec<u8> {
    let iph = if v6 { 40 } else { 20 };
    let l4h = if udp { 8 } else { 32 };
    let total = iph + l4h + payload;
    let mut p = vec![0u8; total];
    let proto = if udp { UDP } else { TCP };
    if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = proto;
        p[7] = 64;
        p[8] = 0xfd;
        p[23] = 1;
        p[24] = 0xfd;
        p[39] = 2;
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0xfff0u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    }
    let l4 = &mut p[iph..];
    l4[0..4].copy_from_slice(&[0x12, 0x34, 0, 80]);
    if udp {
        l4[4..6].copy_from_slice(&((l4h + payload) as u16).to_be_bytes());
    } else {
        l4[4..8].copy_from_slice(&0xffff_ff00u32.to_be_bytes());
        l4[12] = ((l4h / 4) as u8) << 4;
        l4[13] = flags;
        l4[20..24].copy_from_slice(&[1, 1, 8, 10]);
    }
    for (k, b) in p[iph + l4h..].iter_mut().enumerate() {
        *b = (k * 7 + 3) as u8;
    }
    let csum_at = iph + if udp { UDP_CSUM_AT } else { TCP_CSUM_AT };
    let addrs = if v6 { &p[8..40] } else { &p[12..20] };
    let pseudo = fold(sum(addrs) + u64::from(proto) + (l4h + payload) as u64);
    p[csum_at..csum_at + 2].copy_from_slice(&pseudo.to_be_bytes());
    let gso_type = match (udp, v6) {
        (true, _) => GSO_UDP_L4,
        (false, false) => GSO_TCPV4,
        (false, true) => GSO_TCPV6,
    };
    let mut r = vec![F_NEEDS_CSUM, gso_type];
    for field in [iph + l4h, usize::from(gso_size), iph, csum_at - iph] {
        r.extend_from_slice(&(field as u16).to_ne_bytes());
    }
    r.extend_from_slice(&p);
    r
}

/// tun-rs's eager split of the same read (`handle_virtio_read` computes `hdr_len` as `parse`
/// does before it calls `gso_split`).
fn eager(r: &[u8], v6: bool) -> Vec<Vec<u8>> {
    let hdr = tun_rs::VirtioNetHdr {
        flags: r[0],
        gso_type: r[1],
        hdr_len: u16::from_ne_bytes([r[2], r[3]]),
        gso_size: u16::from_ne_bytes([r[4], r[5]]),
        csum_start: u16::from_ne_bytes([r[6], r[7]]),
        csum_offset: u16::from_ne_bytes([r[8], r[9]]),
    };
    let mut input = r[HDR_LEN..].to_vec();
    let mut bufs = vec![vec![0u8; SLOT]; 1024];
    let mut sizes = vec![0usize; 1024];
    let n = tun_rs::gso_split(&mut input, hdr, &mut bufs, &mut sizes, 0, v6).unwrap();
    (0..n).map(|i| bufs[i][..sizes[i]].to_vec()).collect()
}

fn lazy(r: &mut [u8]) -> Vec<Vec<u8>> {
    let Read::Super(s) = parse(r, true, SLOT).unwrap() else {
        panic!("not a super-packet");
    };
    let mut out = vec![0u8; SLOT];
    (0..s.count)
        .map(|i| {
            let n = s.segment(r, i, &mut out);
            out[..n].to_vec()
        })
        .collect()
}

/// The transport checksum of a packet verifies (RFC 1071: the sum with it is all ones).
fn verifies(p: &[u8], v6: bool) -> bool {
    let (iph, proto) = if v6 { (40, p[6]) } else { (20, p[9]) };
    let addrs = if v6 { &p[8..40] } else { &p[12..20] };
    let l4_len = (p.len() - iph) as u64;
    fold(sum(addrs) + u64::from(proto) + l4_len + sum(&p[iph..])) == 0xffff
}

#[test]
fn a_tcp_super_packet_splits_into_mss_sized_segments() {
    let mut r = read(false, false, 0x18 | 0x01, 1368, 1368 * 3 + 100);
    let packets = lazy(&mut r);
    assert_eq!(packets.len(), 4);
    assert_eq!(packets[0].len(), 20 + 32 + 1368);
    assert_eq!(packets[3].len(), 20 + 32 + 100);
    // Sequence numbers advance by the MSS, wrapping; FIN and PSH only on the last segment;
    // identification counts up from the first.
    let seq = |p: &[u8]| u32::from_be_bytes([p[24], p[25], p[26], p[27]]);
    assert_eq!(seq(&packets[1]), 0xffff_ff00u32.wrapping_add(1368));
    assert_eq!(packets[0][33], 0x10);
    assert_eq!(packets[3][33], 0x19);
    assert_eq!(u16::from_be_bytes([packets[2][4], packets[2][5]]), 0xfff2);
    for p in &packets {
        assert!(verifies(p, false));
        assert_eq!(fold(sum(&p[..20])), 0xffff, "IPv4 header checksum");
    }
    assert_eq!(
        packets,
        eager(&read(false, false, 0x19, 1368, 1368 * 3 + 100), false)
    );
}

#[test]
fn a_single_packet_is_used_where_it_was_read_with_its_checksum_completed() {
    let mut r = read(false, true, 0, 1400, 300);
    r[1] = 0; // GSO_NONE
    let Read::Single { start, len } = parse(&mut r, true, SLOT).unwrap() else {
        panic!("not a single packet");
    };
    assert_eq!((start, len), (HDR_LEN, 20 + 8 + 300));
    assert!(verifies(&r[start..start + len], false));
    // Without virtio-net headers the whole read is the packet.
    let mut bare = vec![0x45u8; 60];
    assert_eq!(
        parse(&mut bare, false, SLOT).unwrap(),
        Read::Single { start: 0, len: 60 }
    );
    // Larger than the MTU's slot, with or without the header: dropped.
    assert!(parse(&mut vec![0x45u8; SLOT + 1], false, SLOT).is_err());
    let mut big = read(false, true, 0, 1400, SLOT);
    big[1] = 0;
    assert!(parse(&mut big, true, SLOT).is_err());
}

#[test]
fn malformed_reads_are_refused() {
    let ok = read(false, false, 0x10, 1368, 5000);
    let refuse = |r: &mut Vec<u8>| parse(r, true, SLOT).is_err();
    // Segments larger than the slot; more segments than TCP makes (an MSS below 64 bytes).
    assert!(refuse(&mut read(false, false, 0x10, 1600, 5000)));
    assert!(refuse(&mut read(false, false, 0x10, 60, 64000)));
    // gso_size 0; a version that is neither 4 nor 6; a GSO type for the other IP version;
    // a TCP data offset below 5 words; a packet cut inside its headers; a bare header.
    let mut r = ok.clone();
    r[4..6].fill(0);
    assert!(refuse(&mut r));
    let mut r = ok.clone();
    r[HDR_LEN] = 0x55;
    assert!(refuse(&mut r));
    let mut r = ok.clone();
    r[1] = GSO_TCPV6;
    assert!(refuse(&mut r));
    let mut r = ok.clone();
    r[HDR_LEN + 32] = 0x40;
    assert!(refuse(&mut r));
    assert!(refuse(&mut ok[..HDR_LEN + 30].to_vec()));
    assert!(refuse(&mut ok[..HDR_LEN].to_vec()));
    // A partial checksum whose field lies past the packet.
    let mut r = read(false, true, 0, 1400, 10);
    r[1] = 0;
    r[6..8].copy_from_slice(&60u16.to_ne_bytes());
    assert!(refuse(&mut r));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any super-packet the kernel could hand us splits exactly as tun-rs splits it.
    #[test]
    fn the_lazy_split_equals_tun_rs_eager_split(
        v6 in any::<bool>(),
        udp in any::<bool>(),
        flags in prop::sample::select(vec![0x10u8, 0x18, 0x19, 0x90, 0x98]),
        gso_size in 88u16..1400,
        payload in 1usize..60000,
    ) {
        let r = read(v6, udp, flags, gso_size, payload);
        let packets = lazy(&mut r.clone());
        prop_assert_eq!(&packets, &eager(&r, v6));
        for p in &packets {
            prop_assert!(verifies(p, v6));
        }
    }
}
