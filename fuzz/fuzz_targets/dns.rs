//! The node's DNS responder (`core::dns`) from anyone who can reach the node's overlay address
//! on port 53: any bytes are answered or dropped, never a panic; every reply is a valid DNS
//! response to the query's id that offers no recursion, is never much larger than the query
//! (no amplification), answers only under the suffix and only with the hosts' addresses.
#![no_main]

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData};
use libfuzzer_sys::fuzz_target;
use p2pvpn::core::dns::{Host, Responder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const HOSTS: [Host<'static>; 3] = [
    Host {
        name: "alice",
        ipv4: Ipv4Addr::new(10, 77, 0, 1),
        ipv6: None,
    },
    Host {
        name: "bob",
        ipv4: Ipv4Addr::new(10, 77, 0, 2),
        ipv6: Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
    },
    Host {
        name: "db.eu",
        ipv4: Ipv4Addr::new(10, 77, 0, 3),
        ipv6: None,
    },
];

fuzz_target!(|data: &[u8]| {
    let Ok(mut responder) = Responder::new("office.p2p") else {
        return;
    };
    let Some(reply) = responder.answer(data, HOSTS) else {
        assert_eq!(responder.counters().malformed, 1);
        return;
    };
    assert!(
        reply.len() <= data.len() + 64,
        "{} -> {}",
        data.len(),
        reply.len()
    );
    let query = Message::from_vec(data).expect("only a parsed query is answered");
    let answer = Message::from_vec(&reply).expect("the reply decodes");
    assert_eq!(answer.id(), query.id());
    assert_eq!(answer.message_type(), MessageType::Response);
    assert!(!answer.recursion_available());
    assert_eq!(answer.queries(), query.queries());
    let suffix = Name::from_ascii("office.p2p.").expect("constant name");
    let inside = query.queries().iter().all(|q| suffix.zone_of(q.name()));
    // Another opcode (NOTIFY, UPDATE...) is NOTIMP wherever its name lies.
    if query.op_code() != OpCode::Query {
        assert_eq!(answer.response_code(), ResponseCode::NotImp);
    } else if !inside {
        assert_eq!(answer.response_code(), ResponseCode::Refused);
    }
    if !answer.answers().is_empty() {
        assert!(inside);
        assert_eq!(answer.response_code(), ResponseCode::NoError);
    }
    for record in answer.answers() {
        let ip = match record.data() {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            other => panic!("unexpected record {other:?}"),
        };
        assert!(HOSTS
            .iter()
            .any(|h| IpAddr::V4(h.ipv4) == ip || h.ipv6.map(IpAddr::V6) == Some(ip)));
    }
});
