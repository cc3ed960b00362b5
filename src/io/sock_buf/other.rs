//! Windows and macOS: no privileged variant; the plain `SO_RCVBUF` / `SO_SNDBUF` (capped on
//! macOS by `kern.ipc.maxsockbuf`) is all there is.

use socket2::SockRef;

pub const RAISE_HINT: &str = "on macOS raise kern.ipc.maxsockbuf";

pub fn force_recv(_socket: &SockRef<'_>, _bytes: usize) -> bool {
    false
}

pub fn force_send(_socket: &SockRef<'_>, _bytes: usize) -> bool {
    false
}
