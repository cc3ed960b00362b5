//! What the loopback integration tests (`cli`, `stun`, `tls`, `pgstore`) share: the binary under test, a
//! fresh temp directory per test, and running a command the way a user would.

#![allow(dead_code)] // each test binary uses its own subset

pub mod fake_node;
#[cfg(unix)] // initdb/pg_ctl as the `postgres` user: the Debian package
pub mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_p2pvpn");

/// An empty directory for one test of one suite, unique per process.
pub fn temp_dir(suite: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("p2pvpn-{suite}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary with `args` and extra environment, without the caller's RUST_LOG.
pub fn run(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A spawned server and its directory: killed and removed on drop, so a failed assertion
/// leaves nothing behind.
pub struct Spawned {
    pub child: std::process::Child,
    pub dir: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `p2pvpn join TOKEN --name NODE` with the node's config and state under `dir/NODE`.
pub fn join(dir: &Path, token: &str, node: &str) -> Output {
    let etc = dir.join(node).join("etc");
    let state = dir.join(node).join("state");
    run(
        &["join", token, "--name", node],
        &[("P2PVPN_CONFIG_DIR", &etc), ("P2PVPN_STATE_DIR", &state)],
    )
}

/// A loopback port free for a server: TCP and UDP on it and UDP on the next one (a server's
/// second STUN port, RFC 5780 "change port", is its listen port + 1). All three are closed
/// again at once, so another process may still take one: [`start_server`] retries then.
pub fn free_port() -> u16 {
    use std::net::{TcpListener, UdpSocket};
    for _ in 0..64 {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", next)).is_ok()
        {
            return port;
        }
    }
    panic!("no loopback port with the next one free in 64 tries");
}

/// Why a server did not come up.
pub enum StartError {
    /// It exited: its exit status and what it printed on stderr.
    Exited(String),
    /// It kept running without accepting within the bound (killed): what it printed.
    Silent(String),
}

impl StartError {
    /// Fails the test, saying what the server on `addr` did.
    fn fail(self, addr: &str) -> ! {
        match self {
            StartError::Exited(why) => panic!("the server on {addr} exited at start: {why}"),
            StartError::Silent(printed) => {
                panic!("the server on {addr} did not accept within 30 s; it printed: {printed}")
            }
        }
    }
}

/// Starts `p2pvpn server --listen addr --state-dir state` and waits until it accepts
/// connections (bounded: 30 s, for a loaded 2-core CI machine). Its stderr goes to
/// `state` + `.stderr` (beside the state directory), so a server that did not start says why.
pub fn try_spawn_server(addr: &str, state: &Path) -> Result<std::process::Child, StartError> {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let log = state.with_extension("stderr");
    let spawn = || {
        let file = std::fs::File::create(&log)?;
        Command::new(BIN)
            .args(["server", "--listen", addr, "--state-dir"])
            .arg(state)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
    };
    // wine's CreateProcess now and then fails under load with ERROR_INTERNAL_ERROR (1359,
    // seen in CI's Windows run); a process that cannot be created is not the server's
    // failure, so it is tried three times, 200 ms apart, before the test fails.
    let mut child = spawn();
    for _ in 0..2 {
        if child.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        child = spawn();
    }
    let mut child = child.unwrap();
    let printed = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(StartError::Exited(format!("{status}: {}", printed())));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::Silent(printed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

/// [`try_spawn_server`] on `addr`, which must work (a restart on the port the nodes know).
pub fn spawn_server(addr: &str, state: &Path) -> std::process::Child {
    try_spawn_server(addr, state).unwrap_or_else(|e| e.fail(addr))
}

/// A server on a free loopback port: its process and `127.0.0.1:PORT`. A port another test took
/// between [`free_port`] and the server's bind (the server exits saying it is in use) is
/// replaced by another, up to five times.
pub fn start_server(state: &Path) -> (std::process::Child, String) {
    let mut last = String::new();
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", free_port());
        match try_spawn_server(&addr, state) {
            Ok(child) => return (child, addr),
            Err(StartError::Exited(why)) if why.contains("in use") => last = why,
            Err(e) => e.fail(&addr),
        }
    }
    panic!("five ports in a row were taken before the server bound them; last: {last}");
}

/// Runs the binary like [`run`], but gives up after `limit`: a command that should stop at once
/// and instead keeps running (a server that should have refused to start) is killed, and
/// `None` is returned with what it printed so far discarded.
pub fn run_bounded(
    args: &[&str],
    env: &[(&str, &Path)],
    limit: std::time::Duration,
) -> Option<Output> {
    use std::process::Stdio;
    use std::time::Instant;
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// `p2pvpn network ARGS --state-dir STATE`, as an operator runs it on the server host.
pub fn network(state: &Path, args: &[&str]) -> Output {
    let mut all = vec!["network"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--state-dir", state.to_str().unwrap()]);
    run(&all, &[])
}

/// Writes `bytes` to `path` as a private file the way p2pvpn itself creates one (mode 0600 on
/// Unix, the restricted ACL on Windows), replacing what was there: a key a test plants must
/// pass the permission check so that what is tested is the content.
pub fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut file = p2pvpn::os::create_private_file(path).unwrap();
    file.write_all(bytes).unwrap();
}
