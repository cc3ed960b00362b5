//! The responder as a resolver sees it: a query's bytes in, the reply's fields out.

use super::*;
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const ALICE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const BOB: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

fn hosts() -> Vec<Host<'static>> {
    vec![
        Host {
            name: "alice",
            ipv4: ALICE,
            ipv6: None,
        },
        Host {
            name: "bob",
            ipv4: BOB,
            ipv6: None,
        },
        Host {
            name: "db.eu",
            ipv4: Ipv4Addr::new(10, 77, 0, 3),
            ipv6: Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3)),
        },
    ]
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(0x1234)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

fn ask(r: &mut Responder, name: &str, qtype: RecordType) -> Message {
    let reply = r.answer(&query(name, qtype), hosts()).expect("a reply");
    Message::from_vec(&reply).unwrap()
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers()
        .iter()
        .map(|r| match r.data() {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn office() -> Responder {
    Responder::new("office.p2p").unwrap()
}

#[test]
fn a_peer_and_the_node_itself_resolve_to_their_overlay_addresses() {
    let mut r = office();
    let m = ask(&mut r, "bob.office.p2p.", RecordType::A);
    assert_eq!(m.id(), 0x1234);
    assert_eq!(m.message_type(), MessageType::Response);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.authoritative());
    assert!(!m.recursion_available(), "we never recurse");
    assert!(m.recursion_desired(), "RD is copied from the query");
    assert_eq!(addresses(&m), ["10.77.0.2"]);
    assert_eq!(m.answers()[0].ttl(), TTL);
    let m = ask(&mut r, "alice.office.p2p.", RecordType::A);
    assert_eq!(addresses(&m), ["10.77.0.1"]);
    assert_eq!(r.counters().answered, 2);
}

#[test]
fn names_are_case_insensitive_and_the_asked_case_is_echoed() {
    let mut r = office();
    let m = ask(&mut r, "BoB.OFFICE.p2P.", RecordType::A);
    assert_eq!(addresses(&m), ["10.77.0.2"]);
    assert_eq!(m.answers()[0].name().to_ascii(), "BoB.OFFICE.p2P.");
    // A suffix configured in upper case, with a trailing dot, is the same suffix.
    let mut r = Responder::new("Office.P2P.").unwrap();
    assert_eq!(
        addresses(&ask(&mut r, "bob.office.p2p", RecordType::A)),
        ["10.77.0.2"]
    );
}

#[test]
fn a_query_without_the_final_dot_is_the_same_name() {
    // On the wire every name ends in the root label; a name typed without the dot is the same.
    let mut r = office();
    let with = ask(&mut r, "bob.office.p2p.", RecordType::A);
    let without = ask(&mut r, "bob.office.p2p", RecordType::A);
    assert_eq!(addresses(&with), addresses(&without));
}

#[test]
fn an_unknown_name_in_the_suffix_is_nxdomain() {
    let mut r = office();
    let m = ask(&mut r, "carol.office.p2p.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert!(m.authoritative());
    assert!(m.answers().is_empty());
    // A name that only ends like a member's is not that member.
    let m = ask(&mut r, "x.bob.office.p2p.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(r.counters().nxdomain, 2);
}

#[test]
fn names_outside_the_suffix_are_refused_without_recursion() {
    let mut r = office();
    for name in [
        "example.com.",
        "bob.p2p.",
        "bob.xoffice.p2p.",
        "bob.office.p2p.evil.",
        ".",
    ] {
        let m = ask(&mut r, name, RecordType::A);
        assert_eq!(m.response_code(), ResponseCode::Refused, "{name}");
        assert!(m.answers().is_empty(), "{name}");
        assert!(!m.recursion_available(), "{name}");
    }
    assert_eq!(r.counters().refused, 5);
    assert_eq!(r.counters().answered, 0);
}

#[test]
fn aaaa_is_nodata_until_the_peer_has_an_ipv6_address() {
    let mut r = office();
    let m = ask(&mut r, "bob.office.p2p.", RecordType::AAAA);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.answers().is_empty());
    let m = ask(&mut r, "db.eu.office.p2p.", RecordType::AAAA);
    assert_eq!(addresses(&m), ["fd00::3"]);
    let m = ask(&mut r, "db.eu.office.p2p.", RecordType::ANY);
    assert_eq!(addresses(&m), ["10.77.0.3", "fd00::3"]);
    // Other types of a known name: NODATA too, not NXDOMAIN (RFC 2308 §2.2).
    let m = ask(&mut r, "bob.office.p2p.", RecordType::MX);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.answers().is_empty());
}

#[test]
fn the_suffix_itself_exists_but_has_no_address() {
    let mut r = office();
    let m = ask(&mut r, "office.p2p.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.answers().is_empty());
}

#[test]
fn names_differing_only_in_case_are_answered_for_neither() {
    let mut r = office();
    let twins = [
        Host {
            name: "bob",
            ipv4: BOB,
            ipv6: None,
        },
        Host {
            name: "BOB",
            ipv4: Ipv4Addr::new(10, 77, 0, 9),
            ipv6: None,
        },
    ];
    let reply = r
        .answer(&query("bob.office.p2p.", RecordType::A), twins)
        .unwrap();
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert!(m.answers().is_empty());
    assert_eq!(r.counters().ambiguous, 1);
}

#[test]
fn malformed_queries_are_dropped_and_counted() {
    let mut r = office();
    let good = query("bob.office.p2p.", RecordType::A);
    let mut response = Message::from_vec(&good).unwrap();
    response.set_message_type(MessageType::Response);
    let mut two = Message::from_vec(&good).unwrap();
    two.add_query(Query::query(
        Name::from_ascii("alice.office.p2p.").unwrap(),
        RecordType::A,
    ));
    let mut none = Message::from_vec(&good).unwrap();
    none.take_queries();
    let mut oversized = good.clone();
    oversized.resize(MAX_QUERY + 1, 0);
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        good[..5].to_vec(),
        good[..good.len() - 3].to_vec(),
        vec![0xff; 40],
        // A response is never answered: two responders must not bounce replies forever.
        response.to_vec().unwrap(),
        two.to_vec().unwrap(),
        none.to_vec().unwrap(),
        oversized,
    ];
    for (i, q) in bad.iter().enumerate() {
        assert_eq!(r.answer(q, hosts()), None, "case {i}");
    }
    assert_eq!(r.counters().malformed, bad.len() as u64);
    assert_eq!(r.counters().answered, 0);
}

#[test]
fn edns_in_the_query_gets_edns_in_the_reply() {
    let mut r = office();
    let mut m = Message::from_vec(&query("bob.office.p2p.", RecordType::A)).unwrap();
    m.set_edns(Edns::new());
    let reply = r.answer(&m.to_vec().unwrap(), hosts()).unwrap();
    let reply = Message::from_vec(&reply).unwrap();
    assert!(reply.extensions().is_some());
    assert_eq!(addresses(&reply), ["10.77.0.2"]);
}

#[test]
fn suffixes_are_checked() {
    assert_eq!(check_suffix("Office.P2P.").unwrap(), "office.p2p");
    assert_eq!(default_suffix("office"), "office.p2p");
    assert!(check_suffix(&default_suffix("my_net-1")).is_ok());
    for bad in [
        "",
        ".",
        "a..b",
        "-a.p2p",
        "a b.p2p",
        "ünï.p2p",
        &"x".repeat(64),
        &"a.".repeat(100),
    ] {
        assert!(check_suffix(bad).is_err(), "{bad:?}");
    }
}

proptest! {
    /// Any bytes: no panic, and a reply (if any) is never much larger than what caused it, so
    /// the responder cannot amplify a spoofed query.
    #[test]
    fn any_bytes_are_answered_small_or_dropped(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut r = office();
        if let Some(reply) = r.answer(&bytes, hosts()) {
            prop_assert!(reply.len() <= bytes.len() + 64, "{} -> {}", bytes.len(), reply.len());
        }
    }

    #[test]
    fn any_question_under_the_suffix_is_answered_small(
        label in "[a-zA-Z0-9][a-zA-Z0-9-]{0,19}",
        qtype in prop::sample::select(vec![RecordType::A, RecordType::AAAA, RecordType::ANY, RecordType::TXT]),
    ) {
        let mut r = office();
        let q = query(&format!("{label}.office.p2p."), qtype);
        let reply = r.answer(&q, hosts()).unwrap();
        prop_assert!(reply.len() <= q.len() + 64);
    }
}

#[test]
fn status_names_the_suffix_the_address_and_what_happened() {
    let mut r = office();
    ask(&mut r, "bob.office.p2p.", RecordType::A);
    ask(&mut r, "example.com.", RecordType::A);
    r.answer(&[1, 2, 3], hosts());
    let status = DnsStatus {
        suffix: "office.p2p".into(),
        address: "10.77.0.1:53".parse().unwrap(),
        counters: r.counters(),
    };
    assert_eq!(
        status.to_string(),
        "names under office.p2p on 10.77.0.1:53 (1 answered, 1 refused, 1 malformed)"
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["malformed"], 1);
    assert_eq!(json["suffix"], "office.p2p");
}
