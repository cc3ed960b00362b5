//! Opening the server's state directory at startup: take the directory lock, then make sure the
//! identity key and the database belong together before anything is created or rewritten.
//!
//! The database records the server's public key on first start. A missing `server.key` next to a
//! database that nodes and tokens depend on is refused (a fresh key would make every node fail
//! with an identity mismatch), as is a key other than the recorded one. (`Store::open` refuses a
//! zero-byte `server.db`, which SQLite would silently start over, empty.)

use super::state_lock::StateLock;
use crate::core::keys::SecretKey;
use crate::keyfile;
use crate::store::{Store, DB_FILE};
use crate::store_any::ServerStore;
use anyhow::{bail, Context, Result};
use std::path::Path;

pub const KEY_FILE: &str = "server.key";

/// The state of a running server; `lock` must live as long as the server.
pub struct ServerState {
    pub lock: StateLock,
    pub secret: SecretKey,
    pub store: ServerStore,
}

/// Opens the state directory and the store: `server.db` there, or PostgreSQL at `store_url`.
pub fn open(dir: &Path, store_url: Option<&str>) -> Result<ServerState> {
    keyfile::ensure_private_dir(dir)?;
    let lock = StateLock::acquire(dir)?;
    if let Some(url) = store_url {
        return super::server_state_pg::open(dir, url, lock);
    }
    let key_path = dir.join(KEY_FILE);
    let db_path = dir.join(DB_FILE);
    let db_existed = db_path.exists();
    let open_store = || {
        Store::open(dir)
            .with_context(|| format!("cannot open the server database {}", db_path.display()))
    };
    if db_existed && !key_path.exists() {
        let store = open_store()?;
        let made_for = match store.identity()? {
            Some(key) => Some(format!("was made with this server's identity (key {key})")),
            None if store.depends_on_identity()? => {
                Some("holds members and tokens made for this server's identity".to_string())
            }
            None => None,
        };
        if let Some(made_for) = made_for {
            bail!(
                "{} is missing, but {} {made_for}; a new key would make every node fail with an \
                 identity mismatch. Restore {KEY_FILE} from a backup; or, to start afresh, move \
                 {DB_FILE} away (every node must then join again with a new token)",
                key_path.display(),
                db_path.display()
            );
        }
    }
    let (secret, created) = keyfile::load_or_create(&key_path)?;
    if created {
        tracing::info!(key = %secret.public_key(), "generated the server identity key");
    }
    let store = open_store()?;
    let ours = secret.public_key();
    match store.identity()? {
        Some(recorded) if recorded != ours => bail!(
            "{} (public key {ours}) is not the identity {} was made with ({recorded}), which \
             nodes and tokens expect. Restore the original {KEY_FILE} from a backup; or, to \
             start afresh with this key, move {DB_FILE} away (every node must then join again)",
            key_path.display(),
            db_path.display()
        ),
        Some(_) => {}
        None => store.record_identity(&ours)?,
    }
    if !db_existed && !created {
        tracing::warn!(
            "no {DB_FILE} in {}: starting with no networks; if it was lost, stop the server and \
             restore it from a backup",
            dir.display()
        );
    }
    Ok(ServerState {
        lock,
        secret,
        store: ServerStore::Sqlite(store),
    })
}
