//! What `up` checks on this host before it does any network work (registering with the server,
//! the NAT check): every local precondition that would otherwise fail later, or worse, succeed
//! and break traffic. Config problems come first so that they are reported with or without root.

use crate::config::{self, Dirs, NodeSettings};
use crate::io;
use anyhow::{bail, Result};
use std::net::IpAddr;
use std::path::Path;

pub fn check(settings: &NodeSettings, dirs: &Dirs) -> Result<()> {
    let network = &settings.network;
    let file = dirs.config_file(network);
    interface_unique(settings, dirs, &file)?;
    io::interface_check::check_free(
        &settings.interface,
        &config::default_interface(network),
        &file,
    )?;
    if let Some(range) = settings.cidr {
        if let Some(server) = settings
            .servers
            .iter()
            .chain(&settings.tls_servers)
            .find(|s| matches!(s.ip(), IpAddr::V4(ip) if range.contains(&ip)))
        {
            bail!(
                "the server's address {server} is inside the network's own range {range}: the \
                 route to the network would capture it and the node would lose the server. Ask \
                 the server's admin for a network with another range"
            );
        }
        io::routes::refuse_collisions(range, &settings.interface, settings.allow_route_overlap)?;
    }
    privileges()?;
    tun_device()
}

/// Two joined networks with one interface name: the second `up` used to fail late, with a
/// message about the first network.
fn interface_unique(settings: &NodeSettings, dirs: &Dirs, file: &Path) -> Result<()> {
    let others = config::other_networks(dirs, &settings.network);
    let Some((other_file, other)) = others
        .iter()
        .find(|(_, s)| s.interface == settings.interface)
    else {
        return Ok(());
    };
    let taken: Vec<String> = others.iter().map(|(_, s)| s.interface.clone()).collect();
    bail!(
        "network {} uses interface {}, and so does network {} ({}); two networks cannot share \
         an interface. Set `interface = \"{}\"` in {}",
        settings.network,
        settings.interface,
        other.network,
        other_file.display(),
        config::unique_interface(&settings.network, &taken),
        file.display()
    )
}

/// Root or CAP_NET_ADMIN on Unix, an elevated token on Windows (`crate::os`).
fn privileges() -> Result<()> {
    crate::os::check_tun_privilege()
}

#[cfg(target_os = "linux")]
fn tun_device() -> Result<()> {
    tun_device_at(Path::new("/dev/net/tun"))
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn tun_device_at(path: &Path) -> Result<()> {
    if !path.exists() {
        bail!(
            "{} is missing, so no TUN device can be created. Load the module (`sudo modprobe \
             tun`), or in a container pass the device in (--device /dev/net/tun)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn tun_device() -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tun_device_says_how_to_get_it() {
        let err = tun_device_at(Path::new("/nonexistent/net/tun")).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("/nonexistent/net/tun is missing"), "{err}");
        assert!(err.contains("modprobe tun"), "{err}");
    }
}
