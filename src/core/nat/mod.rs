//! NAT behaviour: the RFC 4787 profile a node measures for itself (`profile`), the rules that
//! classify raw results (`classify`), and the discovery that measures it with STUN and the
//! RFC 5780 tests (`netcheck`, reporting a `report::NetcheckReport`).

pub mod classify;
#[cfg(test)]
mod fake_nat;
pub mod netcheck;
pub mod profile;
pub mod report;

pub use netcheck::{Netcheck, NetcheckConfig};
pub use profile::{Filtering, Mapping, NatProfile, PortAllocation};
pub use report::NetcheckReport;
