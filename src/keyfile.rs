//! Private keys on disk: base64 in a file of mode 0600 inside a directory of mode 0700, the way
//! WireGuard tools keep them. Reading one back names the file and the fix when it fails.

use crate::core::keys::SecretKey;
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// Reads the key at `path`, or generates and writes a new one. Returns whether it was created.
pub fn load_or_create(path: &Path) -> Result<(SecretKey, bool)> {
    if path.exists() {
        return Ok((load(path)?, false));
    }
    if let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    let key = SecretKey::generate(&mut rand::rngs::OsRng);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    writeln!(file, "{}", key.to_base64())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    Ok((key, true))
}

pub fn load(path: &Path) -> Result<SecretKey> {
    let text = fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read key file {} (run as root, or set P2PVPN_STATE_DIR to a directory you own)",
            path.display()
        )
    })?;
    let meta = fs::metadata(path)?;
    if meta.mode() & 0o077 != 0 {
        bail!(
            "key file {} is readable by other users (mode {:o}); fix it with `chmod 600 {}`",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        );
    }
    SecretKey::from_base64(&text).with_context(|| format!("key file {} is damaged", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_files_and_reads_them_back() {
        let dir = std::env::temp_dir().join(format!("p2pvpn-keyfile-{}", std::process::id()));
        let path = dir.join("sub/private.key");
        let (key, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.public_key(), key.public_key());
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
