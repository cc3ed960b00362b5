//! The server's persistent state in PostgreSQL, for several rendezvous servers sharing one store
//! (issue 15): the same records and operations as the SQLite [`crate::store::Store`], with
//! versioned migrations run on connect, and joins that stay correct when two servers admit at
//! once (conditional writes and unique constraints, see [`PgStore::admit`]).
//!
//! The client is the blocking `postgres` crate because the store API and
//! `core::rendezvous::Registry` are synchronous. It runs its own small runtime, so it must not
//! be called on a tokio worker thread (see notes/pgstore.md for how the server will drive it).

use crate::core::keys::PublicKey;
use crate::core::rendezvous::registry::{
    AccessRules, Admitted, Member, Network, Registry, RegistryError, TokenRecord,
};
use crate::core::rendezvous::token::token_id;
use crate::core::ula;
use crate::store::{AclStore, Deleted, StoreError, TokenInfo};

mod acl;
pub mod servers;
pub mod tls;
use ipnet::{Ipv4Net, Ipv6Net};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The schema versions this binary knows, oldest first; each runs once, in order, in the
/// transaction that records it. Never edit a released one: add the next.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE networks (
        name TEXT PRIMARY KEY,
        cidr TEXT NOT NULL,
        created_unix BIGINT NOT NULL,
        ipv6 TEXT NOT NULL
    );
    CREATE TABLE members (
        network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
        public_key TEXT NOT NULL,
        name TEXT NOT NULL,
        virtual_ip TEXT NOT NULL,
        joined_unix BIGINT NOT NULL,
        seq BIGSERIAL,
        PRIMARY KEY (network, public_key),
        UNIQUE (network, name),
        UNIQUE (network, virtual_ip)
    );
    CREATE TABLE tokens (
        network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
        hash BYTEA NOT NULL,
        uses BIGINT NOT NULL DEFAULT 0,
        max_uses BIGINT NOT NULL,
        expires_unix BIGINT,
        created_unix BIGINT NOT NULL,
        seq BIGSERIAL,
        PRIMARY KEY (network, hash),
        CHECK (uses >= 0 AND uses <= max_uses)
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- Every committed change to the records nodes see is announced to the other servers
    -- (`PgStore::data_version`). NOTIFY is delivered at commit, never for a rollback, and
    -- repeats within one transaction are folded into one.
    CREATE FUNCTION p2pvpn_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('p2pvpn_changes', TG_TABLE_NAME);
        RETURN NULL;
    END $$;
    CREATE TRIGGER networks_changed AFTER INSERT OR UPDATE OR DELETE ON networks
        FOR EACH STATEMENT EXECUTE FUNCTION p2pvpn_changed();
    CREATE TRIGGER members_changed AFTER INSERT OR UPDATE OR DELETE ON members
        FOR EACH STATEMENT EXECUTE FUNCTION p2pvpn_changed();
    CREATE TRIGGER tokens_changed AFTER INSERT OR UPDATE OR DELETE ON tokens
        FOR EACH STATEMENT EXECUTE FUNCTION p2pvpn_changed();",
    ),
    (2, acl::MIGRATION),
    (3, servers::MIGRATION),
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Held (per transaction) while migrating, so servers starting together migrate once. An
/// arbitrary constant: "p2pvpn" in ASCII.
const MIGRATION_LOCK: i64 = 0x7032_7076_706e;

/// The channel the triggers of migration 1 notify.
pub const CHANGES_CHANNEL: &str = "p2pvpn_changes";

/// The settings key of the server identity, as in the SQLite store.
const IDENTITY_SETTING: &str = "server_public_key";

pub struct PgStore {
    /// Where to reconnect when the connection breaks.
    url: String,
    /// TLS or not, as the URL asks (`tls`).
    connector: tls::Connector,
    /// `None` only while dropping (see the `Drop` impl).
    client: Mutex<Option<Client>>,
    /// Change notifications received so far (see [`PgStore::data_version`]).
    changes: AtomicI64,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn registry_err(e: impl Into<StoreError>) -> RegistryError {
    RegistryError(Box::new(e.into()))
}

/// A stored IPv6 prefix: a ULA /64 (`core::ula`).
fn parse_prefix(text: &str) -> Result<Ipv6Net, StoreError> {
    match text.parse::<Ipv6Net>() {
        Ok(net) if ula::is_node_prefix(&net) => Ok(net),
        _ => Err(StoreError::Damaged("network IPv6 prefix")),
    }
}

fn network_from_row(row: &Row) -> Result<Network, StoreError> {
    let cidr: String = row.try_get("cidr")?;
    let ipv6: String = row.try_get("ipv6")?;
    Ok(Network {
        name: row.try_get("name")?,
        cidr: cidr
            .parse()
            .map_err(|_| StoreError::Damaged("network cidr"))?,
        ipv6: Some(parse_prefix(&ipv6)?),
    })
}

/// The member columns `member_from_row` reads; `m` is members, `n` its network.
const MEMBER_COLUMNS: &str = "m.network, m.public_key, m.name, m.virtual_ip, n.ipv6
     FROM members m JOIN networks n ON n.name = m.network";

fn member_from_row(row: &Row) -> Result<Member, StoreError> {
    let network: String = row.try_get(0)?;
    let key: String = row.try_get(1)?;
    let name: String = row.try_get(2)?;
    let ip: String = row.try_get(3)?;
    let prefix: String = row.try_get(4)?;
    let public_key = PublicKey::from_base64(&key).map_err(|_| StoreError::Damaged("member key"))?;
    let virtual_ip = ip
        .parse()
        .map_err(|_| StoreError::Damaged("member address"))?;
    Ok(Member::new(
        &network,
        &name,
        public_key,
        virtual_ip,
        Some(parse_prefix(&prefix)?),
    ))
}

fn token_from_row(row: &Row) -> Result<TokenInfo, StoreError> {
    let hash: Vec<u8> = row.try_get("hash")?;
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| StoreError::Damaged("token hash"))?;
    let count = |col: &str| -> Result<u32, StoreError> {
        let v: i64 = row.try_get(col)?;
        u32::try_from(v).map_err(|_| StoreError::Damaged("token use count"))
    };
    let expires: Option<i64> = row.try_get("expires_unix")?;
    let created: i64 = row.try_get("created_unix")?;
    Ok(TokenInfo {
        id: token_id(&hash),
        hash,
        uses: count("uses")?,
        max_uses: count("max_uses")?,
        expires_unix: expires.map(|e| e.max(0) as u64),
        created_unix: created.max(0) as u64,
    })
}

/// Whether `m` is the member an operator named: by node name, public key or either address.
fn named(m: &Member, who: &str) -> bool {
    m.name == who
        || m.public_key.to_base64() == who
        || m.virtual_ip.to_string() == who
        || m.ipv6.is_some_and(|a| a.to_string() == who)
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction under an advisory lock, or
/// refuses a schema newer than this binary knows (a newer p2pvpn migrated it; running an
/// older one against it could misread or damage what it does not know).
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    // "relation already exists, skipping" is a NOTICE the client would log on every start and
    // every `network` command: not news.
    tx.batch_execute("SET LOCAL client_min_messages = warning")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            applied_unix BIGINT NOT NULL
        )",
    )?;
    let found: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .try_get(0)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_unix) VALUES ($1, $2)",
            &[version, &unix_now()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`, or key=value settings) and
    /// migrates the schema. With `sslmode=require` the connection is TLS with the database's
    /// certificate verified (`tls`); otherwise it is not encrypted: reach the database over
    /// loopback, a unix socket or a private link.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let connector = tls::from_env(url)?;
        let store = PgStore {
            url: url.to_string(),
            client: Mutex::new(Some(
                off_runtime(|| open_client(url, &connector))
                    .map_err(|e| tls::explain(e, &connector))?,
            )),
            connector,
            changes: AtomicI64::new(0),
        };
        store.with(migrate)?;
        Ok(store)
    }

    /// Changes whenever a change to networks, members or tokens was committed, by any server
    /// or `network` command on this database (this store's own included), like SQLite's
    /// `data_version`. One trivial round trip: its answer comes after every notification sent
    /// before it, which the client buffers on the way (without it, the client's runtime might
    /// not have read the socket since they arrived).
    pub fn data_version(&self) -> Result<i64, StoreError> {
        let new = self.with(|c| -> Result<usize, postgres::Error> {
            c.batch_execute("SELECT 1")?;
            c.notifications().iter().count()
        })?;
        Ok(self.changes.fetch_add(new as i64, Ordering::Relaxed) + new as i64)
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let row = self.with(|c| c.query_one("SELECT MAX(version) FROM schema_migrations", &[]))?;
        Ok(row.try_get(0)?)
    }

    /// Runs `f` with the client, outside any tokio runtime ([`off_runtime`]).
    fn with<R: Send>(&self, f: impl FnOnce(&mut Client) -> R + Send) -> R {
        off_runtime(|| {
            let mut client = self.lock();
            let client = client
                .as_mut()
                .expect("the PostgreSQL client is there until drop"); // ok: only `drop` takes it
            if client.is_closed() {
                self.reconnect(client);
            }
            f(client)
        })
    }

    /// The connection broke (PostgreSQL restarted, the link dropped) and the call that found
    /// out failed: open a new one for this and later calls. Notifications sent in between are
    /// lost, so count one change, which makes the server re-read everything. If PostgreSQL is
    /// still away, the call fails with the closed connection's error and the next one retries.
    fn reconnect(&self, client: &mut Client) {
        match open_client(&self.url, &self.connector) {
            Ok(fresh) => {
                *client = fresh;
                self.changes.fetch_add(1, Ordering::Relaxed);
                tracing::info!("reconnected to the PostgreSQL store");
            }
            Err(e) => tracing::warn!(error = %e, "cannot reconnect to the PostgreSQL store"),
        }
    }

    /// The client; a panic while it was held leaves no half-done transaction (dropping one
    /// rolls it back), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Option<Client>> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        Ok(self.with(|c| c.query(sql, params))?)
    }

    fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        Ok(self.with(|c| c.execute(sql, params))?)
    }

    fn require_network(&self, name: &str) -> Result<Network, StoreError> {
        self.network_info(name)?
            .ok_or_else(|| StoreError::NoSuchNetwork(name.to_string()))
    }

    pub fn create_network(&self, name: &str, cidr: Ipv4Net) -> Result<(), StoreError> {
        let ipv6 = ula::random_prefix(&mut rand::rngs::OsRng);
        // One statement, so two servers creating one name at once cannot both succeed.
        let added = self.execute(
            "INSERT INTO networks (name, cidr, created_unix, ipv6) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &cidr.to_string(), &unix_now(), &ipv6.to_string()],
        )?;
        if added == 0 {
            return Err(StoreError::NetworkExists(name.to_string()));
        }
        Ok(())
    }

    pub fn networks(&self) -> Result<Vec<(Network, usize)>, StoreError> {
        let rows = self.query(
            "SELECT n.name, n.cidr, n.ipv6,
                 (SELECT COUNT(*) FROM members m WHERE m.network = n.name) AS count
             FROM networks n ORDER BY n.name",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let count: i64 = r.try_get("count")?;
                Ok((network_from_row(r)?, count.max(0) as usize))
            })
            .collect()
    }

    pub fn network_info(&self, name: &str) -> Result<Option<Network>, StoreError> {
        self.query(
            "SELECT name, cidr, ipv6 FROM networks WHERE name = $1",
            &[&name],
        )?
        .first()
        .map(network_from_row)
        .transpose()
    }

    pub fn members_of(&self, network: &str) -> Result<Vec<Member>, StoreError> {
        self.query(
            &format!("SELECT {MEMBER_COLUMNS} WHERE m.network = $1 ORDER BY m.joined_unix, m.seq"),
            &[&network],
        )?
        .iter()
        .map(member_from_row)
        .collect()
    }

    pub fn create_token(
        &self,
        network: &str,
        hash: &[u8; 32],
        max_uses: u32,
        expires_unix: Option<u64>,
    ) -> Result<(), StoreError> {
        self.require_network(network)?;
        self.execute(
            "INSERT INTO tokens (network, hash, uses, max_uses, expires_unix, created_unix)
             VALUES ($1, $2, 0, $3, $4, $5)",
            &[
                &network,
                &&hash[..],
                &i64::from(max_uses),
                &expires_unix.map(|e| e.min(i64::MAX as u64) as i64),
                &unix_now(),
            ],
        )?;
        Ok(())
    }

    /// The network's tokens, oldest first, spent and expired ones included.
    pub fn tokens_of(&self, network: &str) -> Result<Vec<TokenInfo>, StoreError> {
        self.require_network(network)?;
        self.query(
            "SELECT hash, uses, max_uses, expires_unix, created_unix FROM tokens
             WHERE network = $1 ORDER BY created_unix, seq",
            &[&network],
        )?
        .iter()
        .map(token_from_row)
        .collect()
    }

    /// Deletes the one token of `network` whose id starts with `id`.
    pub fn revoke_token(&self, network: &str, id: &str) -> Result<TokenInfo, StoreError> {
        let wanted = id.trim().to_ascii_lowercase();
        let matches: Vec<TokenInfo> = if wanted.is_empty() {
            Vec::new()
        } else {
            self.tokens_of(network)?
                .into_iter()
                .filter(|t| t.id.starts_with(&wanted))
                .collect()
        };
        let [token] = matches.as_slice() else {
            return Err(if matches.is_empty() {
                StoreError::NoSuchToken {
                    network: network.to_string(),
                    id: id.to_string(),
                }
            } else {
                StoreError::AmbiguousToken {
                    network: network.to_string(),
                    id: id.to_string(),
                    count: matches.len(),
                }
            });
        };
        self.execute(
            "DELETE FROM tokens WHERE network = $1 AND hash = $2",
            &[&network, &&token.hash[..]],
        )?;
        Ok(token.clone())
    }

    /// Removes a member named by node name, public key or virtual address.
    pub fn remove_member(&self, network: &str, who: &str) -> Result<Option<Member>, StoreError> {
        self.require_network(network)?;
        let found = self
            .members_of(network)?
            .into_iter()
            .find(|m| named(m, who));
        if let Some(m) = &found {
            self.execute(
                "DELETE FROM members WHERE network = $1 AND public_key = $2",
                &[&network, &m.public_key.to_base64()],
            )?;
        }
        Ok(found)
    }

    /// Renames a member named by node name, public key or virtual address; returns it as it
    /// was. The unique constraint decides between two renames to one name at once.
    pub fn rename_member(
        &self,
        network: &str,
        who: &str,
        new: &str,
    ) -> Result<Option<Member>, StoreError> {
        self.require_network(network)?;
        let Some(m) = self
            .members_of(network)?
            .into_iter()
            .find(|m| named(m, who))
        else {
            return Ok(None);
        };
        let taken = || StoreError::NameTaken {
            network: network.to_string(),
            name: new.to_string(),
        };
        match self.execute(
            "UPDATE members SET name = $3 WHERE network = $1 AND public_key = $2",
            &[&network, &m.public_key.to_base64(), &new],
        ) {
            Ok(_) => Ok(Some(m)),
            Err(StoreError::Postgres(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Err(taken())
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a network with its members and tokens, in one transaction.
    pub fn delete_network(&self, name: &str) -> Result<Deleted, StoreError> {
        self.with(|client| {
            let mut tx = client.transaction()?;
            // Lock the row first, so the counts are of what this transaction deletes.
            if tx
                .query_opt(
                    "SELECT name FROM networks WHERE name = $1 FOR UPDATE",
                    &[&name],
                )?
                .is_none()
            {
                return Err(StoreError::NoSuchNetwork(name.to_string()));
            }
            let members = tx.execute("DELETE FROM members WHERE network = $1", &[&name])?;
            let tokens = tx.execute("DELETE FROM tokens WHERE network = $1", &[&name])?;
            tx.execute("DELETE FROM networks WHERE name = $1", &[&name])?;
            tx.commit()?;
            Ok(Deleted {
                members: members as usize,
                tokens: tokens as usize,
            })
        })
    }

    /// The server identity recorded on first start, if any.
    pub fn identity(&self) -> Result<Option<PublicKey>, StoreError> {
        self.setting(IDENTITY_SETTING)?
            .map(|k| PublicKey::from_base64(&k).map_err(|_| StoreError::Damaged("server identity")))
            .transpose()
    }

    /// Records `key` unless an identity is recorded already: of two servers starting together
    /// on a fresh store, the first wins and the other then finds a different key recorded.
    pub fn record_identity(&self, key: &PublicKey) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&IDENTITY_SETTING, &key.to_base64()],
        )?;
        Ok(())
    }

    /// Whether anything here was made for a particular server key (members, tokens).
    pub fn depends_on_identity(&self) -> Result<bool, StoreError> {
        let row = self.with(|c| {
            c.query_one(
                "SELECT (SELECT COUNT(*) FROM members) + (SELECT COUNT(*) FROM tokens)",
                &[],
            )
        })?;
        let count: i64 = row.try_get(0)?;
        Ok(count > 0)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.query("SELECT value FROM settings WHERE key = $1", &[&key])?
            .first()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .transpose()
    }
}

/// A connection listening for change notifications.
fn open_client(url: &str, connector: &tls::Connector) -> Result<Client, postgres::Error> {
    let mut client = match connector {
        tls::Connector::Plain => Client::connect(url, NoTls)?,
        tls::Connector::Tls(make) => Client::connect(url, make.clone())?,
    };
    client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))?;
    Ok(client)
}

/// Runs `f` outside any tokio runtime: the blocking client (connecting, every query, closing)
/// drives a runtime of its own, which panics when entered from a thread already running one
/// (the server's, the CLI's). There `f` runs on a scoped thread, at the cost of a thread start.
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl Drop for PgStore {
    /// Closing the client blocks on its runtime too.
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        off_runtime(move || drop(client));
    }
}

impl Registry for PgStore {
    fn network(&self, name: &str) -> Result<Option<Network>, RegistryError> {
        self.network_info(name).map_err(registry_err)
    }

    fn members(&self, network: &str) -> Result<Vec<Member>, RegistryError> {
        self.members_of(network).map_err(registry_err)
    }

    fn member(&self, network: &str, key: &PublicKey) -> Result<Option<Member>, RegistryError> {
        self.query(
            &format!("SELECT {MEMBER_COLUMNS} WHERE m.network = $1 AND m.public_key = $2"),
            &[&network, &key.to_base64()],
        )
        .and_then(|rows| rows.first().map(member_from_row).transpose())
        .map_err(registry_err)
    }

    fn token(&self, network: &str, hash: &[u8; 32]) -> Result<Option<TokenRecord>, RegistryError> {
        self.query(
            "SELECT hash, uses, max_uses, expires_unix, created_unix FROM tokens
             WHERE network = $1 AND hash = $2",
            &[&network, &&hash[..]],
        )
        .and_then(|rows| rows.first().map(token_from_row).transpose())
        .map(|t| {
            t.map(|t| TokenRecord {
                uses: t.uses,
                max_uses: t.max_uses,
                expires_unix: t.expires_unix,
            })
        })
        .map_err(registry_err)
    }

    /// Two conditional writes in one transaction. Under READ COMMITTED a concurrent admit
    /// holding the token row or a conflicting member row makes this one wait for its commit and
    /// then re-check: the `uses < max_uses` condition against the new count, the unique keys
    /// (network + key, name, address) through ON CONFLICT. Either finding nothing to do means
    /// another server won; the transaction is rolled back and `redeem` reads again.
    fn admit(&mut self, member: &Member, token_hash: &[u8; 32]) -> Result<Admitted, RegistryError> {
        self.with(|client| -> Result<Admitted, postgres::Error> {
            let mut tx = client.transaction()?;
            let counted = tx.execute(
                "UPDATE tokens SET uses = uses + 1
                 WHERE network = $1 AND hash = $2 AND uses < max_uses",
                &[&member.network, &&token_hash[..]],
            )?;
            if counted == 0 {
                return Ok(Admitted::LostRace);
            }
            let added = tx.execute(
                "INSERT INTO members (network, public_key, name, virtual_ip, joined_unix)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &member.network,
                    &member.public_key.to_base64(),
                    &member.name,
                    &member.virtual_ip.to_string(),
                    &unix_now(),
                ],
            )?;
            if added == 0 {
                return Ok(Admitted::LostRace);
            }
            tx.commit()?;
            Ok(Admitted::Yes)
        })
        .map_err(registry_err)
    }

    fn access_rules(&self, network: &str) -> Result<AccessRules, RegistryError> {
        self.access_rules_of(network).map_err(registry_err)
    }

    fn remove(&mut self, network: &str, key: &PublicKey) -> Result<bool, RegistryError> {
        self.execute(
            "DELETE FROM members WHERE network = $1 AND public_key = $2",
            &[&network, &key.to_base64()],
        )
        .map(|n| n > 0)
        .map_err(registry_err)
    }
}
