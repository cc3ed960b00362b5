//! The binary loads no C math library (src/os/libm.rs says why): ld.so lists what it loads for
//! `p2pvpn version` when LD_TRACE_LOADED_OBJECTS is set (what `ldd` does), and libm.so must not
//! be among them, while libc.so must (the listing worked).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::process::Command;

#[test]
fn the_binary_does_not_load_libm() {
    let out = Command::new(env!("CARGO_BIN_EXE_p2pvpn"))
        .arg("version")
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("run p2pvpn");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ld.so's listing failed: {listing}");
    assert!(
        listing.contains("libc.so"),
        "no libc in ld.so's listing: {listing}"
    );
    assert!(
        !listing.contains("libm.so"),
        "the binary needs libm again: a new caller of a C math function? {listing}"
    );
}
