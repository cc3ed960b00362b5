//! Linux: `SO_RCVBUFFORCE` / `SO_SNDBUFFORCE` (socket(7)) set a buffer past `net.core.rmem_max`
//! / `wmem_max` for a process with CAP_NET_ADMIN; without it they fail with EPERM and the caller
//! uses the plain, capped option.

use socket2::SockRef;
use std::os::fd::AsRawFd;

pub const RAISE_HINT: &str = "run with CAP_NET_ADMIN, or raise the cap with \
    `sysctl -w net.core.rmem_max=8388608 net.core.wmem_max=8388608`";

pub fn force_recv(socket: &SockRef<'_>, bytes: usize) -> bool {
    set(socket, libc::SO_RCVBUFFORCE, bytes)
}

pub fn force_send(socket: &SockRef<'_>, bytes: usize) -> bool {
    set(socket, libc::SO_SNDBUFFORCE, bytes)
}

fn set(socket: &SockRef<'_>, option: libc::c_int, bytes: usize) -> bool {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor is open for the SockRef's lifetime, and the option value is a
    // c_int whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}
