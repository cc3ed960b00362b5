//! What `up` and `down` print, as an operator reads it: one log line per change of the server's
//! reachability rather than one per retry, log lines that never run into the spinner, a peer's
//! direct path announced once and its loss told once by name (no unnamed WireGuard timer
//! lines), the `-v`/`-q` flags, and `down` reporting that the node stopped.
//!
//! Most tests run a node on loopback against a server that is down, so it never registers and
//! creates no TUN device. The two that need a registered node run in network namespaces the
//! test creates (root only; without root they print SKIP). Nothing leaves 127.0.0.1 or those
//! namespaces.

#![allow(clippy::disallowed_methods)]
// tests drive real processes and clocks
// Unix only for now: the node is awaited through its control socket file (a named pipe on
// Windows has none), the terminal test runs util-linux `script`, and the registered-node tests
// use network namespaces. On Windows `up` also needs wintun and an elevated prompt.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{run, stderr, Spawned, BIN};

/// A node that joined `network` through a server that has since stopped.
struct Orphan {
    dir: PathBuf,
    network: &'static str,
    /// Where the server listened (nothing does now).
    addr: String,
}

impl Orphan {
    fn new(tag: &str, network: &'static str) -> Orphan {
        let dir = common::temp_dir("cli_output", tag);
        let state = dir.join("server");
        let (child, addr) = common::start_server(&state);
        let server = Spawned {
            child,
            dir: dir.join("server-owned"),
        };
        let s = state.to_str().unwrap();
        let out = run(
            &[
                "network",
                "create",
                network,
                "--cidr",
                "10.67.0.0/24",
                "--state-dir",
                s,
            ],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run(&["network", "invite", network, "--state-dir", s], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let token = String::from_utf8(out.stdout).unwrap();
        let out = common::join(&dir, token.trim(), "alice");
        assert!(out.status.success(), "{}", stderr(&out));
        drop(server); // kills the server: from now on it is unreachable
        Orphan { dir, network, addr }
    }

    fn env(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("P2PVPN_CONFIG_DIR", self.dir.join("alice/etc")),
            ("P2PVPN_STATE_DIR", self.dir.join("alice/state")),
        ]
    }

    fn control_socket(&self) -> PathBuf {
        self.dir
            .join("alice/state")
            .join(self.network)
            .join("control.sock")
    }

    /// `p2pvpn [flags] up --network NET`, output captured.
    fn up(&self, flags: &[&str]) -> Running {
        let mut cmd = Command::new(BIN);
        cmd.args(flags).args(["up", "--network", self.network]);
        self.spawn(cmd)
    }

    /// `up` on a terminal (a pseudo-terminal from util-linux `script`), stdout and stderr both
    /// on it as in an operator's shell; the test's stdout is what the terminal received.
    fn up_on_a_terminal(&self) -> Running {
        let mut cmd = Command::new("script");
        let line = format!("{BIN} up --network {}", self.network);
        cmd.args(["-qfec", &line, "/dev/null"]);
        self.spawn(cmd)
    }

    fn spawn(&self, mut cmd: Command) -> Running {
        cmd.env_remove("RUST_LOG")
            .env_remove("P2PVPN_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        // Bounded wait until the node answers on its control socket.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.control_socket().exists() {
            assert!(Instant::now() < deadline, "the node did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Running(Some(child))
    }

    fn down(&self) -> Output {
        let env = self.env();
        let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        run(&["down", "--network", self.network], &env)
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `up`, killed on drop if the test did not stop it.
struct Running(Option<Child>);

impl Running {
    /// Waits (bounded) for the process to exit after `down`, and returns its output.
    fn output(mut self) -> Output {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }
}

/// Output of a running process, gathered by a thread as it comes.
#[derive(Clone, Default)]
struct Collected(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Collected {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Running {
    /// Gathers one of the child's pipes (taken by `pipe`) as it is written.
    fn collect<R: std::io::Read + Send + 'static>(
        &mut self,
        pipe: impl FnOnce(&mut Child) -> Option<R>,
    ) -> Collected {
        let mut reader = pipe(self.0.as_mut().unwrap()).unwrap();
        let c = Collected::default();
        let sink = c.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.0.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        c
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn down_says_the_node_stopped() {
    let node = Orphan::new("down", "calm");
    let up = node.up(&[]);
    let out = node.down();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "calm: stopped\n");
    let up = up.output();
    assert!(up.status.success(), "{}", stderr(&up));
    assert!(!node.control_socket().exists());
}

#[test]
fn an_unreachable_server_is_logged_once_not_at_every_retry() {
    let node = Orphan::new("unreachable", "quiet");
    let up = node.up(&[]);
    // Retries come after about 1, 2 and 4 s (plus up to 50% jitter): 3 or more failed
    // attempts within this wait.
    std::thread::sleep(Duration::from_secs(8));
    let out = node.down();
    assert!(out.status.success(), "{}", stderr(&out));
    let up = up.output();
    let log = stderr(&up);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("unreachable (connection refused); retrying in the background"),
        "{log}"
    );
    // The attempts themselves are debug detail, not news.
    assert!(!log.contains("connecting to the server"), "{log}");
}

#[test]
fn verbose_shows_each_attempt_and_quiet_hides_the_info_lines() {
    let node = Orphan::new("verbosity", "loud");
    let up = node.up(&["-v"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(node.down().status.success());
    let log = stderr(&up.output());
    assert!(log.contains("DEBUG"), "{log}");
    assert!(log.contains("connecting to the server"), "{log}");

    let up = node.up(&["-q"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(node.down().status.success());
    let log = stderr(&up.output());
    assert!(!log.contains("INFO") && !log.contains("DEBUG"), "{log}");

    let both = run(&["-v", "-q", "status"], &[]);
    assert!(!both.status.success());
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
}

/// What a terminal shows after receiving `bytes`, line by line: carriage returns move to the
/// line's start, ESC [ 2 K erases the line, other control sequences (colours) show nothing.
fn render(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = vec![Vec::<char>::new()];
    let mut col = 0;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        let cur = lines.last_mut().unwrap();
        match ch {
            '\n' => {
                lines.push(Vec::new());
                col = 0;
            }
            '\r' => col = 0,
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut seq = String::new();
                for c in chars.by_ref() {
                    seq.push(c);
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
                if seq == "2K" {
                    cur.clear();
                }
            }
            c => {
                if col < cur.len() {
                    cur[col] = c;
                } else {
                    cur.push(c);
                }
                col += 1;
            }
        }
    }
    lines.into_iter().map(|l| l.into_iter().collect()).collect()
}

#[test]
fn on_a_terminal_a_log_line_never_runs_into_the_spinner() {
    let node = Orphan::new("spinner", "tty");
    let up = node.up_on_a_terminal();
    // The first attempt fails at once; its warning is logged while the spinner shows.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(node.down().status.success());
    let out = up.output();
    let screen = render(&out.stdout);
    let warning = screen
        .iter()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning shown: {screen:#?}"));
    assert!(
        !warning.contains("registering") && warning.contains("unreachable"),
        "{screen:#?}"
    );
    // Every line is whole, and no spinner is left behind once the node has stopped (the
    // shell's prompt would start after it).
    let is_spinner = |l: &String| l.starts_with(|c: char| ('\u{2800}'..='\u{28ff}').contains(&c));
    assert!(!screen.iter().any(is_spinner), "{screen:#?}");
    assert!(
        screen.iter().any(|l| l.ends_with(": stopped")),
        "{screen:#?}"
    );
}

#[test]
fn a_server_port_that_hangs_up_before_registering_is_logged_once() {
    let node = Orphan::new("hangup", "hangup");
    // Something else now holds the server's port: it accepts and closes at once.
    let listener = std::net::TcpListener::bind(&node.addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let hangup = std::thread::spawn(move || {
        let mut accepted = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((conn, _)) => {
                    accepted += 1;
                    drop(conn);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        accepted
    });
    let up = node.up(&[]);
    std::thread::sleep(Duration::from_secs(8));
    assert!(node.down().status.success());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let accepted = hangup.join().unwrap();
    let up = up.output();
    let (log, shown) = (
        stderr(&up),
        String::from_utf8_lossy(&up.stdout).into_owned(),
    );
    assert!(accepted >= 3, "only {accepted} attempts");
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("closed the connection before registering this node"),
        "{log}"
    );
    // Not a "lost the server" announcement per attempt: it was never reached.
    assert!(!shown.contains("lost the server"), "{shown}");
}

/// A network namespace of the test's own (only loopback in it), deleted on drop; `None`
/// without root.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("SKIP: needs root for a network namespace");
            return None;
        }
        let name = format!("p2o-{tag}-{}", std::process::id());
        let ok = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
        assert!(ok(&["netns", "add", &name]), "cannot create netns {name}");
        let ns = Netns(name);
        assert!(ok(&["-n", &ns.0, "link", "set", "lo", "up"]));
        Some(ns)
    }

    /// The binary with `args`, run inside the namespace (`ip netns exec` execs it, so the
    /// child is the binary itself).
    fn command(&self, env: &[(&str, &Path)], args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0, BIN])
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("P2PVPN_LOG")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the server and waits (bounded) until it listens: it prints its key then.
    fn server(&self, state: &Path) -> Running {
        self.server_on("127.0.0.1:7700", state)
    }

    fn server_on(&self, listen: &str, state: &Path) -> Running {
        let s = state.to_str().unwrap();
        let mut cmd = self.command(&[], &["server", "--listen", listen, "--state-dir", s]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut server = Running(Some(cmd.spawn().unwrap()));
        let out = server.collect(|c| c.stdout.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while !out.text().contains("server key") {
            assert!(
                Instant::now() < deadline,
                "the server did not start: {}",
                out.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The server goes away and comes back while a registered node runs: one warning when it
/// goes, one line when it is back, whatever the number of retries in between. Runs in a
/// network namespace of its own, since a registered node creates its TUN device.
#[test]
fn a_server_outage_is_one_line_down_and_one_line_up() {
    let Some(ns) = Netns::new("outage") else {
        return;
    };
    let dir = common::temp_dir("cli_output", "outage");
    let _cleanup = Orphan {
        dir: dir.clone(),
        network: "back",
        addr: String::new(),
    }; // removes the directory however the test ends
    let (etc, state, srv) = (dir.join("etc"), dir.join("state"), dir.join("srv"));
    let env = [
        ("P2PVPN_CONFIG_DIR", etc.as_path()),
        ("P2PVPN_STATE_DIR", state.as_path()),
    ];
    let s = srv.to_str().unwrap();
    let server = ns.server(&srv);
    // Network commands need the server's identity and database, written as it starts:
    // retry, bounded.
    let create = [
        "network",
        "create",
        "back",
        "--cidr",
        "10.69.0.0/24",
        "--state-dir",
        s,
    ];
    let out = run(&create, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        &[
            "network",
            "invite",
            "back",
            "--state-dir",
            s,
            "--server",
            "127.0.0.1:7700",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    // The server needs a moment to listen: retry the join, bounded.
    let mut joined = None;
    let mut last = String::new();
    for _ in 0..50 {
        let out = ns
            .command(&env, &["join", token.trim(), "--name", "alice"])
            .output()
            .unwrap();
        if out.status.success() {
            joined = Some(out);
            break;
        }
        last = stderr(&out);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(joined.is_some(), "join failed: {last}");
    drop(server);

    let mut up = ns.command(&env, &["up", "--network", "back"]);
    up.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut up = Running(Some(up.spawn().unwrap()));
    let shown = up.collect(|c| c.stdout.take());
    let log = up.collect(|c| c.stderr.take());
    let wait_for = |what: &Collected, needle: &str, times: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while what.text().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                what.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&log, "unreachable", 1);
    // Some retries fail before the server is back.
    std::thread::sleep(Duration::from_secs(2));
    let server = ns.server(&srv);
    wait_for(&shown, "registered as alice", 1);
    drop(server);
    wait_for(&shown, "lost the server", 1);
    wait_for(&log, "unreachable", 2);
    // A few more failed retries, which must log nothing.
    std::thread::sleep(Duration::from_secs(3));
    let down = run(&["down", "--network", "back"], &env);
    assert!(down.status.success(), "{}", stderr(&down));
    drop(up.output());
    let (log, shown) = (log.text(), shown.text());
    assert!(shown.contains("registered as alice"), "{shown}\n{log}");
    let lines: Vec<&str> = log.lines().collect();
    let unreachable = lines
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("unreachable"));
    let back = lines
        .iter()
        .filter(|l| l.contains("INFO") && l.contains("reachable again after"));
    // Down before registering, up, down again after losing it.
    assert_eq!(unreachable.count(), 2, "{log}");
    assert_eq!(back.count(), 1, "{log}");
    assert_eq!(shown.matches("lost the server").count(), 1, "{shown}");
}

/// Two hosts on one link, each in a namespace of the test's own: alice (with the server) and
/// bob. Bob gets a direct path, then dies without a word while alice sends him pings. Alice's
/// output announces the path once, and her log carries none of the WireGuard library's
/// unnamed `HANDSHAKE(REKEY_TIMEOUT)` lines that used to repeat every 5 s.
#[test]
fn a_peer_that_dies_leaves_no_unnamed_handshake_noise_and_its_path_was_announced_once() {
    let (Some(a), Some(b)) = (Netns::new("a"), Netns::new("b")) else {
        return;
    };
    let ip = |ns: &Netns, args: &[&str]| {
        let ok = Command::new("ip")
            .arg("-n")
            .arg(&ns.0)
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "ip {args:?}");
    };
    ip(
        &a,
        &[
            "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.0,
        ],
    );
    ip(&a, &["addr", "add", "192.168.241.1/24", "dev", "va"]);
    ip(&a, &["link", "set", "va", "up"]);
    ip(&b, &["addr", "add", "192.168.241.2/24", "dev", "vb"]);
    ip(&b, &["link", "set", "vb", "up"]);

    let dir = common::temp_dir("cli_output", "peer-dies");
    let _cleanup = Orphan {
        dir: dir.clone(),
        network: "dies",
        addr: String::new(),
    };
    let srv = dir.join("srv");
    let s = srv.to_str().unwrap();
    let server = a.server_on("192.168.241.1:7700", &srv);
    let out = run(
        &[
            "network",
            "create",
            "dies",
            "--cidr",
            "10.70.0.0/24",
            "--state-dir",
            s,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        &[
            "network",
            "invite",
            "dies",
            "--uses",
            "2",
            "--state-dir",
            s,
            "--server",
            "192.168.241.1:7700",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    let dirs = |n: &str| (dir.join(n).join("etc"), dir.join(n).join("state"));
    let (alice_etc, alice_state) = dirs("alice");
    let (bob_etc, bob_state) = dirs("bob");
    let alice_env = [
        ("P2PVPN_CONFIG_DIR", alice_etc.as_path()),
        ("P2PVPN_STATE_DIR", alice_state.as_path()),
    ];
    let bob_env = [
        ("P2PVPN_CONFIG_DIR", bob_etc.as_path()),
        ("P2PVPN_STATE_DIR", bob_state.as_path()),
    ];
    for (ns, env, name) in [(&a, &alice_env, "alice"), (&b, &bob_env, "bob")] {
        let out = ns
            .command(env, &["join", token.trim(), "--name", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let mut alice = a.command(&alice_env, &["up", "--network", "dies"]);
    alice.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut alice = Running(Some(alice.spawn().unwrap()));
    let shown = alice.collect(|c| c.stdout.take());
    let log = alice.collect(|c| c.stderr.take());
    let mut bob = b.command(&bob_env, &["up", "--network", "dies"]);
    bob.stdout(Stdio::null()).stderr(Stdio::null());
    let bob = Running(Some(bob.spawn().unwrap()));

    let deadline = Instant::now() + Duration::from_secs(30);
    while !shown.text().contains("bob (10.70.0.2) direct") {
        assert!(
            Instant::now() < deadline,
            "no direct path:\n{}",
            shown.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(bob); // SIGKILL: bob says nothing to anyone
               // Alice keeps trying to reach him: pings, and handshakes on her own (WireGuard retries
               // an unanswered handshake every 5 s, whitepaper §6.4).
    let deadline = Instant::now() + Duration::from_secs(25);
    while Instant::now() < deadline {
        let _ = run(&["ping", "bob", "-c", "1"], &alice_env);
        std::thread::sleep(Duration::from_millis(500));
    }
    let down = run(&["down", "--network", "dies"], &alice_env);
    assert!(down.status.success(), "{}", stderr(&down));
    drop(alice.output());
    drop(server);
    let (log, shown) = (log.text(), shown.text());
    assert!(!log.contains("REKEY_TIMEOUT"), "{log}");
    assert!(!log.contains("CONNECTION_EXPIRED"), "{log}");
    let announced: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("bob") && (l.contains(" direct (") || l.contains(" direct via")))
        .collect();
    assert_eq!(announced.len(), 1, "{shown}");
    // Bob's going quiet is told, by name, once: as "offline" when the server says he left
    // (status's word for it), or as "stopped answering" when only his packets stopped.
    let after: Vec<&str> = shown
        .lines()
        .skip_while(|l| !(l.contains("bob") && l.contains(" direct (")))
        .skip(1)
        .collect();
    let quiet = after
        .iter()
        .filter(|l| {
            l.contains("peer bob (10.70.0.2) offline")
                || l.contains("peer bob (10.70.0.2) stopped answering (was direct)")
        })
        .count();
    assert_eq!(quiet, 1, "{shown}");
    let mut lines = after.clone();
    let all = lines.len();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), all, "a line repeats:\n{shown}");
}
