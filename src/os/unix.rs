//! Unix (Linux first): directories under /etc and /var/lib, private files by mode (0600 in a
//! 0700 directory), root or CAP_NET_ADMIN for the TUN device, `flock(2)` for the server's lock.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_DIR: &str = "/etc/p2pvpn";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/p2pvpn";
pub const DEFAULT_SERVER_STATE_DIR: &str = "/var/lib/p2pvpn-server";

pub fn default_config_dir() -> PathBuf {
    PathBuf::from(DEFAULT_CONFIG_DIR)
}

pub fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

pub fn default_server_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_SERVER_STATE_DIR)
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// Creates a new file (failing if it exists) that only its owner can read: mode 0600.
pub fn create_private_file(path: &Path) -> std::io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Opens (creating if needed) a file for reading and writing with mode 0600.
pub fn open_private_rw(path: &Path) -> std::io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Refuses a private file (`what`: "key file", "TLS key file") that other users may read.
pub fn check_private_file(path: &Path, what: &str) -> Result<()> {
    let meta =
        fs::metadata(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        bail!(
            "{what} {} is readable by other users (mode {:o}); fix it with `chmod 600 {}`",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// Takes an exclusive lock on `file` without waiting (`flock(2)`): `Ok(false)` when another
/// open file holds it. The kernel releases it when the process ends, however it ends.
pub fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock(2) on a descriptor the caller owns; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(err)
}

/// Whether this process runs as root.
pub fn is_admin() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a process with effective uid `euid` and `/proc/self/status` text `status` may create
/// a TUN device: root, or CAP_NET_ADMIN (bit 12 of CapEff, capabilities(7)).
pub fn may_create_tun(euid: u32, status: &str) -> bool {
    euid == 0 || has_cap_net_admin(status)
}

/// CAP_NET_ADMIN in the effective set of `/proc/self/status` text `status`.
pub fn has_cap_net_admin(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|bits| bits & (1 << 12) != 0)
}

/// Refuses to go on when this process cannot create a TUN device and routes.
pub fn check_tun_privilege() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !may_create_tun(euid, &status) {
        bail!(
            "permission denied: `up` creates a TUN device and routes, which needs root or \
             CAP_NET_ADMIN. Run it with sudo, or grant the capability once: `sudo setcap \
             cap_net_admin+ep $(command -v p2pvpn)`"
        );
    }
    Ok(())
}

/// `doctor`'s privilege line: what is there, or (what is missing, the fix).
pub fn privilege_report() -> Result<&'static str, (&'static str, &'static str)> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    if is_admin() || has_cap_net_admin(&status) {
        Ok("privileges: root or CAP_NET_ADMIN (needed by `up` for the TUN device and routes)")
    } else {
        Err((
            "privileges: neither root nor CAP_NET_ADMIN; `up` cannot create its TUN device",
            "run `sudo p2pvpn up ...`, or `sudo setcap cap_net_admin+ep $(command -v p2pvpn)`",
        ))
    }
}

/// `doctor`'s TUN driver line.
pub fn tun_driver_report() -> Result<&'static str, (&'static str, &'static str)> {
    if Path::new("/dev/net/tun").exists() {
        Ok("/dev/net/tun exists")
    } else {
        Err((
            "/dev/net/tun is missing",
            "load the tun module (`sudo modprobe tun`); in a container, pass the device in",
        ))
    }
}

/// What creating the TUN device needs when the OS says "not found".
pub const TUN_MISSING: &str = "/dev/net/tun is missing. Load the tun module (modprobe tun), or \
                               in a container pass --device /dev/net/tun";

/// What creating the TUN device needs when the OS says "permission denied".
pub const TUN_PERMISSION: &str = "permission denied. Run as root (sudo p2pvpn up ...) or grant \
                                  the binary CAP_NET_ADMIN (setcap cap_net_admin+ep)";

/// SO_REUSEADDR on the server's listeners: on Unix it only lets a restart bind while old
/// connections sit in TIME_WAIT; a port another program listens on still fails.
pub const LISTEN_REUSEADDR: bool = true;

/// Why binding a listener was refused with "permission denied".
pub const BIND_PERMISSION: &str = "ports below 1024 need root or CAP_NET_BIND_SERVICE";

/// Whether `e` says the TUN device is held by another process.
pub fn tun_busy(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBUSY)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (allowed without privileges) and returns the
/// soft limit now in force, or `None` when it cannot be read.
pub fn raise_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct. It fails, harmlessly, when the hard limit is
        // above the kernel's nr_open or a syscall filter forbids it; the soft limit then stays.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::debug!(
                soft = lim.rlim_cur,
                hard = lim.rlim_max,
                "cannot raise the file descriptor limit"
            );
        }
    }
    Some(lim.rlim_cur)
}

/// Sets an integer socket option (setsockopt(2) with a `c_int` value): the one unsafe call the
/// path-MTU and batching code share (IP_MTU_DISCOVER, IPV6_MTU_DISCOVER).
pub fn set_int_sockopt(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: a live socket descriptor, and a c_int option value with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_or_cap_net_admin_may_create_a_tun_device() {
        let with = "Name:\tp2pvpn\nCapEff:\t0000000000001000\n";
        let without = "Name:\tp2pvpn\nCapEff:\t0000000000000000\n";
        assert!(may_create_tun(0, without));
        assert!(may_create_tun(1000, with));
        assert!(!may_create_tun(1000, without));
        assert!(!may_create_tun(1000, ""));
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let soft = raise_nofile().unwrap();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we pass.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, soft);
    }
}
