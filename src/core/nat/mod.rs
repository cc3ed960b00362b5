//! NAT behaviour: the RFC 4787 profile a node measures for itself (`profile`) and the discovery
//! that measures it with STUN and the RFC 5780 tests (`netcheck`).

pub mod classify;
pub mod netcheck;
pub mod profile;

pub use profile::{Filtering, Mapping, NatProfile, PortAllocation};
