//! The TUN device, through tun-rs (wintun on Windows, utun on macOS). Creating it is where a
//! missing privilege shows up, so the error says how to get it.

use anyhow::{anyhow, Result};
use ipnet::Ipv6Net;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use tun_rs::{AsyncDevice, DeviceBuilder};

/// Creates `name` with `addr/prefix`, and `ipv6` (address/prefix length) when the network has
/// one; the kernel then routes both prefixes to it. Returns the IPv6 address the device got.
pub fn create(
    name: &str,
    addr: Ipv4Addr,
    prefix: u8,
    mtu: u16,
    ipv6: Option<Ipv6Net>,
) -> Result<(AsyncDevice, Option<Ipv6Net>)> {
    let device = build(name, addr, prefix, mtu)?;
    let Some(net) = ipv6 else {
        disable_ipv6(name);
        return Ok((device, None));
    };
    // IPv4 works without it: say so, and keep the IPv4 overlay up.
    if let Err(e) = super::tun_ipv6::add(&device, name, net) {
        tracing::warn!(
            "{e:#}; the overlay carries IPv4 only on this node (peers still reach it over IPv4)"
        );
        disable_ipv6(name);
        return Ok((device, None));
    }
    Ok((device, Some(net)))
}

/// A network without IPv6 (an older server): without this the kernel sends IPv6 router
/// solicitations into the tunnel, which the node can only drop.
#[cfg(target_os = "linux")]
fn disable_ipv6(name: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    if let Err(e) = std::fs::write(&path, "1") {
        tracing::debug!(error = %e, "cannot disable IPv6 on {name}");
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_ipv6(_name: &str) {}

/// wintun.dll by absolute path, from the folder of p2pvpn.exe (where the .msi installs it, and
/// only Administrators can write): tun-rs would otherwise pass the bare name "wintun.dll" to
/// LoadLibrary, whose search order includes the current directory and PATH, where anyone may
/// have planted a DLL of that name.
#[cfg(windows)]
fn with_driver(builder: DeviceBuilder) -> Result<DeviceBuilder> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("cannot find the path of p2pvpn.exe")?;
    let dll = exe.with_file_name("wintun.dll");
    if !dll.is_file() {
        anyhow::bail!(
            "cannot create the wintun adapter: {} is missing. {}",
            dll.display(),
            crate::os::TUN_MISSING
        );
    }
    let dll = dll
        .into_os_string()
        .into_string()
        .map_err(|p| anyhow!("the path of wintun.dll, {p:?}, is not valid Unicode"))?;
    Ok(builder.wintun_file(dll))
}

/// macOS and the BSDs: the system's own utun/tun driver, nothing to load.
#[cfg(not(any(windows, target_os = "linux")))]
fn with_driver(builder: DeviceBuilder) -> Result<DeviceBuilder> {
    Ok(builder)
}

/// On Linux the device is opened with virtio-net headers and TSO/USO offloads (see
/// `tun_batch`); a kernel that refuses them gets a plain device, which `tun_batch` handles too.
#[cfg(target_os = "linux")]
fn open(name: &str, addr: Ipv4Addr, prefix: u8, mtu: u16) -> std::io::Result<AsyncDevice> {
    let builder = || {
        DeviceBuilder::new()
            .name(name)
            .ipv4(addr, prefix, None)
            .mtu(mtu)
    };
    builder().offload(true).build_async().or_else(|e| {
        tracing::debug!(error = %e, "TUN offloads refused; opening {name} without them");
        builder().build_async()
    })
}

#[cfg(not(target_os = "linux"))]
fn open(name: &str, addr: Ipv4Addr, prefix: u8, mtu: u16) -> std::io::Result<AsyncDevice> {
    // A missing wintun.dll reads as "cannot create TUN device NAME: <why and what to do>".
    with_driver(DeviceBuilder::new())
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?
        .name(name)
        .ipv4(addr, prefix, None)
        .mtu(mtu)
        .build_async()
}

fn build(name: &str, addr: Ipv4Addr, prefix: u8, mtu: u16) -> Result<AsyncDevice> {
    open(name, addr, prefix, mtu).map_err(|e| match e.kind() {
        ErrorKind::PermissionDenied => {
            anyhow!(
                "cannot create TUN device {name}: {}",
                crate::os::TUN_PERMISSION
            )
        }
        ErrorKind::NotFound => {
            anyhow!(
                "cannot create TUN device {name}: {}",
                crate::os::TUN_MISSING
            )
        }
        _ if crate::os::tun_busy(&e) => anyhow!(
            "cannot create TUN device {name}: it is busy. Is another `p2pvpn up` running for \
                 this network? Stop it with `p2pvpn down`"
        ),
        _ => anyhow!("cannot create TUN device {name}: {e}"),
    })
}
