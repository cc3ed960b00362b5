//! A node pair and the server in a small simulator, driven by arbitrary interleavings of
//! datagrams, control messages and timeouts; the invariants are in `p2pvpn_fuzz::sim`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2pvpn_fuzz::sim::World::new().run(data);
});
