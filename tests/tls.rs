//! The control channel inside TLS (`server --tls-listen`), end to end on loopback without root:
//! tokens carry the TLS address, `join` falls back to it when the plain port is closed, and
//! whatever is not a TLS client is turned away at the TLS port without hurting the server.

#![allow(clippy::disallowed_methods)] // tests drive real processes and clocks

use p2pvpn::core::keys::SecretKey;
use p2pvpn::core::rendezvous::client::JoinExchange;
use p2pvpn::core::rendezvous::token::JoinToken;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{run, stderr, Spawned, BIN};

struct Server {
    p: Spawned,
    plain: SocketAddr,
    tls: SocketAddr,
}

fn temp_dir(tag: &str) -> PathBuf {
    common::temp_dir("tls", tag)
}

fn bind_any() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// A loopback address nothing listens on (the port was free a moment ago).
fn free_addr() -> SocketAddr {
    bind_any().local_addr().unwrap()
}

/// Starts `p2pvpn server --listen P --tls-listen Q`, waits (bounded) until both ports accept,
/// and creates network "lab".
fn start_server(tag: &str) -> Server {
    let dir = temp_dir(tag);
    // Both probes are held at once so the two ports differ.
    let (a, b) = (bind_any(), bind_any());
    let (plain, tls) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    drop((a, b));
    let stdout = std::fs::File::create(dir.join("server.out")).unwrap();
    let child = Command::new(BIN)
        .args(["server", "--listen", &plain.to_string()])
        .args(["--tls-listen", &tls.to_string(), "--state-dir"])
        .arg(dir.join("server"))
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        p: Spawned { child, dir },
        plain,
        tls,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(plain).is_err() || TcpStream::connect(tls).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = server.state();
    let out = run(
        &["network", "create", "lab", "--cidr", "10.66.0.0/24"],
        &[("P2PVPN_SERVER_STATE_DIR", &state)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    server
}

impl Server {
    fn state(&self) -> PathBuf {
        self.p.dir.join("server")
    }

    fn invite(&self) -> JoinToken {
        let state = self.state();
        let out = run(
            &["network", "invite", "lab", "--uses", "10"],
            &[("P2PVPN_SERVER_STATE_DIR", &state)],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        JoinToken::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
    }

    fn join(&self, token: &JoinToken, node: &str) -> Output {
        common::join(&self.p.dir, &token.encode(), node)
    }

    /// The invite's credential and key, but only a TLS way in: the plain address is closed.
    fn tls_only_token(&self) -> JoinToken {
        JoinToken {
            servers: vec![free_addr()],
            tls_servers: vec![self.tls],
            ..self.invite()
        }
    }
}

/// Sends `bytes` to `addr` and waits (bounded) for the server to hang up. Returns what it said
/// before: at most a TLS alert.
fn send_and_expect_hangup(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut answer = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "the TLS port kept the connection"
        );
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the TLS port neither answered nor hung up: {e}"),
        }
    }
    // 0x15 is the TLS record type of an alert.
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "the TLS port answered something else than a TLS alert: {answer:?}"
    );
    answer
}

#[test]
fn a_node_joins_through_tls_when_the_plain_port_is_closed() {
    let server = start_server("join");
    let printed = std::fs::read_to_string(server.p.dir.join("server.out")).unwrap();
    assert!(
        printed.contains(&format!("listening on {} (TLS)", server.tls)),
        "{printed}"
    );
    let token = server.invite();
    assert_eq!(token.servers, vec![server.plain]);
    assert_eq!(token.tls_servers, vec![server.tls]);

    let out = server.join(&server.tls_only_token(), "alice");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("joined network lab as alice (10.66.0.1/24, fd"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let config = std::fs::read_to_string(server.p.dir.join("alice/etc/lab.toml")).unwrap();
    assert!(
        config.contains(&format!("tls_servers = [\"{}\"]", server.tls)),
        "{config}"
    );
    // The plain port still works as before.
    let out = server.join(&token, "bob");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_tls_port_turns_away_garbage_and_plain_noise_without_hurting_the_server() {
    let server = start_server("garbage");
    let token = server.invite();
    // A connection that says nothing holds up nobody else while its handshake times out.
    let _silent = TcpStream::connect(server.tls).unwrap();
    send_and_expect_hangup(server.tls, &[0, 40, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xff, 0xfe]);
    send_and_expect_hangup(server.tls, b"GET / HTTP/1.1\r\nHost: p2pvpn\r\n\r\n");
    // A node speaking the plain control protocol to the TLS port gets no Noise answer.
    let secret = SecretKey::generate(&mut rand::rngs::OsRng);
    let mut exchange = JoinExchange::new(&secret, &token, "mallory").unwrap();
    let hello = exchange.take_outgoing().unwrap();
    send_and_expect_hangup(server.tls, &hello);

    let out = server.join(&server.tls_only_token(), "alice");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.join(&token, "bob");
    assert!(out.status.success(), "{}", stderr(&out));
    let members = run(
        &["network", "members", "lab"],
        &[("P2PVPN_SERVER_STATE_DIR", &server.state())],
    );
    let members = String::from_utf8_lossy(&members.stdout);
    assert!(
        members.contains("alice") && members.contains("bob") && !members.contains("mallory"),
        "{members}"
    );
}

#[test]
fn a_tls_port_in_use_names_the_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = temp_dir("inuse");
    let out = run(
        &[
            "server",
            "--listen",
            &free_addr().to_string(),
            "--tls-listen",
            &taken.local_addr().unwrap().to_string(),
            "--state-dir",
            dir.join("server").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("already in use") && err.contains("--tls-listen"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wildcard_tls_address_is_left_out_of_tokens_with_the_fix() {
    let dir = temp_dir("wildcard");
    let state = dir.join("server");
    let plain = free_addr();
    let mut child = Command::new(BIN)
        .args(["server", "--listen", &plain.to_string()])
        .args(["--tls-listen", "0.0.0.0:0", "--state-dir"])
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(plain).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let env = [("P2PVPN_SERVER_STATE_DIR", state.as_path())];
    let out = run(
        &["network", "create", "lab", "--cidr", "10.66.0.0/24"],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["network", "invite", "lab"], &env);
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--tls-server PUBLIC_IP:0"),
        "{}",
        stderr(&out)
    );
    let token = JoinToken::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert!(token.tls_servers.is_empty());
    // Named explicitly, the TLS address goes into the token.
    let out = run(
        &[
            "network",
            "invite",
            "lab",
            "--tls-server",
            "198.51.100.1:443",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = JoinToken::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(token.tls_servers, vec!["198.51.100.1:443".parse().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
}
