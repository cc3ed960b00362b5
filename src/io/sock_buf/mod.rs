//! Kernel buffers for the UDP sockets that carry tunnel and relay traffic. The kernel's default
//! receive buffer (208 KiB on Linux) holds about 150 full-size datagrams: a TCP sender that
//! restores a large congestion window at once (as Linux does after a spurious timeout, RFC
//! 5682) or a GSO burst from a fast peer overflows it while the reading thread is busy, and
//! every datagram past it is lost in the kernel, where no counter of ours sees it. The relay's
//! socket on the server takes the bursts of every relayed node. Like wireguard-go and Tailscale,
//! each such socket asks for a few MiB. Linux caps the plain option at `net.core.rmem_max` /
//! `wmem_max` (208 KiB unless raised); a process with CAP_NET_ADMIN (the node, a server run as
//! root) may exceed them with the `*BUFFORCE` options (`linux.rs`). The packaged server's unit
//! does not grant CAP_NET_ADMIN, so its buffers follow the system's caps (README, "The relay").
//! Failing to grow is not fatal: the socket works with what it has, and the log says once how
//! to raise the cap.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
mod other;

#[cfg(target_os = "linux")]
use linux as os;
#[cfg(not(target_os = "linux"))]
use other as os;

use socket2::SockRef;
use std::sync::atomic::{AtomicBool, Ordering};

/// The "smaller than wanted" notice has been logged: a server binds several sockets under one
/// cap, and the notice says the same for each.
static TOLD: AtomicBool = AtomicBool::new(false);

/// What each direction asks for. Linux doubles the figure for its bookkeeping, so a full
/// buffer holds about 2,800 datagrams of 1,500 bytes (10 ms at 3 Gbit/s); what sits unread
/// costs kernel memory only while it is queued, not the process's RSS.
pub const WANT: usize = 4 << 20;

/// The sizes the kernel reports after growing, for the log and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub recv: usize,
    pub send: usize,
}

/// Grows `socket`'s receive and send buffers toward [`WANT`]: the privileged option first,
/// then the plain one (capped by the system). Returns what the kernel then reports.
pub fn grow(socket: SockRef<'_>) -> Sizes {
    if !os::force_recv(&socket, WANT) {
        if let Err(e) = socket.set_recv_buffer_size(WANT) {
            tracing::debug!(error = %e, "cannot set SO_RCVBUF");
        }
    }
    if !os::force_send(&socket, WANT) {
        if let Err(e) = socket.set_send_buffer_size(WANT) {
            tracing::debug!(error = %e, "cannot set SO_SNDBUF");
        }
    }
    let sizes = Sizes {
        recv: socket.recv_buffer_size().unwrap_or(0),
        send: socket.send_buffer_size().unwrap_or(0),
    };
    // Linux reports twice what was granted; other systems report it as is.
    if sizes.recv < WANT / 2 && !TOLD.swap(true, Ordering::Relaxed) {
        tracing::info!(
            receive_buffer = sizes.recv,
            wanted = WANT,
            "UDP receive buffer smaller than wanted: bursts may be dropped by the kernel; {}",
            os::RAISE_HINT
        );
    } else {
        tracing::debug!(
            receive = sizes.recv,
            send = sizes.send,
            "UDP socket buffers"
        );
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without privilege the plain option still raises the buffer above the kernel's default
    /// (up to the system's cap); with it, to what was asked. Either way it grows.
    #[test]
    fn a_socket_grows_beyond_the_default() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = SockRef::from(&s).recv_buffer_size().unwrap();
        let after = grow(SockRef::from(&s));
        assert!(
            after.recv > before || after.recv >= WANT,
            "receive buffer {before} -> {}",
            after.recv
        );
        assert!(after.send > 0);
    }
}
