//! The server's part in a deployment of several servers (`--store postgres://`): on each store
//! tick it refreshes its heartbeat in the store's `servers` table and reads the live servers,
//! which the core tells its nodes (`ServerCore::set_deployment`). It also keeps the store's
//! health for the metrics. With SQLite a server is on its own: nothing is recorded.

use crate::core::rendezvous::deployment::{ServerEntry, ServerList};
use crate::store_any::ServerStore;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the metrics show about the store and the other servers.
#[derive(Clone, Debug, Default)]
pub struct MeshFigures {
    /// The last store round trip worked.
    pub store_up: bool,
    /// How long the last store tick (heartbeat and list) took.
    pub store_latency: Duration,
    /// The other live servers' first addresses (this one left out), primary first.
    pub peers: Vec<String>,
    /// This server is the deployment's primary (or on its own).
    pub primary: bool,
}

pub struct Mesh {
    /// This server as nodes reach it; `None` with SQLite, or when it listens only on
    /// unspecified addresses that no node can dial.
    me: Option<ServerEntry>,
    started: bool,
    pub figures: MeshFigures,
}

impl Mesh {
    pub fn new(store: &ServerStore, listen: &[SocketAddr], tls: &[SocketAddr]) -> Self {
        let dialable = |a: &[SocketAddr]| -> Vec<SocketAddr> {
            a.iter()
                .copied()
                .filter(|a| !a.ip().is_unspecified())
                .collect()
        };
        let me = match store {
            ServerStore::Postgres(_) => {
                let entry = ServerEntry {
                    plain: dialable(listen),
                    tls: dialable(tls),
                };
                if entry.plain.is_empty() && entry.tls.is_empty() {
                    tracing::warn!(
                        "this server listens only on unspecified addresses (0.0.0.0, [::]), \
                         which nodes cannot dial: it does not name itself to the other servers \
                         of the store, and their nodes will not fail over to it; pass \
                         --listen PUBLIC_IP:PORT"
                    );
                    None
                } else {
                    Some(entry)
                }
            }
            ServerStore::Sqlite(_) => None,
        };
        Mesh {
            me,
            started: false,
            figures: MeshFigures {
                store_up: true,
                primary: true,
                ..Default::default()
            },
        }
    }

    /// One store tick: heartbeat, then the live list (`None` when on its own or the store is
    /// down: nodes keep the list they have). `data_ok` says whether the tick's change check
    /// worked, which is the store's health for SQLite.
    pub fn tick(&mut self, store: &ServerStore, data_ok: bool) -> Option<ServerList> {
        let (ServerStore::Postgres(pg), Some(me)) = (store, &self.me) else {
            self.figures.store_up = data_ok;
            return None;
        };
        let started = Instant::now();
        let result = pg
            .heartbeat(me, !self.started)
            .and_then(|()| pg.live_servers());
        self.figures.store_latency = started.elapsed();
        match result {
            Ok(list) => {
                if !self.started {
                    tracing::info!(
                        servers = list.servers.len(),
                        "recorded in the store's server list"
                    );
                }
                self.started = true;
                self.figures.store_up = data_ok;
                self.figures.primary = list.servers.first().is_none_or(|p| p == me);
                self.figures.peers = list
                    .servers
                    .iter()
                    .filter(|s| *s != me)
                    .filter_map(|s| s.plain.first().or(s.tls.first()))
                    .map(ToString::to_string)
                    .collect();
                Some(list)
            }
            Err(e) => {
                self.figures.store_up = false;
                tracing::warn!(error = %e, "cannot refresh this server's heartbeat in the store");
                None
            }
        }
    }

    /// Leaves the list on a clean stop, so that nodes are not sent here.
    pub fn stop(&self, store: &ServerStore) {
        if let (ServerStore::Postgres(pg), Some(me)) = (store, &self.me) {
            if let Err(e) = pg.forget_server(me) {
                tracing::warn!(error = %e, "cannot remove this server from the store's list");
            }
        }
    }
}
