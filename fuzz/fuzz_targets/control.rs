//! Control messages after the Noise layer, both ways. The fuzzer speaks inside an authenticated
//! channel, as a malicious member or a non-member to the real server, or as a malicious server to
//! a real node (the node trusts the server's key, not what it says); see `p2pvpn_fuzz::control`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2pvpn_fuzz::control::run(data);
});
