//! The names a node can answer in DNS: its own (once the server has assigned it an address) and
//! every peer's, as the server named them. Read straight from the peer table on each query, so
//! an answer is never older than the table.

use super::Node;
use crate::core::dns::Host;

impl Node {
    /// This node first, then its peers (offline ones too: a name stays resolvable while its
    /// owner is a member, as a host name does while the host is down).
    pub fn hosts(&self) -> impl Iterator<Item = Host<'_>> {
        let own = self.assignment.as_ref().map(|a| Host {
            name: &a.name,
            ipv4: a.virtual_ip,
            ipv6: a.ipv6.map(|n| n.addr()),
        });
        let peers = self.peers.iter().map(|p| Host {
            name: &p.name,
            ipv4: p.virtual_ip,
            ipv6: p.ipv6,
        });
        own.into_iter().chain(peers)
    }
}
