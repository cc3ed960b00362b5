//! Access rules and member tags in the PostgreSQL store: the same tables as SQLite's
//! (`store::acl`), created by migration 2, with triggers so that a rule or tag changed through
//! one server reaches the nodes of every server (`PgStore::data_version`). The checks live once,
//! in [`AclStore`]'s provided methods.

use super::PgStore;
use crate::core::rendezvous::registry::Member;
use crate::store::{AclStore, StoreError};

/// Migration 2: tags and rules (issue 14's access rules), announced like the other tables.
pub(super) const MIGRATION: &str = "
    CREATE TABLE member_tags (
        network TEXT NOT NULL,
        public_key TEXT NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (network, public_key, tag),
        FOREIGN KEY (network, public_key) REFERENCES members(network, public_key)
            ON DELETE CASCADE
    );
    CREATE TABLE acl_rules (
        network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
        position BIGINT NOT NULL,
        rule TEXT NOT NULL,
        PRIMARY KEY (network, position)
    );
    CREATE TRIGGER member_tags_changed AFTER INSERT OR UPDATE OR DELETE ON member_tags
        FOR EACH STATEMENT EXECUTE FUNCTION p2pvpn_changed();
    CREATE TRIGGER acl_rules_changed AFTER INSERT OR UPDATE OR DELETE ON acl_rules
        FOR EACH STATEMENT EXECUTE FUNCTION p2pvpn_changed();";

impl AclStore for PgStore {
    fn acl_members(&self, network: &str) -> Result<Vec<Member>, StoreError> {
        self.members_of(network)
    }
    fn acl_network_exists(&self, network: &str) -> Result<bool, StoreError> {
        Ok(self.network_info(network)?.is_some())
    }
    fn write_tags(&self, network: &str, key: &str, tags: &[String]) -> Result<(), StoreError> {
        Ok(self.with(|c| -> Result<(), postgres::Error> {
            let mut tx = c.transaction()?;
            tx.execute(
                "DELETE FROM member_tags WHERE network = $1 AND public_key = $2",
                &[&network, &key],
            )?;
            for tag in tags {
                tx.execute(
                    "INSERT INTO member_tags (network, public_key, tag) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&network, &key, tag],
                )?;
            }
            tx.commit()
        })?)
    }
    fn read_tags(&self, network: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.query(
            "SELECT public_key, tag FROM member_tags WHERE network = $1 ORDER BY public_key, tag",
            &[&network],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
    }
    fn read_rules(&self, network: &str) -> Result<Vec<String>, StoreError> {
        self.query(
            "SELECT rule FROM acl_rules WHERE network = $1 ORDER BY position",
            &[&network],
        )?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }
    fn write_rules(&self, network: &str, rules: &[String]) -> Result<(), StoreError> {
        Ok(self.with(|c| -> Result<(), postgres::Error> {
            let mut tx = c.transaction()?;
            tx.execute("DELETE FROM acl_rules WHERE network = $1", &[&network])?;
            for (i, rule) in rules.iter().enumerate() {
                tx.execute(
                    "INSERT INTO acl_rules (network, position, rule) VALUES ($1, $2, $3)",
                    &[&network, &(i as i64), rule],
                )?;
            }
            tx.commit()
        })?)
    }
}
