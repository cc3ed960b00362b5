use super::*;
use proptest::prelude::*;

/// Drives a search against a path that carries `path_mtu` bytes (and loses every probe above
/// it) until it settles or `limit` passes; returns the time it took.
fn run(search: &mut Search, path_mtu: u16, start: Instant, limit: Duration) -> Duration {
    let mut now = start;
    loop {
        search.handle_timeout(now);
        while let Some(p) = search.poll_probe(now) {
            if p.size <= path_mtu {
                assert!(search.handle_ack(p.seq, p.size, now));
            }
        }
        let settled =
            matches!(search.phase(), Phase::Complete | Phase::Error) && search.in_flight.is_none();
        if now >= start + limit || (settled && now > start) {
            return now - start;
        }
        now += Duration::from_millis(100);
    }
}

#[test]
fn a_full_path_is_confirmed_with_two_probes() {
    let now = crate::test_now();
    let mut s = Search::default();
    assert_eq!(s.poll_probe(now), None, "idle until started");
    s.start(1424, now);
    assert_eq!(s.mtu(), None);
    let base = s.poll_probe(now).unwrap();
    assert_eq!(base.size, BASE_PLPMTU);
    assert!(s.handle_ack(base.seq, base.size, now));
    assert_eq!(s.mtu(), Some(BASE_PLPMTU));
    let top = s.poll_probe(now).unwrap();
    assert_eq!(top.size, 1424, "the maximum is tried right after the base");
    assert!(s.handle_ack(top.seq, top.size, now));
    assert_eq!((s.phase(), s.mtu()), (Phase::Complete, Some(1424)));
}

#[test]
fn a_1300_byte_underlay_settles_just_below_its_inner_size() {
    // 1300 underlay - 28 IPv4/UDP - 48 WireGuard = 1224 inner bytes.
    let now = crate::test_now();
    let mut s = Search::default();
    s.start(1424, now);
    let took = run(&mut s, 1224, now, Duration::from_secs(60));
    assert_eq!(s.phase(), Phase::Complete);
    let mtu = s.mtu().unwrap();
    assert!((1224 - GRANULARITY..=1224).contains(&mtu), "{mtu}");
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[test]
fn a_wrong_or_stale_answer_is_ignored() {
    let now = crate::test_now();
    let mut s = Search::default();
    s.start(1424, now);
    let p = s.poll_probe(now).unwrap();
    assert!(!s.handle_ack(p.seq.wrapping_add(1), p.size, now));
    assert!(!s.handle_ack(p.seq, p.size + 1, now));
    assert_eq!(s.mtu(), None);
}

#[test]
fn an_unanswered_base_enforces_nothing_and_retries_later() {
    let now = crate::test_now();
    let mut s = Search::default();
    s.start(1424, now);
    run(&mut s, 0, now, Duration::from_secs(10));
    assert_eq!((s.phase(), s.mtu()), (Phase::Error, None));
    let retry = s.poll_timeout().unwrap();
    assert!(retry >= now + ERROR_RETRY);
    let p = s.poll_probe(retry).unwrap();
    assert_eq!(p.size, BASE_PLPMTU);
}

#[test]
fn a_black_hole_sends_the_search_back_to_the_base_and_down() {
    let now = crate::test_now();
    let mut s = Search::default();
    s.start(1424, now);
    run(&mut s, 1424, now, Duration::from_secs(10));
    assert_eq!(s.mtu(), Some(1424));
    // The path shrinks (a new tunnel in the way); a symptom triggers a confirmation at once.
    let later = now + Duration::from_secs(5);
    s.suspect_black_hole(later);
    let took = run(&mut s, 1300, later, Duration::from_secs(60));
    assert_eq!(s.black_holes(), 1);
    assert_eq!(s.phase(), Phase::Complete);
    assert!((1300 - GRANULARITY..=1300).contains(&s.mtu().unwrap()));
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn the_raise_timer_finds_a_larger_path() {
    let now = crate::test_now();
    let mut s = Search::default();
    s.start(1424, now);
    run(&mut s, 1300, now, Duration::from_secs(60));
    let small = s.mtu().unwrap();
    assert!(small <= 1300);
    // (the search took well under 30 s, so its raise timer is due by then)
    let raise = now + PMTU_RAISE_TIMER + Duration::from_secs(30);
    // Confirmations answered meanwhile keep the size.
    let mut t = now;
    while t < now + PMTU_RAISE_TIMER {
        t += Duration::from_secs(1);
        s.handle_timeout(t);
        if let Some(p) = s.poll_probe(t) {
            assert!(p.size <= small, "only confirmations before the raise timer");
            s.handle_ack(p.seq, p.size, t);
        }
    }
    run(&mut s, 1424, raise, Duration::from_secs(60));
    assert_eq!(s.mtu(), Some(1424));
}

proptest! {
    /// Whatever the path carries, the search ends within the granularity below it (or in Error
    /// when not even the base fits), never above it, and within a bounded time.
    #[test]
    fn the_search_converges_below_the_path(max in 1000u16..9000, path in 0u16..9500) {
        let now = crate::test_now();
        let mut s = Search::default();
        s.start(max, now);
        let took = run(&mut s, path, now, Duration::from_secs(120));
        let base = BASE_PLPMTU.min(max);
        if path < base {
            prop_assert_eq!(s.phase(), Phase::Error);
            prop_assert_eq!(s.mtu(), None);
        } else {
            prop_assert_eq!(s.phase(), Phase::Complete);
            let mtu = s.mtu().unwrap();
            let truth = path.min(max);
            prop_assert!(mtu <= truth && mtu + GRANULARITY >= truth, "{} vs {}", mtu, truth);
            prop_assert!(took < Duration::from_secs(40), "{:?}", took);
        }
    }
}
