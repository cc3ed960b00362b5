//! Relay datagrams on the server's UDP port from anyone on the internet: the framing parser and
//! the server's relay, with two registered nodes so binding and forwarding are reachable.
//! Whatever the relay sends on is well framed, and a forward is never longer than what came in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pvpn::core::relay::server::UdpVerdict;
use p2pvpn::core::relay::wire::{self, RelayDatagram, DATA_HEADER};
use p2pvpn_fuzz::{addr, records, relay_with_two_nodes, RELAY_A, RELAY_B, RELAY_LOCAL};
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    if let Some(RelayDatagram::ToPeer { payload, .. } | RelayDatagram::FromPeer { payload, .. }) =
        wire::parse(data)
    {
        assert_eq!(payload.len() + DATA_HEADER, data.len());
    }
    let now = p2pvpn_fuzz::epoch();
    let (mut relay, _, _) = relay_with_two_nodes(now);
    let (local, a, b) = (addr(RELAY_LOCAL), addr(RELAY_A), addr(RELAY_B));
    // Several datagrams per input (`records`), from A and B in turn (the seeds bind A first).
    for (i, chunk) in records(data).enumerate() {
        let mut buf = chunk.to_vec();
        let from = if i % 3 == 2 { b } else { a };
        let at = now + Duration::from_millis(i as u64 * 10);
        match relay.handle_udp(local, from, &mut buf, at) {
            UdpVerdict::Forward { len, .. } => {
                assert!(len <= buf.len());
                let forwarded = wire::parse(&buf[..len]);
                assert!(matches!(forwarded, Some(RelayDatagram::FromPeer { .. })));
            }
            UdpVerdict::Reply(reply) => {
                // Only an answer to a Bind, and never larger than it (no amplification).
                assert!(reply.len() <= buf.len(), "{} > {}", reply.len(), buf.len());
                assert!(matches!(
                    wire::parse(&reply),
                    Some(RelayDatagram::BindOk(_) | RelayDatagram::Challenge(_))
                ));
            }
            UdpVerdict::ToStream { frame, .. } => {
                assert!(wire::parse_stream_frame(&frame).is_some());
            }
            UdpVerdict::Drop(_) => {}
        }
    }
});
