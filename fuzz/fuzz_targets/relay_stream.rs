//! Relay frames inside a node's control stream (after the Noise layer: a registered node is the
//! sender): the frame parser and the relay's routing of a frame to UDP or another stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pvpn::core::relay::server::FrameVerdict;
use p2pvpn::core::relay::wire::{self, RelayDatagram, STREAM_HEADER};
use p2pvpn_fuzz::{addr, bind_udp, records, relay_with_two_nodes, RELAY_B};
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let now = p2pvpn_fuzz::epoch();
    let (mut relay, a, b) = relay_with_two_nodes(now);
    // B binds over UDP, so frames from A to B leave as datagrams and frames to A stay streams.
    assert!(!bind_udp(&mut relay, b, addr(RELAY_B), now).is_empty());
    for (i, message) in records(data).enumerate() {
        let Some((dst, payload)) = wire::parse_stream_frame(message) else {
            continue;
        };
        assert_eq!(payload.len() + STREAM_HEADER, message.len());
        let src = if i % 2 == 0 { a.id } else { b.id };
        let at = now + Duration::from_millis(i as u64 * 10);
        match relay.handle_frame(src, dst, payload, at) {
            FrameVerdict::Udp { datagram, .. } => match wire::parse(&datagram) {
                Some(RelayDatagram::FromPeer { src: s, payload: p }) => {
                    assert_eq!((s, p), (src, payload));
                }
                other => panic!("relay sent a malformed datagram: {other:?}"),
            },
            FrameVerdict::ToStream { frame, .. } => {
                assert_eq!(wire::parse_stream_frame(&frame), Some((src, payload)));
            }
            FrameVerdict::Drop(_) => {}
        }
    }
});
