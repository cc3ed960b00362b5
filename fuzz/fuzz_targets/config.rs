//! The node's TOML config file (`/etc/p2pvpn/NETWORK.toml`), which the user may edit: parsing and
//! validation never panic, and valid settings written back parse to the same settings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.toml");
    if let Ok(settings) = p2pvpn::config::parse(text, file) {
        let written = toml::to_string(&settings.to_raw()).expect("settings serialise");
        let back = p2pvpn::config::parse(&written, file).expect("written settings parse");
        assert_eq!(back, settings);
    }
});
