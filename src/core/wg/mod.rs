//! Our own WireGuard pieces, for the two-core data path (issue 11; design in notes/multicore.md):
//! the handshake on snow so the transport keys come out (`handshake`), the transport data step
//! with `&self` methods two workers can share (`transport`), its replay window (`replay`), the
//! node-wide load check that answers handshakes with cookies under load (`cookie`), and the key
//! table the core publishes to the workers (`table`).
//!
//! Not wired into the node yet: `core::crypto` (boringtun's `Tunn`) still carries every session.
//! The tests here prove these pieces interoperate with boringtun, which the node runs today.

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
