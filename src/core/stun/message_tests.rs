//! Codec tests: the RFC 5769 sample messages, the type-field bit layout, FINGERPRINT checks, and
//! properties (never panics, round trip, encoded length).

use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const RFC5769_TID: TransactionId = TransactionId([
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
]);

/// RFC 5769 §2.2, the sample IPv4 response (SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY,
/// FINGERPRINT).
const RFC5769_IPV4_RESPONSE: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
];

/// RFC 5769 §2.3, the sample IPv6 response.
const RFC5769_IPV6_RESPONSE: [u8; 92] = [
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
];

#[test]
fn decodes_the_rfc5769_ipv4_response() {
    let msg = Message::decode(&RFC5769_IPV4_RESPONSE).unwrap();
    assert_eq!(msg.class, Class::Success);
    assert_eq!(msg.method, BINDING);
    assert_eq!(msg.id, MessageId::Rfc5389(RFC5769_TID));
    assert!(msg.fingerprint);
    assert!(msg.unknown_required.is_empty());
    assert!(msg
        .attributes
        .contains(&Attribute::Software("test vector".into())));
    let r = parse_binding_response(&RFC5769_IPV4_RESPONSE).unwrap();
    assert_eq!(r.tid, RFC5769_TID);
    assert_eq!(r.mapped, "192.0.2.1:32853".parse().unwrap());
    assert_eq!(r.other_address, None);
}

#[test]
fn decodes_the_rfc5769_ipv6_response() {
    let r = parse_binding_response(&RFC5769_IPV6_RESPONSE).unwrap();
    assert_eq!(
        r.mapped,
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap()
    );
}

#[test]
fn a_damaged_message_fails_its_fingerprint() {
    let mut bytes = RFC5769_IPV4_RESPONSE;
    bytes[30] ^= 0x01; // inside SOFTWARE
    assert_eq!(Message::decode(&bytes), Err(StunError::BadFingerprint));
}

#[test]
fn our_fingerprint_matches_the_rfc5769_one() {
    // Re-encode the sample's header and SOFTWARE + XOR-MAPPED-ADDRESS with a FINGERPRINT: the
    // CRC must be what an independent implementation computes over the same bytes.
    let bytes = &RFC5769_IPV4_RESPONSE[..72];
    assert_eq!(
        super::fingerprint(bytes).to_be_bytes(),
        [0xc0, 0x7d, 0x4c, 0x96]
    );
}

#[test]
fn type_field_spreads_the_class_bits() {
    for (class, t) in [
        (Class::Request, 0x0001),
        (Class::Indication, 0x0011),
        (Class::Success, 0x0101),
        (Class::Error, 0x0111),
    ] {
        assert_eq!(message_type(class, BINDING), t);
        assert_eq!(split_type(t), (class, BINDING));
    }
    // A method using every bit lands outside the class bits and comes back whole.
    assert_eq!(
        split_type(message_type(Class::Error, 0xFFF)),
        (Class::Error, 0xFFF)
    );
}

#[test]
fn binding_request_round_trips_its_options() {
    let tid = TransactionId([7; 12]);
    let bytes = binding_request(tid, ChangeRequest::IP_AND_PORT, Some(40000));
    assert_eq!(&bytes[..2], &[0x00, 0x01]);
    assert_eq!(&bytes[4..8], &STUN_MAGIC_COOKIE.to_be_bytes());
    let req = parse_binding_request(&bytes).unwrap();
    assert_eq!(req.tid, tid);
    assert_eq!(req.change, ChangeRequest::IP_AND_PORT);
    assert_eq!(req.response_port, Some(40000));
    assert!(Message::decode(&bytes).unwrap().fingerprint);
    let plain = parse_binding_request(&binding_request(tid, ChangeRequest::NONE, None)).unwrap();
    assert_eq!(plain.change, ChangeRequest::NONE);
    assert_eq!(plain.response_port, None);
    // A request is not a response.
    assert!(matches!(
        parse_binding_response(&bytes),
        Err(StunError::NotBindingResponse { .. })
    ));
}

#[test]
fn error_responses_decode_to_their_code() {
    let tid = TransactionId([9; 12]);
    let bytes = Message::new(Class::Error, BINDING, MessageId::Rfc5389(tid))
        .with(Attribute::ErrorCode(ErrorCode {
            code: 420,
            reason: "Unknown Attribute".into(),
        }))
        .with(Attribute::UnknownAttributes(vec![0x0003]))
        .encode();
    assert_eq!(
        parse_binding_response(&bytes),
        Err(StunError::ErrorResponse { tid, code: 420 })
    );
}

#[test]
fn an_error_code_number_over_99_is_malformed() {
    // Found by fuzzing (fuzz/corpus/stun/regress-error-code-number): number 255 in class 7 used
    // to decode as code 955, which re-encodes as 155.
    let tid = TransactionId([3; 12]);
    let mut bytes = Message::new(Class::Error, BINDING, MessageId::Rfc5389(tid))
        .with(Attribute::ErrorCode(ErrorCode {
            code: 499,
            reason: "x".into(),
        }))
        .encode();
    // The ERROR-CODE value follows the 20-byte header and the 4-byte attribute header.
    assert_eq!(bytes[20 + 4 + 3], 99);
    bytes[20 + 4 + 3] = 255;
    assert_eq!(
        Message::decode(&bytes),
        Err(StunError::MalformedAttribute { kind: 0x0009 })
    );
}

#[test]
fn classic_messages_keep_their_128_bit_id() {
    let id = [0x55; 16];
    let msg = Message::new(Class::Request, BINDING, MessageId::Rfc3489(id))
        .with(Attribute::ChangeRequest(ChangeRequest::PORT));
    let bytes = msg.encode();
    assert_eq!(
        &bytes[4..],
        &[[0x55; 16].as_slice(), &[0, 3, 0, 4, 0, 0, 0, 2]].concat()
    );
    let back = Message::decode(&bytes).unwrap();
    assert_eq!(back, msg);
    assert!(back.id.is_classic());
    assert_eq!(parse_binding_request(&bytes), Err(StunError::Classic));
}

#[test]
fn unknown_attributes_are_sorted_by_comprehension() {
    let tid = TransactionId([1; 12]);
    let mut bytes = Message::new(Class::Success, BINDING, MessageId::Rfc5389(tid))
        .with(Attribute::XorMappedAddress("192.0.2.9:9".parse().unwrap()))
        .encode();
    // An optional attribute (0x8055) is skipped; a required one (0x0055) is reported.
    for kind in [0x8055u16, 0x0055] {
        bytes.extend_from_slice(&kind.to_be_bytes());
        bytes.extend_from_slice(&[0, 3, 1, 2, 3, 0]);
    }
    let len = (bytes.len() - 20) as u16;
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.unknown_required, vec![0x0055]);
    assert_eq!(msg.attributes.len(), 1);
    assert_eq!(
        parse_binding_response(&bytes),
        Err(StunError::UnknownRequired { kind: 0x0055 })
    );
}

#[test]
fn framing_errors_are_reported() {
    assert_eq!(Message::decode(&[0; 19]), Err(StunError::TooShort));
    let mut bytes = binding_request(TransactionId([2; 12]), ChangeRequest::NONE, None);
    bytes[0] |= 0x80;
    assert_eq!(Message::decode(&bytes), Err(StunError::NotStun));
    let mut bytes = binding_request(TransactionId([2; 12]), ChangeRequest::NONE, None);
    bytes.push(0);
    assert!(matches!(
        Message::decode(&bytes),
        Err(StunError::BadLength { .. })
    ));
    // FINGERPRINT must be last.
    let mut bytes = binding_request(TransactionId([2; 12]), ChangeRequest::NONE, None);
    bytes.extend_from_slice(&[0x80, 0x22, 0, 0]);
    let len = (bytes.len() - 20) as u16;
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        Message::decode(&bytes),
        Err(StunError::AttributeAfterFingerprint)
    );
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        socket_addr().prop_map(Attribute::MappedAddress),
        socket_addr().prop_map(Attribute::XorMappedAddress),
        socket_addr().prop_map(Attribute::SourceAddress),
        socket_addr().prop_map(Attribute::ChangedAddress),
        socket_addr().prop_map(Attribute::ResponseOrigin),
        socket_addr().prop_map(Attribute::OtherAddress),
        (any::<bool>(), any::<bool>()).prop_map(|(change_ip, change_port)| {
            Attribute::ChangeRequest(ChangeRequest {
                change_ip,
                change_port,
            })
        }),
        any::<u16>().prop_map(Attribute::ResponsePort),
        (300u16..700, "[a-zA-Z ]{0,40}")
            .prop_map(|(code, reason)| Attribute::ErrorCode(ErrorCode { code, reason })),
        proptest::collection::vec(any::<u16>(), 0..6).prop_map(Attribute::UnknownAttributes),
        "\\PC{0,40}".prop_map(Attribute::Software),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let id = prop_oneof![
        any::<[u8; 12]>().prop_map(|t| MessageId::Rfc5389(TransactionId(t))),
        // A classic id never starts with the cookie (that would make it an RFC 5389 one).
        any::<[u8; 16]>()
            .prop_filter("not the cookie", |b| b[..4]
                != STUN_MAGIC_COOKIE.to_be_bytes())
            .prop_map(MessageId::Rfc3489),
    ];
    let class = prop_oneof![
        Just(Class::Request),
        Just(Class::Indication),
        Just(Class::Success),
        Just(Class::Error),
    ];
    (
        class,
        0u16..0x1000,
        id,
        proptest::collection::vec(attribute(), 0..8),
        any::<bool>(),
    )
        .prop_map(|(class, method, id, attributes, fingerprint)| Message {
            class,
            method,
            id,
            attributes,
            fingerprint,
            unknown_required: Vec::new(),
        })
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Message::decode(&bytes);
        let _ = parse_binding_request(&bytes);
        let _ = parse_binding_response(&bytes);
    }

    #[test]
    fn decode_never_panics_on_stun_shaped_bytes(
        tail in proptest::collection::vec(any::<u8>(), 0..120),
        t in any::<u16>(),
    ) {
        // A valid header with the right length in front of random attribute bytes.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(t & 0x3FFF).to_be_bytes());
        let len = tail.len() - tail.len() % 4;
        bytes.extend_from_slice(&(len as u16).to_be_bytes());
        bytes.extend_from_slice(&STUN_MAGIC_COOKIE.to_be_bytes());
        bytes.extend_from_slice(&[3; 12]);
        bytes.extend_from_slice(&tail[..len]);
        let _ = Message::decode(&bytes);
        let _ = parse_binding_response(&bytes);
    }

    #[test]
    fn binding_responses_parse_to_what_was_sent(
        tid in any::<[u8; 12]>(),
        mapped in socket_addr(),
        xor in any::<bool>(),
        other in proptest::option::of(socket_addr()),
        origin in proptest::option::of(socket_addr()),
        software in proptest::option::of("\\PC{0,30}"),
        fingerprint in any::<bool>(),
    ) {
        let tid = TransactionId(tid);
        let mut msg = Message::new(Class::Success, BINDING, MessageId::Rfc5389(tid));
        if let Some(s) = software {
            msg.attributes.push(Attribute::Software(s));
        }
        msg.attributes.push(if xor {
            Attribute::XorMappedAddress(mapped)
        } else {
            Attribute::MappedAddress(mapped)
        });
        msg.attributes.extend(origin.map(Attribute::ResponseOrigin));
        msg.attributes.extend(other.map(Attribute::OtherAddress));
        msg.fingerprint = fingerprint;
        let r = parse_binding_response(&msg.encode()).unwrap();
        prop_assert_eq!(r, BindingResponse { tid, mapped, other_address: other, response_origin: origin });
    }

    #[test]
    fn messages_round_trip(msg in message()) {
        let bytes = msg.encode();
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), bytes.len() - 20);
        prop_assert_eq!(Message::decode(&bytes), Ok(msg));
    }

    #[test]
    fn flipping_any_bit_of_a_fingerprinted_message_is_caught_or_harmless(
        msg in message(),
        bit in any::<usize>(),
    ) {
        let mut msg = msg;
        msg.fingerprint = true;
        let mut bytes = msg.encode();
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        // A single flipped bit never decodes to the original message.
        prop_assert_ne!(Message::decode(&bytes), Ok(msg));
    }
}
