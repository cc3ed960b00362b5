//! STUN (RFC 5389/5780/3489) from anyone on the internet: the codec, the client's response
//! parsers and the server's responder. A message that decodes re-encodes to one that decodes to
//! the same attributes, and every answer the responder builds is itself a valid STUN message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pvpn::core::stun::{
    parse_binding_request, parse_binding_response, Class, Message, StunResponder,
};
use std::net::SocketAddr;
use std::sync::OnceLock;

const PRIMARY: &str = "198.51.100.1:3478";
const SECONDARY: &str = "198.51.100.2:3478";

fn responder() -> &'static StunResponder {
    static R: OnceLock<StunResponder> = OnceLock::new();
    R.get_or_init(|| {
        let listen: Vec<SocketAddr> = [PRIMARY, SECONDARY]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        StunResponder::new(&listen, Some(3479)).expect("a valid two-address layout")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_binding_request(data);
    let _ = parse_binding_response(data);
    if let Ok(msg) = Message::decode(data) {
        let back = Message::decode(&msg.encode()).expect("a decoded message re-encodes");
        // Unknown attributes are not carried over, so only what was understood must survive.
        assert_eq!(
            (
                back.class,
                back.method,
                back.id,
                &back.attributes,
                back.fingerprint
            ),
            (
                msg.class,
                msg.method,
                msg.id,
                &msg.attributes,
                msg.fingerprint
            )
        );
    }
    let from: SocketAddr = "203.0.113.7:40000".parse().expect("constant address");
    let Ok(local) = PRIMARY.parse::<SocketAddr>() else {
        return;
    };
    if let Some(reply) = responder().respond(local, from, data) {
        let answer = Message::decode(&reply.bytes).expect("the responder's reply decodes");
        assert!(matches!(answer.class, Class::Success | Class::Error));
        if answer.class == Class::Success && !answer.id.is_classic() {
            parse_binding_response(&reply.bytes).expect("a success names the mapped address");
        }
    }
});
