//! What the server must remember: networks, members and join tokens. The trait keeps the
//! rendezvous logic independent of where this lives: SQLite in production (`crate::store`), memory
//! in the simulator and in unit tests.

use crate::core::keys::PublicKey;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub cidr: Ipv4Net,
    /// The nodes' IPv6 /64 (`core::ula`); none only for a network stored before IPv6 existed
    /// and not yet given one.
    pub ipv6: Option<Ipv6Net>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub network: String,
    pub name: String,
    pub public_key: PublicKey,
    pub virtual_ip: Ipv4Addr,
    /// Derived from the network's prefix and `virtual_ip` (`core::ula::node_address`), so it is
    /// as stable as the IPv4 address.
    pub ipv6: Option<Ipv6Addr>,
}

impl Member {
    /// A member record with its IPv6 address derived from the network's prefix.
    pub fn new(
        network: &str,
        name: &str,
        public_key: PublicKey,
        virtual_ip: Ipv4Addr,
        prefix: Option<Ipv6Net>,
    ) -> Self {
        Member {
            network: network.to_string(),
            name: name.to_string(),
            public_key,
            virtual_ip,
            ipv6: prefix.map(|p| crate::core::ula::node_address(p, virtual_ip)),
        }
    }
}

/// A join token as stored: only the credential's hash, how often it was used, its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub uses: u32,
    pub max_uses: u32,
    pub expires_unix: Option<u64>,
}

/// The backing store failed; the request is answered with a server error and logged.
#[derive(Debug, thiserror::Error)]
#[error("registry store failed: {0}")]
pub struct RegistryError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

pub trait Registry {
    fn network(&self, name: &str) -> Result<Option<Network>, RegistryError>;
    fn members(&self, network: &str) -> Result<Vec<Member>, RegistryError>;
    fn token(&self, network: &str, hash: &[u8; 32]) -> Result<Option<TokenRecord>, RegistryError>;
    /// Adds `member` and counts one use of the token, atomically.
    fn admit(&mut self, member: &Member, token_hash: &[u8; 32]) -> Result<(), RegistryError>;
    /// Removes the member with `key` (a node leaving); false when there was none.
    fn remove(&mut self, network: &str, key: &PublicKey) -> Result<bool, RegistryError>;

    fn member(&self, network: &str, key: &PublicKey) -> Result<Option<Member>, RegistryError> {
        Ok(self
            .members(network)?
            .into_iter()
            .find(|m| m.public_key == *key))
    }

    /// The network's access rules and its members' tags (`core::acl`); none: allow all.
    fn access_rules(&self, _network: &str) -> Result<AccessRules, RegistryError> {
        Ok(AccessRules::default())
    }
}

/// A network's access rules in order (numbered from 1) and the tags of its members by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessRules {
    pub rules: Vec<crate::core::acl::rule::Rule>,
    pub tags: HashMap<PublicKey, Vec<String>>,
}

/// An in-memory registry for the simulator and tests.
#[derive(Default, Debug)]
pub struct MemoryRegistry {
    networks: HashMap<String, Network>,
    members: Vec<Member>,
    tokens: HashMap<(String, [u8; 32]), TokenRecord>,
    access: HashMap<String, AccessRules>,
}

impl MemoryRegistry {
    /// A network whose IPv6 prefix comes from its name: this registry lives in memory (the
    /// simulator, tests), where a reproducible prefix serves better than a random one.
    pub fn create_network(&mut self, name: &str, cidr: Ipv4Net) {
        let digest = <sha2::Sha256 as sha2::Digest>::digest(name.as_bytes());
        let mut global_id = [0u8; 5];
        global_id.copy_from_slice(&digest[..5]);
        let ipv6 = Some(crate::core::ula::prefix_from_global_id(global_id));
        self.create_network_with(name, cidr, ipv6);
    }

    /// A network with exactly this IPv6 prefix, or none (a network from before IPv6).
    pub fn create_network_with(&mut self, name: &str, cidr: Ipv4Net, ipv6: Option<Ipv6Net>) {
        self.networks.insert(
            name.to_string(),
            Network {
                name: name.to_string(),
                cidr,
                ipv6,
            },
        );
    }

    pub fn add_token(&mut self, network: &str, hash: [u8; 32], record: TokenRecord) {
        self.tokens.insert((network.to_string(), hash), record);
    }

    /// Replaces a network's access rules and tags (the simulator's `network acl` and `tag`).
    pub fn set_access_rules(&mut self, network: &str, access: AccessRules) {
        self.access.insert(network.to_string(), access);
    }

    pub fn remove_member(&mut self, network: &str, name: &str) -> bool {
        let before = self.members.len();
        self.members
            .retain(|m| !(m.network == network && m.name == name));
        before != self.members.len()
    }
}

impl Registry for MemoryRegistry {
    fn network(&self, name: &str) -> Result<Option<Network>, RegistryError> {
        Ok(self.networks.get(name).cloned())
    }

    fn members(&self, network: &str) -> Result<Vec<Member>, RegistryError> {
        Ok(self
            .members
            .iter()
            .filter(|m| m.network == network)
            .cloned()
            .collect())
    }

    fn token(&self, network: &str, hash: &[u8; 32]) -> Result<Option<TokenRecord>, RegistryError> {
        Ok(self.tokens.get(&(network.to_string(), *hash)).cloned())
    }

    fn admit(&mut self, member: &Member, token_hash: &[u8; 32]) -> Result<(), RegistryError> {
        if let Some(t) = self.tokens.get_mut(&(member.network.clone(), *token_hash)) {
            t.uses += 1;
        }
        self.members.push(member.clone());
        Ok(())
    }

    fn remove(&mut self, network: &str, key: &PublicKey) -> Result<bool, RegistryError> {
        let before = self.members.len();
        self.members
            .retain(|m| !(m.network == network && m.public_key == *key));
        Ok(before != self.members.len())
    }

    fn access_rules(&self, network: &str) -> Result<AccessRules, RegistryError> {
        Ok(self.access.get(network).cloned().unwrap_or_default())
    }
}
