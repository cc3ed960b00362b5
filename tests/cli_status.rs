//! What `status`, `ping`, `doctor` and `netcheck` tell a user, from the real binary on loopback:
//! the message, the exit code, the table row, the JSON field. The running node is stood in for
//! by `common::fake_node`, which answers on the node's real control channel the way a node does,
//! so no TUN device and no root are needed (except to drop to an unprivileged user in the
//! permission test, which is Unix-only: Windows has no sudo/uid to drop to).

#![allow(clippy::disallowed_methods)] // tests drive real processes and clocks

mod common;

use common::fake_node::FakeNode;
use common::{run, stderr};
use p2pvpn::core::keys::PublicKey;
use p2pvpn::io::control_socket::Request;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A node's status for network `lab` with two peers: `alice` online and direct, `bob` offline
/// since five minutes ago, as the node sends it on its control socket.
fn status_json() -> String {
    let now = unix_now();
    let peer = |name: &str, ip: &str, key: u8, path: &str, online: bool, seen: u64| {
        serde_json::json!({
            "name": name,
            "virtual_ip": ip,
            "public_key": PublicKey([key; 32]).to_base64(),
            "path": path,
            "online": online,
            "endpoint": null,
            "rtt_ms": null,
            "rx_bytes": 0,
            "tx_bytes": 0,
            "last_handshake_unix": null,
            "last_seen_unix": seen,
            "punch": {"attempts": 1, "probes_sent": 1, "time_to_direct_ms": null,
                      "last_failure": null},
        })
    };
    serde_json::json!({
        "network": "lab",
        "name": "me",
        "virtual_ip": "10.77.0.1",
        "cidr": "10.77.0.0/24",
        "public_key": PublicKey([1; 32]).to_base64(),
        "listen_port": 51820,
        "interface": "p2p-lab",
        "server": {"address": "127.0.0.1:7400", "connected": true},
        "peers": [
            peer("alice", "10.77.0.2", 2, "direct", true, now),
            peer("bob", "10.77.0.3", 3, "offline", false, now - 300),
        ],
        "drops": {},
    })
    .to_string()
}

/// Stands in for a running node of network `lab` under `state`: answers `status` with
/// [`status_json`] and `ping` with the drop the node reports for a peer it cannot reach, on the
/// node's real control channel (a Unix socket, or the named pipe on Windows).
fn fake_node(state: &Path) -> FakeNode {
    let status = status_json();
    FakeNode::start(state, "lab", move |request| match request {
        Request::Status => status.clone(),
        _ => "error: the packet was dropped: no_route".to_string(),
    })
}

fn dirs(root: &Path) -> (PathBuf, PathBuf) {
    (root.join("etc"), root.join("state"))
}

#[test]
fn status_shows_an_offline_peer_and_how_long_ago_it_was_seen() {
    let root = common::temp_dir("cli_status", "offline");
    let (etc, state) = dirs(&root);
    let _node = fake_node(&state);
    let env = [("P2PVPN_CONFIG_DIR", &*etc), ("P2PVPN_STATE_DIR", &*state)];
    let out = run(&["status"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let bob = text.lines().find(|l| l.starts_with("bob")).expect(&text);
    assert!(bob.contains(" offline "), "{text}");
    assert!(bob.ends_with("5 min ago"), "{text}");
    let alice = text.lines().find(|l| l.starts_with("alice")).expect(&text);
    assert!(alice.ends_with("online"), "{text}");
    assert!(text.contains("punch: 1 attempt, 1 probe"), "{text}");

    let out = run(&["status", "--network", "lab", "--json"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let bob = &j["networks"][0]["peers"][1];
    assert_eq!(bob["path"], "offline", "{j}");
    assert_eq!(bob["online"], false, "{j}");
    assert!(bob["last_seen_unix"].as_u64().is_some(), "{j}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn ping_says_the_peer_is_offline_not_a_counter_name() {
    let root = common::temp_dir("cli_status", "ping");
    let (etc, state) = dirs(&root);
    let _node = fake_node(&state);
    let env = [("P2PVPN_CONFIG_DIR", &*etc), ("P2PVPN_STATE_DIR", &*state)];
    let out = run(&["ping", "bob", "-c", "1"], &env);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bob is offline (last seen 5 min ago)"),
        "{err}"
    );
    assert!(!err.contains("no_route"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

/// Runs the binary as `nobody`, the way a user forgets sudo. Only root can switch users, so
/// without root there is nothing to test.
#[cfg(unix)]
fn run_as_nobody(args: &[&str], state: &Path) -> Option<Output> {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run the binary as an unprivileged user");
        return None;
    }
    Some(
        std::process::Command::new(common::BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .env("P2PVPN_STATE_DIR", state)
            .env("P2PVPN_CONFIG_DIR", state)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap(),
    )
}

#[cfg(unix)]
#[test]
fn without_sudo_status_and_ping_say_permission_denied_not_that_nothing_runs() {
    use std::os::unix::fs::PermissionsExt;
    let root = common::temp_dir("cli_status", "perm");
    let (_, state) = dirs(&root);
    let _node = fake_node(&state);
    // As `up` leaves it: the state directory is root's alone.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    for args in [
        &["status"][..],
        &["status", "--network", "lab"],
        &["ping", "bob", "-c", "1"],
    ] {
        let Some(out) = run_as_nobody(args, &state) else {
            return;
        };
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("permission denied: run with sudo"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("not running"), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn doctor_exits_non_zero_when_it_finds_problems_and_documents_its_codes() {
    let root = common::temp_dir("cli_status", "doctor");
    let (etc, state) = dirs(&root);
    let env = [("P2PVPN_CONFIG_DIR", &*etc), ("P2PVPN_STATE_DIR", &*state)];
    // No config and no node: two problems at least.
    let out = run(&["doctor", "--network", "lab"], &env);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).contains("problems found"), "{}", stdout(&out));
    assert!(stderr(&out).contains("doctor: "), "{}", stderr(&out));
    for (cmd, line) in [
        ("doctor", "3  problems found"),
        ("netcheck", "4  no STUN answer at all"),
        ("status", "permission denied"),
        ("ping", "the peer is offline"),
    ] {
        let help = run(&[cmd, "--help"], &[]);
        let text = stdout(&help);
        assert!(text.contains("Exit status:"), "{cmd}: {text}");
        assert!(text.contains(line), "{cmd}: {text}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn netcheck_tells_an_unreachable_server_from_blocked_udp_and_exits_non_zero() {
    let root = common::temp_dir("cli_status", "netcheck");
    let (etc, state) = dirs(&root);
    let env = [("P2PVPN_CONFIG_DIR", &*etc), ("P2PVPN_STATE_DIR", &*state)];
    // Nothing listens at all: the server is down.
    let port = common::free_port();
    let server = format!("127.0.0.1:{port}");
    let out = run(&["netcheck", "--server", &server], &env);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(4), "{text}{}", stderr(&out));
    assert!(
        text.contains("server does not answer over UDP or TCP"),
        "{text}"
    );
    assert!(!text.contains("blocked"), "{text}");
    // The server's TCP port answers but nothing comes back over UDP: that is a UDP block.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = tcp.local_addr().unwrap().to_string();
    let out = run(&["netcheck", "--server", &server, "--json"], &env);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(j["udp_blocked"], true, "{j}");
    assert!(j.get("server_unreachable").is_none(), "{j}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn doctor_blames_a_down_server_not_blocked_udp() {
    let root = common::temp_dir("cli_status", "doctor-down");
    let (etc, state) = dirs(&root);
    std::fs::create_dir_all(&etc).unwrap();
    // A joined network whose server is not running (nothing listens on the port).
    let server = format!("127.0.0.1:{}", common::free_port());
    let config = format!(
        "network = \"lab\"\nname = \"me\"\nservers = [\"{server}\"]\ntls_servers = []\n\
         server_public_key = \"{}\"\nlisten_port = 0\ninterface = \"p2p-lab\"\nmtu = 1420\n",
        PublicKey([7; 32]).to_base64()
    );
    std::fs::write(etc.join("lab.toml"), config).unwrap();
    let env = [("P2PVPN_CONFIG_DIR", &*etc), ("P2PVPN_STATE_DIR", &*state)];
    let out = run(&["doctor", "--network", "lab"], &env);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&format!("FAIL  server {server} unreachable")),
        "{text}"
    );
    assert!(!text.contains("outbound UDP is blocked"), "{text}");
    let _ = std::fs::remove_dir_all(&root);
}
