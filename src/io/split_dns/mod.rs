//! Split DNS: tell the host's resolver to send names under the network's suffix, and only
//! those, to the node's responder on the TUN link, and take that back on `down`. Never rewrites
//! /etc/resolv.conf: where the host's resolver cannot be told per link, one log line says what
//! to add by hand. One file per OS, chosen here, so the caller carries no `#[cfg]`.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::{register, Registration};

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
pub use other::{register, Registration};
