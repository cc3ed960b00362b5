//! Join tokens, pasted by the user (`p2pvpn join TOKEN`): decoding never panics, and a token that
//! decodes encodes to one that decodes to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pvpn::core::rendezvous::token::JoinToken;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for candidate in [text.to_string(), format!("p2pvpn1-{text}")] {
        if let Ok(token) = JoinToken::decode(&candidate) {
            assert_eq!(JoinToken::decode(&token.encode()), Ok(token));
        }
    }
});
