//! The key table: what the workers handle themselves and what falls to the core, and that two
//! workers plus a core rotating keys underneath them never lose a datagram to a wrong key or a
//! false replay.

use super::table::{Activity, KeyTable, Opened, Published, RecvEntry, Sealed, SendEntry};
use super::transport::{RecvKey, SendKey};
use crate::core::counters::DropReason;
use crate::core::transmit::SocketId;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

const ALICE: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const BOB: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> Vec<u8> {
    let mut p = vec![0x5A; len];
    p[0] = 0x45;
    let total = len as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p
}

fn alice_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 51821))
}

fn bob_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 51820))
}

/// Session `gen`: alice's table sends to bob under it, bob's table receives under index `gen`.
fn session(gen: u32) -> (Arc<SendEntry>, Arc<RecvEntry>) {
    let key = [gen as u8; 32];
    let send = SendEntry {
        peer: BOB,
        key: Arc::new(SendKey::new(key, gen)),
        socket: SocketId::MAIN,
        dst: bob_addr(),
        relay: None,
        mtu: 1420,
        activity: Arc::new(Activity::default()),
    };
    let recv = RecvEntry {
        peer: ALICE,
        key: Arc::new(RecvKey::new(key, gen)),
        from: alice_addr(),
        relay: None,
        allowed: vec!["10.99.0.1/32".parse().unwrap()],
        path_mtu: Some(1400),
        activity: Arc::new(Activity::default()),
    };
    (Arc::new(send), Arc::new(recv))
}

fn tables(gen: u32) -> (KeyTable, KeyTable) {
    let (s, r) = session(gen);
    let (mut alice, mut bob) = (KeyTable::default(), KeyTable::default());
    alice.set_send(&[IpAddr::V4(BOB)], s);
    bob.set_local(&[IpAddr::V4(BOB)]);
    bob.add_recv(r);
    (alice, bob)
}

#[test]
fn the_workers_carry_data_and_leave_everything_else_to_the_core() {
    let (alice, bob) = tables(1);
    let mut wire = [0u8; 2048];
    let mut out = [0u8; 2048];
    let packet = ipv4(ALICE, BOB, 101);
    let Sealed::Datagram { socket, dst, len } = alice.seal(&packet, &mut wire, 5) else {
        panic!("alice's worker did not seal");
    };
    assert_eq!((socket, dst), (SocketId::MAIN, bob_addr()));
    assert_eq!(
        bob.open(alice_addr(), &wire[..len], &mut out, 6),
        Opened::Packet(&packet[..])
    );
    assert_eq!(
        bob.open(alice_addr(), &wire[..len], &mut out, 6),
        Opened::Dropped(DropReason::Replay)
    );
    // No entry for that destination, too big for the path, not IP: the core's.
    let stranger = ipv4(ALICE, Ipv4Addr::new(10, 99, 0, 9), 60);
    assert_eq!(alice.seal(&stranger, &mut wire, 7), Sealed::ToCore);
    assert_eq!(
        alice.seal(&ipv4(ALICE, BOB, 1421), &mut wire, 7),
        Sealed::ToCore
    );
    assert_eq!(alice.seal(&[0x00; 40], &mut wire, 7), Sealed::ToCore);
    // A handshake initiation, or data for an index bob's workers do not hold: the core's.
    let mut init = [0u8; 148];
    init[0] = 1;
    assert_eq!(bob.open(alice_addr(), &init, &mut out, 8), Opened::ToCore);
    let (other, _) = tables(2);
    let Sealed::Datagram { len, .. } = other.seal(&packet, &mut wire, 8) else {
        panic!()
    };
    assert_eq!(
        bob.open(alice_addr(), &wire[..len], &mut out, 8),
        Opened::ToCore
    );
}

#[test]
fn a_spoofed_inner_source_or_a_forgery_is_dropped_and_activity_is_reported() {
    let (s, r) = session(3);
    let mut alice = KeyTable::default();
    alice.set_send(&[IpAddr::V4(BOB)], s.clone());
    let mut bob = KeyTable::default();
    bob.set_local(&[IpAddr::V4(BOB)]);
    bob.add_recv(r.clone());
    let mut wire = [0u8; 2048];
    let mut out = [0u8; 2048];
    let spoofed = ipv4(Ipv4Addr::new(10, 99, 0, 7), BOB, 80);
    let Sealed::Datagram { len, .. } = alice.seal(&spoofed, &mut wire, 10) else {
        panic!()
    };
    assert_eq!(
        bob.open(alice_addr(), &wire[..len], &mut out, 11),
        Opened::Dropped(DropReason::SpoofedSource)
    );
    let Sealed::Datagram { len, .. } = alice.seal(&ipv4(ALICE, BOB, 80), &mut wire, 12) else {
        panic!()
    };
    wire[len - 1] ^= 1;
    assert_eq!(
        bob.open(alice_addr(), &wire[..len], &mut out, 13),
        Opened::Dropped(DropReason::DecryptFailed)
    );
    assert_eq!(s.activity.sent_at_ms.load(Ordering::Relaxed), 12);
    assert_eq!(s.activity.tx_bytes.load(Ordering::Relaxed), 160);
    assert_eq!(r.activity.received_at_ms.load(Ordering::Relaxed), 11);
    assert_eq!(
        r.activity.rx_bytes.load(Ordering::Relaxed),
        0,
        "nothing accepted"
    );
}

/// A TX worker and an RX worker on their own threads while the core rekeys underneath them:
/// each rotation publishes bob's new receiving session before alice's new sending key, and
/// keeps one previous session for datagrams in flight (as WireGuard does), dropping older ones.
/// Every datagram either opens exactly once or falls to the core (an index already retired);
/// none fails to decrypt or is taken for a replay, and a second delivery never opens.
#[test]
fn workers_and_a_rotating_core_never_mix_up_keys() {
    const PACKETS: usize = 3000;
    let (alice_pub, bob_pub) = (
        Arc::new(Published::default()),
        Arc::new(Published::default()),
    );
    let (a, b) = tables(1);
    alice_pub.store(a.clone());
    bob_pub.store(b.clone());
    let done = Arc::new(AtomicBool::new(false));
    // Batches sealed so far: the core rotates every 4 batches, so rotations interleave with
    // traffic whatever the scheduler does.
    let progress = Arc::new(AtomicUsize::new(0));
    let (to_rx, from_tx) = mpsc::sync_channel::<Vec<u8>>(64);

    let core = {
        let (alice_pub, bob_pub) = (alice_pub.clone(), bob_pub.clone());
        let (done, progress) = (done.clone(), progress.clone());
        std::thread::spawn(move || {
            let (mut alice, mut bob) = (a, b);
            let mut gen = 1u32;
            while !done.load(Ordering::Relaxed) {
                if progress.load(Ordering::Relaxed) < 4 * gen as usize {
                    std::thread::yield_now();
                    continue;
                }
                gen += 1;
                let (s, r) = session(gen);
                bob.set_local(&[IpAddr::V4(BOB)]);
                bob.add_recv(r);
                if gen > 2 {
                    bob.remove_recv(gen - 2);
                }
                bob_pub.store(bob.clone());
                alice.set_send(&[IpAddr::V4(BOB)], s);
                alice_pub.store(alice.clone());
            }
            gen
        })
    };
    let tx = {
        let (alice_pub, progress) = (alice_pub.clone(), progress.clone());
        std::thread::spawn(move || {
            let packet = ipv4(ALICE, BOB, 200);
            for batch in 0..PACKETS / 16 {
                let table = alice_pub.load();
                for _ in 0..16 {
                    let mut wire = vec![0u8; 512];
                    match table.seal(&packet, &mut wire, batch as u64) {
                        Sealed::Datagram { len, .. } => wire.truncate(len),
                        Sealed::ToCore => panic!("alice's table always has bob"),
                    }
                    if to_rx.send(wire).is_err() {
                        return;
                    }
                }
                progress.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (mut opened, mut to_core) = (0usize, 0usize);
    let mut out = vec![0u8; 512];
    let mut batch = Vec::with_capacity(16);
    while let Ok(first) = from_tx.recv() {
        batch.clear();
        batch.push(first);
        batch.extend(from_tx.try_iter().take(15));
        let table = bob_pub.load();
        for d in &batch {
            match table.open(alice_addr(), d, &mut out, 0) {
                Opened::Packet(p) => {
                    assert_eq!(p.len(), 200);
                    opened += 1;
                    let again = table.open(alice_addr(), d, &mut out, 0);
                    assert_eq!(again, Opened::Dropped(DropReason::Replay));
                }
                Opened::ToCore => to_core += 1,
                other => panic!("a datagram was mishandled: {other:?}"),
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    tx.join().unwrap();
    let rotations = core.join().unwrap();
    assert_eq!(opened + to_core, PACKETS - PACKETS % 16);
    eprintln!("{rotations} sessions, {opened} opened, {to_core} to the core");
    assert!(rotations > 10, "the core rotated only {rotations} times");
    assert!(
        opened > PACKETS / 2,
        "{opened} opened, {to_core} to the core"
    );
}

/// A TCP SYN from alice to bob with an MSS option of 1460.
fn syn() -> Vec<u8> {
    let mut p = ipv4(ALICE, BOB, 44);
    p[4..8].fill(0); // not a fragment
    p[9] = 6;
    let tcp = &mut p[20..];
    tcp.fill(0);
    tcp[12] = 6 << 4; // data offset: 24 bytes
    tcp[13] = 0x02; // SYN
    tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xB4]);
    p
}

#[test]
fn syns_keep_their_mss_clamp_and_big_packets_are_reported() {
    let (s, r) = session(4);
    let mut alice = KeyTable::default();
    alice.set_send(&[IpAddr::V4(BOB)], s.clone());
    let mut bob = KeyTable::default();
    bob.set_local(&[IpAddr::V4(BOB)]);
    bob.add_recv(r);
    let mut wire = [0u8; 2048];
    let mut out = [0u8; 2048];
    // Outgoing: the core clamps, as it does today.
    assert_eq!(alice.seal(&syn(), &mut wire, 1), Sealed::ToCore);
    // Incoming (sealed here directly): clamped in place to the path's 1400 - 40.
    let len = s.key.seal(&syn(), &mut wire).unwrap();
    let Opened::Packet(p) = bob.open(alice_addr(), &wire[..len], &mut out, 2) else {
        panic!("bob did not open the SYN");
    };
    assert_eq!(u16::from_be_bytes([p[42], p[43]]), 1360);
    let big = ipv4(ALICE, BOB, 1300);
    assert!(matches!(
        alice.seal(&big, &mut wire, 3),
        Sealed::Datagram { .. }
    ));
    assert!(matches!(
        alice.seal(&ipv4(ALICE, BOB, 100), &mut wire, 4),
        Sealed::Datagram { .. }
    ));
    assert_eq!(s.activity.big_sent_at_ms.load(Ordering::Relaxed), 3);
    assert_eq!(s.activity.sent_at_ms.load(Ordering::Relaxed), 4);
}

/// An ICMP echo from alice to bob under `id` (the user's `ping` uses its own identifier).
fn echo(kind_reply: bool, id: u16) -> Vec<u8> {
    let request = crate::core::icmp::echo_request(ALICE, BOB, 1);
    let mut p = if kind_reply {
        // A reply from alice to bob: the reply to bob's request to alice.
        let to_alice = crate::core::icmp::echo_request(BOB, ALICE, 1);
        crate::core::icmp::echo_reply_for(&to_alice).unwrap()
    } else {
        request
    };
    p[24..26].copy_from_slice(&id.to_be_bytes());
    p[22..24].copy_from_slice(&[0, 0]);
    let sum = crate::core::icmp::checksum(&p[20..]);
    p[22..24].copy_from_slice(&sum.to_be_bytes());
    p
}

#[test]
fn only_the_cores_own_echoes_go_to_the_core_and_a_users_ping_goes_to_the_tun_device() {
    use crate::core::icmp::PING_ID;
    use crate::core::pmtu::probe::PROBE_ID;
    let (alice, bob) = tables(1);
    let mut wire = [0u8; 2048];
    let mut out = [0u8; 2048];
    let mut open = |packet: &[u8]| {
        let Sealed::Datagram { len, .. } = alice.seal(packet, &mut wire, 1) else {
            panic!("alice's worker did not seal");
        };
        match bob.open(alice_addr(), &wire[..len], &mut out, 2) {
            Opened::Packet(_) => "tun",
            Opened::Core(_) => "core",
            other => panic!("{other:?}"),
        }
    };
    // A user's ping (request and reply): written by the worker itself, so that the kernel's
    // answer leaves on the same thread without waking the node task.
    assert_eq!(open(&echo(false, 0x1234)), "tun");
    assert_eq!(open(&echo(true, 0x1234)), "tun");
    // `p2pvpn ping`'s replies and the PMTU probes are the core's.
    assert_eq!(open(&echo(true, PING_ID)), "core");
    assert_eq!(open(&echo(false, PROBE_ID)), "core");
    assert_eq!(open(&echo(true, PROBE_ID)), "core");
}

#[test]
fn a_relayed_session_frames_each_message_and_checks_the_senders_relay_id() {
    use crate::core::relay::wire;
    let server = SocketAddr::from(([127, 0, 0, 1], 7400));
    let key = [9u8; 32];
    let activity = || Arc::new(Activity::default());
    let mut alice = KeyTable::default();
    alice.set_send(
        &[IpAddr::V4(BOB)],
        Arc::new(SendEntry {
            peer: BOB,
            key: Arc::new(SendKey::new(key, 9)),
            socket: SocketId::MAIN,
            dst: server,
            relay: Some(22),
            mtu: 1420,
            activity: activity(),
        }),
    );
    let mut bob = KeyTable::default();
    bob.set_local(&[IpAddr::V4(BOB)]);
    bob.add_recv(Arc::new(RecvEntry {
        peer: ALICE,
        key: Arc::new(RecvKey::new(key, 9)),
        from: server,
        relay: Some(11),
        allowed: vec!["10.99.0.1/32".parse().unwrap()],
        path_mtu: None,
        activity: activity(),
    }));
    let packet = ipv4(ALICE, BOB, 101);
    let mut buf = [0u8; 2048];
    let mut out = [0u8; 2048];
    let mut seal = |n: u64| -> Vec<u8> {
        let Sealed::Datagram { dst, len, .. } = alice.seal(&packet, &mut buf, n) else {
            panic!("alice's worker did not seal");
        };
        assert_eq!(dst, server, "a relayed message goes to the server");
        let datagram = buf[..len].to_vec();
        assert_eq!(
            wire::parse(&datagram)
                .map(|d| matches!(d, wire::RelayDatagram::ToPeer { dst: 22, .. })),
            Some(true),
            "a ToPeer header naming bob's relay id"
        );
        datagram
    };
    // What the server forwards: the same bytes, the header rewritten to name the sender.
    let mut forwarded = seal(1);
    wire::rewrite_to_from_peer(&mut forwarded, 11);
    assert_eq!(
        bob.open(server, &forwarded, &mut out, 2),
        Opened::Packet(&packet[..])
    );
    // Naming another member, arriving from elsewhere, or unframed from the server: the core's
    // (it knows which peer has which id, and roaming).
    let mut other = seal(3);
    wire::rewrite_to_from_peer(&mut other, 12);
    assert_eq!(bob.open(server, &other, &mut out, 4), Opened::ToCore);
    let mut elsewhere = seal(5);
    wire::rewrite_to_from_peer(&mut elsewhere, 11);
    assert_eq!(
        bob.open(alice_addr(), &elsewhere, &mut out, 6),
        Opened::ToCore
    );
    let bare = seal(7);
    assert_eq!(
        bob.open(server, &bare[wire::DATA_HEADER..], &mut out, 8),
        Opened::ToCore
    );
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Vec<u8> {
    let mut p = vec![0x5A; len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    p[6] = 17;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p
}

/// A peer's IPv6 overlay address is carried like its IPv4 one: sealed up to the path's size
/// and opened when its source is the peer's; bigger packets and SYNs stay the core's.
#[test]
fn ipv6_overlay_packets_go_through_the_table_both_ways() {
    let (alice_v6, bob_v6): (Ipv6Addr, Ipv6Addr) =
        ("fd00:99::1".parse().unwrap(), "fd00:99::2".parse().unwrap());
    let (s, r) = session(1);
    let r = Arc::new(RecvEntry {
        peer: ALICE,
        key: r.key.clone(),
        from: r.from,
        relay: None,
        allowed: vec![
            "10.99.0.1/32".parse().unwrap(),
            "fd00:99::1/128".parse().unwrap(),
        ],
        path_mtu: r.path_mtu,
        activity: r.activity.clone(),
    });
    let (mut alice, mut bob) = (KeyTable::default(), KeyTable::default());
    alice.set_send(&[IpAddr::V4(BOB), IpAddr::V6(bob_v6)], s);
    bob.set_local(&[IpAddr::V4(BOB), IpAddr::V6(bob_v6)]);
    bob.add_recv(r);
    let (mut wire, mut out) = ([0u8; 2048], [0u8; 2048]);
    let packet = ipv6(alice_v6, bob_v6, 1000);
    let Sealed::Datagram { dst, len, .. } = alice.seal(&packet, &mut wire, 5) else {
        panic!("an IPv6 packet to the peer was left to the core");
    };
    assert_eq!(dst, bob_addr());
    assert_eq!(
        bob.open(alice_addr(), &wire[..len], &mut out, 6),
        Opened::Packet(&packet[..])
    );
    // Above the path's size: the core answers or sends it (at least 1280 for IPv6).
    assert_eq!(
        alice.seal(&ipv6(alice_v6, bob_v6, 1421), &mut wire, 7),
        Sealed::ToCore
    );
    // Another source than the peer's own address is spoofed, in IPv6 too.
    let spoofed = ipv6("fd00:99::7".parse().unwrap(), bob_v6, 200);
    let Sealed::Datagram { len, .. } = alice.seal(&spoofed, &mut wire, 8) else {
        panic!()
    };
    assert_eq!(
        bob.open(alice_addr(), &wire[..len], &mut out, 8),
        Opened::Dropped(DropReason::SpoofedSource)
    );
}
