//! The demultiplexer of a node's one UDP socket (`core::wire::classify`): any datagram gets one
//! kind, and each kind's own parser accepts what the classifier sent it without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pvpn::core::punch::probe;
use p2pvpn::core::relay::wire as relay_wire;
use p2pvpn::core::stun::Message;
use p2pvpn::core::wire::{classify, receiver_index, DatagramKind, WgMessage};

fuzz_target!(|data: &[u8]| {
    match classify(data) {
        DatagramKind::Stun => {
            let _ = Message::decode(data);
        }
        DatagramKind::Probe => {
            // The claimed sender of a framed probe is always readable (authenticated later).
            assert!(probe::sender_of(data).is_ok());
            assert!(!relay_wire::is_relay(data));
        }
        DatagramKind::Relay => {
            assert!(relay_wire::is_relay(data));
            let _ = relay_wire::parse(data);
        }
        DatagramKind::WireGuard(kind) => {
            let index = receiver_index(data, kind);
            // Every WireGuard message but the initiation names the receiver's session.
            assert_eq!(index.is_none(), kind == WgMessage::HandshakeInit);
        }
        DatagramKind::Unknown => {}
    }
});
