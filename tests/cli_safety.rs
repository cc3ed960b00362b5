//! Safety of what users create, as they see it: network ranges that would take the server or
//! the internet away, overlapping ranges, interface names two networks share, a state directory
//! no server uses, failed joins and re-joins, and `up` stopping on local preconditions before it
//! does any network work. The real binary on loopback; `up` is never let past its checks (no
//! private key exists for it), so no TUN device is created even when the tests run as root.

#![allow(clippy::disallowed_methods)] // tests drive real processes and clocks

use p2pvpn::core::rendezvous::token::JoinToken;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

mod common;

use common::{run, run_bounded, stderr, Spawned};

/// `up` must answer its preconditions at once, long before a registration could time out.
const FAST: Duration = Duration::from_secs(5);

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exit status `code`, and stderr says each of `needles`.
fn assert_fails(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    // A message wrapped in the source must not reach the user with the indentation inside.
    assert!(!err.contains("    "), "ragged message: {err}");
}

struct Server {
    p: Spawned,
}

/// A test's own directory, removed on drop so that a failed assertion leaves nothing behind.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        Dir(common::temp_dir("safety", tag))
    }
}

impl std::ops::Deref for Dir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    fn start(tag: &str) -> Server {
        let dir = common::temp_dir("safety", tag);
        let (child, _) = common::start_server(&dir.join("server"));
        let s = Server {
            p: Spawned { child, dir },
        };
        let out = s.network(&["create", "lab", "--cidr", "10.66.0.0/24"]);
        assert!(out.status.success(), "{}", stderr(&out));
        s
    }

    fn state(&self) -> PathBuf {
        self.p.dir.join("server")
    }

    fn network(&self, args: &[&str]) -> Output {
        common::network(&self.state(), args)
    }

    fn invite(&self, network: &str) -> String {
        let out = self.network(&["invite", network, "--uses", "5"]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    }

    fn join(&self, token: &str, node: &str) -> Output {
        common::join(&self.p.dir, token, node)
    }

    fn join_as(&self, token: &str, node: &str, name: Option<&str>) -> Output {
        let etc = self.p.dir.join(node).join("etc");
        let state = self.p.dir.join(node).join("state");
        let mut args = vec!["join", token];
        if let Some(n) = name {
            args.extend_from_slice(&["--name", n]);
        }
        run(
            &args,
            &[("P2PVPN_CONFIG_DIR", &etc), ("P2PVPN_STATE_DIR", &state)],
        )
    }
}

#[test]
fn ranges_that_would_take_the_server_or_the_internet_are_refused_with_why() {
    let server = Server::start("ranges");
    let create = |name: &str, cidr: &str, extra: &[&str]| {
        let mut args = vec!["create", name, "--cidr", cidr];
        args.extend_from_slice(extra);
        server.network(&args)
    };
    let cases: [(&str, &[&str]); 5] = [
        ("0.0.0.0/0", &["every address", "lose the server"]),
        ("127.0.0.0/24", &["loopback"]),
        (
            "8.8.8.0/24",
            &["public address space", "--allow-public-range"],
        ),
        ("169.254.0.0/16", &["link-local", "--allow-public-range"]),
        ("224.0.0.0/24", &["multicast"]),
    ];
    for (cidr, says) in cases {
        assert_fails(&create("bad", cidr, &[]), 1, says);
    }
    // The flag is for public ranges one owns, not for ranges that can never work.
    assert_fails(
        &create("bad", "0.0.0.0/0", &["--allow-public-range"]),
        1,
        &["every address"],
    );
    let out = create("pub", "8.8.8.0/24", &["--allow-public-range"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = create("cgnat", "100.64.0.0/24", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&server.network(&["list"]));
    assert!(!list.contains("bad"), "{list}");
}

#[test]
fn cidr_errors_say_what_is_wrong() {
    // Checked before any state is touched: no server is needed to get these right.
    let dir = Dir::new("cidr");
    let state = dir.join("none");
    let create = |cidr: &str| {
        run(
            &[
                "network",
                "create",
                "x",
                "--cidr",
                cidr,
                "--state-dir",
                state.to_str().unwrap(),
            ],
            &[],
        )
    };
    assert_fails(&create("10.0.0.0/33"), 2, &["/33", "at most /32"]);
    assert_fails(
        &create("10.77.0.0"),
        2,
        &["no prefix length", "10.77.0.0/24"],
    );
    assert_fails(&create("fd00::/64"), 2, &["IPv6", "IPv4 only for now"]);
    assert_fails(&create("10.0.0.999/24"), 2, &["not an IPv4 address"]);
    assert_fails(&create("10.0.0.1/24"), 2, &["did you mean 10.0.0.0/24"]);
}

#[test]
fn an_overlapping_range_is_warned_about_at_create() {
    let server = Server::start("overlap");
    let out = server.network(&["create", "wide", "--cidr", "10.66.0.0/16"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: 10.66.0.0/16 overlaps network lab (10.66.0.0/24)"),
        "{err}"
    );
    let out = server.network(&["create", "apart", "--cidr", "10.67.0.0/24"]);
    assert!(!stderr(&out).contains("overlaps"), "{}", stderr(&out));
}

#[test]
fn network_commands_refuse_a_directory_no_server_uses() {
    let dir = Dir::new("nostate");
    let state = dir.join("not-the-server");
    let s = state.to_str().unwrap();
    for args in [
        vec!["network", "list", "--state-dir", s],
        vec![
            "network",
            "create",
            "lab",
            "--cidr",
            "10.1.0.0/24",
            "--state-dir",
            s,
        ],
    ] {
        let out = run(&args, &[]);
        assert_fails(
            &out,
            1,
            &[
                &format!("no server state in {s}"),
                "--state-dir",
                &format!("p2pvpn server --listen ADDR:PORT --state-dir {s}"),
            ],
        );
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }
    assert!(!state.join("server.db").exists(), "a database was created");
}

#[test]
fn a_failed_join_leaves_no_key_behind() {
    let server = Server::start("failedjoin");
    let mut token = JoinToken::decode(&server.invite("lab")).unwrap();
    // Nothing listens there: the join cannot reach a server.
    token.servers = vec![format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap()];
    let out = server.join(&token.encode(), "alice");
    assert_fails(&out, 1, &["cannot reach the server"]);
    let keys = server.p.dir.join("alice/state/lab");
    assert!(
        !keys.join("private.key").exists(),
        "the key was left behind"
    );
    assert!(!keys.exists(), "{} was left behind", keys.display());
    assert!(!server.p.dir.join("alice/etc/lab.toml").exists());
    // A refused join (unknown network in a forged token) cleans up too.
    let mut other = JoinToken::decode(&server.invite("lab")).unwrap();
    other.network = "nosuch".into();
    let out = server.join(&other.encode(), "alice");
    assert!(!out.status.success());
    assert!(!server.p.dir.join("alice/state/nosuch/private.key").exists());
}

#[test]
fn join_name_on_a_joined_network_says_what_it_does() {
    let server = Server::start("rename");
    let token = server.invite("lab");
    let out = server.join_as(&token, "host", Some("alice"));
    assert!(out.status.success(), "{}", stderr(&out));
    // A different --name would be ignored by the server: refuse and say how to rename.
    let out = server.join_as(&token, "host", Some("bob"));
    assert_fails(
        &out,
        1,
        &[
            "already joined network lab as alice",
            "--name bob would not rename it",
            "network remove-member lab alice",
        ],
    );
    // Without --name a re-join keeps the joined name (not the host name) and says so.
    let out = server.join_as(&token, "host", None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already joined network lab as alice"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("joined network lab as alice"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn networks_whose_names_share_a_prefix_get_different_interfaces() {
    let server = Server::start("ifname");
    for (net, cidr) in [
        ("engineering-a", "10.70.0.0/24"),
        ("engineering-b", "10.71.0.0/24"),
    ] {
        let out = server.network(&["create", net, "--cidr", cidr]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = server.join(&server.invite(net), "alice");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let iface = |net: &str| {
        let text =
            std::fs::read_to_string(server.p.dir.join(format!("alice/etc/{net}.toml"))).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("interface"))
            .unwrap_or_default()
            .to_string();
        (line, text)
    };
    let ((a, _), (b, text)) = (iface("engineering-a"), iface("engineering-b"));
    assert_ne!(a, b);
    assert!(a.starts_with("interface = \"p2p-engine"), "{a}");
    assert!(
        text.contains("cidr = \"10.71.0.0/24\""),
        "join records the range: {text}"
    );
}

/// A hand-written config (as an older version or a user wrote it) in `dir/etc`.
fn write_config(dir: &Path, network: &str, extra: &str) {
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let text = format!(
        "network = \"{network}\"\nname = \"alice\"\nservers = [\"127.0.0.1:{}\"]\n\
         server_public_key = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"\n{extra}",
        common::free_port()
    );
    std::fs::write(etc.join(format!("{network}.toml")), text).unwrap();
}

fn up(dir: &Path, network: &str, extra: &[&str]) -> Output {
    let etc = dir.join("etc");
    let state = dir.join("state");
    let mut args = vec!["up", "--network", network];
    args.extend_from_slice(extra);
    run_bounded(
        &args,
        &[("P2PVPN_CONFIG_DIR", &etc), ("P2PVPN_STATE_DIR", &state)],
        FAST,
    )
    .expect("`up` did not stop at its preconditions")
}

#[test]
fn up_refuses_an_interface_another_network_uses_before_any_network_work() {
    let dir = Dir::new("sameif");
    write_config(&dir, "engineering", "interface = \"p2p-engineering\"\n");
    write_config(&dir, "engineering-b", "interface = \"p2p-engineering\"\n");
    let out = up(&dir, "engineering-b", &[]);
    assert_fails(
        &out,
        1,
        &[
            "network engineering-b uses interface p2p-engineering, and so does network \
             engineering",
            "engineering.toml",
            "Set `interface = \"p2p-engine",
        ],
    );
}

#[test]
fn up_refuses_a_range_holding_the_servers_address() {
    let dir = Dir::new("srvrange");
    write_config(&dir, "lab", "cidr = \"127.0.0.0/8\"\n");
    let out = up(&dir, "lab", &["--allow-overlap"]);
    assert_fails(
        &out,
        1,
        &[
            "the server's address 127.0.0.1:",
            "inside the network's own range 127.0.0.0/8",
        ],
    );
}

// Everything below reads Linux's routing table (/proc, netlink), drops to another uid or
// creates network namespaces: Linux only, so not built for Windows or macOS.

/// A non-default unicast route this host already has, from the kernel's main table.
#[cfg(target_os = "linux")]
fn existing_route() -> Option<(String, String)> {
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (dst, mask, flags) = (hex(f.get(1)?)?, hex(f.get(7)?)?, hex(f.get(3)?)?);
        if mask == 0 || flags & 1 == 0 {
            return None;
        }
        let dst = std::net::Ipv4Addr::from(dst.to_ne_bytes());
        // Ranges `network create` never accepts (a multicast route, say) are no use here.
        if matches!(dst.octets()[0], 0 | 127 | 224..) {
            return None;
        }
        Some((
            format!("{dst}/{}", mask.count_ones()),
            f.first()?.to_string(),
        ))
    })
}

#[cfg(target_os = "linux")]
#[test]
fn create_warns_about_a_range_over_the_server_hosts_own_subnet() {
    let Some((range, iface)) = existing_route() else {
        eprintln!("skipped: this host has no route but the default one");
        return;
    };
    let server = Server::start("ownsubnet");
    let out = server.network(&["create", "over", "--cidr", &range, "--allow-public-range"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {range} overlaps this host's route {range} dev {iface}"
        )),
        "{err}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn up_refuses_a_range_that_collides_with_a_route_of_the_host() {
    let Some((range, iface)) = existing_route() else {
        eprintln!("skipped: this host has no route but the default one");
        return;
    };
    let dir = Dir::new("route");
    write_config(&dir, "lab", &format!("cidr = \"{range}\"\n"));
    let out = up(&dir, "lab", &[]);
    assert_fails(
        &out,
        1,
        &[
            &format!("the network's range {range} overlaps a route this host already has"),
            &format!("{range} dev {iface}"),
            "--allow-overlap",
        ],
    );
    // With the flag the check lets it through; it then stops at the missing key, still before
    // anything is sent or created.
    let out = up(&dir, "lab", &["--allow-overlap"]);
    assert!(
        !stderr(&out).contains("overlaps a route"),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[cfg(target_os = "linux")]
#[test]
fn up_without_privileges_says_so_before_contacting_the_server() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dropping to another user needs root");
        return;
    }
    use std::os::unix::process::CommandExt;
    let dir = Dir::new("nopriv");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("lab.toml"),
        format!(
            "network = \"lab\"\nname = \"alice\"\nservers = [\"{}\"]\n\
             server_public_key = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"\n",
            listener.local_addr().unwrap()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(common::BIN)
        .args(["up", "--network", "lab"])
        .env_remove("RUST_LOG")
        .env("P2PVPN_CONFIG_DIR", &etc)
        .env("P2PVPN_STATE_DIR", dir.join("state"))
        .uid(65534)
        .gid(65534)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + FAST;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert_fails(&out, 1, &["permission denied", "sudo", "CAP_NET_ADMIN"]);
    assert!(
        listener.accept().is_err(),
        "`up` contacted the server before checking its privileges"
    );
}

/// A network namespace of this test's own, deleted on drop.
#[cfg(target_os = "linux")]
struct Netns(String);

#[cfg(target_os = "linux")]
impl Netns {
    /// Creates it with `ip`; `None` when that is not possible here (not root, no iproute2).
    fn new(tag: &str) -> Option<Netns> {
        let name = format!("p2p-safety-{tag}-{}", std::process::id());
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Netns(name))
    }

    /// `ip -n NS ARGS`, which must succeed.
    fn ip(&self, args: &[&str]) {
        let status = std::process::Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ip -n {} {args:?}", self.0);
    }
}

#[cfg(target_os = "linux")]
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// A range another VPN routes through a policy rule into its own table (as Tailscale does with
/// 100.64.0.0/10 in table 52) is not in the main table; `up` asks the kernel and still sees it.
#[cfg(target_os = "linux")]
#[test]
fn up_sees_a_colliding_route_in_another_table() {
    let Some(ns) = Netns::new("policy") else {
        eprintln!("skipped: cannot create a network namespace (needs root and iproute2)");
        return;
    };
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["route", "add", "100.64.0.0/10", "dev", "lo", "table", "52"]);
    ns.ip(&["rule", "add", "to", "100.64.0.0/10", "table", "52"]);
    let dir = Dir::new("policy");
    write_config(&dir, "lab", "cidr = \"100.64.5.0/24\"\n");
    let etc = dir.join("etc");
    let state = dir.join("state");
    let args = [
        "netns",
        "exec",
        ns.0.as_str(),
        common::BIN,
        "up",
        "--network",
        "lab",
    ];
    let mut cmd = std::process::Command::new("ip");
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env("P2PVPN_CONFIG_DIR", &etc)
        .env("P2PVPN_STATE_DIR", &state);
    let out = cmd.output().unwrap();
    assert_fails(
        &out,
        1,
        &["the network's range 100.64.5.0/24 overlaps a route this host already has (100.64.0.0/10 dev lo)"],
    );
}

/// A child process killed on drop.
#[cfg(target_os = "linux")]
struct Killed(std::process::Child);

#[cfg(target_os = "linux")]
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `ready` every 100 ms for at most `limit`.
#[cfg(target_os = "linux")]
fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `doctor` used to say all was fine while a more specific route (another VPN's) took the
/// peers' addresses; it now asks the kernel where each address goes. A server and a node in a
/// namespace of the test's own, on its loopback.
#[cfg(target_os = "linux")]
#[test]
fn doctor_names_a_route_that_takes_the_networks_addresses() {
    let Some(ns) = Netns::new("doctor") else {
        eprintln!("skipped: cannot create a network namespace (needs root and iproute2)");
        return;
    };
    ns.ip(&["link", "set", "lo", "up"]);
    let dir = Dir::new("doctor");
    let (srv, etc, state) = (dir.join("srv"), dir.join("etc"), dir.join("state"));
    let in_ns = |args: &[&str]| {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", ns.0.as_str(), common::BIN])
            .args(args)
            .env_remove("RUST_LOG")
            .env("P2PVPN_CONFIG_DIR", &etc)
            .env("P2PVPN_STATE_DIR", &state)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let srv_arg = srv.to_str().unwrap();
    let _server = Killed(
        in_ns(&[
            "server",
            "--listen",
            "127.0.0.1:7400",
            "--state-dir",
            srv_arg,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap(),
    );
    assert!(wait_for(Duration::from_secs(10), || srv
        .join("server.db")
        .exists()));
    let out = run(
        &[
            "network",
            "create",
            "lab",
            "--cidr",
            "10.66.0.0/24",
            "--state-dir",
            srv_arg,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["network", "invite", "lab", "--state-dir", srv_arg], &[]);
    let token = stdout(&out).trim().to_string();
    // The server may not listen yet; a failed join leaves nothing behind, so just retry.
    assert!(wait_for(Duration::from_secs(10), || {
        let out = in_ns(&["join", &token, "--name", "alice"])
            .output()
            .unwrap();
        out.status.success()
    }));
    let _node = Killed(in_ns(&["up", "--network", "lab"]).spawn().unwrap());
    let routes = || {
        let out = std::process::Command::new("ip")
            .args(["-n", ns.0.as_str(), "route"])
            .output()
            .unwrap();
        stdout(&out)
    };
    assert!(
        wait_for(Duration::from_secs(15), || routes().contains("dev p2p-lab")),
        "the node did not come up: {}",
        routes()
    );
    let doctor = || {
        let out = in_ns(&["doctor", "--network", "lab"]).output().unwrap();
        stdout(&out)
    };
    let healthy = doctor();
    assert!(
        healthy.contains("ok    the kernel sends 10.66.0.2 to p2p-lab"),
        "{healthy}"
    );
    // Another VPN claims part of the range with a more specific route.
    ns.ip(&["route", "add", "10.66.0.0/30", "dev", "lo"]);
    let report = doctor();
    assert!(
        report.contains(
            "FAIL  the kernel sends 10.66.0.2 to route 10.66.0.0/30 dev lo, not to p2p-lab"
        ),
        "{report}"
    );
    assert!(report.contains("another VPN or LAN claims part of the network's range"));
}
