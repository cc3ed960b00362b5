//! Tests of the write-path GRO: what coalesces and what does not, the super-packet's headers,
//! and (proptest) that segmenting the output as the kernel does gives back the input packets.

use super::*;
use proptest::prelude::*;

/// A full slot: header room and the largest packet.
const CAP: usize = HDR_LEN + MAX_PACKET;

/// A TCP or UDP packet to build.
#[derive(Clone, Debug)]
struct Spec {
    v6: bool,
    udp: bool,
    sport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    ttl: u8,
    id: u16,
    /// A 12-byte timestamp option (RFC 7323) with this TSval, or none.
    ts: Option<u32>,
    len: usize,
}

fn spec(seq: u32, len: usize) -> Spec {
    Spec {
        v6: false,
        udp: false,
        sport: 1000,
        seq,
        ack: 7,
        flags: TCP_ACK,
        ttl: 64,
        id: 1,
        ts: None,
        len,
    }
}

fn build(s: &Spec) -> Vec<u8> {
    let iph = if s.v6 { 40 } else { 20 };
    let l4h = if s.udp {
        8
    } else if s.ts.is_some() {
        32
    } else {
        20
    };
    let total = iph + l4h + s.len;
    let mut p = vec![0u8; total];
    if s.v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = if s.udp { UDP } else { TCP };
        p[7] = s.ttl;
        p[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&s.id.to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = s.ttl;
        p[9] = if s.udp { UDP } else { TCP };
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    }
    let l4 = &mut p[iph..];
    l4[0..2].copy_from_slice(&s.sport.to_be_bytes());
    l4[2..4].copy_from_slice(&80u16.to_be_bytes());
    if s.udp {
        l4[4..6].copy_from_slice(&((l4h + s.len) as u16).to_be_bytes());
    } else {
        l4[4..8].copy_from_slice(&s.seq.to_be_bytes());
        l4[8..12].copy_from_slice(&s.ack.to_be_bytes());
        l4[12] = ((l4h / 4) as u8) << 4;
        l4[13] = s.flags;
        l4[14..16].copy_from_slice(&512u16.to_be_bytes());
        if let Some(ts) = s.ts {
            l4[20..24].copy_from_slice(&[1, 1, 8, 10]);
            l4[24..28].copy_from_slice(&ts.to_be_bytes());
        }
    }
    for (i, b) in l4[l4h..].iter_mut().enumerate() {
        *b = (s.seq as usize + i) as u8;
    }
    seal(&mut p);
    p
}

/// Fills in the IPv4 header and transport checksums.
fn seal(p: &mut [u8]) {
    let v6 = p[0] >> 4 == 6;
    let (iph, proto) = if v6 { (40, p[6]) } else { (20, p[9]) };
    if !v6 {
        p[10..12].fill(0);
        let c = !fold(sum(&p[..20]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let at = iph
        + if proto == UDP {
            UDP_CSUM_AT
        } else {
            TCP_CSUM_AT
        };
    p[at..at + 2].fill(0);
    let l = L4Packet {
        v6,
        proto,
        iph,
        l4h: 0,
        candidate: false,
    };
    let mut c = !fold(pseudo_sum(p, &l, p.len() - iph) + sum(&p[iph..]));
    if c == 0 && proto == UDP {
        c = 0xffff;
    }
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Runs the coalescer over `packets` in slots of `cap` bytes; returns each write's bytes.
fn run(packets: &[Vec<u8>], udp: bool, cap: usize) -> Vec<Vec<u8>> {
    let mut slots: Vec<Vec<u8>> = packets
        .iter()
        .map(|p| {
            let mut s = Vec::with_capacity(cap);
            s.resize(HDR_LEN, 0xee); // stale bytes: the header must be written
            s.extend_from_slice(p);
            s
        })
        .collect();
    let lens: Vec<usize> = packets.iter().map(Vec::len).collect();
    let mut gro = Gro::new(packets.len());
    let writes: Vec<(usize, usize)> = gro.coalesce(&mut slots, &lens, udp).collect();
    writes
        .iter()
        .map(|&(i, n)| slots[i][..n].to_vec())
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
struct Hdr {
    flags: u8,
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
}

fn hdr(w: &[u8]) -> Hdr {
    let f = |i: usize| u16::from_ne_bytes([w[i], w[i + 1]]);
    Hdr {
        flags: w[0],
        gso_type: w[1],
        hdr_len: f(2),
        gso_size: f(4),
        csum_start: f(6),
        csum_offset: f(8),
    }
}

const NONE: Hdr = Hdr {
    flags: 0,
    gso_type: 0,
    hdr_len: 0,
    gso_size: 0,
    csum_start: 0,
    csum_offset: 0,
};

/// Segments a write as the kernel does for a GSO packet (IPv4 ID + 1 per segment, sequence
/// numbers advanced, PSH only on the last, checksums completed); a plain write is one packet.
fn split(w: &[u8]) -> Vec<Vec<u8>> {
    let h = hdr(w);
    let pkt = &w[HDR_LEN..];
    if h.gso_type == 0 {
        assert_eq!(h, NONE, "a plain packet has a zero header");
        return vec![pkt.to_vec()];
    }
    assert_eq!(h.flags, F_NEEDS_CSUM);
    let hl = usize::from(h.hdr_len);
    let v6 = pkt[0] >> 4 == 6;
    let iph = usize::from(h.csum_start);
    let udp = h.gso_type == GSO_UDP_L4;
    let chunks: Vec<&[u8]> = pkt[hl..].chunks(usize::from(h.gso_size)).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(k, chunk)| {
            let mut s = pkt[..hl].to_vec();
            s.extend_from_slice(chunk);
            let total = s.len();
            if v6 {
                s[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            } else {
                s[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                let id = u16::from_be_bytes([s[4], s[5]]).wrapping_add(k as u16);
                s[4..6].copy_from_slice(&id.to_be_bytes());
            }
            if udp {
                s[iph + 4..iph + 6].copy_from_slice(&((total - iph) as u16).to_be_bytes());
            } else {
                let seq = u32::from_be_bytes([s[iph + 4], s[iph + 5], s[iph + 6], s[iph + 7]]);
                let seq = seq.wrapping_add((k * usize::from(h.gso_size)) as u32);
                s[iph + 4..iph + 8].copy_from_slice(&seq.to_be_bytes());
                if k + 1 < n {
                    s[iph + 13] &= !TCP_PSH;
                }
            }
            seal(&mut s);
            s
        })
        .collect()
}

/// The packets without their IPv4 ID (and so header checksum), which segmentation numbers
/// afresh: for tests whose input does not number them consecutively.
fn sans_id(mut packets: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    for p in packets.iter_mut().filter(|p| p[0] >> 4 == 4) {
        p[4..6].fill(0);
        p[10..12].fill(0);
    }
    packets
}

fn ipv4_header_ok(p: &[u8]) -> bool {
    fold(sum(&p[..20])) == 0xffff
}

/// `n` consecutive full segments of `size` bytes from sequence number `seq`, IDs from 1.
fn stream(seq: u32, size: usize, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            build(&Spec {
                id: 1 + k as u16,
                ..spec(seq + (k * size) as u32, size)
            })
        })
        .collect()
}

#[test]
fn an_in_order_run_becomes_one_super_packet_with_the_kernels_header() {
    let input = stream(1000, 1000, 5);
    let out = run(&input, false, CAP);
    assert_eq!(out.len(), 1);
    let w = &out[0];
    assert_eq!(
        hdr(w),
        Hdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 40,
            gso_size: 1000,
            csum_start: 20,
            csum_offset: 16,
        }
    );
    let pkt = &w[HDR_LEN..];
    assert_eq!(pkt.len(), 40 + 5000);
    assert_eq!(u16::from_be_bytes([pkt[2], pkt[3]]), 5040);
    assert!(ipv4_header_ok(pkt), "IPv4 header checksum");
    // The transport checksum field holds the folded pseudo-header sum (CHECKSUM_PARTIAL).
    let expected = fold(sum(&pkt[12..20]) + u64::from(TCP) + 5020);
    assert_eq!(u16::from_be_bytes([pkt[36], pkt[37]]), expected);
    // The payloads follow each other.
    let payload: Vec<u8> = input.iter().flat_map(|p| p[40..].to_vec()).collect();
    assert_eq!(&pkt[40..], &payload[..]);
    assert_eq!(split(w), input);
}

#[test]
fn a_gap_a_flow_change_an_ack_change_or_a_ttl_change_starts_a_new_run() {
    let gap = vec![build(&spec(0, 100)), build(&spec(200, 100))];
    assert_eq!(run(&gap, false, CAP).len(), 2);

    let ack = vec![
        build(&spec(0, 100)),
        build(&Spec {
            ack: 8,
            ..spec(100, 100)
        }),
    ];
    assert_eq!(run(&ack, false, CAP).len(), 2);

    let ttl = vec![
        build(&spec(0, 100)),
        build(&Spec {
            ttl: 63,
            ..spec(100, 100)
        }),
    ];
    assert_eq!(run(&ttl, false, CAP).len(), 2);

    let options = vec![
        build(&Spec {
            ts: Some(1),
            ..spec(0, 100)
        }),
        build(&Spec {
            ts: Some(2),
            ..spec(100, 100)
        }),
        build(&Spec {
            ts: Some(2),
            ..spec(200, 100)
        }),
    ];
    let out = run(&options, false, CAP);
    assert_eq!(out.len(), 2, "timestamps differ, then match");
    assert_eq!(hdr(&out[1]).hdr_len, 52);

    // Two interleaved flows: each coalesces, in its own run.
    let other = |seq| {
        build(&Spec {
            sport: 2000,
            ..spec(seq, 100)
        })
    };
    let mixed = vec![
        build(&spec(0, 100)),
        other(0),
        build(&spec(100, 100)),
        other(100),
    ];
    let out = run(&mixed, false, CAP);
    assert_eq!(out.len(), 2);
    let ab = |a: usize, b: usize| sans_id(vec![mixed[a].clone(), mixed[b].clone()]);
    assert_eq!(sans_id(split(&out[0])), ab(0, 2));
    assert_eq!(sans_id(split(&out[1])), ab(1, 3));
}

#[test]
fn psh_ends_a_run_and_a_shorter_segment_is_the_last() {
    let input = vec![
        build(&spec(0, 100)),
        build(&Spec {
            flags: TCP_ACK | TCP_PSH,
            ..spec(100, 100)
        }),
        build(&spec(200, 100)),
        build(&spec(300, 50)),
        build(&spec(350, 50)),
        build(&spec(400, 100)),
    ];
    let out = run(&input, false, CAP);
    let sizes: Vec<usize> = out.iter().map(|w| split(w).len()).collect();
    assert_eq!(sizes, vec![2, 2, 1, 1]);
    // A larger segment never follows a smaller one in a run.
    assert_eq!(hdr(&out[1]).gso_size, 100);
    let back: Vec<Vec<u8>> = out.iter().flat_map(|w| split(w)).collect();
    assert_eq!(sans_id(back), sans_id(input));

    // A PSH segment heading a run takes nothing after it either.
    let pushed = vec![
        build(&Spec {
            flags: TCP_ACK | TCP_PSH,
            ..spec(0, 100)
        }),
        build(&spec(100, 100)),
    ];
    assert_eq!(run(&pushed, false, CAP).len(), 2);
}

#[test]
fn a_packet_that_cannot_join_closes_its_flows_run_so_nothing_overtakes_it() {
    let fin = build(&Spec {
        flags: TCP_ACK | 0x01,
        ..spec(100, 0)
    });
    let input = vec![build(&spec(0, 100)), fin, build(&spec(100, 100))];
    let out = run(&input, false, CAP);
    assert_eq!(out.len(), 3);
    assert_eq!(out.iter().flat_map(|w| split(w)).collect::<Vec<_>>(), input);
}

#[test]
fn ipv6_runs_coalesce_with_the_tcpv6_type_and_payload_length() {
    let input: Vec<Vec<u8>> = (0..4)
        .map(|k| {
            build(&Spec {
                v6: true,
                ..spec(k * 1200, 1200)
            })
        })
        .collect();
    let out = run(&input, false, CAP);
    assert_eq!(out.len(), 1);
    let h = hdr(&out[0]);
    assert_eq!((h.gso_type, h.hdr_len, h.csum_start), (GSO_TCPV6, 60, 40));
    let pkt = &out[0][HDR_LEN..];
    assert_eq!(usize::from(u16::from_be_bytes([pkt[4], pkt[5]])), 20 + 4800);
    assert_eq!(split(&out[0]), input);
}

#[test]
fn a_run_stops_at_64_kib_and_at_the_slots_capacity() {
    let input = stream(0, 1400, 60);
    let out = run(&input, false, CAP);
    assert!(out.iter().all(|w| w.len() - HDR_LEN <= MAX_PACKET));
    // 46 segments of 1400 bytes fit below 65535 with their 40 bytes of headers.
    assert_eq!(split(&out[0]).len(), 46);
    assert_eq!(out.len(), 2);
    assert_eq!(out.iter().flat_map(|w| split(w)).collect::<Vec<_>>(), input);

    let small = run(&input[..4], false, HDR_LEN + 3000);
    assert_eq!(
        small.len(),
        2,
        "two 1400-byte segments fill a 3000-byte slot"
    );
}

#[test]
fn udp_coalesces_only_when_the_device_has_uso() {
    let input: Vec<Vec<u8>> = (0..3)
        .map(|k| {
            build(&Spec {
                udp: true,
                id: 1 + k,
                ..spec(0, 500)
            })
        })
        .collect();
    let plain = run(&input, false, CAP);
    assert_eq!(plain.len(), 3);
    assert!(plain.iter().all(|w| hdr(w) == NONE));
    let out = run(&input, true, CAP);
    assert_eq!(out.len(), 1);
    let h = hdr(&out[0]);
    assert_eq!(
        (h.gso_type, h.hdr_len, h.gso_size, h.csum_offset),
        (GSO_UDP_L4, 28, 500, 6)
    );
    assert_eq!(split(&out[0]), input);
}

#[test]
fn a_segment_with_a_bad_checksum_is_written_alone_for_the_kernel_to_drop() {
    let mut input = stream(0, 100, 3);
    input[1][60] ^= 0xff;
    let out = run(&input, false, CAP);
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|w| hdr(w) == NONE));
}

#[test]
fn icmp_and_fragments_are_written_as_they_are() {
    let mut icmp = build(&spec(0, 100));
    icmp[9] = 1;
    let mut frag = build(&spec(100, 100));
    frag[6] = 0x20; // more fragments
    let input = vec![icmp.clone(), frag.clone(), build(&spec(200, 100))];
    let out = run(&input, false, CAP);
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|w| hdr(w) == NONE));
    assert_eq!(&out[0][HDR_LEN..], &icmp[..]);
    assert_eq!(&out[1][HDR_LEN..], &frag[..]);
}

/// What the property test sends next on one of its flows.
#[derive(Clone, Copy, Debug)]
enum Step {
    Full,
    Short(usize),
    Push,
    Gap,
    Ttl,
    Fin,
    Icmp,
}

fn step() -> impl Strategy<Value = (usize, Step)> {
    let s = prop_oneof![
        6 => Just(Step::Full),
        1 => (1usize..300).prop_map(Step::Short),
        1 => Just(Step::Push),
        1 => Just(Step::Gap),
        1 => Just(Step::Ttl),
        1 => Just(Step::Fin),
        1 => Just(Step::Icmp),
    ];
    (0usize..4, s)
}

/// Flow 0 and 1: IPv4 TCP between the same addresses; 2: IPv6 TCP; 3: IPv4 UDP.
fn flow_spec(flow: usize) -> Spec {
    Spec {
        v6: flow == 2,
        udp: flow == 3,
        sport: 1000 + flow as u16,
        ..spec(0, 0)
    }
}

/// Which flow a packet belongs to; ICMP (flow 4) shares flow 0's addresses.
fn flow_of(p: &[u8]) -> usize {
    if p[0] >> 4 == 6 {
        return 2;
    }
    match p[9] {
        1 => 4,
        UDP => 3,
        _ => usize::from(u16::from_be_bytes([p[20], p[21]]) - 1000),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The 64-bit sum equals RFC 1071's big-endian 16-bit word sum, odd lengths included.
    #[test]
    fn the_checksum_sum_is_rfc_1071s(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let naive: u64 = data
            .chunks(2)
            .map(|w| u64::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)])))
            .sum();
        prop_assert_eq!(fold(sum(&data)), fold(naive));
    }

    /// Segmenting the writes gives back every input packet, in its flow's order, with ICMP
    /// between the IPv4 flows' addresses never overtaken; every super-packet is within bounds.
    #[test]
    fn splitting_the_output_gives_back_the_input(
        steps in proptest::collection::vec(step(), 1..32),
        size in 200usize..1400,
        udp in any::<bool>(),
    ) {
        let mut specs: Vec<Spec> = (0..4).map(flow_spec).collect();
        let mut input = Vec::new();
        for (flow, st) in steps {
            let s = &mut specs[flow];
            s.id = s.id.wrapping_add(1);
            s.flags = TCP_ACK;
            s.len = size;
            match st {
                Step::Full => {}
                Step::Short(n) => s.len = n.min(size),
                Step::Push => s.flags = TCP_ACK | TCP_PSH,
                Step::Gap => s.seq = s.seq.wrapping_add(1),
                Step::Ttl => s.ttl = s.ttl.wrapping_sub(1),
                Step::Fin => {
                    s.flags = TCP_ACK | 0x01;
                    s.len = 0;
                }
                Step::Icmp => {}
            }
            let mut p = build(s);
            if matches!(st, Step::Icmp) && !s.v6 {
                p[9] = 1;
            }
            if !s.udp {
                s.seq = s.seq.wrapping_add(s.len as u32);
            }
            input.push(p);
        }
        let out = run(&input, udp, CAP);
        prop_assert!(out.len() <= input.len());
        for w in &out {
            prop_assert!(w.len() - HDR_LEN <= MAX_PACKET);
            if hdr(w).gso_type == GSO_UDP_L4 {
                prop_assert!(udp);
            }
        }
        let back: Vec<Vec<u8>> = out.iter().flat_map(|w| split(w)).collect();
        prop_assert_eq!(back.len(), input.len());
        for f in 0..5 {
            let a: Vec<&Vec<u8>> = input.iter().filter(|p| flow_of(p) == f).collect();
            let b: Vec<&Vec<u8>> = back.iter().filter(|p| flow_of(p) == f).collect();
            prop_assert_eq!(a, b, "flow {}", f);
        }
        let pair = |v: &[Vec<u8>]| -> Vec<usize> {
            v.iter().map(|p| flow_of(p)).filter(|&f| f != 2).collect()
        };
        let (a, b) = (pair(&input), pair(&back));
        let icmp_at = |v: &[usize]| -> Vec<usize> {
            v.iter().enumerate().filter(|(_, &f)| f == 4).map(|(i, _)| i).collect()
        };
        prop_assert_eq!(icmp_at(&a), icmp_at(&b));
    }
}
