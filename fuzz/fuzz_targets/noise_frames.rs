//! The length-framed Noise IK stream the server accepts from anyone (`SecureChannel`): bytes in
//! any split, before and after the handshake. Nothing the fuzzer sends can be authenticated, so
//! no message may come out, and a failed channel stays failed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pvpn::core::rendezvous::channel::SecureChannel;
use p2pvpn_fuzz::{fixed_public, fixed_secret, records};

/// Feeds `data` in chunks (`records`) and checks the invariants.
fn feed(channel: &mut SecureChannel, data: &[u8]) {
    let mut failed = false;
    for chunk in records(data) {
        let result = channel.handle_bytes(chunk);
        assert!(!failed || result.is_err(), "a failed channel came back");
        failed |= result.is_err();
        assert!(
            channel.poll_message().is_none(),
            "an unauthenticated message came out"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let server = fixed_secret(10);
    let node = fixed_secret(11);
    let mut responder = SecureChannel::responder(&server).expect("a responder starts");
    if mode % 2 == 0 {
        // Before the handshake: the fuzzer plays the initiator.
        feed(&mut responder, data);
        return;
    }
    // After a genuine handshake: the fuzzer injects stream bytes on the established channel.
    let mut initiator = SecureChannel::initiator(&node, &fixed_public(10)).expect("initiator");
    for _ in 0..2 {
        if let Some(b) = initiator.take_outgoing() {
            responder
                .handle_bytes(&b)
                .expect("a genuine handshake message");
        }
        if let Some(b) = responder.take_outgoing() {
            initiator
                .handle_bytes(&b)
                .expect("a genuine handshake reply");
        }
    }
    assert!(responder.is_established() && initiator.is_established());
    assert_eq!(responder.remote_static(), Some(node.public_key()));
    feed(&mut responder, data);
});
