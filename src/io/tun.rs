//! The TUN device, through tun-rs (wintun on Windows, utun on macOS). Creating it is where a
//! missing privilege shows up, so the error says how to get it.

use anyhow::{anyhow, Result};
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use tun_rs::{AsyncDevice, DeviceBuilder};

/// Creates `name` with `addr/prefix`; the kernel then routes the whole prefix to it.
pub fn create(name: &str, addr: Ipv4Addr, prefix: u8, mtu: u16) -> Result<AsyncDevice> {
    let device = build(name, addr, prefix, mtu)?;
    disable_ipv6(name);
    Ok(device)
}

/// The overlay is IPv4 only: without this the kernel sends IPv6 router solicitations into the
/// tunnel, which the node can only drop.
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

#[cfg(not(windows))]
fn with_driver(builder: DeviceBuilder) -> Result<DeviceBuilder> {
    Ok(builder)
}

fn build(name: &str, addr: Ipv4Addr, prefix: u8, mtu: u16) -> Result<AsyncDevice> {
    with_driver(DeviceBuilder::new())?
        .name(name)
        .ipv4(addr, prefix, None)
        .mtu(mtu)
        .build_async()
        .map_err(|e| match e.kind() {
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
