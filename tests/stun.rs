//! The server's STUN side and `p2pvpn netcheck`, over loopback with the real binary. No root:
//! 127.0.0.1 and 127.0.0.2 are both local, so the server gets the two IPs RFC 5780 needs.

#![allow(clippy::disallowed_methods)] // tests drive real processes and clocks

use p2pvpn::core::stun::{
    binding_request, parse_binding_response, Attribute, ChangeRequest, Class, Message, MessageId,
    TransactionId, BINDING,
};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Spawned, BIN};

struct Server {
    /// Kills the server and removes its directory when the test ends.
    _guard: Spawned,
    port: u16,
}

impl Server {
    fn addr(&self, ip: &str, port_offset: u16) -> SocketAddr {
        format!("{ip}:{}", self.port + port_offset).parse().unwrap()
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    common::temp_dir("stun", tag)
}

/// A port P with TCP and UDP P and UDP P+1 free on both loopback IPs (checked, then released).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port == u16::MAX {
            continue;
        }
        let free = ["127.0.0.1", "127.0.0.2"].iter().all(|ip| {
            TcpListener::bind((*ip, port)).is_ok()
                && UdpSocket::bind((*ip, port)).is_ok()
                && UdpSocket::bind((*ip, port + 1)).is_ok()
        });
        if free {
            return port;
        }
    }
    panic!("no free port pair on loopback");
}

fn start(tag: &str, ips: &[&str], extra: &[&str]) -> Server {
    let dir = temp_dir(tag);
    let port = free_port_pair();
    let mut cmd = Command::new(BIN);
    cmd.arg("server").env_remove("RUST_LOG");
    for ip in ips {
        cmd.args(["--listen", &format!("{ip}:{port}")]);
    }
    let child = cmd
        .args(extra)
        .arg("--state-dir")
        .arg(dir.join("server"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        _guard: Spawned { child, dir },
        port,
    };
    // UDP is bound before TCP, so accepting TCP on every address means STUN answers too.
    let deadline = Instant::now() + Duration::from_secs(10);
    for ip in ips {
        while TcpStream::connect((*ip, port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    server
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Sends `bytes` to `to` and returns the answer and where it came from.
fn exchange(sock: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> (Vec<u8>, SocketAddr) {
    sock.send_to(bytes, to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut buf).expect("an answer");
    (buf[..n].to_vec(), from)
}

fn netcheck(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("netcheck")
        .args(args)
        .env_remove("RUST_LOG")
        .env(
            "P2PVPN_CONFIG_DIR",
            std::env::temp_dir().join("p2pvpn-stun-none"),
        )
        .output()
        .unwrap()
}

fn json_report(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Exactly one JSON object on stdout.
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn netcheck_against_our_server_finds_open_internet() {
    let server = start("netcheck", &["127.0.0.1", "127.0.0.2"], &[]);
    let primary = server.addr("127.0.0.1", 0).to_string();
    let started = Instant::now();
    let out = netcheck(&["--server", &primary, "--json"]);
    let took = started.elapsed();
    let j = json_report(&out);
    assert_eq!(j["behind_nat"], false, "{j}");
    assert_eq!(j["mapping"], "endpoint_independent", "{j}");
    assert_eq!(j["filtering"], "endpoint_independent", "{j}");
    assert_eq!(j["allocation"]["kind"], "preserving", "{j}");
    assert_eq!(j["legacy_class"], 0, "{j}");
    assert_eq!(j["rfc5780"], true, "{j}");
    assert_eq!(j["hairpin"], true, "{j}");
    assert_eq!(j["udp_blocked"], false, "{j}");
    assert_eq!(j["other_address"], server.addr("127.0.0.2", 1).to_string());
    assert_eq!(j["observed_ports"].as_array().map(Vec::len), Some(12));
    assert!(took < Duration::from_secs(5), "netcheck took {took:?}");
    // Progress went to stderr; the human report names the findings.
    assert!(String::from_utf8_lossy(&out.stderr).contains("public address"));
    let human = netcheck(&["--server", &primary]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("legacy class      0 (open internet)"),
        "{text}"
    );
    assert!(text.contains("RFC 5780: yes"), "{text}");
    // A server on loopback is not behind the default gateway: the gateway is not asked for a
    // port mapping (and a test never talks to the host's real router).
    assert_eq!(j["port_mapping"]["gateway"], serde_json::Value::Null, "{j}");
    assert_eq!(j["port_mapping"]["upnp"], false, "{j}");
    assert!(
        text.contains(
            "port mapping      not asked (the server is not reached through a default gateway)"
        ),
        "{text}"
    );
}

#[test]
fn change_requests_are_answered_from_the_right_address() {
    let server = start("change", &["127.0.0.1", "127.0.0.2"], &[]);
    let primary = server.addr("127.0.0.1", 0);
    let sock = client();
    let me = sock.local_addr().unwrap();
    let cases = [
        (ChangeRequest::NONE, server.addr("127.0.0.1", 0)),
        (ChangeRequest::PORT, server.addr("127.0.0.1", 1)),
        (ChangeRequest::IP_AND_PORT, server.addr("127.0.0.2", 1)),
    ];
    for (i, (change, want_from)) in cases.into_iter().enumerate() {
        let tid = TransactionId([i as u8 + 1; 12]);
        let (bytes, from) = exchange(&sock, primary, &binding_request(tid, change, None));
        assert_eq!(from, want_from, "{change:?}");
        let r = parse_binding_response(&bytes).unwrap();
        assert_eq!(r.tid, tid);
        assert_eq!(r.mapped, me);
        assert_eq!(r.response_origin, Some(want_from));
        assert_eq!(r.other_address, Some(server.addr("127.0.0.2", 1)));
    }
    // RESPONSE-PORT sends the answer to another port of the asking IP.
    let other = client();
    let port = other.local_addr().unwrap().port();
    let tid = TransactionId([9; 12]);
    sock.send_to(
        &binding_request(tid, ChangeRequest::NONE, Some(port)),
        primary,
    )
    .unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = other
        .recv_from(&mut buf)
        .expect("answer on the RESPONSE-PORT socket");
    let r = parse_binding_response(&buf[..n]).unwrap();
    assert_eq!((r.tid, r.mapped), (tid, me));
}

#[test]
fn classic_rfc3489_requests_and_garbage() {
    let server = start("classic", &["127.0.0.1", "127.0.0.2"], &[]);
    let primary = server.addr("127.0.0.1", 0);
    let sock = client();
    let me = sock.local_addr().unwrap();
    // Garbage (including a STUN-looking header with a wrong length) is ignored ...
    for junk in [
        &b"hello"[..],
        &[0u8; 20][..],
        &[0x00, 0x01, 0x00, 0x08, 1, 2, 3, 4][..],
    ] {
        sock.send_to(junk, primary).unwrap();
    }
    // ... and the next real request is still answered.
    let id = [0x42; 16];
    let req = Message::new(Class::Request, BINDING, MessageId::Rfc3489(id))
        .with(Attribute::ChangeRequest(ChangeRequest::PORT))
        .encode();
    let (bytes, from) = exchange(&sock, primary, &req);
    assert_eq!(from, server.addr("127.0.0.1", 1));
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.id, MessageId::Rfc3489(id));
    assert_eq!(msg.class, Class::Success);
    assert!(msg.attributes.contains(&Attribute::MappedAddress(me)));
    assert!(msg.attributes.contains(&Attribute::SourceAddress(from)));
    assert!(msg
        .attributes
        .contains(&Attribute::ChangedAddress(server.addr("127.0.0.2", 1))));
}

#[test]
fn a_single_address_server_limits_netcheck_with_a_note() {
    let server = start("single", &["127.0.0.1"], &[]);
    let out = netcheck(&[
        "--server",
        &server.addr("127.0.0.1", 0).to_string(),
        "--json",
    ]);
    let j = json_report(&out);
    assert_eq!(j["rfc5780"], false, "{j}");
    assert_eq!(j["mapping"], "unknown", "{j}");
    assert_eq!(j["filtering"], "unknown", "{j}");
    assert_eq!(j["allocation"]["kind"], "preserving", "{j}");
    assert_eq!(j["hairpin"], true, "{j}");
    let notes = j["notes"].to_string();
    assert!(notes.contains("OTHER-ADDRESS"), "{notes}");
}

#[test]
fn a_busy_alternate_port_names_the_flag() {
    let dir = temp_dir("busy");
    let port = free_port_pair();
    let _taken = UdpSocket::bind(("127.0.0.1", port + 1)).unwrap();
    let out = Command::new(BIN)
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--state-dir",
        ])
        .arg(dir.join("server"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--alternate-port"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{}", port + 1)), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    // With the flag it starts, and answers change-port from the chosen port.
    let alt = free_port_pair();
    let server = start(
        "altport",
        &["127.0.0.1"],
        &["--alternate-port", &alt.to_string()],
    );
    let sock = client();
    let (_, from) = exchange(
        &sock,
        server.addr("127.0.0.1", 0),
        &binding_request(TransactionId([3; 12]), ChangeRequest::PORT, None),
    );
    assert_eq!(from.port(), alt);
}

#[test]
fn netcheck_refuses_bad_servers_with_the_fix() {
    let out = netcheck(&["--server", "no-such-host.invalid:7400"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not resolve"));
    let out = netcheck(&["--server", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ADDRESS:PORT"));
    let out = netcheck(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server"));
}

#[test]
fn netcheck_reports_blocked_udp_and_exits_four() {
    // A bound socket that never answers stands in for a firewall dropping UDP; the server's TCP
    // port on the same address answers, so the silence is UDP's, not a server that is down.
    // The kernel picks the UDP port; its TCP twin may belong to another test's server running
    // beside this one, so pick again until both are ours (bounded).
    let (_silent, _tcp, addr) = (0..50)
        .find_map(|_| {
            let silent = UdpSocket::bind("127.0.0.1:0").ok()?;
            let addr = silent.local_addr().ok()?;
            let tcp = std::net::TcpListener::bind(addr).ok()?;
            Some((silent, tcp, addr))
        })
        .expect("a UDP and TCP port pair on 127.0.0.1 within 50 tries");
    let out = netcheck(&["--server", &addr.to_string(), "--json"]);
    // No STUN answer is exit 4 (src/cli/exit_code.rs), with the report still printed.
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let j: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(j["udp_blocked"], true, "{j}");
    assert_eq!(j["legacy_class"], serde_json::Value::Null);
}

/// The server listens on IPv4 and IPv6 wildcards with one port (issue 13 part 3): both bind,
/// and a client on IPv6 learns its IPv6 server-reflexive address over STUN while IPv4 clients
/// are answered as before. Before IPv6 sockets were IPv6-only the second bind failed with
/// "UDP [::]:P is already in use".
#[test]
fn server_answers_stun_on_ipv4_and_ipv6_wildcards_with_one_port() {
    let Ok(probe) = UdpSocket::bind("[::1]:0") else {
        eprintln!("SKIP: no IPv6 loopback on this host");
        return;
    };
    drop(probe);
    let dir = temp_dir("dualstack");
    let port = free_port_pair();
    let child = Command::new(BIN)
        .arg("server")
        .env_remove("RUST_LOG")
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .args(["--listen", &format!("[::]:{port}")])
        .arg("--state-dir")
        .arg(dir.join("server"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Spawned { child, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    for ip in ["127.0.0.1", "::1"] {
        while TcpStream::connect((ip, port)).is_err() {
            if let Ok(Some(status)) = guard.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = guard.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!("server exited ({status}): {err}");
            }
            assert!(
                Instant::now() < deadline,
                "server did not accept TCP on {ip}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let v6 = UdpSocket::bind("[::1]:0").unwrap();
    v6.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let tid = TransactionId([6; 12]);
    let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let (bytes, from) = exchange(&v6, to, &binding_request(tid, ChangeRequest::NONE, None));
    assert_eq!(from, to);
    let r = parse_binding_response(&bytes).unwrap();
    assert_eq!(r.tid, tid);
    assert_eq!(
        r.mapped,
        v6.local_addr().unwrap(),
        "the IPv6 reflexive address"
    );
    let v4 = client();
    let to4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (bytes, _) = exchange(&v4, to4, &binding_request(tid, ChangeRequest::NONE, None));
    assert_eq!(
        parse_binding_response(&bytes).unwrap().mapped,
        v4.local_addr().unwrap()
    );
}
