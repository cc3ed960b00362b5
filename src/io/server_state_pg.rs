//! Opening a server whose store is PostgreSQL (`--store`): the identity key stays in the state
//! directory, and the store records the public key of the first server that started on it.
//! Every server sharing the store must have that same key, because the tokens and nodes carry
//! one server key: a server with another key is refused before it writes anything.

use super::server_state::{ServerState, KEY_FILE};
use super::state_lock::StateLock;
use crate::keyfile;
use crate::store_any::ServerStore;
use crate::store_pg::PgStore;
use anyhow::{bail, Context, Result};
use std::path::Path;

pub fn open(dir: &Path, url: &str, lock: StateLock) -> Result<ServerState> {
    let store = PgStore::connect(url).context(
        "cannot open the PostgreSQL store given with --store (P2PVPN_STORE); check that the \
         database is running and reachable and that the URL's user, password and database are \
         right",
    )?;
    let key_path = dir.join(KEY_FILE);
    let recorded = store.identity()?;
    if recorded.is_none() && store.depends_on_identity()? {
        bail!(
            "the PostgreSQL store holds members and tokens but no server identity; it was not \
             set up by `p2pvpn server`. Point --store at the right database"
        );
    }
    if recorded.is_some() && !key_path.exists() {
        bail!(
            "{} is missing, and the PostgreSQL store was made with the identity {}; copy \
             {KEY_FILE} from a server already using this store into {} (every server of one \
             store shares its key)",
            key_path.display(),
            recorded.map(|k| k.to_base64()).unwrap_or_default(),
            dir.display()
        );
    }
    let (secret, created) = keyfile::load_or_create(&key_path)?;
    if created {
        tracing::info!(key = %secret.public_key(), "generated the server identity key");
    }
    let ours = secret.public_key();
    let recorded = match recorded {
        Some(key) => Some(key),
        None => {
            // First wins; read back in case another server recorded its key meanwhile.
            store.record_identity(&ours)?;
            store.identity()?
        }
    };
    match recorded {
        Some(recorded) if recorded != ours => bail!(
            "{} (public key {ours}) is not the identity the PostgreSQL store was made with \
             ({recorded}), which its nodes and tokens expect. Every server sharing one store \
             needs the same key: copy {KEY_FILE} from a server already using this store",
            key_path.display()
        ),
        Some(_) => {}
        None => {
            bail!("the PostgreSQL store did not keep the server identity; check its settings table")
        }
    }
    Ok(ServerState {
        lock,
        secret,
        store: ServerStore::Postgres(Box::new(store)),
    })
}
