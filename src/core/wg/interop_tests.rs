//! Interop with boringtun (what the node runs today): our initiator completes a handshake with
//! boringtun's `Tunn` as responder and our responder with boringtun as initiator, then our transport step and boringtun decrypt each other's
//! packets, and our replay window handles boringtun's datagrams replayed and reordered.

use super::handshake::{respond, tai64n, HandshakeError, Initiator, INITIATION_LEN, RESPONSE_LEN};
use super::replay::WINDOW;
use super::transport::{TransportError, OVERHEAD};
use crate::core::keys::SecretKey;
use boringtun::noise::{Tunn, TunnResult};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

/// Our session (initiator) and boringtun's `Tunn` (responder), after the handshake.
fn established(seed: u8) -> (super::handshake::Session, Tunn) {
    let ours = SecretKey::from_bytes([seed | 1; 32]);
    let theirs = SecretKey::from_bytes([seed | 2; 32]);
    let mut tunn = Tunn::new(
        theirs.static_secret(),
        x25519_dalek::PublicKey::from(ours.public_key().0),
        None,
        None,
        7,
        None,
    );
    let mut init = [0u8; INITIATION_LEN];
    let initiator = Initiator::start(
        &ours,
        &theirs.public_key(),
        None,
        0x0102_0304,
        tai64n(1_800_000_000, 5),
        &mut init,
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let response = match tunn.decapsulate(None, &init, &mut buf) {
        TunnResult::WriteToNetwork(r) => r.to_vec(),
        other => panic!("boringtun refused our initiation: {other:?}"),
    };
    let session = initiator.finish(&response).unwrap();
    (session, tunn)
}

/// An IPv4/UDP packet of `len` bytes (at least 20) whose total length field is right, which is
/// what boringtun checks after decrypting.
fn ipv4(len: usize, fill: u8) -> Vec<u8> {
    let mut p = vec![fill; len.max(20)];
    p[0] = 0x45;
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 99, 0, 1]);
    p[16..20].copy_from_slice(&[10, 99, 0, 2]);
    p
}

#[test]
fn a_handshake_with_boringtun_yields_keys_that_carry_data_both_ways() {
    let (s, mut tunn) = established(0);
    let packet = ipv4(100, 0xAB);
    let mut wire = [0u8; 2048];
    let mut out = [0u8; 2048];
    let n = s.send.seal(&packet, &mut wire).unwrap();
    assert_eq!(n, 100 + OVERHEAD);
    match tunn.decapsulate(None, &wire[..n], &mut out) {
        TunnResult::WriteToTunnelV4(p, src) => {
            assert_eq!(
                (p.to_vec(), src),
                (packet.clone(), Ipv4Addr::new(10, 99, 0, 1))
            );
        }
        other => panic!("boringtun did not decrypt ours: {other:?}"),
    }
    let back = match tunn.encapsulate(&packet, &mut wire) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("boringtun did not encrypt: {other:?}"),
    };
    assert_eq!(s.recv.open(&back, &mut out).unwrap(), &packet[..]);
}

#[test]
fn a_wrong_peer_key_fails_the_handshake() {
    let ours = SecretKey::from_bytes([1; 32]);
    let theirs = SecretKey::from_bytes([2; 32]);
    let stranger = SecretKey::from_bytes([3; 32]);
    let mut tunn = Tunn::new(
        theirs.static_secret(),
        x25519_dalek::PublicKey::from(ours.public_key().0),
        None,
        None,
        7,
        None,
    );
    let mut init = [0u8; INITIATION_LEN];
    // Addressed to `stranger`: mac1 and the Noise static key both target the wrong responder.
    Initiator::start(
        &ours,
        &stranger.public_key(),
        None,
        1,
        tai64n(1, 0),
        &mut init,
    )
    .unwrap();
    let mut buf = [0u8; 256];
    assert!(matches!(
        tunn.decapsulate(None, &init, &mut buf),
        TunnResult::Err(_)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random packets in random directions: each side decrypts exactly what the other sealed.
    #[test]
    fn ours_and_boringtuns_decrypt_each_other(
        seed in 0u8..=255,
        steps in proptest::collection::vec((any::<bool>(), 20usize..1420, any::<u8>()), 1..40)
    ) {
        let (s, mut tunn) = established(seed);
        let mut wire = vec![0u8; 2048];
        let mut out = vec![0u8; 2048];
        // WireGuard: the responder may send only after the initiator's first data message.
        let first = ipv4(20, 0);
        let n = s.send.seal(&first, &mut wire).unwrap();
        let first_ok = matches!(
            tunn.decapsulate(None, &wire[..n], &mut out),
            TunnResult::WriteToTunnelV4(..)
        );
        prop_assert!(first_ok);
        for (ours_to_theirs, len, fill) in steps {
            let packet = ipv4(len, fill);
            if ours_to_theirs {
                let n = s.send.seal(&packet, &mut wire).unwrap();
                match tunn.decapsulate(None, &wire[..n], &mut out) {
                    TunnResult::WriteToTunnelV4(p, _) => prop_assert_eq!(&p[..], &packet[..]),
                    other => prop_assert!(false, "boringtun: {:?}", other),
                }
            } else {
                let d = match tunn.encapsulate(&packet, &mut wire) {
                    TunnResult::WriteToNetwork(d) => d.to_vec(),
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                };
                prop_assert_eq!(s.recv.open(&d, &mut out).unwrap(), &packet[..]);
            }
        }
    }

    /// boringtun's datagrams delivered shuffled (a reordering within the window) are each
    /// accepted once; delivering any again is refused as a replay.
    #[test]
    fn boringtuns_datagrams_reordered_are_accepted_once(
        count in 2usize..200,
        order in any::<proptest::sample::Index>(),
        replays in proptest::collection::vec(any::<proptest::sample::Index>(), 1..10)
    ) {
        prop_assert!((count as u64) < WINDOW);
        let (s, mut tunn) = established(9);
        let mut wire = vec![0u8; 2048];
        let mut out = vec![0u8; 2048];
        let n = s.send.seal(&ipv4(20, 0), &mut wire).unwrap();
        let _ = tunn.decapsulate(None, &wire[..n], &mut out);
        let mut sent: Vec<Vec<u8>> = (0..count)
            .map(|i| match tunn.encapsulate(&ipv4(40, i as u8), &mut wire) {
                TunnResult::WriteToNetwork(d) => d.to_vec(),
                other => panic!("{other:?}"),
            })
            .collect();
        // A deterministic shuffle from the drawn index: rotate, then reverse every other pair.
        sent.rotate_left(order.index(count));
        for pair in sent.chunks_mut(2).step_by(2) {
            pair.reverse();
        }
        for d in &sent {
            prop_assert!(s.recv.open(d, &mut out).is_ok());
        }
        for r in replays {
            let d = &sent[r.index(count)];
            prop_assert!(matches!(s.recv.open(d, &mut out), Err(TransportError::Replay(_))));
        }
    }
}

#[test]
fn an_ip_source_survives_the_round_trip() {
    // The node checks the inner source against the peer's address after decrypting; make sure
    // a short odd-sized packet (no padding) reaches boringtun's parser intact.
    let (s, mut tunn) = established(3);
    let mut wire = [0u8; 256];
    let mut out = [0u8; 256];
    let n = s.send.seal(&ipv4(21, 1), &mut wire).unwrap();
    assert_eq!(n, 21 + OVERHEAD, "not padded");
    match tunn.decapsulate(Some(IpAddr::from([127, 0, 0, 1])), &wire[..n], &mut out) {
        TunnResult::WriteToTunnelV4(p, src) => {
            assert_eq!((p.len(), src), (21, Ipv4Addr::new(10, 99, 0, 1)));
        }
        other => panic!("{other:?}"),
    }
}

/// boringtun initiates, we respond: the keys work both ways, starting with boringtun's
/// confirming keepalive (the responder may send only after it).
#[test]
fn boringtun_initiates_and_our_responder_answers() {
    let ours = SecretKey::from_bytes([5; 32]);
    let theirs = SecretKey::from_bytes([6; 32]);
    let mut tunn = Tunn::new(
        theirs.static_secret(),
        x25519_dalek::PublicKey::from(ours.public_key().0),
        None,
        None,
        3,
        None,
    );
    let mut buf = [0u8; 2048];
    let init = match tunn.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("{other:?}"),
    };
    let mut response = [0u8; RESPONSE_LEN];
    let r = respond(&ours, None, 0xAABB, &init, &mut response).unwrap();
    assert_eq!(r.peer, theirs.public_key(), "the initiator is identified");
    assert!(
        r.timestamp > tai64n(1_700_000_000, 0),
        "a current TAI64N time"
    );
    let keepalive = match tunn.decapsulate(None, &response, &mut buf) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("boringtun refused our response: {other:?}"),
    };
    let mut out = [0u8; 2048];
    assert_eq!(
        r.session.recv.open(&keepalive, &mut out).map(|p| p.len()),
        Ok(0)
    );
    let packet = ipv4(300, 0x11);
    let n = r.session.send.seal(&packet, &mut buf).unwrap();
    match tunn.decapsulate(None, &buf[..n], &mut out) {
        TunnResult::WriteToTunnelV4(p, _) => assert_eq!(&p[..], &packet[..]),
        other => panic!("boringtun did not decrypt ours: {other:?}"),
    }
    let d = match tunn.encapsulate(&packet, &mut buf) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("{other:?}"),
    };
    assert_eq!(r.session.recv.open(&d, &mut out).unwrap(), &packet[..]);
}

/// Our two halves talk to each other too, and an initiation for another key is refused at mac1
/// before any Diffie-Hellman.
#[test]
fn our_initiator_and_responder_agree_and_mac1_guards_the_responder() {
    let a = SecretKey::from_bytes([8; 32]);
    let b = SecretKey::from_bytes([9; 32]);
    let mut init = [0u8; INITIATION_LEN];
    let i = Initiator::start(&a, &b.public_key(), None, 1, tai64n(2, 0), &mut init).unwrap();
    let mut resp = [0u8; RESPONSE_LEN];
    assert!(matches!(
        respond(&a, None, 2, &init, &mut resp),
        Err(HandshakeError::Mac1)
    ));
    let r = respond(&b, None, 2, &init, &mut resp).unwrap();
    assert_eq!((r.peer, r.timestamp), (a.public_key(), tai64n(2, 0)));
    let s = i.finish(&resp).unwrap();
    let mut wire = [0u8; 128];
    let mut out = [0u8; 128];
    let n = s.send.seal(b"ping", &mut wire).unwrap();
    assert_eq!(
        &r.session.recv.open(&wire[..n], &mut out).unwrap()[..4],
        b"ping"
    );
    let n = r.session.send.seal(b"pong", &mut wire).unwrap();
    assert_eq!(&s.recv.open(&wire[..n], &mut out).unwrap()[..4], b"pong");
}
