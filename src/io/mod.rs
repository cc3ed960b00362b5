//! The I/O drivers: event loops that own sockets, the TUN device and the clock, and feed the
//! sans-IO state machines in `core`. They stay thin: no protocol decisions are made here.

// The clock and task spawning belong here and nowhere in `core` (see clippy.toml).
#![allow(clippy::disallowed_methods)]

pub mod control_socket;
pub mod dataplane;
pub mod dial;
pub mod dns;
pub mod extra_reader;
pub mod interface_check;
pub mod ipv6_underlay;
pub mod join;
pub mod learned_servers;
pub mod leave;
pub mod listen;
pub mod main_socket;
pub mod metrics;
pub mod metrics_mesh;
pub mod netcheck;
pub mod node;
pub mod portmap;
pub mod progress;
pub mod routes;
pub mod server;
pub mod server_mesh;
pub mod server_relay;
pub mod server_state;
pub mod server_state_pg;
pub mod server_udp;
pub mod server_watch;
pub mod service;
pub mod settle;
pub mod signals;
pub mod sock_buf;
pub mod split_dns;
pub mod state_lock;
pub mod store_listen;
pub mod stream;
pub mod tls;
pub mod tun;
pub mod tun_batch;
mod tun_ipv6;
pub mod udp_batch;
pub mod underlay_mtu;
pub mod underlay_watch;
pub mod v6only;
pub mod workers;

/// Seconds since the Unix epoch, for token expiry and handshake timestamps.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
