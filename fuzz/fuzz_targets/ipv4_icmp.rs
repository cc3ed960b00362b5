//! The IPv4 header reader of the data path and the ICMP echo parser behind `p2pvpn ping`: packets
//! come from the TUN device (the user's programs) and, decrypted, from peers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pvpn::core::icmp::{echo_reply_for, parse_echo, EchoKind};
use p2pvpn::core::ip::ipv4_endpoints;

fuzz_target!(|data: &[u8]| {
    let ends = ipv4_endpoints(data);
    if let Some(echo) = parse_echo(data) {
        // An echo is a well-formed IPv4 packet, so the data path agrees on its addresses.
        let ends = ends.expect("an echo has an IPv4 header");
        assert_eq!((ends.src, ends.dst), (echo.src, echo.dst));
        let reply = echo_reply_for(data);
        assert_eq!(reply.is_some(), echo.kind == EchoKind::Request);
        if let Some(reply) = reply {
            // The reply we build parses back as the mirror image of the request.
            let back = parse_echo(&reply).expect("our own reply parses");
            assert_eq!(back.kind, EchoKind::Reply);
            assert_eq!((back.src, back.dst), (echo.dst, echo.src));
            assert_eq!((back.id, back.seq), (echo.id, echo.seq));
        }
    }
});
