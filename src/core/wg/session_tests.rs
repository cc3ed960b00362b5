//! `session::Session` against boringtun's `Tunn` in both roles (the node's peers run boringtun
//! today, so a mixed mesh must work), and against itself over simulated time: confirmation,
//! queued packets, rekeying with datagrams in flight, retries, giving up, keepalives, expiry.

use super::session::{
    Session, KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_AFTER_TIME, REKEY_ATTEMPT_TIME,
    REKEY_TIMEOUT,
};
use super::transport::OVERHEAD;
use crate::core::counters::DropReason;
use crate::core::crypto::{Decapsulated, Encapsulated, Expired};
use crate::core::keys::SecretKey;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UNIX: Duration = Duration::from_secs(1_800_000_000);

/// An IPv4/UDP packet of `len` bytes from 10.99.0.`from` with a correct total length.
fn ipv4(len: usize, from: u8) -> Vec<u8> {
    let mut p = vec![0x5a; len.max(20)];
    p[0] = 0x45;
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 99, 0, from]);
    p[16..20].copy_from_slice(&[10, 99, 0, 9]);
    p
}

fn keys(seed: u8) -> (SecretKey, SecretKey) {
    (
        SecretKey::from_bytes([seed | 1; 32]),
        SecretKey::from_bytes([seed | 2; 32]),
    )
}

fn tunn(local: &SecretKey, peer: &SecretKey) -> Tunn {
    Tunn::new(
        local.static_secret(),
        x25519_dalek::PublicKey::from(peer.public_key().0),
        None,
        None,
        7,
        None,
    )
}

fn tunnel(r: Result<Decapsulated<'_>, DropReason>) -> (Vec<u8>, IpAddr) {
    match r {
        Ok(Decapsulated::Tunnel { packet, src }) => (packet.to_vec(), src),
        other => panic!("expected an inner packet, got {other:?}"),
    }
}

fn reply(r: Result<Decapsulated<'_>, DropReason>) -> Vec<u8> {
    match r {
        Ok(Decapsulated::Reply(m)) => m.to_vec(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn our_initiator_with_a_boringtun_responder_carries_queued_and_later_packets() {
    let (a, b) = keys(0);
    let now = crate::test_now();
    let mut ours = Session::new(&a, b.public_key(), 1, None, now, UNIX);
    let mut theirs = tunn(&b, &a);
    let (mut buf, mut out) = ([0u8; 2048], [0u8; 2048]);

    let first = ipv4(100, 1);
    let init = match ours.encapsulate(&first, &mut buf, now) {
        Ok(Encapsulated::Handshake(h)) => h.to_vec(),
        other => panic!("expected an initiation, got {other:?}"),
    };
    // A second packet waits behind the handshake in flight: no second initiation.
    assert!(matches!(
        ours.encapsulate(&ipv4(60, 1), &mut buf, now),
        Ok(Encapsulated::Queued)
    ));
    let response = match theirs.decapsulate(None, &init, &mut out) {
        TunnResult::WriteToNetwork(r) => r.to_vec(),
        other => panic!("boringtun refused our initiation: {other:?}"),
    };
    let keepalive = reply(ours.decapsulate(&response, &mut buf, now));
    assert_eq!(keepalive.len(), OVERHEAD);
    assert!(matches!(
        theirs.decapsulate(None, &keepalive, &mut out),
        TunnResult::Done
    ));
    let mut released = Vec::new();
    while let Some(d) = ours.poll_queued(&mut buf, now) {
        released.push(d.to_vec());
    }
    assert_eq!(released.len(), 2);
    match theirs.decapsulate(None, &released[0], &mut out) {
        TunnResult::WriteToTunnelV4(p, src) => {
            assert_eq!((&p[..], src), (&first[..], Ipv4Addr::new(10, 99, 0, 1)))
        }
        other => panic!("boringtun did not decrypt: {other:?}"),
    }
    // And back: boringtun's datagram opens to the exact packet (padding trimmed).
    let back = ipv4(77, 2);
    let wire = match theirs.encapsulate(&back, &mut out) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("boringtun did not encrypt: {other:?}"),
    };
    let (packet, src) = tunnel(ours.decapsulate(&wire, &mut buf, now));
    assert_eq!(
        (packet, src),
        (back, IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2)))
    );
    let stats = ours.stats(now + Duration::from_secs(3));
    assert_eq!(stats.since_handshake, Some(Duration::from_secs(3)));
    assert_eq!((stats.tx_bytes, stats.rx_bytes), (160, 77));
}

#[test]
fn our_responder_waits_for_boringtuns_confirmation_before_sending() {
    let (a, b) = keys(4);
    let now = crate::test_now();
    let mut ours = Session::new(&b, a.public_key(), 2, None, now, UNIX);
    let mut theirs = tunn(&a, &b);
    let (mut buf, mut out) = ([0u8; 2048], [0u8; 2048]);

    let init = match theirs.format_handshake_initiation(&mut out, false) {
        TunnResult::WriteToNetwork(h) => h.to_vec(),
        other => panic!("no initiation: {other:?}"),
    };
    assert_eq!(
        super::handshake::initiator_of(&b, &init).unwrap(),
        a.public_key()
    );
    let response = reply(ours.decapsulate(&init, &mut buf, now));
    // The same initiation again is a replay (its timestamp is not newer).
    assert_eq!(
        ours.decapsulate(&init, &mut buf, now).err(),
        Some(DropReason::Replay)
    );
    // Unconfirmed: our packet waits, and no competing handshake starts.
    let ours_first = ipv4(200, 2);
    assert!(matches!(
        ours.encapsulate(&ours_first, &mut buf, now),
        Ok(Encapsulated::Queued)
    ));
    let confirm = match theirs.decapsulate(None, &response, &mut out) {
        TunnResult::WriteToNetwork(k) => k.to_vec(),
        other => panic!("boringtun refused our response: {other:?}"),
    };
    assert!(matches!(
        ours.decapsulate(&confirm, &mut buf, now),
        Ok(Decapsulated::Nothing)
    ));
    let queued = ours.poll_queued(&mut buf, now).unwrap().to_vec();
    match theirs.decapsulate(None, &queued, &mut out) {
        TunnResult::WriteToTunnelV4(p, _) => assert_eq!(p, &ours_first[..]),
        other => panic!("boringtun did not decrypt: {other:?}"),
    }
}

/// Two of ours, `a` the initiator, up and confirmed at `now`.
fn pair(seed: u8, now: Instant) -> (Session, Session) {
    let (ka, kb) = keys(seed);
    let mut a = Session::new(&ka, kb.public_key(), 1, None, now, UNIX);
    let mut b = Session::new(&kb, ka.public_key(), 2, None, now, UNIX);
    let mut buf = [0u8; 2048];
    let init = a.initiate(&mut buf, false, now).unwrap().to_vec();
    let response = reply(b.decapsulate(&init, &mut buf, now));
    let keepalive = reply(a.decapsulate(&response, &mut buf, now));
    assert!(matches!(
        b.decapsulate(&keepalive, &mut buf, now),
        Ok(Decapsulated::Nothing)
    ));
    (a, b)
}

fn data(s: &mut Session, packet: &[u8], now: Instant) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    match s.encapsulate(packet, &mut buf, now) {
        Ok(Encapsulated::Data(d)) => d.to_vec(),
        other => panic!("expected data, got {other:?}"),
    }
}

#[test]
fn the_initiator_rekeys_after_two_minutes_and_datagrams_in_flight_still_open() {
    let t0 = crate::test_now();
    let (mut a, mut b) = pair(8, t0);
    let mut buf = [0u8; 2048];
    let p = ipv4(300, 1);
    tunnel(b.decapsulate(&data(&mut a, &p, t0), &mut buf, t0));
    let later = t0 + REKEY_AFTER_TIME;
    // Sealed with the old session, delivered after the rotation.
    let in_flight = data(&mut a, &p, later);
    let back_in_flight = data(&mut b, &ipv4(40, 2), later);
    let init = a.update_timers(&mut buf, later).unwrap().unwrap().to_vec();
    assert_eq!(init[0], 1, "a rekey initiation");
    let response = reply(b.decapsulate(&init, &mut buf, later));
    let keepalive = reply(a.decapsulate(&response, &mut buf, later));
    tunnel(b.decapsulate(&in_flight, &mut buf, later));
    tunnel(a.decapsulate(&back_in_flight, &mut buf, later));
    assert!(matches!(
        b.decapsulate(&keepalive, &mut buf, later),
        Ok(Decapsulated::Nothing)
    ));
    // Both now use the new session, past the old one's REJECT_AFTER_TIME.
    let much_later = t0 + REJECT_AFTER_TIME + Duration::from_secs(1);
    let (packet, _) = tunnel(b.decapsulate(&data(&mut a, &p, much_later), &mut buf, much_later));
    assert_eq!(packet, p);
    tunnel(a.decapsulate(&data(&mut b, &p, much_later), &mut buf, much_later));
    // The old session's datagram is now refused.
    assert_eq!(
        b.decapsulate(&in_flight, &mut buf, much_later).err(),
        Some(DropReason::UnknownSession)
    );
}

#[test]
fn an_unanswered_initiation_is_retried_every_five_seconds_then_given_up() {
    let (ka, kb) = keys(12);
    let t0 = crate::test_now();
    let mut a = Session::new(&ka, kb.public_key(), 1, None, t0, UNIX);
    let mut buf = [0u8; 2048];
    assert!(matches!(
        a.encapsulate(&ipv4(50, 1), &mut buf, t0),
        Ok(Encapsulated::Handshake(_))
    ));
    assert!(a
        .update_timers(&mut buf, t0 + REKEY_TIMEOUT / 2)
        .unwrap()
        .is_none());
    let mut retries = 0;
    let mut t = t0;
    while t < t0 + REKEY_ATTEMPT_TIME + REKEY_TIMEOUT {
        t += Duration::from_secs(1);
        if let Ok(Some(m)) = a.update_timers(&mut buf, t) {
            assert_eq!(m[0], 1);
            retries += 1;
        }
    }
    // 90 s of attempts, one every 5 s after the first; then silence.
    assert_eq!(retries, 17, "retries in REKEY_ATTEMPT_TIME");
    // The queue went with the attempt: a session made now releases nothing old.
    assert!(a.poll_queued(&mut buf, t).is_none());
}

#[test]
fn keepalives_answer_data_after_ten_seconds_and_keys_expire_after_nine_minutes() {
    let t0 = crate::test_now();
    let (mut a, mut b) = pair(16, t0);
    let mut buf = [0u8; 2048];
    tunnel(b.decapsulate(&data(&mut a, &ipv4(64, 1), t0), &mut buf, t0));
    assert!(b
        .update_timers(&mut buf, t0 + KEEPALIVE_TIMEOUT / 2)
        .unwrap()
        .is_none());
    let keepalive = b
        .update_timers(&mut buf, t0 + KEEPALIVE_TIMEOUT)
        .unwrap()
        .unwrap()
        .to_vec();
    assert_eq!(keepalive.len(), OVERHEAD);
    assert!(matches!(
        a.decapsulate(&keepalive, &mut buf, t0 + KEEPALIVE_TIMEOUT),
        Ok(Decapsulated::Nothing)
    ));
    // Only one: nothing new came in.
    assert!(b
        .update_timers(&mut buf, t0 + KEEPALIVE_TIMEOUT * 2)
        .unwrap()
        .is_none());
    let end = t0 + REJECT_AFTER_TIME * 3;
    assert_eq!(b.update_timers(&mut buf, end).err(), Some(Expired));
    assert!(b.update_timers(&mut buf, end).is_ok(), "reported once");
    // No keys: sending needs a new handshake.
    assert!(matches!(
        b.encapsulate(&ipv4(64, 2), &mut buf, end),
        Ok(Encapsulated::Handshake(_))
    ));
}

#[test]
fn a_stranger_cannot_take_over_the_session_and_garbage_is_refused() {
    let t0 = crate::test_now();
    let (_, mut b) = pair(20, t0);
    let (stranger, _) = keys(40);
    let (_, kb) = keys(20);
    let mut c = Session::new(&stranger, kb.public_key(), 3, None, t0, UNIX);
    let mut buf = [0u8; 2048];
    let init = c.initiate(&mut buf, false, t0).unwrap().to_vec();
    assert_eq!(
        b.decapsulate(&init, &mut buf, t0).err(),
        Some(DropReason::DecryptFailed)
    );
    assert_eq!(
        b.decapsulate(&[4, 0, 0, 0, 1], &mut buf, t0).err(),
        Some(DropReason::Malformed)
    );
    assert_eq!(
        b.decapsulate(&[9; 40], &mut buf, t0).err(),
        Some(DropReason::Malformed)
    );
}

#[test]
fn a_boringtun_responder_under_load_gets_our_retry_with_its_cookie() {
    let (a, b) = keys(24);
    let t0 = crate::test_now();
    let mut ours = Session::new(&a, b.public_key(), 1, None, t0, UNIX);
    // A limit of 0 handshakes: boringtun is "under load" from the first message and answers
    // every initiation without a valid mac2 with a cookie reply (§5.4.7).
    let limiter = Arc::new(RateLimiter::new(
        &x25519_dalek::PublicKey::from(b.public_key().0),
        0,
    ));
    let mut theirs = Tunn::new(
        b.static_secret(),
        x25519_dalek::PublicKey::from(a.public_key().0),
        None,
        None,
        7,
        Some(limiter),
    );
    let from = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let (mut buf, mut out) = ([0u8; 2048], [0u8; 2048]);
    let init = match ours.encapsulate(&ipv4(90, 1), &mut buf, t0) {
        Ok(Encapsulated::Handshake(h)) => h.to_vec(),
        other => panic!("expected an initiation, got {other:?}"),
    };
    let cookie = match theirs.decapsulate(from, &init, &mut out) {
        TunnResult::WriteToNetwork(c) if c[0] == 3 => c.to_vec(),
        other => panic!("expected a cookie reply, got {other:?}"),
    };
    assert!(matches!(
        ours.decapsulate(&cookie, &mut buf, t0),
        Ok(Decapsulated::Nothing)
    ));
    // The retry carries mac2 under the cookie, and boringtun answers it.
    let retry = ours
        .update_timers(&mut buf, t0 + REKEY_TIMEOUT)
        .unwrap()
        .unwrap()
        .to_vec();
    assert_ne!(retry[132..], [0u8; 16], "mac2 set");
    let response = match theirs.decapsulate(from, &retry, &mut out) {
        TunnResult::WriteToNetwork(r) if r[0] == 2 => r.to_vec(),
        other => panic!("boringtun refused the retry with the cookie: {other:?}"),
    };
    reply(ours.decapsulate(&response, &mut buf, t0 + REKEY_TIMEOUT));
    let queued = ours
        .poll_queued(&mut buf, t0 + REKEY_TIMEOUT)
        .unwrap()
        .to_vec();
    assert!(matches!(
        theirs.decapsulate(from, &queued, &mut out),
        TunnResult::WriteToTunnelV4(..)
    ));
    // A cookie reply nobody asked for (no initiation pending) is refused.
    assert_eq!(
        ours.decapsulate(&cookie, &mut buf, t0).err(),
        Some(DropReason::UnknownSession)
    );
}
