//! The server's store, whichever backs it: `server.db` (SQLite, [`crate::store::Store`]) in the
//! state directory by default, or PostgreSQL ([`crate::store_pg::PgStore`]) with
//! `--store postgres://...` so that several servers can share one. The server and the
//! `network` commands go through this one type; each operation has the same meaning on both.

use crate::core::keys::PublicKey;
use crate::core::rendezvous::registry::{
    AccessRules, Admitted, Member, Network, Registry, RegistryError, TokenRecord,
};
use crate::store::{AclStore, Deleted, Store, StoreError, TokenInfo};
use crate::store_pg::PgStore;
use ipnet::Ipv4Net;
use std::path::Path;

pub enum ServerStore {
    Sqlite(Store),
    /// Boxed: the client is several times the size of a SQLite connection.
    Postgres(Box<PgStore>),
}

/// Runs `$e` with `$s` bound to whichever store this is.
macro_rules! either {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            ServerStore::Sqlite($s) => $e,
            ServerStore::Postgres($s) => $e,
        }
    };
}

impl ServerStore {
    /// PostgreSQL at `url` when given, else `server.db` in `dir`.
    pub fn open(dir: &Path, url: Option<&str>) -> Result<Self, StoreError> {
        Ok(match url {
            Some(url) => ServerStore::Postgres(Box::new(PgStore::connect(url)?)),
            None => ServerStore::Sqlite(Store::open(dir)?),
        })
    }

    pub fn data_version(&self) -> Result<i64, StoreError> {
        either!(self, s => s.data_version())
    }
    pub fn create_network(&self, name: &str, cidr: Ipv4Net) -> Result<(), StoreError> {
        either!(self, s => s.create_network(name, cidr))
    }
    pub fn networks(&self) -> Result<Vec<(Network, usize)>, StoreError> {
        either!(self, s => s.networks())
    }
    pub fn network_info(&self, name: &str) -> Result<Option<Network>, StoreError> {
        either!(self, s => s.network_info(name))
    }
    pub fn members_of(&self, network: &str) -> Result<Vec<Member>, StoreError> {
        either!(self, s => s.members_of(network))
    }
    pub fn create_token(
        &self,
        network: &str,
        hash: &[u8; 32],
        max_uses: u32,
        expires_unix: Option<u64>,
    ) -> Result<(), StoreError> {
        either!(self, s => s.create_token(network, hash, max_uses, expires_unix))
    }
    pub fn tokens_of(&self, network: &str) -> Result<Vec<TokenInfo>, StoreError> {
        either!(self, s => s.tokens_of(network))
    }
    pub fn revoke_token(&self, network: &str, id: &str) -> Result<TokenInfo, StoreError> {
        either!(self, s => s.revoke_token(network, id))
    }
    pub fn remove_member(&self, network: &str, who: &str) -> Result<Option<Member>, StoreError> {
        either!(self, s => s.remove_member(network, who))
    }
    pub fn rename_member(
        &self,
        network: &str,
        who: &str,
        new: &str,
    ) -> Result<Option<Member>, StoreError> {
        either!(self, s => s.rename_member(network, who, new))
    }
    pub fn delete_network(&mut self, name: &str) -> Result<Deleted, StoreError> {
        either!(self, s => s.delete_network(name))
    }
    pub fn identity(&self) -> Result<Option<PublicKey>, StoreError> {
        either!(self, s => s.identity())
    }
    pub fn record_identity(&self, key: &PublicKey) -> Result<(), StoreError> {
        either!(self, s => s.record_identity(key))
    }
    pub fn depends_on_identity(&self) -> Result<bool, StoreError> {
        either!(self, s => s.depends_on_identity())
    }
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        either!(self, s => s.set_setting(key, value))
    }
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        either!(self, s => s.setting(key))
    }
}

impl AclStore for ServerStore {
    fn acl_members(&self, network: &str) -> Result<Vec<Member>, StoreError> {
        either!(self, s => s.acl_members(network))
    }
    fn acl_network_exists(&self, network: &str) -> Result<bool, StoreError> {
        either!(self, s => s.acl_network_exists(network))
    }
    fn write_tags(&self, network: &str, key: &str, tags: &[String]) -> Result<(), StoreError> {
        either!(self, s => s.write_tags(network, key, tags))
    }
    fn read_tags(&self, network: &str) -> Result<Vec<(String, String)>, StoreError> {
        either!(self, s => s.read_tags(network))
    }
    fn read_rules(&self, network: &str) -> Result<Vec<String>, StoreError> {
        either!(self, s => s.read_rules(network))
    }
    fn write_rules(&self, network: &str, rules: &[String]) -> Result<(), StoreError> {
        either!(self, s => s.write_rules(network, rules))
    }
}

impl Registry for ServerStore {
    fn network(&self, name: &str) -> Result<Option<Network>, RegistryError> {
        either!(self, s => s.network(name))
    }
    fn members(&self, network: &str) -> Result<Vec<Member>, RegistryError> {
        either!(self, s => s.members(network))
    }
    fn member(&self, network: &str, key: &PublicKey) -> Result<Option<Member>, RegistryError> {
        either!(self, s => s.member(network, key))
    }
    fn token(&self, network: &str, hash: &[u8; 32]) -> Result<Option<TokenRecord>, RegistryError> {
        either!(self, s => s.token(network, hash))
    }
    fn admit(&mut self, member: &Member, hash: &[u8; 32]) -> Result<Admitted, RegistryError> {
        either!(self, s => s.admit(member, hash))
    }
    fn remove(&mut self, network: &str, key: &PublicKey) -> Result<bool, RegistryError> {
        either!(self, s => s.remove(network, key))
    }
    fn access_rules(&self, network: &str) -> Result<AccessRules, RegistryError> {
        either!(self, s => s.access_rules(network))
    }
}
