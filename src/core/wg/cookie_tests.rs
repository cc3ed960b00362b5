//! `cookie::CookieGuard`, our responder's defence under load (whitepaper §5.3, §5.4.7): boringtun
//! and our own initiator take its cookie and come back with mac2, a message without it leaves
//! the session untouched, Rm changes after two minutes, and τ belongs to one source address.

use super::cookie::{CookieError, CookieGuard, Verdict, COOKIE_SECRET_MAX_AGE, LOAD_WINDOW};
use super::handshake::{
    open_cookie_reply, set_mac2, tai64n, Initiator, COOKIE_REPLY_LEN, INITIATION_LEN,
};
use super::session::{Session, REKEY_TIMEOUT};
use crate::core::crypto::{Decapsulated, Encapsulated};
use crate::core::keys::SecretKey;
use boringtun::noise::{Tunn, TunnResult};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const UNIX: Duration = Duration::from_secs(1_800_000_000);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(7)
}

/// Our side (key `seed`, a guard always under load, a session with index `ours_index`) and a
/// boringtun peer (key `seed + 1`, index `theirs_index`) that knows our key.
struct Pair {
    t0: Instant,
    guard: CookieGuard,
    session: Session,
    tunn: Tunn,
}

fn pair(seed: u8, ours_index: u32, theirs_index: u32) -> Pair {
    let ours = SecretKey::from_bytes([seed; 32]);
    let theirs = SecretKey::from_bytes([seed + 1; 32]);
    let t0 = crate::test_now();
    let guard = CookieGuard::new(&ours.public_key(), 0);
    let session = Session::new(&ours, theirs.public_key(), ours_index, None, t0, UNIX);
    let tunn = Tunn::new(
        theirs.static_secret(),
        x25519_dalek::PublicKey::from(ours.public_key().0),
        None,
        None,
        theirs_index,
        None,
    );
    Pair {
        t0,
        guard,
        session,
        tunn,
    }
}

/// The guard's cookie reply to `msg`, failing the test on any other verdict.
fn cookie_reply(
    guard: &mut CookieGuard,
    msg: &[u8],
    from: SocketAddr,
    now: Instant,
    rng: &mut ChaCha8Rng,
) -> Vec<u8> {
    let mut out = [0u8; COOKIE_REPLY_LEN];
    match guard.check(msg, from, now, rng, &mut out) {
        Ok(Verdict::CookieReply(r)) => r.to_vec(),
        other => panic!("expected a cookie reply, got {other:?}"),
    }
}

fn verdict(
    guard: &mut CookieGuard,
    msg: &[u8],
    from: SocketAddr,
    now: Instant,
    rng: &mut ChaCha8Rng,
) -> Result<bool, CookieError> {
    let mut out = [0u8; COOKIE_REPLY_LEN];
    guard
        .check(msg, from, now, rng, &mut out)
        .map(|v| v == Verdict::Proceed)
}

/// An initiation from `from_key` to `to` (mac2 zero), with its mac1, from our `Initiator`.
fn initiation(
    from_key: &SecretKey,
    to: &SecretKey,
    index: u32,
) -> ([u8; INITIATION_LEN], [u8; 16]) {
    let mut msg = [0u8; INITIATION_LEN];
    let i = Initiator::start(
        from_key,
        &to.public_key(),
        None,
        index,
        tai64n(9, 0),
        &mut msg,
    )
    .unwrap();
    (msg, *i.mac1())
}

/// (a) boringtun initiates to our responder while we are under load (a limit of 0: every
/// message counts as over it): it gets our cookie reply, accepts it, its next initiation
/// carries mac2 under it, the guard lets that through and the handshake completes.
#[test]
fn boringtun_takes_our_cookie_under_load_and_its_retry_completes_the_handshake() {
    let Pair {
        t0,
        mut guard,
        mut session,
        mut tunn,
        ..
    } = pair(31, 4, 3);
    let mut rng = rng();
    let from = addr("198.51.100.20:51820");
    let (mut buf, mut out) = ([0u8; 2048], [0u8; 2048]);
    let init = match tunn.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("{other:?}"),
    };
    assert_eq!(init[132..], [0u8; 16], "no cookie yet: mac2 zero");
    let reply = cookie_reply(&mut guard, &init, from, t0, &mut rng);
    assert_eq!(reply.len(), COOKIE_REPLY_LEN);
    assert_eq!(reply[..8], [3, 0, 0, 0, init[4], init[5], init[6], init[7]]);
    match tunn.decapsulate(Some(from.ip()), &reply, &mut out) {
        TunnResult::Done => {}
        other => panic!("boringtun refused our cookie reply: {other:?}"),
    }
    let retry = match tunn.format_handshake_initiation(&mut buf, true) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("{other:?}"),
    };
    assert_ne!(retry[132..], [0u8; 16], "boringtun's retry carries mac2");
    assert_eq!(verdict(&mut guard, &retry, from, t0, &mut rng), Ok(true));
    let response = match session.decapsulate(&retry, &mut buf, t0) {
        Ok(Decapsulated::Reply(r)) => r.to_vec(),
        other => panic!("our responder refused the retry: {other:?}"),
    };
    let keepalive = match tunn.decapsulate(Some(from.ip()), &response, &mut out) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("boringtun refused our response: {other:?}"),
    };
    assert!(matches!(
        session.decapsulate(&keepalive, &mut buf, t0),
        Ok(Decapsulated::Nothing)
    ));
    // The session is up: ours now sends, boringtun decrypts.
    let mut packet = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0];
    packet.extend_from_slice(&[10, 99, 0, 1, 10, 99, 0, 2]);
    let data = match session.encapsulate(&packet, &mut buf, t0) {
        Ok(Encapsulated::Data(d)) => d.to_vec(),
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        tunn.decapsulate(Some(from.ip()), &data, &mut out),
        TunnResult::WriteToTunnelV4(..)
    ));
}

/// (b) Under load an initiation without mac2 gets a cookie reply, addressed to its sender index
/// and sealed to its mac1, and goes no further: the responder's session has no handshake and no
/// keys (the node's side of it, not handing the message on, is in `core::node`'s tests). Our own
/// initiator then retries with mac2 and gets through.
#[test]
fn an_initiation_without_mac2_under_load_gets_a_cookie_and_changes_no_session() {
    let a = SecretKey::from_bytes([41; 32]);
    let b = SecretKey::from_bytes([42; 32]);
    let t0 = crate::test_now();
    // One message a second: the first is not under load, the second is.
    let mut guard = CookieGuard::new(&b.public_key(), 1);
    let mut rng = rng();
    let mut initiator = Session::new(&a, b.public_key(), 1, None, t0, UNIX);
    let mut responder = Session::new(&b, a.public_key(), 2, None, t0, UNIX);
    let from = addr("203.0.113.9:40000");
    let (mut buf, mut out) = ([0u8; 2048], [0u8; 2048]);
    let (filler, _) = initiation(&SecretKey::from_bytes([43; 32]), &b, 9);
    assert_eq!(verdict(&mut guard, &filler, from, t0, &mut rng), Ok(true));

    let init = match initiator.encapsulate(&[0x45; 20], &mut buf, t0) {
        Ok(Encapsulated::Handshake(h)) => h.to_vec(),
        other => panic!("{other:?}"),
    };
    let reply = cookie_reply(&mut guard, &init, from, t0, &mut rng);
    let mut mac1 = [0u8; 16];
    mac1.copy_from_slice(&init[116..132]);
    let (index, _cookie) = open_cookie_reply(&b.public_key(), &mac1, &reply).unwrap();
    assert_eq!(index.to_le_bytes(), init[4..8], "to the sender index");
    assert!(
        open_cookie_reply(&b.public_key(), &[0; 16], &reply).is_err(),
        "mac1 is the associated data"
    );
    // Nothing reached the responder's session.
    let stats = responder.stats(t0);
    assert_eq!(stats.since_handshake, None);
    let keys = responder.worker_keys(t0);
    assert!(keys.send.is_none() && keys.recv.is_empty());

    // The initiator keeps the cookie; its retry carries mac2 and passes the guard under load.
    assert!(matches!(
        initiator.decapsulate(&reply, &mut buf, t0),
        Ok(Decapsulated::Nothing)
    ));
    let t1 = t0 + REKEY_TIMEOUT;
    let (filler, _) = initiation(&SecretKey::from_bytes([43; 32]), &b, 10);
    assert_eq!(verdict(&mut guard, &filler, from, t1, &mut rng), Ok(true));
    let retry = initiator
        .update_timers(&mut buf, t1)
        .unwrap()
        .unwrap()
        .to_vec();
    assert_eq!(verdict(&mut guard, &retry, from, t1, &mut rng), Ok(true));
    let response = match responder.decapsulate(&retry, &mut out, t1) {
        Ok(Decapsulated::Reply(r)) => r.to_vec(),
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        initiator.decapsulate(&response, &mut buf, t1),
        Ok(Decapsulated::Reply(_))
    ));
}

/// (c) Rm lasts two minutes: a cookie validates mac2 until then and not after; the new Rm gives
/// a new cookie, which does.
#[test]
fn a_cookie_stops_validating_mac2_when_rm_is_two_minutes_old() {
    let a = SecretKey::from_bytes([51; 32]);
    let b = SecretKey::from_bytes([52; 32]);
    let t0 = crate::test_now();
    let mut guard = CookieGuard::new(&b.public_key(), 0);
    let mut rng = rng();
    let from = addr("192.0.2.44:51820");
    let (mut msg, mac1) = initiation(&a, &b, 5);
    let reply = cookie_reply(&mut guard, &msg, from, t0, &mut rng);
    let (_, cookie) = open_cookie_reply(&b.public_key(), &mac1, &reply).unwrap();
    set_mac2(&mut msg, &cookie);
    let almost = t0 + COOKIE_SECRET_MAX_AGE - Duration::from_millis(1);
    assert_eq!(verdict(&mut guard, &msg, from, almost, &mut rng), Ok(true));
    let later = t0 + COOKIE_SECRET_MAX_AGE;
    let reply = cookie_reply(&mut guard, &msg, from, later, &mut rng);
    let (_, fresh) = open_cookie_reply(&b.public_key(), &mac1, &reply).unwrap();
    assert_ne!(fresh, cookie, "a new Rm, a new cookie");
    set_mac2(&mut msg, &fresh);
    assert_eq!(verdict(&mut guard, &msg, from, later, &mut rng), Ok(true));
}

/// (d) τ is the source's: the mac2 that passes from the address the cookie was sent to is
/// refused (with a new cookie reply) from another IP address, and from another port.
#[test]
fn a_mac2_passes_only_from_the_address_its_cookie_went_to() {
    let a = SecretKey::from_bytes([61; 32]);
    let b = SecretKey::from_bytes([62; 32]);
    let t0 = crate::test_now();
    let mut guard = CookieGuard::new(&b.public_key(), 0);
    let mut rng = rng();
    let from = addr("198.51.100.7:51820");
    let (mut msg, mac1) = initiation(&a, &b, 6);
    let reply = cookie_reply(&mut guard, &msg, from, t0, &mut rng);
    let (_, cookie) = open_cookie_reply(&b.public_key(), &mac1, &reply).unwrap();
    set_mac2(&mut msg, &cookie);
    assert_eq!(verdict(&mut guard, &msg, from, t0, &mut rng), Ok(true));
    for other in [
        addr("198.51.100.8:51820"),
        addr("198.51.100.7:51821"),
        addr("[2001:db8::7]:51820"),
    ] {
        let reply = cookie_reply(&mut guard, &msg, other, t0, &mut rng);
        let (_, theirs) = open_cookie_reply(&b.public_key(), &mac1, &reply).unwrap();
        assert_ne!(theirs, cookie, "{other}");
    }
}

/// mac1 comes first, load or not (§5.3), and a message with a wrong mac1 is not counted: the
/// guard is not put under load by messages not even addressed to us.
#[test]
fn a_wrong_mac1_is_refused_and_not_counted_as_load() {
    let a = SecretKey::from_bytes([71; 32]);
    let b = SecretKey::from_bytes([72; 32]);
    let stranger = SecretKey::from_bytes([73; 32]);
    let t0 = crate::test_now();
    let mut guard = CookieGuard::new(&b.public_key(), 1);
    let mut rng = rng();
    let from = addr("192.0.2.1:1000");
    let (wrong, _) = initiation(&a, &stranger, 1);
    for _ in 0..10 {
        assert_eq!(
            verdict(&mut guard, &wrong, from, t0, &mut rng),
            Err(CookieError::Mac1)
        );
    }
    let (right, _) = initiation(&a, &b, 2);
    assert_eq!(verdict(&mut guard, &right, from, t0, &mut rng), Ok(true));
    assert_eq!(
        verdict(&mut guard, &[1; 40], from, t0, &mut rng),
        Err(CookieError::NotHandshake)
    );
    let mut bad_reserved = right;
    bad_reserved[2] = 1;
    assert_eq!(
        verdict(&mut guard, &bad_reserved, from, t0, &mut rng),
        Err(CookieError::NotHandshake)
    );
}

/// The load is counted per second: past the limit within one window the guard answers with
/// cookies, and the next window starts from zero.
#[test]
fn the_load_is_the_count_within_one_second() {
    let a = SecretKey::from_bytes([81; 32]);
    let b = SecretKey::from_bytes([82; 32]);
    let t0 = crate::test_now();
    let mut guard = CookieGuard::new(&b.public_key(), 3);
    let mut rng = rng();
    let from = addr("192.0.2.2:2000");
    let (msg, _) = initiation(&a, &b, 3);
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    for ms in [0, 300, 600] {
        assert_eq!(verdict(&mut guard, &msg, from, at(ms), &mut rng), Ok(true));
    }
    cookie_reply(&mut guard, &msg, from, at(999), &mut rng);
    let next = t0 + LOAD_WINDOW;
    for ms in 0..3 {
        assert_eq!(
            verdict(
                &mut guard,
                &msg,
                from,
                next + Duration::from_millis(ms),
                &mut rng
            ),
            Ok(true)
        );
    }
    cookie_reply(&mut guard, &msg, from, next, &mut rng);
}

/// Under load a handshake response without mac2 gets a cookie reply too (§5.3); boringtun as
/// responder accepts it, and its next response (to our retry) carries mac2 and gets through.
#[test]
fn a_response_under_load_gets_a_cookie_and_boringtuns_next_response_passes() {
    let Pair {
        t0,
        mut guard,
        mut session,
        mut tunn,
        ..
    } = pair(91, 1, 5);
    let mut rng = rng();
    let from = SocketAddr::from((Ipv4Addr::new(203, 0, 113, 50), 51820));
    let (mut buf, mut out) = ([0u8; 2048], [0u8; 2048]);
    let init = match session.encapsulate(&[0x45; 20], &mut buf, t0) {
        Ok(Encapsulated::Handshake(h)) => h.to_vec(),
        other => panic!("{other:?}"),
    };
    let response = match tunn.decapsulate(Some(from.ip()), &init, &mut out) {
        TunnResult::WriteToNetwork(r) => r.to_vec(),
        other => panic!("{other:?}"),
    };
    let reply = cookie_reply(&mut guard, &response, from, t0, &mut rng);
    assert_eq!(
        reply[4..8],
        response[4..8],
        "to the responder's sender index"
    );
    match tunn.decapsulate(Some(from.ip()), &reply, &mut out) {
        TunnResult::Done => {}
        other => panic!("boringtun refused the cookie reply to its response: {other:?}"),
    }
    let t1 = t0 + REKEY_TIMEOUT;
    let retry = session
        .update_timers(&mut buf, t1)
        .unwrap()
        .unwrap()
        .to_vec();
    let response = match tunn.decapsulate(Some(from.ip()), &retry, &mut out) {
        TunnResult::WriteToNetwork(r) => r.to_vec(),
        other => panic!("{other:?}"),
    };
    assert_ne!(response[76..], [0u8; 16], "mac2 set");
    assert_eq!(verdict(&mut guard, &response, from, t1, &mut rng), Ok(true));
    assert!(matches!(
        session.decapsulate(&response, &mut buf, t1),
        Ok(Decapsulated::Reply(_))
    ));
}
