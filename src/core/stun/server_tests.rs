//! Responder tests: the socket layout, every CHANGE-REQUEST combination parsed back with our own
//! client parser, RESPONSE-PORT, classic RFC 3489 answers, refusals, and never-panics.

use super::*;
use crate::core::stun::{
    binding_request, parse_binding_response, BindingResponse, MessageId, StunError, TransactionId,
};
use proptest::prelude::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn two_ips() -> StunResponder {
    StunResponder::new(&[addr("192.0.2.1:3478"), addr("192.0.2.2:3478")], None).unwrap()
}

const CLIENT: &str = "203.0.113.5:40001";

fn ask(r: &StunResponder, local: &str, change: ChangeRequest) -> (StunReply, BindingResponse) {
    let tid = TransactionId([4; 12]);
    let reply = r
        .respond(
            addr(local),
            addr(CLIENT),
            &binding_request(tid, change, None),
        )
        .expect("an answer");
    let parsed = parse_binding_response(&reply.bytes).expect("our parser reads it");
    assert_eq!(parsed.tid, tid);
    assert_eq!(parsed.mapped, addr(CLIENT));
    assert_eq!(parsed.response_origin, Some(reply.via));
    assert_eq!(reply.to, addr(CLIENT));
    (reply, parsed)
}

#[test]
fn two_ips_make_four_sockets() {
    let r = two_ips();
    assert_eq!(
        r.sockets(),
        vec![
            addr("192.0.2.1:3478"),
            addr("192.0.2.1:3479"),
            addr("192.0.2.2:3478"),
            addr("192.0.2.2:3479")
        ]
    );
    assert_eq!(r.rfc5780_addresses().len(), 2);
    let one = StunResponder::new(&[addr("192.0.2.1:3478")], Some(5000)).unwrap();
    assert_eq!(
        one.sockets(),
        vec![addr("192.0.2.1:3478"), addr("192.0.2.1:5000")]
    );
    assert!(one.rfc5780_addresses().is_empty());
}

#[test]
fn every_change_request_is_answered_from_the_right_socket() {
    let r = two_ips();
    let cases = [
        (
            "192.0.2.1:3478",
            ChangeRequest::NONE,
            "192.0.2.1:3478",
            "192.0.2.2:3479",
        ),
        (
            "192.0.2.1:3478",
            ChangeRequest::PORT,
            "192.0.2.1:3479",
            "192.0.2.2:3479",
        ),
        (
            "192.0.2.1:3478",
            ChangeRequest::IP_AND_PORT,
            "192.0.2.2:3479",
            "192.0.2.2:3479",
        ),
        (
            "192.0.2.1:3478",
            ChangeRequest {
                change_ip: true,
                change_port: false,
            },
            "192.0.2.2:3478",
            "192.0.2.2:3479",
        ),
        // From the alternate IP and alternate port, everything flips back.
        (
            "192.0.2.2:3479",
            ChangeRequest::IP_AND_PORT,
            "192.0.2.1:3478",
            "192.0.2.1:3478",
        ),
        (
            "192.0.2.2:3479",
            ChangeRequest::PORT,
            "192.0.2.2:3478",
            "192.0.2.1:3478",
        ),
        (
            "192.0.2.1:3479",
            ChangeRequest::NONE,
            "192.0.2.1:3479",
            "192.0.2.2:3478",
        ),
    ];
    for (local, change, via, other) in cases {
        let (reply, parsed) = ask(&r, local, change);
        assert_eq!(reply.via, addr(via), "{local} {change:?}");
        assert_eq!(
            parsed.other_address,
            Some(addr(other)),
            "{local} {change:?}"
        );
    }
}

#[test]
fn a_single_ip_refuses_to_change_ip_with_420() {
    let r = StunResponder::new(&[addr("192.0.2.1:3478")], None).unwrap();
    let (reply, parsed) = ask(&r, "192.0.2.1:3478", ChangeRequest::PORT);
    assert_eq!(reply.via, addr("192.0.2.1:3479"));
    assert_eq!(parsed.other_address, None);
    let tid = TransactionId([5; 12]);
    let reply = r
        .respond(
            addr("192.0.2.1:3478"),
            addr(CLIENT),
            &binding_request(tid, ChangeRequest::IP_AND_PORT, None),
        )
        .unwrap();
    assert_eq!(reply.via, addr("192.0.2.1:3478"));
    assert_eq!(
        parse_binding_response(&reply.bytes),
        Err(StunError::ErrorResponse { tid, code: 420 })
    );
    let msg = Message::decode(&reply.bytes).unwrap();
    assert!(msg.attributes.contains(&Attribute::UnknownAttributes(vec![
        attribute::CHANGE_REQUEST
    ])));
}

#[test]
fn response_port_aims_at_the_source_ip() {
    let r = two_ips();
    let bytes = binding_request(TransactionId([6; 12]), ChangeRequest::NONE, Some(5555));
    let reply = r
        .respond(addr("192.0.2.1:3478"), addr(CLIENT), &bytes)
        .unwrap();
    assert_eq!(reply.to, addr("203.0.113.5:5555"));
    // The mapped address is still where the request came from.
    assert_eq!(
        parse_binding_response(&reply.bytes).unwrap().mapped,
        addr(CLIENT)
    );
    let zero = binding_request(TransactionId([6; 12]), ChangeRequest::NONE, Some(0));
    let reply = r
        .respond(addr("192.0.2.1:3478"), addr(CLIENT), &zero)
        .unwrap();
    assert!(matches!(
        parse_binding_response(&reply.bytes),
        Err(StunError::ErrorResponse { code: 400, .. })
    ));
}

#[test]
fn classic_requests_get_rfc3489_answers() {
    let r = two_ips();
    let id = [0xAB; 16];
    let req = Message::new(Class::Request, BINDING, MessageId::Rfc3489(id))
        .with(Attribute::ChangeRequest(ChangeRequest::PORT))
        .encode();
    let reply = r
        .respond(addr("192.0.2.1:3478"), addr(CLIENT), &req)
        .unwrap();
    assert_eq!(reply.via, addr("192.0.2.1:3479"));
    let msg = Message::decode(&reply.bytes).unwrap();
    assert_eq!(msg.id, MessageId::Rfc3489(id));
    assert_eq!(msg.class, Class::Success);
    assert!(msg
        .attributes
        .contains(&Attribute::MappedAddress(addr(CLIENT))));
    assert!(msg
        .attributes
        .contains(&Attribute::SourceAddress(addr("192.0.2.1:3479"))));
    assert!(msg
        .attributes
        .contains(&Attribute::ChangedAddress(addr("192.0.2.2:3479"))));
    assert!(!msg
        .attributes
        .iter()
        .any(|a| matches!(a, Attribute::XorMappedAddress(_))));
    // A change a single-IP server cannot make gets silence, not an error.
    let single = StunResponder::new(&[addr("192.0.2.1:3478")], None).unwrap();
    let change_ip = Message::new(Class::Request, BINDING, MessageId::Rfc3489(id))
        .with(Attribute::ChangeRequest(ChangeRequest::IP_AND_PORT))
        .encode();
    assert_eq!(
        single.respond(addr("192.0.2.1:3478"), addr(CLIENT), &change_ip),
        None
    );
}

#[test]
fn unknown_required_attributes_get_420_listing_them() {
    let r = two_ips();
    let mut bytes = Message::new(
        Class::Request,
        BINDING,
        MessageId::Rfc5389(TransactionId([1; 12])),
    )
    .encode();
    bytes.extend_from_slice(&[0x00, 0x77, 0, 0]);
    bytes[3] = 4;
    let reply = r
        .respond(addr("192.0.2.1:3478"), addr(CLIENT), &bytes)
        .unwrap();
    let msg = Message::decode(&reply.bytes).unwrap();
    assert_eq!(msg.class, Class::Error);
    assert!(msg
        .attributes
        .contains(&Attribute::UnknownAttributes(vec![0x0077])));
}

#[test]
fn everything_else_is_ignored() {
    let r = two_ips();
    let local = addr("192.0.2.1:3478");
    let from = addr(CLIENT);
    assert_eq!(r.respond(local, from, b"hello"), None);
    assert_eq!(r.respond(local, from, &[0u8; 64]), None);
    let (reply, _) = ask(&r, "192.0.2.1:3478", ChangeRequest::NONE);
    // A response (ours, reflected back) is not answered: no loops between servers.
    assert_eq!(r.respond(local, from, &reply.bytes), None);
    let indication = Message::new(
        Class::Indication,
        BINDING,
        MessageId::Rfc5389(TransactionId([0; 12])),
    );
    assert_eq!(r.respond(local, from, &indication.encode()), None);
    // A socket that is not ours.
    let req = binding_request(TransactionId([0; 12]), ChangeRequest::NONE, None);
    assert_eq!(r.respond(addr("192.0.2.9:3478"), from, &req), None);
}

#[test]
fn bad_layouts_are_refused() {
    assert_eq!(
        StunResponder::new(&[addr("192.0.2.1:65535")], None).unwrap_err(),
        LayoutError::NoAlternatePort {
            addr: addr("192.0.2.1:65535")
        }
    );
    assert!(matches!(
        StunResponder::new(&[addr("192.0.2.1:3478"), addr("192.0.2.1:3479")], None),
        Err(LayoutError::Collision { .. })
    ));
    assert!(matches!(
        StunResponder::new(&[addr("192.0.2.1:3478")], Some(3478)),
        Err(LayoutError::Collision { .. })
    ));
    // Same IP twice, different families, or a wildcard: no RFC 5780 pair.
    let r = StunResponder::new(&[addr("0.0.0.0:3478"), addr("192.0.2.1:3478")], None).unwrap();
    assert!(r.rfc5780_addresses().is_empty());
    let r =
        StunResponder::new(&[addr("[2001:db8::1]:3478"), addr("192.0.2.1:3478")], None).unwrap();
    assert!(r.rfc5780_addresses().is_empty());
}

proptest! {
    #[test]
    fn respond_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), port in any::<u16>()) {
        let r = two_ips();
        let _ = r.respond(addr("192.0.2.1:3478"), SocketAddr::new(addr(CLIENT).ip(), port), &bytes);
    }

    #[test]
    fn every_answer_parses(
        change_ip in any::<bool>(),
        change_port in any::<bool>(),
        response_port in proptest::option::of(any::<u16>()),
        tid in any::<[u8; 12]>(),
        local in 0usize..4,
        single in any::<bool>(),
        v6 in any::<bool>(),
    ) {
        let r = if single { StunResponder::new(&[addr("192.0.2.1:3478")], None).unwrap() } else { two_ips() };
        let sockets = r.sockets();
        let local = sockets[local % sockets.len()];
        let from = if v6 { addr("[2001:db8::5]:40001") } else { addr(CLIENT) };
        let change = ChangeRequest { change_ip, change_port };
        let tid = TransactionId(tid);
        let reply = r.respond(local, from, &binding_request(tid, change, response_port));
        let reply = reply.expect("every Binding request gets an answer");
        prop_assert!(sockets.contains(&reply.via));
        match parse_binding_response(&reply.bytes) {
            Ok(resp) => {
                prop_assert_eq!(resp.mapped, from);
                prop_assert_eq!(resp.response_origin, Some(reply.via));
                prop_assert_eq!(reply.via.ip() != local.ip(), change_ip);
                prop_assert_eq!(reply.via.port() != local.port(), change_port);
            }
            Err(StunError::ErrorResponse { code, .. }) => {
                prop_assert!((single && change_ip && code == 420) || (response_port == Some(0) && code == 400));
                prop_assert_eq!(reply.via, local);
            }
            Err(e) => prop_assert!(false, "unparsable answer: {}", e),
        }
    }
}
