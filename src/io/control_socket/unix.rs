//! The control channel on Unix: a socket file of mode 0600 in the node's private state
//! directory, and the peer's uid checked on every connection (`SO_PEERCRED`), so only root or
//! the user running the node can use it.

use super::{already_running, answer, ControlRequest};
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Binds the socket and spawns the accept loop; each answering task holds a clone of `alive`.
pub(super) async fn listen(
    path: &Path,
    network: &str,
    requests: mpsc::Sender<ControlRequest>,
    alive: mpsc::Sender<()>,
) -> Result<JoinHandle<()>> {
    if UnixStream::connect(path).await.is_ok() {
        return Err(already_running(path, network));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot create control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let our_uid = unsafe { libc::geteuid() };
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let allowed = stream
                .peer_cred()
                .map(|c| c.uid() == 0 || c.uid() == our_uid)
                .unwrap_or(false);
            if !allowed {
                continue;
            }
            let requests = requests.clone();
            let alive = alive.clone();
            tokio::spawn(async move {
                let _ = answer(stream, requests).await;
                drop(alive);
            });
        }
    }))
}

/// Removes the socket file.
pub(super) fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

pub(super) async fn connect(path: &Path) -> std::io::Result<UnixStream> {
    UnixStream::connect(path).await
}

/// Whether the socket file is there (a node that died may leave one; `request` then says that
/// nothing answers).
pub(super) fn exists(path: &Path) -> std::io::Result<bool> {
    path.try_exists()
}

/// Whether a node accepts a connection on `path` now; a refused permission is an error.
pub fn answers_now(path: &Path) -> std::io::Result<bool> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(e),
        Err(_) => Ok(false),
    }
}

/// What every command says when the node's files are root's: the fix first, then the detail.
pub(super) fn permission_denied(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "permission denied: run with sudo (only root can talk to the node; {} is root's)",
        path.display()
    )
}
