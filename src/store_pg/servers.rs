//! The servers of a deployment, in the PostgreSQL store (migration 3): each server records the
//! addresses nodes reach it at and refreshes a heartbeat on its 1 s store tick; a server whose
//! heartbeat is older than [`STALE_SECS`] is not live. The live list, oldest start first, is
//! what nodes are told (`ServerMessage::Servers`) and what `network invite` puts in tokens; its
//! first entry is the primary every node registers with (`core::rendezvous::deployment`).
//! Times are the database's (`now()`), so the servers' clocks need not agree.
//! No trigger announces this table: heartbeats would wake every server every second.

use super::PgStore;
use crate::core::rendezvous::deployment::{ServerEntry, ServerList};
use crate::store::StoreError;
use std::net::SocketAddr;

/// Migration 3.
pub(super) const MIGRATION: &str = "
    CREATE TABLE servers (
        id TEXT PRIMARY KEY,
        plain TEXT NOT NULL,
        tls TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        heartbeat TIMESTAMPTZ NOT NULL
    );";

/// Missed heartbeats (1 s each) after which a server is no longer live: a few, so that one slow
/// tick does not drop a server, and well under `deployment::SETTLE`.
pub const STALE_SECS: i64 = 5;

/// A row silent this long belongs to a server that crashed or moved to other addresses and
/// will not come back as it was: the next server to start deletes it, so the table does not
/// grow with every address a deployment ever used. An hour keeps a crashed server's row for
/// whoever looks in the table (only live rows are ever read).
pub const FORGET_AFTER_SECS: i64 = 3600;

/// The id of a server's row: its addresses, which are what make it a different server (the
/// identity key is shared by the whole deployment).
pub fn server_id(me: &ServerEntry) -> String {
    format!("{}|{}", join(&me.plain), join(&me.tls))
}

fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn split(text: &str) -> Vec<SocketAddr> {
    text.split(',').filter_map(|s| s.parse().ok()).collect()
}

impl PgStore {
    /// Records that `me` is alive. `starting`: the first heartbeat of this process, which
    /// restarts its age (a restarted server is the newest, so it does not take the primary
    /// role back from the server the nodes moved to); it also deletes the rows of servers silent
    /// for [`FORGET_AFTER_SECS`].
    pub fn heartbeat(&self, me: &ServerEntry, starting: bool) -> Result<(), StoreError> {
        let id = server_id(me);
        let (plain, tls) = (join(&me.plain), join(&me.tls));
        self.execute(
            "INSERT INTO servers (id, plain, tls, started_at, heartbeat)
             VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp())
             ON CONFLICT (id) DO UPDATE SET plain = EXCLUDED.plain, tls = EXCLUDED.tls,
                 heartbeat = clock_timestamp(),
                 started_at = CASE WHEN $4 THEN clock_timestamp() ELSE servers.started_at END",
            &[&id, &plain, &tls, &starting],
        )?;
        if starting {
            self.execute(
                &format!(
                    "DELETE FROM servers
                     WHERE heartbeat < clock_timestamp() - interval '{FORGET_AFTER_SECS} seconds'"
                ),
                &[],
            )?;
        }
        Ok(())
    }

    /// The live servers, the longest-running first.
    pub fn live_servers(&self) -> Result<ServerList, StoreError> {
        let rows = self.query(
            &format!(
                "SELECT plain, tls FROM servers
                 WHERE heartbeat > clock_timestamp() - interval '{STALE_SECS} seconds'
                 ORDER BY started_at, id"
            ),
            &[],
        )?;
        let mut servers = Vec::with_capacity(rows.len());
        for row in rows {
            let plain: String = row.try_get(0)?;
            let tls: String = row.try_get(1)?;
            servers.push(ServerEntry {
                plain: split(&plain),
                tls: split(&tls),
            });
        }
        Ok(ServerList { servers })
    }

    /// A server stopping cleanly leaves the list at once, so nodes are not sent to it.
    pub fn forget_server(&self, me: &ServerEntry) -> Result<(), StoreError> {
        self.execute("DELETE FROM servers WHERE id = $1", &[&server_id(me)])?;
        Ok(())
    }
}

impl PgStore {
    /// The URL this store connects to, for the server's own LISTEN connection
    /// (`io::store_listen`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// TLS or not, as the URL asked: for the server's own LISTEN connection too.
    pub fn connector(&self) -> &super::tls::Connector {
        &self.connector
    }
}
