//! The requests to stop that a long-running command (`up`, `server`) obeys, per OS: SIGTERM and
//! SIGINT on Unix (what systemd and Ctrl-C send), Ctrl-C, Ctrl-Break and system shutdown on
//! Windows (and the service's Stop, see `windows.rs`). Callers hold a [`Shutdown`] and `select!` on [`Shutdown::recv`].

mod stop;
pub use stop::{request_stop, stop_requested};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::Shutdown;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::Shutdown;
