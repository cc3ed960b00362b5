//! The PostgreSQL store (`p2pvpn::store_pg`) against a real PostgreSQL started for each test
//! (tests/common/postgres.rs): migrations, the operators' operations, and what several servers
//! sharing one database need: one single-use token admits exactly one of two servers redeeming
//! it at once, and two joins at once never get one address.
//!
//! The races are forced, not hoped for: [`InLockstep`] holds each server's first write until
//! both have read the token and the members, so both decide on the same stale view.

#![cfg(unix)] // the test PostgreSQL comes from the Debian package
#![allow(clippy::disallowed_methods)] // tests/common reads the clock to wait for processes

mod common;

use common::postgres::Postgres;
use p2pvpn::core::keys::PublicKey;
use p2pvpn::core::rendezvous::admission::{redeem, JoinRequest};
use p2pvpn::core::rendezvous::messages::Refusal;
use p2pvpn::core::rendezvous::registry::{
    Admitted, Member, Network, Registry, RegistryError, TokenRecord,
};
use p2pvpn::core::rendezvous::token::Credential;
use p2pvpn::store::StoreError;
use p2pvpn::store_pg::{PgStore, SCHEMA_VERSION};
use std::collections::HashSet;
use std::sync::{Arc, Barrier};

/// A registry whose first `admit` waits at a barrier shared with the other server's, so both
/// servers have read before either writes. Later attempts (after a lost race) go straight on.
struct InLockstep {
    store: PgStore,
    barrier: Arc<Barrier>,
    waited: bool,
}

impl Registry for InLockstep {
    fn network(&self, name: &str) -> Result<Option<Network>, RegistryError> {
        self.store.network(name)
    }
    fn members(&self, network: &str) -> Result<Vec<Member>, RegistryError> {
        self.store.members(network)
    }
    fn token(&self, network: &str, hash: &[u8; 32]) -> Result<Option<TokenRecord>, RegistryError> {
        self.store.token(network, hash)
    }
    fn admit(&mut self, member: &Member, hash: &[u8; 32]) -> Result<Admitted, RegistryError> {
        if !self.waited {
            self.waited = true;
            self.barrier.wait();
        }
        self.store.admit(member, hash)
    }
    fn remove(&mut self, network: &str, key: &PublicKey) -> Result<bool, RegistryError> {
        self.store.remove(network, key)
    }
}

/// Two servers (two stores, two connections) on one database, each joining one node with
/// `cred` at the same moment; returns what each got.
fn join_at_once(
    url: &str,
    cred: &Credential,
    joins: [(&'static str, PublicKey); 2],
) -> Vec<Result<Member, Refusal>> {
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = joins
        .into_iter()
        .map(|(name, key)| {
            let (url, cred, barrier) = (url.to_string(), cred.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut server = InLockstep {
                    store: PgStore::connect(&url).unwrap(),
                    barrier,
                    waited: false,
                };
                let req = JoinRequest {
                    network: "office",
                    credential: &cred,
                    name,
                    key,
                };
                redeem(&mut server, &req, 1_000).unwrap()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn one_single_use_token_admits_exactly_one_of_two_servers() {
    let Some(pg) = Postgres::start("token") else {
        return;
    };
    let url = pg.create_database("token");
    let admin = PgStore::connect(&url).unwrap();
    admin
        .create_network("office", "10.9.0.0/24".parse().unwrap())
        .unwrap();
    for round in 0..5u8 {
        let cred = Credential([round + 1; 32]);
        admin.create_token("office", &cred.hash(), 1, None).unwrap();
        let keys = [
            PublicKey([2 * round + 1; 32]),
            PublicKey([2 * round + 2; 32]),
        ];
        let outcomes = join_at_once(
            &url,
            &cred,
            [
                (["a0", "a1", "a2", "a3", "a4"][round as usize], keys[0]),
                (["b0", "b1", "b2", "b3", "b4"][round as usize], keys[1]),
            ],
        );
        let admitted: Vec<&Member> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(admitted.len(), 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, Err(Refusal::TokenUsedUp { uses: 1 }))),
            "round {round}: the other server must refuse the spent token: {outcomes:?}"
        );
        let token = admin.token("office", &cred.hash()).unwrap().unwrap();
        assert_eq!(token.uses, 1, "round {round}");
    }
    assert_eq!(admin.members_of("office").unwrap().len(), 5);
}

#[test]
fn two_joins_at_once_never_get_one_address() {
    let Some(pg) = Postgres::start("addr") else {
        return;
    };
    let url = pg.create_database("addr");
    let admin = PgStore::connect(&url).unwrap();
    admin
        .create_network("office", "10.9.0.0/24".parse().unwrap())
        .unwrap();
    let cred = Credential([7; 32]);
    admin
        .create_token("office", &cred.hash(), 100, None)
        .unwrap();
    let names = [
        ("n0", "m0"),
        ("n1", "m1"),
        ("n2", "m2"),
        ("n3", "m3"),
        ("n4", "m4"),
    ];
    for (round, (a, b)) in names.into_iter().enumerate() {
        let k = round as u8;
        let outcomes = join_at_once(
            &url,
            &cred,
            [
                (a, PublicKey([2 * k + 1; 32])),
                (b, PublicKey([2 * k + 2; 32])),
            ],
        );
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    }
    let members = admin.members_of("office").unwrap();
    let addresses: HashSet<_> = members.iter().map(|m| m.virtual_ip).collect();
    assert_eq!(members.len(), 10);
    assert_eq!(
        addresses.len(),
        10,
        "an address was given twice: {members:?}"
    );
    // Lowest free first, whichever server won each race: .1 to .10.
    let expected: HashSet<_> = (1..=10)
        .map(|i| format!("10.9.0.{i}").parse().unwrap())
        .collect();
    assert_eq!(addresses, expected);
    assert_eq!(
        admin.token("office", &cred.hash()).unwrap().unwrap().uses,
        10
    );
}

#[test]
fn migrations_run_once_on_start_and_a_newer_schema_is_refused() {
    let Some(pg) = Postgres::start("migrate") else {
        return;
    };
    let url = pg.create_database("migrate");
    // Two servers starting at once: one migrates, the other waits and finds it done.
    let starts: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::connect(&url).map(|_| ()))
        })
        .collect();
    for s in starts {
        s.join().unwrap().unwrap();
    }
    let store = PgStore::connect(&url).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let mut sql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let applied: i64 = sql
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(applied, SCHEMA_VERSION);
    // A newer p2pvpn migrated this database further: this one must not touch it.
    sql.execute(
        "INSERT INTO schema_migrations (version, applied_unix) VALUES ($1, 0)",
        &[&(SCHEMA_VERSION + 1)],
    )
    .unwrap();
    let err = PgStore::connect(&url)
        .err()
        .expect("a newer schema refused");
    assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("schema version {}", SCHEMA_VERSION + 1)) && text.contains("newer"),
        "{text}"
    );
}

#[test]
fn networks_tokens_members_and_identity_round_trip() {
    let Some(pg) = Postgres::start("ops") else {
        return;
    };
    let url = pg.create_database("ops");
    let mut store = PgStore::connect(&url).unwrap();
    store
        .create_network("lab", "10.8.0.0/24".parse().unwrap())
        .unwrap();
    assert!(matches!(
        store.create_network("lab", "10.8.0.0/24".parse().unwrap()),
        Err(StoreError::NetworkExists(_))
    ));
    let net = store.network_info("lab").unwrap().unwrap();
    assert!(net.ipv6.is_some());
    let cred = Credential([0xa1; 32]);
    store
        .create_token("lab", &cred.hash(), 2, Some(5_000))
        .unwrap();
    // Two more whose ids (the first hex digits of the stored hash) share a first digit "a".
    store.create_token("lab", &[0xa2; 32], 1, None).unwrap();
    store.create_token("lab", &[0xa3; 32], 1, None).unwrap();
    assert!(store.depends_on_identity().unwrap());
    let req = JoinRequest {
        network: "lab",
        credential: &cred,
        name: "alice",
        key: PublicKey([1; 32]),
    };
    let alice = redeem(&mut store, &req, 1_000).unwrap().unwrap();
    assert_eq!(alice.virtual_ip.to_string(), "10.8.0.1");
    assert!(alice.ipv6.is_some());
    // The same key again gets its record back and spends no use.
    assert_eq!(redeem(&mut store, &req, 1_000).unwrap().unwrap(), alice);
    // Past the expiry: refused.
    let late = JoinRequest {
        name: "late",
        key: PublicKey([9; 32]),
        ..req.clone()
    };
    assert!(matches!(
        redeem(&mut store, &late, 5_000).unwrap(),
        Err(Refusal::TokenExpired { .. })
    ));

    // A second server sees what the first wrote.
    let other = PgStore::connect(&url).unwrap();
    assert_eq!(other.members_of("lab").unwrap(), vec![alice.clone()]);
    assert_eq!(other.networks().unwrap()[0].1, 1);
    let tokens = other.tokens_of("lab").unwrap();
    assert_eq!(tokens.len(), 3);
    assert_eq!((tokens[0].uses, tokens[0].max_uses), (1, 2));
    assert!(matches!(
        other.revoke_token("lab", "a"),
        Err(StoreError::AmbiguousToken { count: 2, .. })
    ));
    assert_eq!(other.revoke_token("lab", "A2").unwrap().id, "a2a2a2a2");
    assert_eq!(other.tokens_of("lab").unwrap().len(), 2);

    // Rename, then remove by the IPv6 address.
    let bob = JoinRequest {
        name: "bob",
        key: PublicKey([2; 32]),
        ..req.clone()
    };
    redeem(&mut store, &bob, 1_000).unwrap().unwrap();
    assert!(matches!(
        other.rename_member("lab", "alice", "bob"),
        Err(StoreError::NameTaken { .. })
    ));
    let was = other.rename_member("lab", "alice", "carol").unwrap();
    assert_eq!(was.map(|m| m.name), Some("alice".to_string()));
    let v6 = alice.ipv6.unwrap().to_string();
    let removed = other.remove_member("lab", &v6).unwrap();
    assert_eq!(removed.map(|m| m.name), Some("carol".to_string()));
    assert!(store.member("lab", &PublicKey([1; 32])).unwrap().is_none());

    // Identity and settings.
    assert_eq!(store.identity().unwrap(), None);
    store.record_identity(&PublicKey([4; 32])).unwrap();
    assert_eq!(other.identity().unwrap(), Some(PublicKey([4; 32])));
    other.set_setting("listen", "127.0.0.1:1").unwrap();
    other.set_setting("listen", "127.0.0.1:2").unwrap();
    assert_eq!(
        store.setting("listen").unwrap().as_deref(),
        Some("127.0.0.1:2")
    );

    // Deleting the network takes its members and tokens.
    let deleted = store.delete_network("lab").unwrap();
    assert_eq!((deleted.members, deleted.tokens), (1, 2));
    assert!(matches!(
        store.delete_network("lab"),
        Err(StoreError::NoSuchNetwork(_))
    ));
    assert!(other.networks().unwrap().is_empty());
}

/// What the server's store poll relies on: a change committed through another server (here a
/// `remove-member`) shows as a new `data_version` within 2 s, and nothing changes it otherwise.
/// Called from inside a tokio runtime, as the server does (the blocking client must not run
/// its own runtime on that thread).
#[test]
fn a_change_through_another_server_is_noticed_from_inside_a_runtime() {
    let Some(pg) = Postgres::start("notify") else {
        return;
    };
    let url = pg.create_database("notify");
    let mut here = PgStore::connect(&url).unwrap();
    let there = PgStore::connect(&url).unwrap();
    there
        .create_network("office", "10.9.0.0/24".parse().unwrap())
        .unwrap();
    let cred = Credential([5; 32]);
    there.create_token("office", &cred.hash(), 5, None).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let req = JoinRequest {
            network: "office",
            credential: &cred,
            name: "alice",
            key: PublicKey([1; 32]),
        };
        redeem(&mut here, &req, 0).unwrap().unwrap();
        // Let the notifications of the writes so far arrive, then take the version.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let before = here.data_version().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(here.data_version().unwrap(), before, "nothing changed");
        there.set_setting("listen", "127.0.0.1:1").unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            here.data_version().unwrap(),
            before,
            "settings are not announced"
        );

        there.remove_member("office", "alice").unwrap().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while here.data_version().unwrap() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "a member removed through another server was not noticed within 2 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(here.members_of("office").unwrap().is_empty());
    });
}

/// PostgreSQL restarting under a running store (as after a crash): calls fail while it is
/// away, the store reconnects by itself once it is back, and counts a change so that the server
/// re-reads what it may have missed.
#[test]
fn the_store_reconnects_after_postgres_restarts() {
    let Some(pg) = Postgres::start("restart") else {
        return;
    };
    let url = pg.create_database("restart");
    let store = PgStore::connect(&url).unwrap();
    store
        .create_network("office", "10.9.0.0/24".parse().unwrap())
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = store.data_version().unwrap();
    pg.restart();
    // The first call finds the old connection gone; a later one (bounded) works again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let networks = loop {
        match store.networks() {
            Ok(n) => break n,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no reconnect within 10 s: {e}"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    };
    assert_eq!(networks.len(), 1);
    assert_ne!(
        store.data_version().unwrap(),
        before,
        "a reconnect counts as a change"
    );
    // And notifications flow on the new connection.
    let other = PgStore::connect(&url).unwrap();
    let now = store.data_version().unwrap();
    other
        .create_network("lab", "10.8.0.0/24".parse().unwrap())
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while store.data_version().unwrap() == now {
        assert!(
            std::time::Instant::now() < deadline,
            "no notification after reconnect"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Access rules and tags (issue 14) live in PostgreSQL too: a rule and a tag set through one
/// server are read by another, each change is announced (so the other server re-sends nodes
/// their rules within its 1 s tick), and removing a member removes its tags.
#[test]
fn access_rules_and_tags_are_shared_and_announced() {
    use p2pvpn::core::acl::rule::Rule;
    use p2pvpn::store::AclStore;
    let Some(pg) = Postgres::start("acl") else {
        return;
    };
    let url = pg.create_database("acl");
    let mut here = PgStore::connect(&url).unwrap();
    let there = PgStore::connect(&url).unwrap();
    there
        .create_network("office", "10.9.0.0/24".parse().unwrap())
        .unwrap();
    let cred = Credential([6; 32]);
    there.create_token("office", &cred.hash(), 5, None).unwrap();
    for (name, key) in [("alice", 1u8), ("bob", 2)] {
        let req = JoinRequest {
            network: "office",
            credential: &cred,
            name,
            key: PublicKey([key; 32]),
        };
        redeem(&mut here, &req, 0).unwrap().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = here.data_version().unwrap();
    let rule: Rule = "tcp 22 from tag:admin to tag:server".parse().unwrap();
    assert_eq!(there.add_rule("office", &rule).unwrap(), 1);
    there
        .set_tags("office", "alice", &["admin".to_string()])
        .unwrap();
    there
        .set_tags("office", "10.9.0.2", &["server".to_string()])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while here.data_version().unwrap() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "a rule added through another server was not announced within 2 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let access = here.access_rules("office").unwrap();
    assert_eq!(access.rules, vec![rule]);
    assert_eq!(access.tags[&PublicKey([1; 32])], vec!["admin".to_string()]);
    assert_eq!(access.tags[&PublicKey([2; 32])], vec!["server".to_string()]);
    // The same checks as SQLite's: an unknown member or rule number is named.
    let err = here
        .set_tags("office", "carol", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no member \"carol\""), "{err}");
    let err = here.remove_rule("office", 4).unwrap_err().to_string();
    assert!(err.contains("no access rule number 4"), "{err}");
    here.remove_member("office", "alice").unwrap().unwrap();
    assert!(!there
        .tags_of("office")
        .unwrap()
        .contains_key(&PublicKey([1; 32])));
    here.remove_rule("office", 1).unwrap();
    assert!(there.rules_of("office").unwrap().is_empty());
}
