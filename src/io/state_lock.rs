//! One server per state directory: an exclusive lock on `server.lock` there (`flock(2)` on Unix,
//! `LockFileEx` on Windows, see `crate::os`), held for the server's life and released by the
//! kernel when the process ends however it ends (so a crash leaves no stale lock to clean up). The file holds the holder's pid, for the refusal message.
//!
//! Without it a second server on the same directory rewrote the addresses that `network invite`
//! puts into tokens and raced the first one's joins in SQLite.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "server.lock";

/// Held while alive; dropping it (or exiting) releases the directory.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    pub path: PathBuf,
}

impl StateLock {
    /// Takes the lock on `dir`, or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<StateLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = crate::os::open_private_rw(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        let locked = crate::os::try_lock_exclusive(&file)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        if !locked {
            let holder = match holder_pid(&mut file) {
                Some(pid) => format!("pid {pid}"),
                None => "pid unknown".to_string(),
            };
            bail!(
                "state directory {} is in use by p2pvpn server ({holder}); stop it or use \
                 another --state-dir",
                dir.display()
            );
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(StateLock { _file: file, path })
    }
}

/// The pid the holder wrote; none if it has not written it yet (it locks first, then writes).
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = std::env::temp_dir().join(format!("p2pvpn-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = StateLock::acquire(&dir).unwrap();
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts just as another process would.
        let err = StateLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "in use by p2pvpn server (pid {})",
                std::process::id()
            )),
            "{err}"
        );
        assert!(err.contains("another --state-dir"), "{err}");
        drop(first);
        let again = StateLock::acquire(&dir).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
