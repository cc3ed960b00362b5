//! Our own WireGuard engine, whose keys the data workers share (issue 11; design in ARCHITECTURE.md
//! "The data thread and both cores"):
//! the handshake on snow so the transport keys come out (`handshake`), the transport data step
//! with `&self` methods two workers can share (`transport`), its replay window (`replay`), the
//! node-wide load check that answers handshakes with cookies under load (`cookie`), and the key
//! table the core publishes to the workers (`table`).
//!
//! `core::crypto` runs sessions on it (`PeerTunnel`, the default on Linux) or on boringtun's
//! `Tunn`; the tests here prove these pieces interoperate with boringtun in both roles.

pub mod cookie;
pub mod handshake;
pub mod replay;
pub mod session;
pub mod table;
pub mod transport;

#[cfg(test)]
mod cookie_tests;
#[cfg(test)]
mod interop_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod table_tests;
