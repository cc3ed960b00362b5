//! Several servers in one deployment (servers sharing one PostgreSQL store and one identity key).
//!
//! Design: every node of a deployment registers with one common server, the *primary* (the live
//! server that has been up longest; `store_pg::servers` keeps the list). Peers therefore always
//! meet on one server, so presence, punch offers and relaying need no server-to-server protocol;
//! a node that loses its server registers with the next one, and every other node of the
//! deployment, having lost the same server, does too. Each server tells its nodes the live
//! servers, primary first (`ServerMessage::Servers`), on registration and whenever the list
//! changes. A node that is registered elsewhere than on the primary moves there, unless it lost a
//! connection or moved recently ([`SETTLE`]): a server that just died still looks alive in the
//! list for a few seconds, and following the list then would send nodes back to it.

use super::client::ServerAddr;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// After losing a server or moving, a node stays where it is for this long before following the
/// list to the primary again. Longer than the list's staleness (`store_pg::servers::STALE`), so
/// a dead primary has left every list by then.
pub const SETTLE: Duration = Duration::from_secs(30);

/// The live servers of a deployment, primary first: each server's plain control addresses and
/// its TLS ones, as nodes reach them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerList {
    pub servers: Vec<ServerEntry>,
}

/// One server of a deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerEntry {
    pub plain: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
}

impl ServerList {
    /// Every server's plain addresses, then every server's TLS ones, in list order: what a
    /// token and the `Servers` message carry.
    pub fn flat(&self) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        let plain = self.servers.iter().flat_map(|s| s.plain.clone()).collect();
        let tls = self.servers.iter().flat_map(|s| s.tls.clone()).collect();
        (plain, tls)
    }
}

/// The node's order of servers to try: those the deployment names (primary first, in
/// `ServerAddr::list` order), then those of the token the deployment no longer names (a
/// deployment that lost its store still has them).
pub fn merged_order(
    plain: &[SocketAddr],
    tls: &[SocketAddr],
    from_token: &[ServerAddr],
) -> Vec<ServerAddr> {
    let mut order = ServerAddr::list(plain, tls);
    for s in from_token {
        if !order.contains(s) {
            order.push(*s);
        }
    }
    order
}

/// Whether a node registered on `current` should move to `primary` now.
pub fn should_move(
    current: Option<ServerAddr>,
    primary: Option<ServerAddr>,
    last_change: Option<Instant>,
    now: Instant,
) -> bool {
    let (Some(current), Some(primary)) = (current, primary) else {
        return false;
    };
    // The TLS address of the primary is the primary too: a node behind a firewall that only
    // lets 443 out keeps it. The list names the primary by its plain address first, so a
    // node on TLS at the primary's IP is on the primary (comparing whole addresses, the ports
    // 443 and 7400 differ and the node bounced to the plain port it cannot reach, and back).
    if current == primary
        || current.addr == primary.addr
        || (current.tls && current.addr.ip() == primary.addr.ip())
    {
        return false;
    }
    last_change.is_none_or(|t| now.saturating_duration_since(t) >= SETTLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> ServerAddr {
        ServerAddr {
            addr: s.parse().unwrap(),
            tls: false,
        }
    }

    #[test]
    fn the_deployment_order_comes_first_and_token_servers_stay() {
        let a: SocketAddr = "192.0.2.1:7000".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:7000".parse().unwrap();
        let order = merged_order(
            &[b, a],
            &[],
            &[plain("192.0.2.1:7000"), plain("192.0.2.9:1")],
        );
        assert_eq!(
            order,
            vec![
                plain("192.0.2.2:7000"),
                plain("192.0.2.1:7000"),
                plain("192.0.2.9:1")
            ]
        );
    }

    #[test]
    fn a_node_moves_to_the_primary_only_once_settled() {
        let now = crate::test_now();
        let a = Some(plain("192.0.2.1:7000"));
        let b = Some(plain("192.0.2.2:7000"));
        assert!(should_move(a, b, None, now));
        assert!(!should_move(b, b, None, now));
        assert!(!should_move(a, b, Some(now), now + Duration::from_secs(5)));
        assert!(should_move(a, b, Some(now), now + SETTLE));
        assert!(!should_move(None, b, None, now));
    }

    /// A node that reached the primary only over TLS (UDP and the plain port blocked) stays
    /// there: the list names the primary's plain address first, on another port.
    #[test]
    fn a_node_on_the_primary_s_tls_address_stays() {
        let now = crate::test_now();
        let tls = Some(ServerAddr {
            addr: "192.0.2.1:443".parse().unwrap(),
            tls: true,
        });
        assert!(!should_move(tls, Some(plain("192.0.2.1:7000")), None, now));
        // Another server's plain address is a move, TLS or not.
        assert!(should_move(tls, Some(plain("192.0.2.2:7000")), None, now));
        // Two plain servers on one host (different ports) are different servers.
        assert!(should_move(
            Some(plain("192.0.2.1:7001")),
            Some(plain("192.0.2.1:7000")),
            None,
            now
        ));
    }
}

#[cfg(test)]
#[path = "deployment_tests.rs"]
mod deployment_tests;
