//! The deployment's server list in a real PostgreSQL (tests/common/postgres.rs): servers record
//! themselves with heartbeats, the list is ordered by how long each has been up (the first is
//! the primary every node registers with), a server that stops beating leaves it, a restarted
//! one comes last, a clean stop removes it at once; and a change committed through one store
//! is pushed to another server's LISTEN connection (`io::store_listen`) within a second; and
//! with two real server processes, a token names both (the advertised address of the second).

#![cfg(unix)] // the test PostgreSQL comes from the Debian package
#![allow(clippy::disallowed_methods)] // tests/common reads the clock to wait for processes

mod common;

use common::postgres::{spawn_store_server, Postgres, StoreVia};
use common::{free_port, run, stderr, temp_dir};
use p2pvpn::core::rendezvous::deployment::ServerEntry;
use p2pvpn::core::rendezvous::token::JoinToken;
use p2pvpn::store_pg::servers::{FORGET_AFTER_SECS, STALE_SECS};
use p2pvpn::store_pg::PgStore;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn entry(a: &str) -> ServerEntry {
    ServerEntry {
        plain: vec![a.parse().unwrap()],
        tls: Vec::new(),
    }
}

fn firsts(store: &PgStore) -> Vec<String> {
    store
        .live_servers()
        .unwrap()
        .servers
        .iter()
        .map(|s| s.plain[0].to_string())
        .collect()
}

#[test]
fn the_live_servers_longest_up_first_and_the_dead_ones_leave() {
    let Some(pg) = Postgres::start("servers") else {
        return;
    };
    let url = pg.create_database("servers");
    let (a, b) = (entry("192.0.2.1:7000"), entry("192.0.2.2:7000"));
    let store_a = PgStore::connect(&url).unwrap();
    let store_b = PgStore::connect(&url).unwrap();
    store_a.heartbeat(&a, true).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    store_b.heartbeat(&b, true).unwrap();
    assert_eq!(firsts(&store_b), ["192.0.2.1:7000", "192.0.2.2:7000"]);
    // Later heartbeats keep the order: age counts from the start.
    store_b.heartbeat(&b, false).unwrap();
    store_a.heartbeat(&a, false).unwrap();
    assert_eq!(firsts(&store_a), ["192.0.2.1:7000", "192.0.2.2:7000"]);

    // A stops beating (SIGKILL): once stale it is no longer listed.
    let dead_at = Instant::now();
    while firsts(&store_b).len() > 1 {
        assert!(
            dead_at.elapsed() < Duration::from_secs(STALE_SECS as u64 + 3),
            "a silent server is still listed"
        );
        store_b.heartbeat(&b, false).unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(dead_at.elapsed() >= Duration::from_secs(STALE_SECS as u64 - 1));
    assert_eq!(firsts(&store_b), ["192.0.2.2:7000"]);

    // A restarts: it is the newest now, so B stays first (nodes do not move back).
    store_a.heartbeat(&a, true).unwrap();
    assert_eq!(firsts(&store_a), ["192.0.2.2:7000", "192.0.2.1:7000"]);

    // A clean stop leaves at once.
    store_b.forget_server(&b).unwrap();
    assert_eq!(firsts(&store_a), ["192.0.2.1:7000"]);
}

/// A crashed server's row stays (not listed) for a while, and the next server to start deletes
/// it once it is older than `FORGET_AFTER_SECS`; a row merely stale is kept.
#[test]
fn a_server_starting_deletes_rows_silent_for_an_hour() {
    let Some(pg) = Postgres::start("forget") else {
        return;
    };
    let url = pg.create_database("forget");
    let store = PgStore::connect(&url).unwrap();
    let (old, recent, me) = (
        entry("192.0.2.1:7000"),
        entry("192.0.2.2:7000"),
        entry("192.0.2.3:7000"),
    );
    store.heartbeat(&old, true).unwrap();
    store.heartbeat(&recent, true).unwrap();
    let mut sql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let age = |secs: i64, server: &ServerEntry| {
        format!(
            "UPDATE servers SET heartbeat = clock_timestamp() - interval '{secs} seconds' \
             WHERE plain = '{}'",
            server.plain[0]
        )
    };
    sql.batch_execute(&age(FORGET_AFTER_SECS + 60, &old))
        .unwrap();
    sql.batch_execute(&age(FORGET_AFTER_SECS - 600, &recent))
        .unwrap();
    let rows = |sql: &mut postgres::Client| -> Vec<String> {
        sql.query("SELECT plain FROM servers ORDER BY plain", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    // Later heartbeats of a running server leave the table alone.
    store.heartbeat(&recent, false).unwrap();
    assert_eq!(rows(&mut sql).len(), 2);
    sql.batch_execute(&age(FORGET_AFTER_SECS - 600, &recent))
        .unwrap();
    store.heartbeat(&me, true).unwrap();
    assert_eq!(
        rows(&mut sql),
        ["192.0.2.2:7000", "192.0.2.3:7000"],
        "the hour-old row goes, the stale one stays"
    );
    assert_eq!(firsts(&store), ["192.0.2.3:7000"]);
}

#[test]
fn a_change_is_pushed_to_another_server_s_listener() {
    let Some(pg) = Postgres::start("listen") else {
        return;
    };
    let url = pg.create_database("listen");
    let store = PgStore::connect(&url).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut pushed =
            p2pvpn::io::store_listen::spawn(url.clone(), p2pvpn::store_pg::tls::Connector::Plain);
        // The listener is up once the LISTEN has run; give it a moment, then commit a change
        // again until one arrives (a change before the LISTEN is not delivered).
        let start = tokio::time::Instant::now();
        let mut n = 0;
        loop {
            n += 1;
            let name = format!("net{n}");
            // (The store runs its blocking client off this runtime's thread by itself.)
            store
                .create_network(&name, "10.9.0.0/24".parse().unwrap())
                .unwrap();
            let wait = tokio::time::timeout(Duration::from_millis(500), pushed.recv()).await;
            if let Ok(Some(())) = wait {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no change pushed within 10 s"
            );
        }
        // A later change arrives quickly.
        let t0 = tokio::time::Instant::now();
        store
            .create_network("later", "10.8.0.0/24".parse().unwrap())
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), pushed.recv())
            .await
            .expect("the change was not pushed within 1 s")
            .expect("the listener stopped");
        eprintln!(
            "change pushed {} ms after the commit",
            t0.elapsed().as_millis()
        );
    });
}

#[test]
fn a_token_names_every_live_server_with_its_advertised_address() {
    let Some(pg) = Postgres::start("advertise") else {
        return;
    };
    let url = pg.create_database("advertise");
    let dir = temp_dir("pgservers", "advertise");
    let (state_a, state_b) = (dir.join("a"), dir.join("b"));
    let a = format!("127.0.0.1:{}", free_port());
    let port_b = free_port();
    let b = format!("127.0.0.1:{port_b}");
    // B listens on 127.0.0.1 but says nodes reach it at 127.0.0.2 (as behind a NAT).
    let b_advertised: SocketAddr = format!("127.0.0.2:{port_b}").parse().unwrap();
    let _a = spawn_store_server(&a, &state_a, &url, StoreVia::Flag, &[]);
    std::fs::create_dir_all(&state_b).unwrap();
    std::fs::copy(state_a.join("server.key"), state_b.join("server.key")).unwrap();
    let advertise = b_advertised.to_string();
    let _b = spawn_store_server(
        &b,
        &state_b,
        &url,
        StoreVia::Flag,
        &["--advertise", &advertise],
    );
    let network = |args: &[&str]| {
        let mut all = vec!["network"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--state-dir", state_a.to_str().unwrap(), "--store", &url]);
        run(&all, &[])
    };
    let out = network(&["create", "office", "--cidr", "10.77.0.0/24"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Both heartbeats land within a second of each start.
    let deadline = Instant::now() + Duration::from_secs(10);
    let servers = loop {
        let out = network(&["invite", "office"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let token = JoinToken::decode(text.lines().last().unwrap_or_default()).unwrap();
        if token.servers.len() == 2 || Instant::now() > deadline {
            break token.servers;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // A first (up longest), then B as nodes reach it; never B's listen address.
    assert_eq!(servers, vec![a.parse().unwrap(), b_advertised]);
    let _ = std::fs::remove_dir_all(&dir);
}
