//! Connection exhaustion against the real server on loopback: idle connections, one address
//! hogging connections, a frame dribbled a byte at a time, and a stranger with a random key that
//! completes the Noise handshake. In every case the server closes what makes no progress and a
//! legitimate `p2pvpn join` still gets through.
//!
//! Attackers connect from 127.0.0.2 and up (all of 127.0.0.0/8 is loopback on Linux), the
//! legitimate node from 127.0.0.1, so the per-address cap tells them apart. The deadlines are the
//! server's defaults (10 s for the Noise handshake, 10 s more for Join/Hello), so two of these
//! tests take about 10 s each; they run in parallel.

#![allow(clippy::disallowed_methods)]
// tests drive real processes and clocks
// Linux only: attackers come from 127.0.0.2 and up (on Windows and macOS only 127.0.0.1 is
// there), the server's descriptor limit is set with setrlimit and its memory read from /proc.
#![cfg(target_os = "linux")]

use p2pvpn::core::keys::SecretKey;
use p2pvpn::core::rendezvous::channel::SecureChannel;
use p2pvpn::core::rendezvous::messages::{encode, ClientMessage};
use p2pvpn::core::rendezvous::token::JoinToken;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{run, stderr, Spawned, BIN};

/// The server's deadlines (`ConnDeadlines::DEFAULT`).
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
const JOIN_DEADLINE: Duration = Duration::from_secs(10);

struct Server {
    p: Spawned,
    addr: SocketAddr,
    token: JoinToken,
}

impl Server {
    /// Starts `p2pvpn server` on a free loopback port with `args`, optionally under a
    /// file-descriptor limit (soft and hard, so the server cannot raise it), and creates network
    /// "lab" with an invite.
    fn start(tag: &str, args: &[&str], nofile: Option<u64>) -> Server {
        let dir = common::temp_dir("attack-conn", tag);
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["server", "--listen", &addr.to_string(), "--state-dir"])
            .arg(dir.join("server"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(n) = nofile {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe and touches only the child's limits.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let p = Spawned { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let state = p.dir.join("server");
        let env = [("P2PVPN_SERVER_STATE_DIR", state.as_path())];
        let out = run(
            &["network", "create", "lab", "--cidr", "10.66.0.0/24"],
            &env,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run(&["network", "invite", "lab", "--uses", "10"], &env);
        assert!(out.status.success(), "{}", stderr(&out));
        let token = JoinToken::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
        Server { p, addr, token }
    }

    /// `p2pvpn join` from 127.0.0.1; returns how long it took. Panics with its error if it fails.
    fn join(&self, node: &str) -> Duration {
        let start = Instant::now();
        let out = common::join(&self.p.dir, &self.token.encode(), node);
        assert!(
            out.status.success(),
            "a legitimate join failed: {}\nserver log:\n{}",
            stderr(&out),
            self.log()
        );
        start.elapsed()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.p.dir.join("server.log")).unwrap_or_default()
    }

    fn members(&self) -> String {
        let state = self.p.dir.join("server");
        let out = run(
            &["network", "members", "lab"],
            &[("P2PVPN_SERVER_STATE_DIR", state.as_path())],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A TCP connection to `to` from loopback address `from` (any port). std cannot bind a client
/// socket before connecting; tokio's `TcpSocket` can.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(from.into(), 0))?;
            socket.connect(to).await?.into_std()
        })
        .unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Waits up to `limit` for the server to close `s`; returns what it sent before and when it
/// closed (`None`: still open at `limit`).
fn wait_for_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        let left = limit
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (got, Some(start.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (got, Some(start.elapsed())),
        }
    }
    (got, None)
}

/// A completed Noise handshake with a random key over `s`: a stranger to every network.
fn stranger_handshake(s: &mut TcpStream, server: &JoinToken) -> SecureChannel {
    let key = SecretKey::generate(&mut rand::rngs::OsRng);
    let mut channel = SecureChannel::initiator(&key, &server.server_key).unwrap();
    s.write_all(&channel.take_outgoing().unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    while !channel.is_established() {
        let n = s.read(&mut buf).expect("the server answers the handshake");
        assert!(n > 0, "the server closed during the handshake");
        channel.handle_bytes(&buf[..n]).unwrap();
    }
    channel
}

#[test]
fn idle_connections_up_to_the_descriptor_limit_do_not_lock_a_node_out() {
    // 256 descriptors: the server keeps its connections to 192, below the limit, however many
    // arrive. Before, the 300 idle connections below used up every descriptor, accept failed
    // ten times a second, and the join timed out.
    let server = Server::start("nofile", &[], Some(256));
    let mut idle = Vec::new();
    for i in 0..300u32 {
        let from = Ipv4Addr::new(127, 0, 0, 2 + (i % 6) as u8);
        idle.push(connect_from(from, server.addr));
    }
    std::thread::sleep(Duration::from_millis(500));
    // Well before the handshake deadline clears them: the newcomer took an idle one's place.
    let took = server.join("alice");
    assert!(took < HANDSHAKE_DEADLINE / 2, "the join took {took:?}");
    assert!(server.members().contains("alice"), "{}", server.members());
    let log = server.log();
    assert!(log.contains("connection limits"), "{log}");
    let evictions = log.matches("closed the oldest connections").count();
    assert!(
        (1..=3).contains(&evictions),
        "eviction should be logged once per 5 s, not per connection: {evictions} lines\n{log}"
    );
    assert!(!log.contains("accept failed"), "{log}");
    drop(idle);
}

#[test]
fn one_address_gets_only_its_share_of_connections() {
    let server = Server::start("per-ip", &["--max-conns-per-ip", "8"], None);
    let hog = Ipv4Addr::new(127, 0, 0, 2);
    let mut held: Vec<TcpStream> = (0..8).map(|_| connect_from(hog, server.addr)).collect();
    let mut ninth = connect_from(hog, server.addr);
    let (said, closed) = wait_for_close(&mut ninth, Duration::from_secs(3));
    assert!(
        said.is_empty() && closed.is_some(),
        "the 9th connection from one address was kept"
    );
    // The first eight, and another address, are still served.
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 3), server.addr);
    assert_eq!(
        wait_for_close(&mut other, Duration::from_millis(500)).1,
        None
    );
    assert_eq!(
        wait_for_close(&mut held[0], Duration::from_millis(10)).1,
        None
    );
    server.join("alice");
    let log = server.log();
    assert!(
        log.contains("refused connections over --max-conns-per-ip") && log.contains("127.0.0.2"),
        "{log}"
    );
}

#[test]
fn a_frame_dribbled_a_byte_at_a_time_is_closed_at_the_handshake_deadline() {
    let server = Server::start("slowloris", &[], None);
    let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 2), server.addr);
    let start = Instant::now();
    // A 64 KB handshake frame announced, then a byte every half second: before, every byte
    // restarted the 60 s idle timer and the connection stayed forever.
    s.write_all(&[0xff, 0xff]).unwrap();
    let limit = HANDSHAKE_DEADLINE + Duration::from_secs(8);
    let closed_at = loop {
        if wait_for_close(&mut s, Duration::from_millis(500))
            .1
            .is_some()
        {
            break Some(start.elapsed());
        }
        if start.elapsed() > limit || s.write_all(&[0]).is_err() {
            break (start.elapsed() <= limit).then(|| start.elapsed());
        }
    };
    let closed_at =
        closed_at.unwrap_or_else(|| panic!("the dribbler was still served after {limit:?}"));
    assert!(
        closed_at >= HANDSHAKE_DEADLINE - Duration::from_secs(1),
        "closed too early, at {closed_at:?}"
    );
    server.join("alice");
}

#[test]
fn a_stranger_with_a_random_key_gets_no_answer_and_is_closed_by_the_join_deadline() {
    let server = Server::start("stranger", &[], None);
    // One stranger says nothing after the handshake...
    let mut silent = connect_from(Ipv4Addr::new(127, 0, 0, 2), server.addr);
    let _quiet = stranger_handshake(&mut silent, &server.token);
    let established = Instant::now();
    // ...another pings, which used to be answered (and kept the connection open forever).
    let mut pinger = connect_from(Ipv4Addr::new(127, 0, 0, 3), server.addr);
    let mut channel = stranger_handshake(&mut pinger, &server.token);
    channel.send(&encode(&ClientMessage::Ping)).unwrap();
    pinger.write_all(&channel.take_outgoing().unwrap()).unwrap();
    let (answer, closed) = wait_for_close(&mut pinger, Duration::from_secs(5));
    if !answer.is_empty() {
        channel.handle_bytes(&answer).unwrap();
    }
    assert_eq!(
        channel.poll_message(),
        None,
        "the stranger's ping was answered"
    );
    assert!(closed.is_some(), "the pinging stranger was kept");

    let limit = JOIN_DEADLINE + Duration::from_secs(5);
    let (said, closed) = wait_for_close(&mut silent, limit.saturating_sub(established.elapsed()));
    assert!(said.is_empty());
    assert!(
        closed.is_some(),
        "the silent stranger was kept past the join deadline"
    );
    let closed = established.elapsed();
    assert!(
        closed >= JOIN_DEADLINE - Duration::from_secs(1),
        "closed too early, at {closed:?}"
    );
    server.join("alice");
}

/// The server's resident memory in kB, from /proc.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn an_idle_connection_costs_a_few_kilobytes_not_a_message_buffer() {
    // Before, each connection that had sent nothing held a 64 KB Noise buffer and a 16 KB read
    // buffer: 75 kB of RSS each (debug build), 37 MB for these 500.
    const N: u32 = 500;
    let server = Server::start("rss", &[], None);
    let pid = server.p.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kb(pid);
    let idle: Vec<TcpStream> = (0..N)
        .map(|i| connect_from(Ipv4Addr::new(127, 0, 1, 2 + (i % 50) as u8), server.addr))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let per_conn = rss_kb(pid).saturating_sub(before) / u64::from(N);
    println!("{per_conn} kB of RSS per idle connection");
    assert!(per_conn < 25, "{per_conn} kB per idle connection");
    drop(idle);
}
