//! p2pvpn: a peer-to-peer mesh VPN.
//!
//! `core` holds every protocol state machine, sans-IO (bytes, `now` and randomness in; transmits,
//! events and timeouts out). `io` drives them with sockets, a TUN device and the clock; `store`
//! persists the server's networks; `cli` and `config` are the user-facing edges.

pub mod cli;
pub mod config;
pub mod core;
pub mod io;
pub mod keyfile;
pub mod os;
pub mod store;
pub mod store_any;
pub mod store_pg;

/// A clock reading for unit tests of the sans-IO core, which must not read the clock itself.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn test_now() -> std::time::Instant {
    std::time::Instant::now()
}
