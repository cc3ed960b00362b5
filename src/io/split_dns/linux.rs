//! Split DNS on Linux through systemd-resolved: `resolvectl dns LINK ADDR` and
//! `resolvectl domain LINK ~SUFFIX` (a routing-only domain: names under it go to this link's
//! server, nothing else does, and it is not added to the search list), undone with
//! `resolvectl revert LINK`. resolved also forgets a link's settings when the link goes, so a
//! node that dies leaves nothing behind once its TUN device is gone.
//!
//! Without resolved nothing is changed: one info line says what to add by hand. resolved is
//! only used when it serves this network namespace: a node in a namespace of its own (the lab,
//! a container sharing the host's /run) would otherwise configure a host link that happens to
//! have the same index.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

/// resolved's varlink socket, present while it runs (systemd >= 246).
const RESOLVED_SOCKET: &str = "/run/systemd/resolve/io.systemd.Resolve";
/// resolvectl answers in milliseconds; a hung D-Bus must not hold up `up` or `down`.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// What was registered, to be reverted on `down`.
pub struct Registration {
    network: String,
    interface: String,
}

impl Registration {
    pub async fn revert(self) {
        match resolvectl(&["revert", &self.interface]).await {
            Ok(()) => tracing::info!(
                "p2pvpn {}: DNS: removed the registration on {} from systemd-resolved",
                self.network,
                self.interface
            ),
            // The link is going anyway, and resolved drops its settings with it.
            Err(e) => tracing::debug!(
                "p2pvpn {}: resolvectl revert {}: {e}",
                self.network,
                self.interface
            ),
        }
    }
}

pub async fn register(
    network: &str,
    interface: &str,
    addr: SocketAddr,
    suffix: &str,
) -> Option<Registration> {
    let ip = addr.ip().to_string();
    if !resolved_serves_this_namespace() {
        tracing::info!(
            "p2pvpn {network}: DNS: names under {suffix} are answered on {addr}; systemd-resolved \
             does not manage this host's DNS, so nothing was registered. To resolve them, add \
             this line to /etc/resolv.conf above the other nameservers (the responder refuses \
             every other name, and the resolver then asks the next one): nameserver {ip}"
        );
        return None;
    }
    let routing_domain = format!("~{suffix}");
    let steps: [&[&str]; 2] = [
        &["dns", interface, &ip],
        &["domain", interface, &routing_domain],
    ];
    for step in steps {
        if let Err(e) = resolvectl(step).await {
            tracing::warn!(
                "p2pvpn {network}: DNS: cannot register {suffix} with systemd-resolved \
                 (resolvectl {}): {e}; names of peers resolve only when asked of {addr} directly",
                step.join(" ")
            );
            // Whatever part went through goes back.
            let _ = resolvectl(&["revert", interface]).await;
            return None;
        }
    }
    // Only the suffix goes to this link. Explicit because a link with a DNS server and no
    // domains may otherwise take default queries; older resolvectl lacks the verb, and with a
    // routing domain set the default is already "no".
    if let Err(e) = resolvectl(&["default-route", interface, "false"]).await {
        tracing::debug!("p2pvpn {network}: resolvectl default-route: {e}");
    }
    tracing::info!(
        "p2pvpn {network}: DNS: names under {suffix} resolve through {addr} (registered with \
         systemd-resolved on {interface})"
    );
    Some(Registration {
        network: network.to_string(),
        interface: interface.to_string(),
    })
}

/// resolved runs, and in the network namespace of PID 1 (where it runs), which is ours.
fn resolved_serves_this_namespace() -> bool {
    if !Path::new(RESOLVED_SOCKET).exists() {
        return false;
    }
    match (
        std::fs::read_link("/proc/self/ns/net"),
        std::fs::read_link("/proc/1/ns/net"),
    ) {
        (Ok(ours), Ok(init)) => ours == init,
        // Cannot tell: do not risk configuring another namespace's link.
        _ => false,
    }
}

async fn resolvectl(args: &[&str]) -> Result<(), String> {
    let run = Command::new("resolvectl")
        .args(args)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
        Err(_) => Err(format!("no answer within {}s", COMMAND_TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(format!("cannot run resolvectl: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}
