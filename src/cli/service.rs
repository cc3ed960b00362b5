//! `p2pvpn service run`: the entry point the Windows service control manager starts (the .msi
//! registers `"C:\Program Files\p2pvpn\p2pvpn.exe" service run`). It brings up every joined
//! network with the same function as `p2pvpn up` (`io::service::supervise`); the log goes to
//! `service.log` in the state directory because a service has no console. Elsewhere it says
//! what to use instead (the systemd units).

use super::logging::{self, LogArgs};
use super::{resolve, NodeDirs};
use crate::io::service;
use anyhow::Result;

/// The service's log, beside the node's state (private: SYSTEM and Administrators only).
pub const LOG_FILE: &str = "service.log";

pub fn run(log: &LogArgs, dirs: &NodeDirs) -> Result<()> {
    let dirs = dirs.dirs();
    let networks = resolve::joined_networks(&dirs);
    let log_path = dirs.state.join(LOG_FILE);
    let body = super::up_all::body(networks, &dirs, false, None);
    service::run_service(&log_path, || logging::init(log), body)
}
