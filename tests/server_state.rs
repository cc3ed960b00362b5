//! The server's state directory as an operator meets it (issue 9, defects 5-8): names the server
//! accepts and how they are printed, one server per directory, the identity key and the database
//! belonging together, and managing tokens and networks. The real binary on loopback, no root.

#![allow(clippy::disallowed_methods)] // tests drive real processes and clocks

use p2pvpn::core::keys::{PublicKey, SecretKey};
use p2pvpn::core::rendezvous::channel::SecureChannel;
use p2pvpn::core::rendezvous::messages::{decode, encode, ClientMessage, ServerMessage};
use p2pvpn::core::rendezvous::token::JoinToken;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

mod common;

use common::{run_bounded, stderr, Spawned};

/// Long enough for a server that refuses to start to say so; one that starts is killed after it.
const REFUSE_WITHIN: Duration = Duration::from_secs(5);

struct Server {
    p: Spawned,
    addr: String,
}

impl Server {
    /// A server on a fresh directory with network `lab` created.
    fn start(tag: &str) -> Server {
        let dir = common::temp_dir("state", tag);
        let (child, addr) = common::start_server(&dir.join("server"));
        let s = Server {
            p: Spawned { child, dir },
            addr,
        };
        let out = s.network(&["create", "lab", "--cidr", "10.66.0.0/24"]);
        assert!(out.status.success(), "{}", stderr(&out));
        s
    }

    fn state(&self) -> PathBuf {
        self.p.dir.join("server")
    }

    /// `p2pvpn network ARGS --state-dir STATE`.
    fn network(&self, args: &[&str]) -> Output {
        common::network(&self.state(), args)
    }

    fn invite(&self, extra: &[&str]) -> String {
        let mut args = vec!["invite", "lab"];
        args.extend_from_slice(extra);
        let out = self.network(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn stop(&mut self) {
        let _ = self.p.child.kill();
        let _ = self.p.child.wait();
    }

    /// `p2pvpn server` on this directory again, on a new port, bounded.
    fn restart_bounded(&self) -> Option<Output> {
        let addr = format!("127.0.0.1:{}", common::free_port());
        let state = self.state();
        run_bounded(
            &[
                "server",
                "--listen",
                &addr,
                "--state-dir",
                state.to_str().unwrap(),
            ],
            &[],
            REFUSE_WITHIN,
        )
    }
}

/// The server refused to start (it exited by itself, non-zero) and said each of `needles`.
fn assert_refused_to_start(out: Option<Output>, needles: &[&str]) -> String {
    let out = out.expect("the server started instead of refusing");
    assert!(!out.status.success(), "the server exited 0");
    let err = stderr(&out);
    for needle in needles {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    err
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A node's side of the control channel, driven by hand so that the test can send what the CLI
/// never would. Every read is bounded.
struct RawNode {
    stream: TcpStream,
    channel: SecureChannel,
}

impl RawNode {
    fn connect(addr: &str, secret: &SecretKey, server: &PublicKey) -> RawNode {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let channel = SecureChannel::initiator(secret, server).unwrap();
        let mut node = RawNode { stream, channel };
        node.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !node.channel.is_established() {
            assert!(Instant::now() < deadline, "no Noise handshake within 5 s");
            node.read_some();
        }
        node
    }

    fn flush(&mut self) {
        while let Some(bytes) = self.channel.take_outgoing() {
            self.stream.write_all(&bytes).unwrap();
        }
    }

    /// Feeds what arrives within one read timeout; false once the server closed the stream.
    fn read_some(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.channel.handle_bytes(&buf[..n]).unwrap();
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                true
            }
            Err(_) => false,
        }
    }

    fn send(&mut self, message: &ClientMessage) {
        self.channel.send(&encode(message)).unwrap();
        self.flush();
    }

    /// The next message that satisfies `want`, within `limit`.
    fn expect(&mut self, limit: Duration, want: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
        let deadline = Instant::now() + limit;
        loop {
            while let Some(bytes) = self.channel.poll_message() {
                let message: ServerMessage = decode(&bytes).unwrap();
                if want(&message) {
                    return message;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no such message within {limit:?}"
            );
            assert!(self.read_some(), "the server closed the connection first");
        }
    }
}

fn new_key(seed: u8) -> SecretKey {
    use rand::SeedableRng;
    SecretKey::generate(&mut rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(seed)))
}

/// A `Join` sent over the raw channel, and the server's answer.
fn raw_join(addr: &str, token: &JoinToken, secret: &SecretKey, name: &str) -> ServerMessage {
    let mut node = RawNode::connect(addr, secret, &token.server_key);
    node.send(&ClientMessage::Join {
        network: token.network.clone(),
        credential: token.credential.to_base64(),
        name: name.to_string(),
    });
    node.expect(Duration::from_secs(5), |_| true)
}

#[test]
fn the_server_refuses_names_the_cli_would_refuse() {
    let server = Server::start("names");
    let token = JoinToken::decode(&server.invite(&["--uses", "10"])).unwrap();
    let long = "x".repeat(5000);
    let bad = ["", "evil\n\x1b[2J10.66.0.9      fake", long.as_str()];
    for (i, name) in bad.into_iter().enumerate() {
        let answer = raw_join(&server.addr, &token, &new_key(i as u8 + 1), name);
        let ServerMessage::Refused { refusal } = answer else {
            panic!("{name:?} was admitted: {answer:?}");
        };
        let said = refusal.to_string();
        assert!(said.contains("does not accept the node name"), "{said}");
        assert!(said.contains("--name OTHER"), "{said}");
        assert!(
            said.len() < 400,
            "the refusal quotes the whole name: {said}"
        );
    }
    // A good name still joins, and it is the only member.
    let answer = raw_join(&server.addr, &token, &new_key(9), "alice");
    assert!(matches!(answer, ServerMessage::Joined { .. }), "{answer:?}");
    let members = stdout(&server.network(&["members", "lab"]));
    assert_eq!(members.lines().count(), 2, "{members}");
}

#[test]
fn names_already_in_an_old_database_are_printed_escaped() {
    let mut server = Server::start("escape");
    let token = server.invite(&[]);
    assert!(common::join(&server.p.dir, &token, "alice")
        .status
        .success());
    server.stop();
    // What an older server stored when a member sent this name.
    let db = rusqlite::Connection::open(server.state().join("server.db")).unwrap();
    db.execute(
        "UPDATE members SET name = ?1",
        ["evil\n\x1b[2Jmallory        10.66.0.9"],
    )
    .unwrap();
    drop(db);
    let out = server.network(&["members", "lab"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains('\x1b'), "raw escape printed: {text:?}");
    assert_eq!(text.lines().count(), 2, "a forged line: {text}");
    assert!(text.contains("evil\\n\\x1b[2Jmallory"), "{text}");
}

#[test]
fn a_second_server_on_the_same_state_directory_is_refused_and_changes_nothing() {
    let server = Server::start("twice");
    let pid = server.p.child.id();
    let out = server.restart_bounded();
    let err = assert_refused_to_start(out, &["in use by p2pvpn server", "another --state-dir"]);
    assert!(err.contains(&format!("(pid {pid})")), "{err}");
    assert!(err.contains(server.state().to_str().unwrap()), "{err}");
    // Tokens still carry the first server's address, not the second one's.
    let token = JoinToken::decode(&server.invite(&[])).unwrap();
    assert_eq!(token.servers, vec![server.addr.parse().unwrap()]);
}

#[test]
fn a_missing_or_foreign_key_next_to_a_used_database_is_refused() {
    let mut server = Server::start("nokey");
    let token = server.invite(&["--uses", "2"]);
    assert!(common::join(&server.p.dir, &token, "alice")
        .status
        .success());
    server.stop();
    let key = server.state().join("server.key");
    let original = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    assert_refused_to_start(
        server.restart_bounded(),
        &[
            "server.key is missing",
            "identity mismatch",
            "Restore server.key from a backup",
            "move server.db away",
        ],
    );
    assert!(!key.exists(), "a new identity was generated anyway");

    // Another valid key in its place is no better.
    common::write_private(&key, format!("{}\n", new_key(7).to_base64()).as_bytes());
    assert_refused_to_start(
        server.restart_bounded(),
        &["is not the identity", "Restore the original server.key"],
    );

    // The original key brings the server back, with its members.
    std::fs::write(&key, original).unwrap();
    let (child, addr) = common::start_server(&server.state());
    server.p.child = child;
    server.addr = addr;
    let members = stdout(&server.network(&["members", "lab"]));
    assert!(members.contains("alice"), "{members}");
}

#[test]
fn an_empty_database_file_is_refused_by_name() {
    let mut server = Server::start("emptydb");
    server.stop();
    let db = server.state().join("server.db");
    for side in ["server.db-wal", "server.db-shm"] {
        let _ = std::fs::remove_file(server.state().join(side));
    }
    std::fs::write(&db, b"").unwrap();
    // The `network` commands refuse it too, rather than quietly making it a new database.
    let out = server.network(&["list"]);
    assert!(
        !out.status.success(),
        "network list used an empty server.db"
    );
    assert!(
        stderr(&out).contains("server.db is empty (0 bytes)"),
        "{}",
        stderr(&out)
    );
    assert_refused_to_start(
        server.restart_bounded(),
        &["server.db is empty (0 bytes)", "restore it from a backup"],
    );
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "the file was rewritten"
    );
}

#[test]
fn a_damaged_key_file_is_named_and_not_blamed_on_permissions() {
    let dir = common::temp_dir("state", "badkey");
    let state = dir.join("server");
    std::fs::create_dir_all(&state).unwrap();
    let key = state.join("server.key");
    common::write_private(&key, b"\xff\xfe not a key");
    let addr = format!("127.0.0.1:{}", common::free_port());
    let out = run_bounded(
        &[
            "server",
            "--listen",
            &addr,
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
        REFUSE_WITHIN,
    );
    let err = assert_refused_to_start(
        out,
        &[
            "server.key is not a valid p2pvpn key",
            "delete it to generate a new one",
        ],
    );
    // Not blamed on permissions ("run as root"); the path itself may hold a user named root.
    let words = err.replace(&*dir.to_string_lossy(), "DIR");
    assert!(!words.contains("root"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tokens_can_be_listed_and_revoked_and_a_dead_token_is_not_issued() {
    let server = Server::start("revoke");
    let out = server.network(&["invite", "lab", "--expires", "0s"]);
    assert!(!out.status.success(), "--expires 0s issued a token");
    assert!(
        stderr(&out).contains("--expires must be at least 1s"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    let out = server.network(&["invite", "lab", "--uses", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    let said = stderr(&out);
    let listed = stdout(&server.network(&["invites", "lab"]));
    let id = listed
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    assert_eq!(id.len(), 8, "{listed}");
    assert!(
        listed.contains("0/3") && listed.contains("valid"),
        "{listed}"
    );
    assert!(said.contains(&format!("network revoke lab {id}")), "{said}");

    let out = server.network(&["revoke", "lab", "ffffffff0"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has no token with id"),
        "{}",
        stderr(&out)
    );

    let out = server.network(&["revoke", "lab", &id[..4]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("revoked token {id}")),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        stdout(&server.network(&["invites", "lab"])).lines().count(),
        1
    );
    let out = common::join(&server.p.dir, &token, "alice");
    assert!(!out.status.success(), "a revoked token joined");
    assert!(
        stderr(&out).contains("wrong or revoked credential"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn deleting_a_network_cuts_its_online_members_off() {
    let server = Server::start("delete");
    let token = JoinToken::decode(&server.invite(&[])).unwrap();
    let secret = new_key(1);
    let joined = raw_join(&server.addr, &token, &secret, "alice");
    assert!(matches!(joined, ServerMessage::Joined { .. }), "{joined:?}");
    let mut node = RawNode::connect(&server.addr, &secret, &token.server_key);
    node.send(&ClientMessage::Hello {
        network: "lab".into(),
        endpoints: vec![],
        nat: None,
        run: None,
    });
    node.expect(Duration::from_secs(5), |m| {
        matches!(m, ServerMessage::Welcome { .. })
    });

    let out = server.network(&["delete", "lab"]);
    assert!(
        !out.status.success(),
        "deleted a network with members without --force"
    );
    assert!(stderr(&out).contains("has 1 member(s)"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));

    let out = server.network(&["delete", "lab", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("deleted network lab with 1 member(s) and 1 token(s)"),
        "{}",
        stdout(&out)
    );
    let cut = node.expect(Duration::from_secs(5), |m| {
        matches!(m, ServerMessage::Refused { .. })
    });
    let ServerMessage::Refused { refusal } = cut else {
        unreachable!()
    };
    assert!(
        refusal.to_string().contains("removed from network \"lab\""),
        "{refusal}"
    );
    let list = stdout(&server.network(&["list"]));
    assert_eq!(list.lines().count(), 1, "{list}");
    let out = server.network(&["invites", "lab"]);
    assert!(
        stderr(&out).contains("no network named 'lab'; this server has no networks yet"),
        "{}",
        stderr(&out)
    );
}

/// Linux only: `lo` is an interface every Linux host has (and `up` on Windows stops earlier, at
/// the route collision check it does not have yet).
#[cfg(target_os = "linux")]
#[test]
fn an_interface_name_already_taken_is_refused_before_registering() {
    let server = Server::start("ifname");
    let token = server.invite(&[]);
    assert!(common::join(&server.p.dir, &token, "alice")
        .status
        .success());
    let etc = server.p.dir.join("alice/etc");
    let config = etc.join("lab.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("interface = \"p2p-lab\""), "{text}");
    // The loopback exists on every Linux host and is no TUN device.
    std::fs::write(&config, text.replace("\"p2p-lab\"", "\"lo\"")).unwrap();
    let state: &std::path::Path = &server.p.dir.join("alice/state");
    let out = run_bounded(
        &["up", "--network", "lab"],
        &[("P2PVPN_CONFIG_DIR", &etc), ("P2PVPN_STATE_DIR", state)],
        REFUSE_WITHIN,
    )
    .expect("up kept running with interface = \"lo\"");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("interface lo already exists"), "{err}");
    assert!(err.contains(config.to_str().unwrap()), "{err}");
    assert!(!err.contains("registering"), "it registered first: {err}");
}
