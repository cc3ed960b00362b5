//! `p2pvpn leave NETWORK`: the undo of `join`. Refuses while the network is up (its interface
//! and routes belong to the running node: `down` first), deregisters from the server when it
//! answers (so the name and address are free and peers drop this node), then deletes the
//! node's config and its key for that network.

use super::printable::printable;
use super::resolve;
use crate::config::{self, Dirs};
use crate::{io, keyfile};
use anyhow::{bail, Context, Result};

/// Whether a node answers on the network's control socket.
fn running(dirs: &Dirs, network: &str) -> Result<bool> {
    let path = dirs.control_socket(network);
    match io::control_socket::answers_now(&path) {
        Ok(up) => Ok(up),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "permission denied on {}: cannot tell whether {network} is running; run with sudo \
             (on Windows: from an elevated prompt)",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot tell whether {network} is running")),
    }
}

/// What became of the server side.
async fn deregister(dirs: &Dirs, network: &str) -> String {
    let settings = match config::load(dirs, network) {
        Ok(s) => s,
        Err(e) => {
            return format!(
                "not deregistered ({e:#}); remove this node on the server with `p2pvpn network \
                 remove-member {network} NAME`"
            )
        }
    };
    let secret = match keyfile::load(&dirs.key_file(network)) {
        Ok(k) => k,
        Err(e) => {
            return format!(
                "not deregistered (no key: {e:#}); remove {} on the server with `p2pvpn network \
                 remove-member {network} {}`",
                printable(&settings.name),
                printable(&settings.name)
            )
        }
    };
    match io::leave::leave(&settings, &secret).await {
        Ok(true) => format!("deregistered {} from the server", printable(&settings.name)),
        Ok(false) => format!(
            "the server no longer listed {} (removed there already)",
            printable(&settings.name)
        ),
        Err(e) => format!(
            "not deregistered: {e:#}; the server still lists {name}: remove it there with \
             `p2pvpn network remove-member {network} {name}`",
            name = printable(&settings.name)
        ),
    }
}

pub async fn run(network: &str, dirs: &Dirs) -> Result<()> {
    resolve::check_known(network, dirs)?;
    if running(dirs, network)? {
        bail!("network {network} is up; bring it down first with `sudo p2pvpn down {network}`, then leave");
    }
    let server = deregister(dirs, network).await;
    let mut deleted = Vec::new();
    let file = dirs.config_file(network);
    match std::fs::remove_file(&file) {
        Ok(()) => deleted.push(file.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot delete {}", file.display())),
    }
    // The network's state directory holds its key (and the control socket while it runs).
    let state = dirs.network_state(network);
    match std::fs::remove_dir_all(&state) {
        Ok(()) => deleted.push(format!("{} (the key)", state.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot delete {}", state.display())),
    }
    println!("left network {network}: {server}");
    if !deleted.is_empty() {
        println!("deleted {}", deleted.join(" and "));
    }
    Ok(())
}
