//! Split DNS on Linux through systemd-resolved: `resolvectl dns LINK ADDR` and
//! `resolvectl domain LINK ~SUFFIX` (a routing-only domain: names under it go to this link's
//! server, nothing else does, and it is not added to the search list), undone with
//! `resolvectl revert LINK`. resolved also forgets a link's settings when the link goes, so a
//! node that dies leaves nothing behind once its TUN device is gone.
//!
//! Without resolved nothing is changed: one info line says what to add by hand. resolved is
//! only used when it serves this network namespace: a node in a namespace of its own (`ip netns
//! exec`, which shares the host's /run and so its resolved) would otherwise configure whichever
//! host link has the TUN device's index. The test is resolved's stub listener, 127.0.0.53:53,
//! which exists only in resolved's own namespace: a TCP connect to it sends no DNS at all. (PID
//! 1's namespace cannot be compared: the systemd unit's ProtectProc= and capability set hide it.)

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::process::Command;

/// resolved's varlink socket, present while it runs (systemd >= 246).
const RESOLVED_SOCKET: &str = "/run/systemd/resolve/io.systemd.Resolve";
/// resolvectl answers in milliseconds; a hung D-Bus must not hold up `up` or `down`.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// resolved's stub listener (resolved.conf(5), DNSStubListener=).
const STUB: (Ipv4Addr, u16) = (Ipv4Addr::new(127, 0, 0, 53), 53);

/// What was registered, to be reverted on `down`.
pub struct Registration {
    network: String,
    interface: String,
}

impl Registration {
    pub fn new(network: String, interface: String) -> Self {
        Registration { network, interface }
    }

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
    network: String,
    interface: String,
    addr: SocketAddr,
    suffix: String,
) -> Option<Registration> {
    let interface = interface.as_str();
    let ip = addr.ip().to_string();
    if !resolved_serves_this_namespace().await {
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
    Some(Registration::new(network, interface.to_string()))
}

/// resolved runs, and its stub listener answers in our network namespace. With the stub turned
/// off (DNSStubListener=no) this says no: nothing is registered and the log says what to add.
async fn resolved_serves_this_namespace() -> bool {
    if !Path::new(RESOLVED_SOCKET).exists() {
        return false;
    }
    let connect = TcpStream::connect(SocketAddr::from(STUB));
    matches!(
        tokio::time::timeout(Duration::from_secs(1), connect).await,
        Ok(Ok(_))
    )
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
