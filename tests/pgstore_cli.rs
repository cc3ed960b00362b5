//! `p2pvpn server --store postgres://...` as an operator runs it: two real servers on one real
//! PostgreSQL (tests/common/postgres.rs), on loopback. Networks and tokens made through the
//! `network` commands with `--store` are seen by both servers, a single-use token is spent
//! for both, joins through either get distinct addresses, and a server with another identity
//! key is refused before it writes anything.

#![cfg(unix)] // the test PostgreSQL comes from the Debian package
#![allow(clippy::disallowed_methods)] // tests drive real processes and clocks

mod common;

use common::postgres::{spawn_store_server, Postgres, StoreVia};
use common::{free_port, run, run_bounded, stderr, temp_dir, write_private};
use std::path::Path;
use std::time::{Duration, Instant};

/// A test's temp directory, removed on drop (also when an assertion failed).
struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Dir {
    type Target = std::path::PathBuf;
    fn deref(&self) -> &std::path::PathBuf {
        &self.0
    }
}

/// `p2pvpn network ARGS --state-dir STATE --store URL`.
fn network(state: &Path, url: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["network"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--state-dir", state.to_str().unwrap(), "--store", url]);
    run(&all, &[])
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn two_servers_on_one_postgres_share_networks_tokens_and_addresses() {
    let Some(pg) = Postgres::start("cli") else {
        return;
    };
    let url = pg.create_database("cli");
    let dir = Dir(temp_dir("pgstore-cli", "two"));
    let (state_a, state_b, stranger) = (dir.join("a"), dir.join("b"), dir.join("stranger"));
    let addr_a = format!("127.0.0.1:{}", free_port());
    let addr_b = format!("127.0.0.1:{}", free_port());

    let _a = spawn_store_server(&addr_a, &state_a, &url, StoreVia::Env, &[]);
    ok(&network(
        &state_a,
        &url,
        &["create", "office", "--cidr", "10.77.0.0/24"],
    ));

    // Another key on the same store: refused, with what to do.
    let refused = run_bounded(
        &["server", "--listen", &addr_b, "--state-dir"]
            .into_iter()
            .chain([stranger.to_str().unwrap(), "--store", &url])
            .collect::<Vec<_>>(),
        &[],
        Duration::from_secs(15),
    )
    .expect("a server with another key must exit, not run");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("copy server.key"),
        "{}",
        stderr(&refused)
    );

    // The same key (copied, as an operator would): the second server runs on the store.
    std::fs::create_dir_all(&state_b).unwrap();
    let key = std::fs::read(state_a.join("server.key")).unwrap();
    write_private(&state_b.join("server.key"), &key);
    let _b = spawn_store_server(&addr_b, &state_b, &url, StoreVia::Env, &[]);
    // Its `network` commands see the network made through the first.
    assert!(ok(&network(&state_b, &url, &["list"])).contains("office"));

    // One single-use token, naming server B; spent once, for both servers.
    let token = ok(&network(
        &state_a,
        &url,
        &["invite", "office", "--uses", "1", "--server", &addr_b],
    ));
    let out = common::join(&dir, token.trim(), "alice");
    assert!(
        ok(&out).contains("joined network office as alice (10.77.0.1/24"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let again = common::join(&dir, token.trim(), "bob");
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already used"),
        "{}",
        stderr(&again)
    );

    // A join through server A gets the next address, not alice's.
    let token = ok(&network(
        &state_b,
        &url,
        &["invite", "office", "--uses", "1", "--server", &addr_a],
    ));
    let out = common::join(&dir, token.trim(), "bob");
    assert!(
        ok(&out).contains("joined network office as bob (10.77.0.2/24"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let members = ok(&network(&state_a, &url, &["members", "office"]));
    assert!(
        members.contains("alice") && members.contains("bob"),
        "{members}"
    );
    drop((_a, _b));
}

/// A store that is not there: the server exits at once and says what to check; `--help` never
/// prints a password from P2PVPN_STORE.
#[test]
fn an_unreachable_store_is_named_and_help_hides_the_url() {
    let dir = Dir(temp_dir("pgstore-cli", "down"));
    // A loopback port nothing listens on (closed again at once).
    let url = format!("postgres://p2pvpn:hunter2@127.0.0.1:{}/p2pvpn", free_port());
    let addr = format!("127.0.0.1:{}", free_port());
    let out = run_bounded(
        &[
            "server",
            "--listen",
            &addr,
            "--state-dir",
            dir.to_str().unwrap(),
            "--store",
            &url,
        ],
        &[],
        Duration::from_secs(15),
    )
    .expect("a server whose store is down must exit, not run");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot open the PostgreSQL store given with --store")
            && err.contains("check that the database is running"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the password was printed: {err}");

    let help = run(
        &["network", "list", "--help"],
        &[("P2PVPN_STORE", Path::new(&url))],
    );
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--store <URL>"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "--help printed the store URL: {text}"
    );
}

/// PostgreSQL going away under a running server: a join is refused with the server-error
/// message (the server keeps running), and once PostgreSQL is back the server reconnects by
/// itself and the same token works.
#[test]
fn a_join_while_postgres_is_down_fails_clearly_and_works_once_it_is_back() {
    let Some(pg) = Postgres::start("cli-down") else {
        return;
    };
    let url = pg.create_database("down");
    let dir = Dir(temp_dir("pgstore-cli", "pgdown"));
    let state = dir.join("server");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = spawn_store_server(&addr, &state, &url, StoreVia::Env, &[]);
    ok(&network(
        &state,
        &url,
        &["create", "office", "--cidr", "10.78.0.0/24"],
    ));
    let token = ok(&network(
        &state,
        &url,
        &["invite", "office", "--uses", "2", "--server", &addr],
    ));

    pg.stop();
    let out = common::join(&dir, token.trim(), "alice");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the server failed to handle the request"),
        "{}",
        stderr(&out)
    );
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server exited when its store went away"
    );

    pg.start_again();
    // The server's store tick (1 s) reconnects; bounded retries of the join.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = common::join(&dir, token.trim(), "alice");
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(text.contains("as alice (10.78.0.1/24"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no join 10 s after PostgreSQL came back: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(server);
}
