//! `sd_notify` on Unix: one datagram to the Unix socket named by `NOTIFY_SOCKET`; and what
//! `p2pvpn service run` (the Windows service) says here.

use super::supervise::ServiceBody;
use super::NOTIFY_SOCKET;
use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

/// `p2pvpn service run` is the Windows service's entry point (`windows_scm.rs`); under systemd
/// `p2pvpn up` is (one unit per network, or `p2pvpn.service` for all), so here it only says so.
pub fn run_service(
    _log: &Path,
    _init_log: impl FnOnce() -> Result<()>,
    _body: ServiceBody,
) -> Result<()> {
    bail!(
        "`p2pvpn service run` is the Windows service's entry point. Here each network runs as \
         its own systemd unit: `systemctl enable --now p2pvpn@NETWORK`, or all of them in one: \
         `systemctl enable --now p2pvpn` (in the foreground: `p2pvpn up [NETWORK]`)"
    )
}

/// Sends to the socket at `path`: a filesystem path, or an abstract socket name when it starts
/// with '@' (systemd uses those inside some containers and for user managers).
pub fn notify_to(path: &OsStr, state: &str) -> Result<()> {
    let bytes = path.as_bytes();
    let addr = match bytes.first() {
        Some(b'@') => abstract_addr(&bytes[1..])?,
        Some(b'/') => SocketAddr::from_pathname(path)
            .with_context(|| format!("bad {NOTIFY_SOCKET} path {path:?}"))?,
        _ => bail!("{NOTIFY_SOCKET}={path:?} is neither an absolute path nor an abstract name"),
    };
    let sock = UnixDatagram::unbound().context("creating a Unix datagram socket")?;
    let sent = sock
        .send_to_addr(state.as_bytes(), &addr)
        .with_context(|| format!("sending to {NOTIFY_SOCKET} {path:?}"))?;
    if sent != state.len() {
        bail!(
            "short write to {NOTIFY_SOCKET} {path:?}: {sent} of {}",
            state.len()
        );
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name).context("bad abstract socket name in NOTIFY_SOCKET")
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> Result<SocketAddr> {
    bail!("abstract Unix sockets exist only on Linux")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "p2pvpn-notify-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = temp_dir("path");
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1\nSTATUS=up").unwrap();
        assert_eq!(recv(&listener), "READY=1\nSTATUS=up");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("p2pvpn-notify-test-{}", rand::random::<u64>());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(&OsString::from(format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(recv(&listener), "STOPPING=1");
    }

    #[test]
    fn rejects_relative_names_and_missing_sockets() {
        assert!(notify_to(OsStr::new("relative.sock"), "READY=1").is_err());
        let dir = temp_dir("missing");
        let missing = dir.join("nobody-listens.sock");
        assert!(notify_to(missing.as_os_str(), "READY=1").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
