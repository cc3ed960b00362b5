//! The server's persistent state in SQLite (`server.db` in its state directory): networks,
//! members with their addresses, join-token hashes and a few settings. The `network` commands
//! write to the same file while the server runs, so the database uses WAL with a busy timeout,
//! and the server notices their changes through `PRAGMA data_version`.

use crate::core::keys::PublicKey;
use crate::core::rendezvous::registry::{
    Admitted, Member, Network, Registry, RegistryError, TokenRecord,
};
use crate::core::rendezvous::token::token_id;
use crate::core::ula;
use ipnet::{Ipv4Net, Ipv6Net};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::time::Duration;

mod acl;
pub use acl::AclStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("network {0:?} already exists")]
    NetworkExists(String),
    #[error("no network named {0:?} (see `p2pvpn network list`)")]
    NoSuchNetwork(String),
    #[error("a stored value is damaged: {0}")]
    Damaged(&'static str),
    #[error(
        "{0} is empty (0 bytes), so its networks and members are gone (a failed copy or a full \
         disk?); restore it from a backup, or delete it to start afresh with no networks (every \
         node must then join again)"
    )]
    Truncated(std::path::PathBuf),
    #[error(
        "network {network:?} has no token with id {id:?} (see `p2pvpn network invites {network}`)"
    )]
    NoSuchToken { network: String, id: String },
    #[error(
        "token id {id:?} matches {count} tokens of network {network:?}; give more of the id \
         (see `p2pvpn network invites {network}`)"
    )]
    AmbiguousToken {
        network: String,
        id: String,
        count: usize,
    },
    #[error("network {network:?} already has a member named {name:?}; choose another name")]
    NameTaken { network: String, name: String },
    #[error("network {network:?} has no member {who:?} (see `p2pvpn network members {network}`)")]
    NoSuchMember { network: String, who: String },
    #[error(
        "network {network:?} has no access rule number {id} (see `p2pvpn network acl {network} \
         list`)"
    )]
    NoSuchRule { network: String, id: usize },
    #[error("{0}")]
    Rule(#[from] crate::core::acl::rule::RuleError),
    #[error("PostgreSQL store: {0}")]
    Postgres(#[from] postgres::Error),
    #[error(transparent)]
    PostgresTls(#[from] crate::store_pg::tls::TlsSetupError),
    #[error(
        "the PostgreSQL store has schema version {found}, newer than this p2pvpn knows \
         ({known}): a newer p2pvpn migrated it; run that version (or newer) on every server"
    )]
    NewerSchema { found: i64, known: i64 },
}

/// A join token as `network invites` lists it (the credential itself is never stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// [`token_id`]: the first hex digits of the credential's hash.
    pub id: String,
    /// The stored hash itself, which names the row exactly.
    pub hash: [u8; 32],
    pub uses: u32,
    pub max_uses: u32,
    pub expires_unix: Option<u64>,
    pub created_unix: u64,
}

/// What `network delete` removed along with the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub members: usize,
    pub tokens: usize,
}

/// The settings key under which the server records its identity (its public key, base64) on
/// first start, so that a lost `server.key` is noticed instead of silently replaced.
const IDENTITY_SETTING: &str = "server_public_key";

/// The database's file name in the state directory.
pub const DB_FILE: &str = "server.db";

pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    cidr TEXT NOT NULL,
    created_unix INTEGER NOT NULL,
    ipv6 TEXT
);
CREATE TABLE IF NOT EXISTS members (
    network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
    public_key TEXT NOT NULL,
    name TEXT NOT NULL,
    virtual_ip TEXT NOT NULL,
    joined_unix INTEGER NOT NULL,
    PRIMARY KEY (network, public_key),
    UNIQUE (network, name),
    UNIQUE (network, virtual_ip)
);
CREATE TABLE IF NOT EXISTS tokens (
    network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
    hash BLOB NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0,
    max_uses INTEGER NOT NULL,
    expires_unix INTEGER,
    created_unix INTEGER NOT NULL,
    PRIMARY KEY (network, hash)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A member row with its network's IPv6 prefix (the columns of `MEMBER_COLUMNS`).
type MemberRow = (String, String, String, String, Option<String>);

/// The member columns `member_from_row` reads; `m` is members, `n` its network.
const MEMBER_COLUMNS: &str = "m.network, m.public_key, m.name, m.virtual_ip, n.ipv6
     FROM members m JOIN networks n ON n.name = m.network";

fn member_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MemberRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn to_member(raw: MemberRow) -> Result<Member, StoreError> {
    let (network, key, name, ip, prefix) = raw;
    let public_key = PublicKey::from_base64(&key).map_err(|_| StoreError::Damaged("member key"))?;
    let virtual_ip = ip
        .parse()
        .map_err(|_| StoreError::Damaged("member address"))?;
    Ok(Member::new(
        &network,
        &name,
        public_key,
        virtual_ip,
        parse_prefix(prefix)?,
    ))
}

/// A stored IPv6 prefix: a ULA /64 (`core::ula`), or none for a network not yet given one.
fn parse_prefix(text: Option<String>) -> Result<Option<Ipv6Net>, StoreError> {
    let Some(text) = text else {
        return Ok(None);
    };
    match text.parse::<Ipv6Net>() {
        Ok(net) if ula::is_node_prefix(&net) => Ok(Some(net)),
        _ => Err(StoreError::Damaged("network IPv6 prefix")),
    }
}

/// Databases from before IPv6 have no `networks.ipv6` column: add it, and give every network
/// without a prefix a fresh random one (RFC 4193 §3.2). In one write transaction, so a server
/// and a `network` command opening the file together do it once.
fn migrate_ipv6(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let has_column: bool = tx.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('networks') WHERE name = 'ipv6'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_column {
        tx.execute_batch("ALTER TABLE networks ADD COLUMN ipv6 TEXT")?;
    }
    let missing: Vec<String> = {
        let mut stmt = tx.prepare("SELECT name FROM networks WHERE ipv6 IS NULL")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for name in missing {
        let prefix = ula::random_prefix(&mut rand::rngs::OsRng);
        tx.execute(
            "UPDATE networks SET ipv6 = ?2 WHERE name = ?1",
            params![name, prefix.to_string()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn registry_err(e: StoreError) -> RegistryError {
    RegistryError(Box::new(e))
}

impl Store {
    /// Opens `server.db` in `dir`, creating it if missing. A zero-byte file is refused: SQLite
    /// would take it for a new database and quietly start over with no networks.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::Truncated(path));
        }
        let conn = Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(acl::SCHEMA)?;
        let mut conn = conn;
        migrate_ipv6(&mut conn)?;
        Ok(Store { conn })
    }

    /// Changes whenever another connection (a `network` command) commits.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "data_version", |r| r.get(0))?)
    }

    pub fn create_network(&self, name: &str, cidr: Ipv4Net) -> Result<(), StoreError> {
        let exists: Option<String> = self
            .conn
            .query_row("SELECT name FROM networks WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_some() {
            return Err(StoreError::NetworkExists(name.to_string()));
        }
        let ipv6 = ula::random_prefix(&mut rand::rngs::OsRng);
        self.conn.execute(
            "INSERT INTO networks (name, cidr, created_unix, ipv6) VALUES (?1, ?2, ?3, ?4)",
            params![name, cidr.to_string(), unix_now(), ipv6.to_string()],
        )?;
        Ok(())
    }

    pub fn networks(&self) -> Result<Vec<(Network, usize)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT n.name, n.cidr, (SELECT COUNT(*) FROM members m WHERE m.network = n.name),
             n.ipv6 FROM networks n ORDER BY n.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, cidr, count, ipv6) = row?;
            let cidr = cidr
                .parse()
                .map_err(|_| StoreError::Damaged("network cidr"))?;
            let ipv6 = parse_prefix(ipv6)?;
            out.push((Network { name, cidr, ipv6 }, count as usize));
        }
        Ok(out)
    }

    pub fn create_token(
        &self,
        network: &str,
        hash: &[u8; 32],
        max_uses: u32,
        expires_unix: Option<u64>,
    ) -> Result<(), StoreError> {
        if self.network_row(network)?.is_none() {
            return Err(StoreError::NoSuchNetwork(network.to_string()));
        }
        self.conn.execute(
            "INSERT INTO tokens (network, hash, uses, max_uses, expires_unix, created_unix)
             VALUES (?1, ?2, 0, ?3, ?4, ?5)",
            params![
                network,
                &hash[..],
                max_uses,
                expires_unix.map(|e| e as i64),
                unix_now()
            ],
        )?;
        Ok(())
    }

    /// Removes a member named by node name, public key or virtual address.
    pub fn remove_member(&self, network: &str, who: &str) -> Result<Option<Member>, StoreError> {
        if self.network_row(network)?.is_none() {
            return Err(StoreError::NoSuchNetwork(network.to_string()));
        }
        let found = self.members_of(network)?.into_iter().find(|m| {
            m.name == who
                || m.public_key.to_base64() == who
                || m.virtual_ip.to_string() == who
                || m.ipv6.is_some_and(|a| a.to_string() == who)
        });
        if let Some(m) = &found {
            self.conn.execute(
                "DELETE FROM members WHERE network = ?1 AND public_key = ?2",
                params![network, m.public_key.to_base64()],
            )?;
        }
        Ok(found)
    }

    /// Renames a member named by node name, public key or virtual address; returns it as it
    /// was. The caller checks `new` against the name rule.
    pub fn rename_member(
        &self,
        network: &str,
        who: &str,
        new: &str,
    ) -> Result<Option<Member>, StoreError> {
        if self.network_row(network)?.is_none() {
            return Err(StoreError::NoSuchNetwork(network.to_string()));
        }
        let members = self.members_of(network)?;
        let found = members.iter().find(|m| {
            m.name == who
                || m.public_key.to_base64() == who
                || m.virtual_ip.to_string() == who
                || m.ipv6.is_some_and(|a| a.to_string() == who)
        });
        let Some(m) = found else {
            return Ok(None);
        };
        if members
            .iter()
            .any(|o| o.name == new && o.public_key != m.public_key)
        {
            return Err(StoreError::NameTaken {
                network: network.to_string(),
                name: new.to_string(),
            });
        }
        self.conn.execute(
            "UPDATE members SET name = ?3 WHERE network = ?1 AND public_key = ?2",
            params![network, m.public_key.to_base64(), new],
        )?;
        Ok(Some(m.clone()))
    }

    /// The network's tokens, oldest first, spent and expired ones included.
    pub fn tokens_of(&self, network: &str) -> Result<Vec<TokenInfo>, StoreError> {
        if self.network_row(network)?.is_none() {
            return Err(StoreError::NoSuchNetwork(network.to_string()));
        }
        let mut stmt = self.conn.prepare(
            "SELECT hash, uses, max_uses, expires_unix, created_unix FROM tokens
             WHERE network = ?1 ORDER BY created_unix, rowid",
        )?;
        let rows = stmt.query_map([network], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, uses, max_uses, expires, created) = row?;
            let hash: [u8; 32] = hash
                .try_into()
                .map_err(|_| StoreError::Damaged("token hash"))?;
            out.push(TokenInfo {
                id: token_id(&hash),
                hash,
                uses,
                max_uses,
                expires_unix: expires.map(|e| e.max(0) as u64),
                created_unix: created.max(0) as u64,
            });
        }
        Ok(out)
    }

    /// Deletes the one token of `network` whose id starts with `id`; a join with it is then
    /// refused as a wrong or revoked credential. Returns the token as it was.
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
        self.conn.execute(
            "DELETE FROM tokens WHERE network = ?1 AND hash = ?2",
            params![network, &token.hash[..]],
        )?;
        Ok(token.clone())
    }

    /// Deletes a network with its members and tokens, in one transaction. A running server sees
    /// the change and cuts the members off as removed.
    pub fn delete_network(&mut self, name: &str) -> Result<Deleted, StoreError> {
        if self.network_row(name)?.is_none() {
            return Err(StoreError::NoSuchNetwork(name.to_string()));
        }
        let tx = self.conn.transaction()?;
        // Explicit rather than through ON DELETE CASCADE, which needs foreign keys enabled on
        // this connection and a schema that declared them.
        let members = tx.execute("DELETE FROM members WHERE network = ?1", [name])?;
        let tokens = tx.execute("DELETE FROM tokens WHERE network = ?1", [name])?;
        tx.execute("DELETE FROM networks WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(Deleted { members, tokens })
    }

    /// The server identity recorded on first start, if any.
    pub fn identity(&self) -> Result<Option<PublicKey>, StoreError> {
        self.setting(IDENTITY_SETTING)?
            .map(|k| PublicKey::from_base64(&k).map_err(|_| StoreError::Damaged("server identity")))
            .transpose()
    }

    pub fn record_identity(&self, key: &PublicKey) -> Result<(), StoreError> {
        self.set_setting(IDENTITY_SETTING, &key.to_base64())
    }

    /// Whether anything here was made for a particular server key: members joined with tokens
    /// that carried it, and tokens carry it. Networks alone were not (`network create` works
    /// before the server first starts).
    pub fn depends_on_identity(&self) -> Result<bool, StoreError> {
        let count: i64 = self.conn.query_row(
            "SELECT (SELECT COUNT(*) FROM members) + (SELECT COUNT(*) FROM tokens)",
            [],
            |r| r.get(0),
        )?;
        Ok(count > 0)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// One network's record, `None` if there is no such network.
    pub fn network_info(&self, name: &str) -> Result<Option<Network>, StoreError> {
        self.network_row(name)
    }

    fn network_row(&self, name: &str) -> Result<Option<Network>, StoreError> {
        let row: Option<(String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT cidr, ipv6 FROM networks WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(cidr, ipv6)| {
            Ok(Network {
                name: name.to_string(),
                cidr: cidr
                    .parse()
                    .map_err(|_| StoreError::Damaged("network cidr"))?,
                ipv6: parse_prefix(ipv6)?,
            })
        })
        .transpose()
    }

    pub fn members_of(&self, network: &str) -> Result<Vec<Member>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {MEMBER_COLUMNS} WHERE m.network = ?1 ORDER BY m.joined_unix, m.name"
        ))?;
        let rows = stmt.query_map([network], member_from_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(to_member(row?)?);
        }
        Ok(out)
    }
}

impl Registry for Store {
    fn network(&self, name: &str) -> Result<Option<Network>, RegistryError> {
        self.network_row(name).map_err(registry_err)
    }

    fn members(&self, network: &str) -> Result<Vec<Member>, RegistryError> {
        self.members_of(network).map_err(registry_err)
    }

    fn remove(&mut self, network: &str, key: &PublicKey) -> Result<bool, RegistryError> {
        self.conn
            .execute(
                "DELETE FROM members WHERE network = ?1 AND public_key = ?2",
                params![network, key.to_base64()],
            )
            .map(|n| n > 0)
            .map_err(|e| registry_err(e.into()))
    }

    fn access_rules(
        &self,
        network: &str,
    ) -> Result<crate::core::rendezvous::registry::AccessRules, RegistryError> {
        self.access_rules_of(network).map_err(registry_err)
    }

    /// One row by primary key: the server asks this on every registration, and reading the
    /// whole member list instead made N registrations cost O(N²) rows.
    fn member(&self, network: &str, key: &PublicKey) -> Result<Option<Member>, RegistryError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {MEMBER_COLUMNS} WHERE m.network = ?1 AND m.public_key = ?2"),
                params![network, key.to_base64()],
                member_from_row,
            )
            .optional()
            .map_err(|e| registry_err(e.into()))?;
        row.map(to_member).transpose().map_err(registry_err)
    }

    fn token(&self, network: &str, hash: &[u8; 32]) -> Result<Option<TokenRecord>, RegistryError> {
        self.conn
            .query_row(
                "SELECT uses, max_uses, expires_unix FROM tokens WHERE network = ?1 AND hash = ?2",
                params![network, &hash[..]],
                |r| {
                    Ok(TokenRecord {
                        uses: r.get(0)?,
                        max_uses: r.get(1)?,
                        expires_unix: r.get::<_, Option<i64>>(2)?.map(|e| e as u64),
                    })
                },
            )
            .optional()
            .map_err(|e| registry_err(e.into()))
    }

    /// Both writes are conditional (a use left, key, name and address free), so a join that
    /// lost a race to another writer changes nothing and `redeem` reads again.
    fn admit(&mut self, member: &Member, token_hash: &[u8; 32]) -> Result<Admitted, RegistryError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| registry_err(e.into()))?;
        let counted = tx
            .execute(
                "UPDATE tokens SET uses = uses + 1
                 WHERE network = ?1 AND hash = ?2 AND uses < max_uses",
                params![member.network, &token_hash[..]],
            )
            .map_err(|e| registry_err(e.into()))?;
        let added = tx
            .execute(
                "INSERT OR IGNORE INTO members (network, public_key, name, virtual_ip, joined_unix)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    member.network,
                    member.public_key.to_base64(),
                    member.name,
                    member.virtual_ip.to_string(),
                    unix_now()
                ],
            )
            .map_err(|e| registry_err(e.into()))?;
        if counted == 0 || added == 0 {
            // Dropping the transaction rolls it back.
            return Ok(Admitted::LostRace);
        }
        tx.commit().map_err(|e| registry_err(e.into()))?;
        Ok(Admitted::Yes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rendezvous::admission::{redeem, JoinRequest};
    use crate::core::rendezvous::token::Credential;

    #[test]
    fn survives_reopen_and_sees_other_writers() {
        let dir = std::env::temp_dir().join(format!("p2pvpn-store-{}", std::process::id()));
        // A run that failed before its cleanup may have left this (wine reuses process ids).
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::open(&dir).unwrap();
        store
            .create_network("office", "10.9.0.0/24".parse().unwrap())
            .unwrap();
        assert!(matches!(
            store.create_network("office", "10.9.0.0/24".parse().unwrap()),
            Err(StoreError::NetworkExists(_))
        ));
        let cred = Credential([3; 32]);
        store.create_token("office", &cred.hash(), 2, None).unwrap();
        let req = JoinRequest {
            network: "office",
            credential: &cred,
            name: "alice",
            key: PublicKey([1; 32]),
        };
        let alice = redeem(&mut store, &req, 0).unwrap().unwrap();
        assert_eq!(alice.virtual_ip.to_string(), "10.9.0.1");
        assert_eq!(
            store.member("office", &PublicKey([1; 32])).unwrap(),
            Some(alice.clone())
        );
        assert_eq!(store.member("office", &PublicKey([2; 32])).unwrap(), None);

        let before = store.data_version().unwrap();
        let other = Store::open(&dir).unwrap();
        assert_eq!(other.members_of("office").unwrap(), vec![alice.clone()]);
        other.remove_member("office", "alice").unwrap().unwrap();
        assert_ne!(store.data_version().unwrap(), before);
        drop(store);
        let reopened = Store::open(&dir).unwrap();
        assert!(reopened.members_of("office").unwrap().is_empty());
        assert_eq!(
            reopened
                .token("office", &cred.hash())
                .unwrap()
                .unwrap()
                .uses,
            1
        );
        // Windows cannot delete a database that is still open (a sharing violation).
        drop((other, reopened));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A database from before IPv6: its network gets a prefix on open, its members their
    /// addresses from it, and the prefix stays what it was on the next open.
    #[test]
    fn an_old_database_gets_ipv6_on_open_and_keeps_it() {
        let dir = std::env::temp_dir().join(format!("p2pvpn-store-v6-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        {
            let old = Connection::open(dir.join(DB_FILE)).unwrap();
            old.execute_batch(
                "CREATE TABLE networks (name TEXT PRIMARY KEY, cidr TEXT NOT NULL,
                     created_unix INTEGER NOT NULL);
                 CREATE TABLE members (network TEXT NOT NULL, public_key TEXT NOT NULL,
                     name TEXT NOT NULL, virtual_ip TEXT NOT NULL, joined_unix INTEGER NOT NULL,
                     PRIMARY KEY (network, public_key));
                 INSERT INTO networks VALUES ('office', '10.9.0.0/24', 0);",
            )
            .unwrap();
            old.execute(
                "INSERT INTO members VALUES ('office', ?1, 'alice', '10.9.0.1', 0)",
                [PublicKey([1; 32]).to_base64()],
            )
            .unwrap();
        }
        let store = Store::open(&dir).unwrap();
        let net = store.network("office").unwrap().unwrap();
        let prefix = net.ipv6.expect("a prefix assigned on open");
        assert!(ula::is_node_prefix(&prefix), "{prefix}");
        let alice = store
            .member("office", &PublicKey([1; 32]))
            .unwrap()
            .unwrap();
        let v6 = ula::node_address(prefix, "10.9.0.1".parse().unwrap());
        assert_eq!(alice.ipv6, Some(v6));
        assert_eq!(store.members_of("office").unwrap(), vec![alice]);
        // A new network gets another random prefix; the old one keeps its own.
        store
            .create_network("lab", "10.8.0.0/24".parse().unwrap())
            .unwrap();
        drop(store);
        let again = Store::open(&dir).unwrap();
        assert_eq!(again.network("office").unwrap().unwrap().ipv6, Some(prefix));
        let lab = again.network("lab").unwrap().unwrap().ipv6.unwrap();
        assert_ne!(lab, prefix);
        // And a member can be named by its IPv6 address.
        let removed = again.remove_member("office", &v6.to_string()).unwrap();
        assert_eq!(removed.map(|m| m.name), Some("alice".to_string()));
        // Closed first: Windows refuses to delete a database that is still open.
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokens_are_named_by_id_and_revoked_and_networks_deleted_whole() {
        let dir = std::env::temp_dir().join(format!("p2pvpn-store-ids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::open(&dir).unwrap();
        store
            .create_network("lab", "10.9.0.0/24".parse().unwrap())
            .unwrap();
        // Two hashes whose ids share their first hex digit "a".
        let (h1, h2) = ([0xa1; 32], [0xa2; 32]);
        store.create_token("lab", &h1, 1, None).unwrap();
        store.create_token("lab", &h2, 1, Some(5)).unwrap();
        let ids: Vec<String> = store
            .tokens_of("lab")
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["a1a1a1a1", "a2a2a2a2"]);
        assert!(matches!(
            store.revoke_token("lab", "a"),
            Err(StoreError::AmbiguousToken { count: 2, .. })
        ));
        assert!(matches!(
            store.revoke_token("lab", ""),
            Err(StoreError::NoSuchToken { .. })
        ));
        assert_eq!(store.revoke_token("lab", "A2").unwrap().id, "a2a2a2a2");
        assert!(store.token("lab", &h2).unwrap().is_none());
        assert!(store.token("lab", &h1).unwrap().is_some());

        // A token carries the server key, so the database now depends on it.
        assert!(store.depends_on_identity().unwrap());
        assert_eq!(store.identity().unwrap(), None);
        store.record_identity(&PublicKey([4; 32])).unwrap();
        assert_eq!(store.identity().unwrap(), Some(PublicKey([4; 32])));
        let deleted = store.delete_network("lab").unwrap();
        assert_eq!(
            deleted,
            Deleted {
                members: 0,
                tokens: 1
            }
        );
        assert!(store.networks().unwrap().is_empty());
        assert!(matches!(
            store.delete_network("lab"),
            Err(StoreError::NoSuchNetwork(_))
        ));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
