//! Private keys on disk: base64 in a file only its owner (and the administrators) can read, the
//! way WireGuard tools keep them: mode 0600 in a 0700 directory on Unix, a private ACL on
//! Windows (`crate::os`). Reading one back names the file and the fix when it fails.

use crate::core::keys::SecretKey;
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::Write;
use std::path::Path;

/// Creates `dir` (and parents), private to its owner, if it does not exist.
pub use crate::os::ensure_private_dir;

/// Reads the key at `path`, or generates and writes a new one. Returns whether it was created.
pub fn load_or_create(path: &Path) -> Result<(SecretKey, bool)> {
    if path.exists() {
        return Ok((load(path)?, false));
    }
    if let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    let key = SecretKey::generate(&mut rand::rngs::OsRng);
    let mut file = crate::os::create_private_file(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    writeln!(file, "{}", key.to_base64())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    Ok((key, true))
}

/// What a key file holds, said when it holds something else.
const KEY_FORMAT: &str = "one line of base64 encoding 32 bytes, as p2pvpn writes it";

pub fn load(path: &Path) -> Result<SecretKey> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        // Only a refused open means "not allowed": EACCES and EPERM both map to PermissionDenied.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "cannot read key file {}: permission denied (run as root, or set P2PVPN_STATE_DIR to \
             a directory you own)",
            path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read key file {}", path.display()))
        }
    };
    crate::os::check_private_file(path, "key file")?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| SecretKey::from_base64(text).ok())
        .with_context(|| {
            format!(
                "{} is not a valid p2pvpn key (expected {KEY_FORMAT}): restore it from a backup, \
                 or delete it to generate a new one",
                path.display()
            )
        })
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        // Not UTF-8, and not base64: both are a damaged key, not a permission problem.
        for junk in [&b"\xff\xfe\x00garbage"[..], b"not a key\n"] {
            fs::write(&path, junk).unwrap();
            let err = format!("{:#}", load(&path).unwrap_err());
            assert!(err.contains("is not a valid p2pvpn key"), "{err}");
            assert!(err.contains("delete it to generate a new one"), "{err}");
            assert!(!err.contains("root"), "{err}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
