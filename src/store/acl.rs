//! Access rules and member tags in the server's database (`core::acl`). Tags belong to a member
//! by key, so a rename keeps them and removing the member removes them; rules are kept in their
//! text form, in order, and read back through the same parser `network acl add` uses.

use super::{Store, StoreError};
use crate::core::acl::rule::{valid_name, PolicyFile, Rule, RuleError, MAX_LIST, MAX_RULES};
use crate::core::keys::PublicKey;
use crate::core::rendezvous::registry::AccessRules;
use rusqlite::params;
use std::collections::HashMap;

/// New tables only: `CREATE TABLE IF NOT EXISTS` is the whole migration for older databases.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS member_tags (
    network TEXT NOT NULL,
    public_key TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (network, public_key, tag),
    FOREIGN KEY (network, public_key) REFERENCES members(network, public_key) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS acl_rules (
    network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (network, position)
);
";

impl Store {
    fn existing_network(&self, network: &str) -> Result<(), StoreError> {
        match self.network_row(network)? {
            Some(_) => Ok(()),
            None => Err(StoreError::NoSuchNetwork(network.to_string())),
        }
    }

    /// Replaces the tags of the member `who` (name, key or address); returns the member's name.
    pub fn set_tags(
        &self,
        network: &str,
        who: &str,
        tags: &[String],
    ) -> Result<String, StoreError> {
        self.existing_network(network)?;
        if let Some(bad) = tags.iter().find(|t| !valid_name(t)) {
            return Err(RuleError::Endpoint(format!("tag:{bad}")).into());
        }
        if tags.len() > MAX_LIST {
            return Err(RuleError::TooMany("tags").into());
        }
        let member = self
            .members_of(network)?
            .into_iter()
            .find(|m| {
                m.name == who || m.public_key.to_base64() == who || m.virtual_ip.to_string() == who
            })
            .ok_or_else(|| StoreError::NoSuchMember {
                network: network.to_string(),
                who: who.to_string(),
            })?;
        let key = member.public_key.to_base64();
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "DELETE FROM member_tags WHERE network = ?1 AND public_key = ?2",
            params![network, key],
        )?;
        for tag in tags {
            tx.execute(
                "INSERT OR IGNORE INTO member_tags (network, public_key, tag) VALUES (?1, ?2, ?3)",
                params![network, key, tag],
            )?;
        }
        tx.commit()?;
        Ok(member.name)
    }

    /// Each member's tags, by key.
    pub fn tags_of(&self, network: &str) -> Result<HashMap<PublicKey, Vec<String>>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT public_key, tag FROM member_tags WHERE network = ?1 ORDER BY public_key, tag",
        )?;
        let rows = stmt.query_map([network], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let mut out: HashMap<PublicKey, Vec<String>> = HashMap::new();
        for row in rows {
            let (key, tag): (String, String) = row?;
            let key = PublicKey::from_base64(&key).map_err(|_| StoreError::Damaged("tag key"))?;
            out.entry(key).or_default().push(tag);
        }
        Ok(out)
    }

    /// The network's rules in order (`network acl NAME list` numbers them from 1).
    pub fn rules_of(&self, network: &str) -> Result<Vec<Rule>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT rule FROM acl_rules WHERE network = ?1 ORDER BY position")?;
        let rows = stmt.query_map([network], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(
                row?.parse()
                    .map_err(|_| StoreError::Damaged("access rule"))?,
            );
        }
        Ok(out)
    }

    /// Appends a rule; returns its number.
    pub fn add_rule(&self, network: &str, rule: &Rule) -> Result<usize, StoreError> {
        let mut rules = self.rules_of(network)?;
        rules.push(rule.clone());
        self.replace_rules(network, &rules)?;
        Ok(rules.len())
    }

    /// Removes rule number `id` (from 1); returns it. Later rules move up by one.
    pub fn remove_rule(&self, network: &str, id: usize) -> Result<Rule, StoreError> {
        let mut rules = self.rules_of(network)?;
        if id == 0 || id > rules.len() {
            return Err(StoreError::NoSuchRule {
                network: network.to_string(),
                id,
            });
        }
        let removed = rules.remove(id - 1);
        self.replace_rules(network, &rules)?;
        Ok(removed)
    }

    /// Replaces all of the network's rules at once (a policy file), in one transaction.
    pub fn replace_rules(&self, network: &str, rules: &[Rule]) -> Result<(), StoreError> {
        self.existing_network(network)?;
        PolicyFile {
            allow: rules.to_vec(),
        }
        .validate()?;
        if rules.len() > MAX_RULES {
            return Err(RuleError::TooManyRules.into());
        }
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("DELETE FROM acl_rules WHERE network = ?1", [network])?;
        for (i, rule) in rules.iter().enumerate() {
            tx.execute(
                "INSERT INTO acl_rules (network, position, rule) VALUES (?1, ?2, ?3)",
                params![network, i as i64, rule.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn access_rules_of(&self, network: &str) -> Result<AccessRules, StoreError> {
        Ok(AccessRules {
            rules: self.rules_of(network)?,
            tags: self.tags_of(network)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::SecretKey;
    use crate::core::rendezvous::registry::{Member, Registry};
    use rand::SeedableRng;

    fn store_with_members() -> (std::path::PathBuf, Store, Vec<Member>) {
        let dir = std::env::temp_dir().join(format!("p2pvpn-acl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::open(&dir).unwrap();
        store
            .create_network("office", "10.77.0.0/24".parse().unwrap())
            .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut members = Vec::new();
        for (i, name) in ["alice", "bob"].iter().enumerate() {
            let key = SecretKey::generate(&mut rng).public_key();
            let m = Member::new("office", name, key, [10, 77, 0, i as u8 + 1].into(), None);
            store.admit(&m, &[0; 32]).unwrap();
            members.push(m);
        }
        (dir, store, members)
    }

    #[test]
    fn tags_and_rules_are_kept_and_read_back() {
        let (dir, store, members) = store_with_members();
        assert_eq!(
            store.access_rules_of("office").unwrap(),
            AccessRules::default()
        );
        store
            .set_tags("office", "alice", &["admin".into(), "ops".into()])
            .unwrap();
        store
            .set_tags("office", "10.77.0.2", &["server".into()])
            .unwrap();
        let r1: Rule = "tcp 22 from tag:admin to tag:server".parse().unwrap();
        let r2: Rule = "icmp from * to bob".parse().unwrap();
        assert_eq!(store.add_rule("office", &r1).unwrap(), 1);
        assert_eq!(store.add_rule("office", &r2).unwrap(), 2);
        let access = store.access_rules("office").unwrap();
        assert_eq!(access.rules, vec![r1.clone(), r2.clone()]);
        assert_eq!(access.tags[&members[0].public_key], vec!["admin", "ops"]);
        assert_eq!(store.remove_rule("office", 1).unwrap(), r1);
        assert_eq!(store.rules_of("office").unwrap(), vec![r2]);
        // Removing a member removes its tags; a missing member or rule is said so.
        store.remove_member("office", "alice").unwrap();
        assert!(!store
            .tags_of("office")
            .unwrap()
            .contains_key(&members[0].public_key));
        let err = store
            .set_tags("office", "carol", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no member \"carol\""), "{err}");
        let err = store.remove_rule("office", 9).unwrap_err().to_string();
        assert!(err.contains("no access rule number 9"), "{err}");
        let err = store
            .set_tags("office", "bob", &["a b".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad endpoint"), "{err}");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
