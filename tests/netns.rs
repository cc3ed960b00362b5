//! Tier-3 tests: the real binary in network namespaces (real kernels, real TUN devices). They
//! need root; without it each prints SKIP with the reason. The scenarios live in tests/netns/*.sh.

#![allow(clippy::disallowed_methods)] // tests drive real processes and clocks

use std::process::Command;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run_lab_script(script: &str) {
    if !is_root() {
        println!("SKIP: {script} needs root (network namespaces and TUN devices)");
        return;
    }
    let out = Command::new("bash")
        .arg(script)
        .env("P2PVPN_BIN", env!("CARGO_BIN_EXE_p2pvpn"))
        // On failure the matrix prints every process log, which CI keeps.
        .env("MX_DUMP_LOGS", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    if out.status.code() == Some(77) {
        println!("SKIP: {script}: {}", stdout.lines().last().unwrap_or(""));
        return;
    }
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(
        !stdout.contains("not ok"),
        "{script} reported a failed check"
    );
}

#[test]
fn netns_two_hosts_join_ping_and_are_protected() {
    run_lab_script("tests/netns/basic.sh");
}

#[test]
fn netns_stun_server_and_netcheck_through_real_nats() {
    run_lab_script("tests/netns/stun.sh");
}

#[test]
fn netns_nat_lab_profiles_behave_as_documented() {
    run_lab_script("tests/netns/lab-selftest.sh");
}

#[test]
fn netns_netcheck_classifies_every_nat_profile() {
    run_lab_script("tests/netns/netcheck.sh");
}

#[test]
fn netns_nat_traversal_matrix() {
    run_lab_script("tests/netns/matrix.sh");
}

#[test]
fn netns_relay_first_then_upgrade() {
    run_lab_script("tests/netns/relay.sh");
}
