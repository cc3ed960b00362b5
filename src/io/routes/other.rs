//! Operating systems other than Linux (Windows, macOS): reading the routing table is not
//! implemented yet (on Windows it would be `GetIpForwardTable2`), so both questions are errors
//! that say so, and `up` refuses to skip the collision check silently (see
//! `refuse_collisions`).

use super::Route;
use anyhow::{bail, Result};
use std::net::Ipv4Addr;

/// Why `up` cannot check the range against the host's routes here.
pub const COLLISION_CHECK_MISSING: Option<&str> = Some(if cfg!(windows) {
    "the route collision check is not implemented on Windows"
} else {
    "the route collision check is not implemented on this OS"
});

pub fn table() -> Result<Vec<Route>> {
    bail!("reading the routing table is implemented on Linux only")
}

pub fn kernel_route(_addr: Ipv4Addr) -> Result<Option<Route>> {
    bail!("asking the kernel for a route is implemented on Linux only")
}
