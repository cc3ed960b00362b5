//! Tier-3 tests: the real binary in network namespaces (real kernels, real TUN devices). The
//! scenarios live in tests/netns/*.sh. They need root and the tools scripts/setup-deps.sh
//! installs; a test that cannot run here (not root, or its script exits 77 with `SKIP: reason`)
//! FAILS, unless P2PVPN_ALLOW_SKIP=1, which makes it a skip. Because the harness counts a skip
//! as a pass, each test also leaves a marker (NAME.pass / NAME.fail / NAME.skip with the
//! reason) in P2PVPN_LAB_REPORT_DIR when set; scripts/test.sh prints the tally from them.

#![allow(clippy::disallowed_methods)]
// tests drive real processes and clocks
// Linux only: network namespaces, iproute2 and the kernel's TUN device.
#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::process::Command;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// How a lab test ended, as the tally in scripts/test.sh counts it.
enum Outcome {
    Passed,
    /// With a digest of why (the failed checks and the end of the output), which
    /// scripts/test.sh prints after the tally so that it ends the log CI keeps.
    Failed(String),
    Skipped(String),
}

/// Leaves NAME.pass / NAME.fail / NAME.skip (holding the digest or the reason) in
/// P2PVPN_LAB_REPORT_DIR.
fn record(test: &str, outcome: &Outcome) {
    let Some(dir) = std::env::var_os("P2PVPN_LAB_REPORT_DIR") else {
        return;
    };
    let (ext, body) = match outcome {
        Outcome::Passed => ("pass", ""),
        Outcome::Failed(digest) => ("fail", digest.as_str()),
        Outcome::Skipped(why) => ("skip", why.as_str()),
    };
    let path = PathBuf::from(dir).join(format!("{test}.{ext}"));
    if let Err(e) = std::fs::write(&path, body) {
        eprintln!("cannot write the lab marker {}: {e}", path.display());
    }
}

fn skips_allowed() -> bool {
    std::env::var("P2PVPN_ALLOW_SKIP").is_ok_and(|v| v == "1")
}

/// The test cannot run here: a skip when P2PVPN_ALLOW_SKIP=1, a failure otherwise.
fn cannot_run(test: &str, script: &str, reason: &str) {
    if skips_allowed() {
        println!("SKIP: {test} ({script}): {reason} (P2PVPN_ALLOW_SKIP=1)");
        record(test, &Outcome::Skipped(reason.to_string()));
        return;
    }
    record(test, &Outcome::Failed(format!("cannot run here: {reason}")));
    panic!(
        "{test} ({script}) cannot run here: {reason}. The lab tests need root and the tools \
         scripts/setup-deps.sh installs: run `sudo scripts/test.sh`, or set P2PVPN_ALLOW_SKIP=1 \
         to count this test as skipped instead"
    );
}

/// Why a script failed, in a few lines: its exit status, every `not ok` line with the comment
/// lines around it (the scripts put the details there), and the last lines of stdout and
/// stderr (a script that died says so there).
fn digest(status: &std::process::ExitStatus, stdout: &str, stderr: &str) -> String {
    let mut out = vec![format!("exit: {status}")];
    let lines: Vec<&str> = stdout.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("not ok") {
            // The check's own explanation comes just before its verdict: tap.sh's `why` lines
            // (`#   ...`), or the outcome a matrix-style script prints (`#   -> ...`).
            let why: Vec<&str> = lines[..i]
                .iter()
                .rev()
                .take(3)
                .take_while(|l| l.starts_with("#   "))
                .copied()
                .collect();
            out.extend(why.iter().rev().map(|l| l.to_string()));
            out.push((*line).to_string());
            let after = lines[i + 1..].iter().take(3);
            out.extend(
                after
                    .take_while(|l| l.starts_with('#'))
                    .map(|l| l.to_string()),
            );
        }
    }
    let tail = |text: &str, n: usize| -> Vec<String> {
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    };
    out.push("stdout ends:".to_string());
    out.extend(tail(stdout, 4));
    out.push("stderr ends:".to_string());
    out.extend(tail(stderr, 4));
    out.join("\n")
}

/// The reason a script gave for exit 77: its last `SKIP: ...` line.
fn skip_reason(stdout: &str) -> String {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("SKIP: "))
        .unwrap_or("the script exited 77 without a reason")
        .to_string()
}

fn run_lab_script(test: &str, script: &str, env: &[(&str, &str)]) {
    if !is_root() {
        cannot_run(
            test,
            script,
            "not root (network namespaces and TUN devices need root)",
        );
        return;
    }
    let out = Command::new("bash")
        .arg(script)
        .env("P2PVPN_BIN", env!("CARGO_BIN_EXE_p2pvpn"))
        // On failure the scripts print every process log, which CI keeps.
        .env("MX_DUMP_LOGS", "1")
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            record(test, &Outcome::Failed(format!("cannot run bash: {e}")));
            panic!("{test}: cannot run bash {script}: {e}");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    if out.status.code() == Some(77) {
        cannot_run(test, script, &skip_reason(&stdout));
        return;
    }
    let ok = out.status.success() && !stdout.contains("not ok");
    record(
        test,
        &if ok {
            Outcome::Passed
        } else {
            Outcome::Failed(digest(&out.status, &stdout, &stderr))
        },
    );
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        !stdout.contains("not ok"),
        "{script} reported a failed check"
    );
}

/// `lab_test!(NAME, "tests/netns/SCRIPT.sh" [, "VAR" => "VALUE"]...)`: a #[test] NAME running the
/// script, its markers named after the test.
macro_rules! lab_test {
    ($(#[$doc:meta])* $name:ident, $script:literal $(, $k:literal => $v:literal)*) => {
        $(#[$doc])*
        #[test]
        fn $name() {
            run_lab_script(stringify!($name), $script, &[$(($k, $v)),*]);
        }
    };
}

lab_test!(
    netns_two_hosts_join_ping_and_are_protected,
    "tests/netns/basic.sh"
);
lab_test!(
    /// The same checks with alice on our WireGuard engine (the default on Linux, with its data
    /// thread) and bob on boringtun (`[dataplane] wireguard = "boringtun"`, in the node's
    /// loop): the wire format is the same, so a mesh can mix them.
    netns_two_hosts_mixed_wireguard_engines,
    "tests/netns/basic.sh",
    "LAB_WIREGUARD_ALICE" => "own",
    "LAB_WIREGUARD_BOB" => "boringtun"
);
lab_test!(
    /// `[dataplane] workers = 2`: ping, `p2pvpn ping` and TCP both ways, with both worker
    /// threads of both nodes doing the crypto.
    netns_two_data_workers_carry_traffic_both_ways,
    "tests/netns/workers.sh"
);
lab_test!(
    /// `[dataplane] workers = 1` on our engine: the single data thread carries ping (the
    /// kernel's answer written and read on the same thread), `p2pvpn ping` and TCP both ways.
    netns_one_data_thread_carries_traffic_both_ways,
    "tests/netns/workers.sh",
    "LAB_WORKERS" => "1"
);
lab_test!(
    netns_stun_server_and_netcheck_through_real_nats,
    "tests/netns/stun.sh"
);
lab_test!(
    netns_nat_lab_profiles_behave_as_documented,
    "tests/netns/lab-selftest.sh"
);
lab_test!(
    netns_netcheck_classifies_every_nat_profile,
    "tests/netns/netcheck.sh"
);
lab_test!(netns_nat_traversal_matrix, "tests/netns/matrix.sh");
lab_test!(netns_relay_first_then_upgrade, "tests/netns/relay.sh");
lab_test!(
    /// A 1300-byte link between the NATs with ICMP filtered: the default (derived TUN MTU and
    /// path MTU discovery) carries 5 MB of TCP and an SSH-sized exchange; a fixed 1420 stalls.
    netns_path_mtu_below_the_tunnel,
    "tests/netns/pmtu.sh"
);
lab_test!(
    /// The IPv6 overlay: both addresses in status and members, ping -6 and TCP over IPv6.
    netns_ipv6_overlay_ping_and_tcp,
    "tests/netns/ipv6.sh"
);
lab_test!(
    /// Row 12: a RND router with miniupnpd (UPnP IGD, PCP, NAT-PMP, each on its own) turns
    /// RND-RND direct; a router refusing mappings leaves it relayed; netcheck names them.
    netns_port_mapping_candidate,
    "tests/netns/portmap.sh"
);
lab_test!(
    /// Row 13 (V6FW): two hosts behind random symmetric IPv4 NATs with global IPv6 behind
    /// stateful firewalls go direct over IPv6; ping and TCP cross the firewalls as IPv6 UDP.
    netns_ipv6_underlay_path,
    "tests/netns/ipv6path.sh"
);
lab_test!(
    /// Peers' names through the node's DNS responder: getent and ping by name from a peer,
    /// REFUSED outside the suffix, garbage dropped and counted, nothing left behind by `down`.
    netns_dns_names,
    "tests/netns/dns.sh"
);
lab_test!(
    /// Access rules: "tcp 22 from tag:admin to tag:server" lets TCP 22 through, drops and
    /// counts ping and TCP 80 (status, doctor), and rule changes apply within 2 s, no restart.
    netns_access_rules,
    "tests/netns/acl.sh"
);
lab_test!(
    /// A 10-node mesh under churn for 2 minutes (the CI bound; `scripts/soak.sh --minutes 30`
    /// runs the long one): no RSS or fd growth, every pair pings at the end, counters
    /// consistent. The whole run, setup and end checks included, takes about 3.5 minutes.
    netns_soak,
    "tests/netns/soak.sh",
    "SOAK_SECONDS" => "120"
);
lab_test!(
    /// One `up` process serving two networks on two servers, alice and bob in both: READY=1
    /// once, pings in both, isolation (A's interface to B's range reaches no B device), `down`
    /// per network, SIGTERM stops both.
    netns_multinet_one_process,
    "tests/netns/multinet.sh"
);
lab_test!(
    /// A node's `up` restarted within a second (SIGTERM or SIGKILL, a new or the same port,
    /// either key order): one ping each way answered within 2 s, both direct within 5 s.
    netns_restart_is_reachable_at_once,
    "tests/netns/restart.sh"
);
lab_test!(
    /// The lab's delay element (no netem here): 20 +/- 5 ms one way gives a 35-60 ms RTT
    /// across the routed internet, its queue cap drops and counts, and it goes away cleanly.
    netns_lab_delay_element,
    "tests/netns/delay.sh"
);
lab_test!(
    /// Roaming mid-transfer: a's router flushes conntrack, then a moves to another router (new
    /// address, new public IP); both times the pair is direct again within 5 s and one TCP
    /// connection carries every byte with no silence of 3 s or more.
    netns_roaming_keeps_tcp_and_goes_direct_again,
    "tests/netns/roam.sh"
);
lab_test!(
    /// Two servers on one PostgreSQL, four nodes behind NATs: failover on SIGKILL within 5 s,
    /// the relayed transfer survives, a restart changes nothing, remove-member across servers.
    netns_several_servers,
    "tests/netns/servers.sh"
);
