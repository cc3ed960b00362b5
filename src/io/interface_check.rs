//! Before a node registers: is the configured interface name free for a TUN device? With
//! `interface = "eth0"` the node used to register with the server, announce itself to its peers
//! and only then fail to create the device; now it stops first, naming the line to change.

use anyhow::Result;
use std::path::Path;

/// Refuses a name already taken by an interface that is not a TUN device (a network card, a
/// bridge, the loopback). An existing TUN device is left to the TUN code, whose error says
/// whether another `p2pvpn up` holds it.
#[cfg(target_os = "linux")]
pub fn check_free(name: &str, default: &str, config_file: &Path) -> Result<()> {
    // Every interface has a directory here; only TUN/TAP devices have `tun_flags`.
    let dev = Path::new("/sys/class/net").join(name);
    if dev.exists() && !dev.join("tun_flags").exists() {
        anyhow::bail!(
            "interface {name} already exists on this host and is not a TUN device (a network \
             card, bridge or loopback?), so p2pvpn cannot use the name; set `interface` in {} to \
             a name that is not in use, or remove the line to use {default}",
            config_file.display()
        );
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn check_free(_name: &str, _default: &str, _config_file: &Path) -> Result<()> {
    Ok(())
}
