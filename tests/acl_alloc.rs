//! No allocation per packet in the access rules (issue 14): judging a peer's packet against the
//! rules, remembering flows and logging denials use the fixed arrays `Acl` allocated once. A
//! counting allocator (this binary's own, per thread) proves it over a steady run of packets.

#![allow(clippy::disallowed_methods)] // a test reads the clock once for its start

use p2pvpn::core::acl::policy::{NodePolicy, NodeRule, Sources};
use p2pvpn::core::acl::rule::{PortRange, Proto};
use p2pvpn::core::acl::Acl;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p
}

#[test]
fn judging_packets_does_not_allocate() {
    let (alice, bob) = (Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2));
    let mut acl = Acl::new(1);
    acl.set_policy(Some(NodePolicy {
        rules: vec![NodeRule {
            id: 1,
            text: "tcp 22 from alice to bob".into(),
            from: Sources::Members(vec![alice]),
            proto: Proto::Tcp,
            ports: vec![PortRange {
                first: 22,
                last: 22,
            }],
        }],
        outbound: vec![],
        truncated: 0,
    }));
    let packets: Vec<(bool, Vec<u8>)> = (0..64u16)
        .flat_map(|i| {
            [
                (true, tcp(alice, bob, 40000 + i, 22)),
                (true, tcp(alice, bob, 40000 + i, 80 + i)),
                (false, tcp(bob, alice, 50000 + i, 443)),
                (true, tcp(alice, bob, 443, 50000 + i)),
            ]
        })
        .collect();
    let now = std::time::Instant::now();
    let before = allocations();
    let mut passed = 0;
    for round in 0..50u64 {
        let t = now + std::time::Duration::from_millis(round);
        for (inbound, p) in &packets {
            if *inbound {
                passed += usize::from(acl.inbound(alice, p, t).is_ok());
            } else {
                acl.outbound(alice, p, t);
            }
        }
    }
    assert_eq!(allocations() - before, 0, "allocations on the packet path");
    // 22 and the replies to bob's own connections pass; 80+ does not.
    assert_eq!(passed, 50 * 64 * 2);
}
