//! The control channel on Windows: a named pipe whose DACL admits only SYSTEM and the
//! Administrators group (so `status`, `down` and `ping` need an elevated prompt, as `sudo` does
//! on Unix), created with `FILE_FLAG_FIRST_PIPE_INSTANCE` so that a pipe another program
//! created first under the same name (squatting, to read the requests) makes `up` fail instead
//! of being served beside it. Remote clients are refused (`PIPE_REJECT_REMOTE_CLIENTS`).
//!
//! The pipe's name is derived from `Dirs::control_socket` (`STATE\NETWORK\control.sock`):
//! `\\.\pipe\p2pvpn-NETWORK-HASH`, HASH from the whole path, so two state directories never
//! share a pipe.

use super::{already_running, answer, ControlRequest};
use crate::os::{wide, SecurityDescriptor};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;
use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_PIPE_BUSY, ERROR_SEM_TIMEOUT,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::System::Pipes::WaitNamedPipeW;

/// Generic-all for SYSTEM (SY) and the built-in Administrators (BA), nobody else; `P` keeps the
/// default DACL (which lets the creator's account and Everyone read) out.
const PIPE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";

/// How long `request` waits for a free pipe instance while the node answers someone else.
const BUSY_WAIT: Duration = Duration::from_secs(2);

/// The pipe's name for the control path `path`.
pub(super) fn pipe_name(path: &Path) -> String {
    let hash = Sha256::digest(path.as_os_str().as_encoded_bytes());
    let network = path
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!(r"\\.\pipe\p2pvpn-{network}-{hex}")
}

/// One pipe instance with the restrictive DACL; `first` for the first one, which must not
/// exist yet.
fn create(name: &str, first: bool) -> std::io::Result<NamedPipeServer> {
    let sd = SecurityDescriptor::from_sddl(PIPE_SDDL)?;
    let mut attributes = sd.attributes();
    // SAFETY: `attributes` points at `sd`'s descriptor; both live across the call, which copies
    // the descriptor into the new pipe object.
    unsafe {
        ServerOptions::new()
            .first_pipe_instance(first)
            .reject_remote_clients(true)
            .create_with_security_attributes_raw(
                name,
                (&mut attributes as *mut SECURITY_ATTRIBUTES).cast::<std::ffi::c_void>(),
            )
    }
}

/// Creates the pipe and spawns the accept loop; each answering task holds a clone of `alive`.
pub(super) async fn listen(
    path: &Path,
    network: &str,
    requests: mpsc::Sender<ControlRequest>,
    alive: mpsc::Sender<()>,
) -> Result<JoinHandle<()>> {
    let name = pipe_name(path);
    let mut server = match create(&name, true) {
        Ok(s) => s,
        // FILE_FLAG_FIRST_PIPE_INSTANCE fails with access denied when the name exists: our own
        // node, or another program squatting on the name.
        Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
            return Err(already_running(path, network)).with_context(|| {
                format!("the pipe {name} exists already (a running node, or another program)")
            })
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create the control pipe {name}")),
    };
    Ok(tokio::spawn(async move {
        loop {
            if let Err(e) = server.connect().await {
                tracing::debug!(error = %e, "control pipe connect failed");
                return;
            }
            // The next instance exists before this one is handed off, so a client never finds
            // the name missing between two connections.
            let next = match create(&name, false) {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the next control pipe instance; \
                                   the control channel stops");
                    return;
                }
            };
            let connected = std::mem::replace(&mut server, next);
            let requests = requests.clone();
            let alive = alive.clone();
            tokio::spawn(async move {
                let _ = answer(connected, requests).await;
                drop(alive);
            });
        }
    }))
}

/// Nothing to remove: the pipe goes away with its last handle, which the aborted accept loop
/// held.
pub(super) fn remove(_path: &Path) {}

/// Opens the pipe, waiting (bounded) while every instance is busy answering someone else.
pub(super) async fn connect(path: &Path) -> std::io::Result<NamedPipeClient> {
    let name = pipe_name(path);
    let deadline = tokio::time::Instant::now() + BUSY_WAIT;
    loop {
        match ClientOptions::new().open(&name) {
            Err(e)
                if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Whether the pipe exists, asked without connecting to it (`WaitNamedPipeW` with a 1 ms
/// timeout: it fails with "file not found" when no instance exists, and times out when all are
/// busy, which still means a node is there).
pub(super) fn exists(path: &Path) -> std::io::Result<bool> {
    let name = wide(OsStr::new(&pipe_name(path)));
    // SAFETY: `name` is NUL-terminated and lives across the call.
    if unsafe { WaitNamedPipeW(name.as_ptr(), 1) } != 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(code) if code == ERROR_FILE_NOT_FOUND as i32 => Ok(false),
        Some(code) if code == ERROR_SEM_TIMEOUT as i32 => Ok(true),
        _ => Err(err),
    }
}

/// Whether a node answers on `path` now; a refused permission is an error.
pub fn answers_now(path: &Path) -> std::io::Result<bool> {
    exists(path)
}

/// What every command says when the pipe refuses this user.
pub(super) fn permission_denied(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "permission denied: run from an elevated prompt (only Administrators and SYSTEM can talk \
         to the node through {})",
        path.display()
    )
}
