//! `sd_notify` is systemd's protocol over a Unix datagram socket; Windows has neither. The
//! Windows service reports its state to the service control manager instead (`windows_scm.rs`,
//! through `supervise::mark_ready`), so a `NOTIFY_SOCKET` set on Windows is an error rather than
//! silently ignored.

use super::NOTIFY_SOCKET;
use anyhow::{bail, Result};
use std::ffi::OsStr;

pub fn notify_to(path: &OsStr, _state: &str) -> Result<()> {
    bail!(
        "{NOTIFY_SOCKET}={path:?} is set, but the systemd notification protocol does not exist \
         on Windows (the p2pvpn service reports to the service control manager instead); unset \
         {NOTIFY_SOCKET}"
    )
}
