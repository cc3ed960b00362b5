//! Takes the data thread's descriptors (the TUN device, both halves of the main socket) out of
//! the node task's tokio reactor once the data thread waits on them itself.
//!
//! Why: tokio registers a socket for readable and writable edges (EPOLLET) as long as it
//! lives, so while the data thread carried the traffic, every datagram in, every datagram sent
//! (the kernel raises a writable edge when it frees a sent buffer) and every packet the local
//! stack queued on the TUN device also woke the node task's thread, only to mark readiness
//! nobody waited on: about six wakes per ping echo across two nodes, the CPU they cost, and a
//! bulk transfer sharing its two CPUs with that thread. Measured on this repo's lab VM with
//! the descriptors withdrawn (`scripts/bench.sh --only p2pvpn,boringtun`, README
//! "Performance"): 4 context switches per echo instead of 10, CPU per echo at boringtun-cli's,
//! about 60% more TCP throughput.
//!
//! How: tokio gives no handle on its epoll instance, so a probe eventfd is registered with the
//! current runtime and `/proc/self/fdinfo` names the one epoll instance that watches it
//! (`tfd:` lines, proc(5)); the descriptors are deleted from that instance
//! (`EPOLL_CTL_DEL`). tokio's own deregistration when it drops them later finds nothing and
//! ignores that. From then on the node task must not wait for readiness on them: its sends go
//! out with the non-blocking `*_now` calls (`MainSocket::detached`), and a TUN write never
//! waits on Linux (`TunIo::write_one`). Anything unexpected (no procfs, two instances watching
//! the probe) leaves the registration as it was: slower, never broken.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Deletes `fds` from the epoll instance of the tokio runtime this is called in; returns how
/// many were registered there. Must run inside that runtime.
pub fn from_reactor(fds: &[RawFd]) -> io::Result<usize> {
    let probe = super::data_thread::eventfd()?;
    let probe_fd = probe.as_raw_fd();
    // SAFETY: `probe` is an `OwnedFd`: its descriptor is valid, stays open while the `AsyncFd`
    // holds it and keeps referring to the same eventfd.
    let registered =
        unsafe { tokio::io::unix::AsyncFd::register(probe) }.map_err(|e| e.into_parts().1)?;
    let epoll = find_epoll(probe_fd);
    drop(registered);
    let epoll = epoll?;
    let mut withdrawn = 0;
    for &fd in fds {
        // SAFETY: EPOLL_CTL_DEL on descriptors this process owns; the event pointer may be null
        // for a deletion (epoll_ctl(2), since Linux 2.6.9).
        if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) } == 0 {
            withdrawn += 1;
        }
    }
    Ok(withdrawn)
}

/// A descriptor of the one epoll instance of this process that watches descriptor `target`
/// (mio holds its instance under two descriptors, a duplicate for its registry: same inode).
fn find_epoll(target: RawFd) -> io::Result<RawFd> {
    let mut found: Option<(RawFd, String)> = None;
    for entry in std::fs::read_dir("/proc/self/fdinfo")?.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        else {
            continue;
        };
        // A descriptor closed meanwhile, or not an epoll instance: no `tfd:` lines.
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if !watches(&text, target) {
            continue;
        }
        let inode = field(&text, "ino:").unwrap_or_default().to_string();
        match &found {
            Some((_, seen)) if *seen != inode => {
                return Err(io::Error::other("two epoll instances watch the probe"));
            }
            Some(_) => {}
            None => found = Some((fd, inode)),
        }
    }
    found.map(|(fd, _)| fd).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no epoll instance watches the probe",
        )
    })
}

/// The value of fdinfo's line `NAME value` (the descriptor's own fields, not a `tfd:` line's).
fn field<'a>(fdinfo: &'a str, name: &str) -> Option<&'a str> {
    fdinfo.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(name)).then(|| words.next()).flatten()
    })
}

/// Whether an epoll instance's fdinfo text has a `tfd: TARGET ...` line (one per watched
/// descriptor).
fn watches(fdinfo: &str, target: RawFd) -> bool {
    fdinfo.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next() == Some("tfd:") && words.next().and_then(|n| n.parse().ok()) == Some(target)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_watched_descriptors_of_an_epoll_fdinfo() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\n\
                    tfd:       12 events:       19 data:     5573cd6e4a80  pos:0 ino:2c5f sdev:9\n\
                    tfd:        7 events: 8000001d data:                1  pos:0 ino:1 sdev:e\n";
        assert!(watches(text, 12));
        assert!(watches(text, 7));
        assert!(!watches(text, 1));
        assert!(!watches(text, 2));
        assert!(!watches("pos:\t0\nflags:\t02\n", 12));
        assert_eq!(field(text, "ino:"), Some("1057"));
    }

    /// A socket tokio registered is watched by the runtime's epoll instance before, and by
    /// none after.
    #[tokio::test]
    async fn a_registered_socket_leaves_the_runtimes_epoll() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let fd = socket.as_raw_fd();
        let before = find_epoll(fd).expect("tokio watches the socket");
        assert_eq!(from_reactor(&[fd]).unwrap(), 1);
        assert!(
            find_epoll(fd).is_err(),
            "epoll {before} still watches the socket"
        );
        // A second time: nothing left to withdraw, and no error.
        assert_eq!(from_reactor(&[fd]).unwrap(), 0);
        // The socket still sends and receives outside tokio's readiness.
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = socket2::SockAddr::from(peer.local_addr().unwrap());
        socket2::SockRef::from(&socket).send_to(b"x", &to).unwrap();
        let mut buf = [0u8; 4];
        peer.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        assert_eq!(peer.recv(&mut buf).unwrap(), 1);
    }
}
