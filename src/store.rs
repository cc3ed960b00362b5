//! The server's persistent state in SQLite (`server.db` in its state directory): networks,
//! members with their addresses, join-token hashes and a few settings. The `network` commands
//! write to the same file while the server runs, so the database uses WAL with a busy timeout,
//! and the server notices their changes through `PRAGMA data_version`.

use crate::core::keys::PublicKey;
use crate::core::rendezvous::registry::{Member, Network, Registry, RegistryError, TokenRecord};
use ipnet::Ipv4Net;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::time::Duration;

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
}

pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    cidr TEXT NOT NULL,
    created_unix INTEGER NOT NULL
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

fn member_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn to_member(raw: (String, String, String, String)) -> Result<Member, StoreError> {
    let (network, key, name, ip) = raw;
    Ok(Member {
        network,
        name,
        public_key: PublicKey::from_base64(&key).map_err(|_| StoreError::Damaged("member key"))?,
        virtual_ip: ip
            .parse()
            .map_err(|_| StoreError::Damaged("member address"))?,
    })
}

fn registry_err(e: StoreError) -> RegistryError {
    RegistryError(Box::new(e))
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(dir.join("server.db"))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
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
        self.conn.execute(
            "INSERT INTO networks (name, cidr, created_unix) VALUES (?1, ?2, ?3)",
            params![name, cidr.to_string(), unix_now()],
        )?;
        Ok(())
    }

    pub fn networks(&self) -> Result<Vec<(Network, usize)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT n.name, n.cidr, (SELECT COUNT(*) FROM members m WHERE m.network = n.name)
             FROM networks n ORDER BY n.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, cidr, count) = row?;
            let cidr = cidr
                .parse()
                .map_err(|_| StoreError::Damaged("network cidr"))?;
            out.push((Network { name, cidr }, count as usize));
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
            m.name == who || m.public_key.to_base64() == who || m.virtual_ip.to_string() == who
        });
        if let Some(m) = &found {
            self.conn.execute(
                "DELETE FROM members WHERE network = ?1 AND public_key = ?2",
                params![network, m.public_key.to_base64()],
            )?;
        }
        Ok(found)
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

    fn network_row(&self, name: &str) -> Result<Option<Network>, StoreError> {
        let row: Option<String> = self
            .conn
            .query_row("SELECT cidr FROM networks WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        row.map(|cidr| {
            Ok(Network {
                name: name.to_string(),
                cidr: cidr
                    .parse()
                    .map_err(|_| StoreError::Damaged("network cidr"))?,
            })
        })
        .transpose()
    }

    pub fn members_of(&self, network: &str) -> Result<Vec<Member>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT network, public_key, name, virtual_ip FROM members WHERE network = ?1
             ORDER BY joined_unix, name",
        )?;
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

    /// One row by primary key: the server asks this on every registration, and reading the
    /// whole member list instead made N registrations cost O(N²) rows.
    fn member(&self, network: &str, key: &PublicKey) -> Result<Option<Member>, RegistryError> {
        let row = self
            .conn
            .query_row(
                "SELECT network, public_key, name, virtual_ip FROM members
                 WHERE network = ?1 AND public_key = ?2",
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

    fn admit(&mut self, member: &Member, token_hash: &[u8; 32]) -> Result<(), RegistryError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| registry_err(e.into()))?;
        tx.execute(
            "UPDATE tokens SET uses = uses + 1 WHERE network = ?1 AND hash = ?2",
            params![member.network, &token_hash[..]],
        )
        .map_err(|e| registry_err(e.into()))?;
        tx.execute(
            "INSERT INTO members (network, public_key, name, virtual_ip, joined_unix)
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
        tx.commit().map_err(|e| registry_err(e.into()))
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
