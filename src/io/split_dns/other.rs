//! Split DNS where it is not automated yet (Windows, macOS, the BSDs): nothing is registered;
//! the log says the one thing to configure by hand. Windows would take an NRPT rule, macOS a
//! file in /etc/resolver; neither is written for the user yet.

use std::net::SocketAddr;

/// Nothing to revert: nothing was registered.
pub struct Registration;

impl Registration {
    pub fn new(_network: String, _interface: String) -> Self {
        Registration
    }

    pub async fn revert(self) {}
}

pub async fn register(
    network: String,
    _interface: String,
    addr: SocketAddr,
    suffix: String,
) -> Option<Registration> {
    let ip = addr.ip();
    let how = if cfg!(windows) {
        format!(
            "this node does not register it with Windows yet; to resolve them, run once in an \
             elevated PowerShell: Add-DnsClientNrptRule -Namespace \".{suffix}\" -NameServers \
             \"{ip}\""
        )
    } else {
        format!(
            "this node does not register it with the system yet; to resolve them, create \
             /etc/resolver/{suffix} containing: nameserver {ip}"
        )
    };
    tracing::info!("p2pvpn {network}: DNS: names under {suffix} are answered on {addr}; {how}");
    None
}
