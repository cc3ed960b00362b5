//! The node's port mapping (`core::portmap`): the driver reports what the gateway granted, and
//! the mapped address joins the node's candidates right after the LAN ones, both in the endpoints
//! the server passes on and in punch offers.

use super::Node;
use crate::core::portmap::Mapping;
use crate::core::punch::{Candidate, Technique};

impl Node {
    /// The gateway granted (`Some`) or lost (`None`) a mapping for the main socket. A change is
    /// published at once; existing direct paths are kept; every peer without one is offered
    /// the mapping now (`PeerPunch::retry_now`), whether it waits on a backoff, on the other
    /// side, or on an attempt planned without the mapping.
    pub fn set_port_mapping(&mut self, mapping: Option<Mapping>) {
        let candidate = mapping.map(|m| Candidate {
            addr: m.external,
            technique: Technique::PortMapping(m.protocol),
        });
        if candidate == self.port_mapping {
            return;
        }
        self.port_mapping = candidate;
        self.publish_endpoints();
        if candidate.is_some() {
            let now = self.now_hint;
            for peer in self.peers.iter_mut() {
                peer.punch.retry_now(now);
            }
        }
    }

    pub fn port_mapping(&self) -> Option<Candidate> {
        self.port_mapping
    }

    /// Whether the driver should ask the gateway again now: a direct path stopped answering
    /// while we hold a mapping, and the gateway may have forgotten it (a reboot, a flushed
    /// table). Asking is one datagram; a renewal re-creates a lost mapping.
    pub fn take_remap_request(&mut self) -> bool {
        std::mem::take(&mut self.remap_wanted) && self.port_mapping.is_some()
    }

    /// LAN candidates, then the mapping, then the server-reflexive address (unless the mapping
    /// is that very address: a gateway that kept the port gives one candidate, the stronger).
    pub(super) fn own_candidates(&self) -> Vec<Candidate> {
        let mut out = self.discovery.candidates(&self.local_endpoints);
        if let Some(m) = self.port_mapping {
            out.retain(|c| c.addr != m.addr);
            let at = out
                .iter()
                .take_while(|c| c.technique == Technique::Lan)
                .count();
            out.insert(at, m);
        }
        // IPv6 last: the server keeps two at most, after the IPv4 ones (`punch::ipv6`).
        out.extend(self.ipv6_candidates());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::SecretKey;
    use crate::core::node::{NodeConfig, PunchConfig};
    use crate::core::portmap::MapProtocol;
    use rand::SeedableRng;
    use std::time::Duration;

    fn node() -> Node {
        let config = NodeConfig {
            network: "t".into(),
            secret: SecretKey::from_bytes([1; 32]),
            server_key: SecretKey::from_bytes([2; 32]).public_key(),
            servers: vec!["198.51.100.1:7400".parse().unwrap()],
            tls_servers: Vec::new(),
            punch: PunchConfig::default(),
        };
        Node::new(
            config,
            rand_chacha::ChaCha8Rng::seed_from_u64(1),
            crate::test_now(),
        )
    }

    #[test]
    fn the_mapping_comes_right_after_lan_and_goes_when_lost() {
        let mut n = node();
        n.set_local_endpoints(vec!["192.168.1.10:51820".parse().unwrap()]);
        let m = Mapping {
            protocol: MapProtocol::NatPmp,
            external: "11.0.0.2:60000".parse().unwrap(),
            lifetime: Duration::from_secs(3600),
        };
        n.set_port_mapping(Some(m));
        let c = n.own_candidates();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].technique, Technique::Lan);
        assert_eq!(c[1].technique, Technique::PortMapping(MapProtocol::NatPmp));
        assert_eq!(c[1].addr, m.external);
        n.set_port_mapping(None);
        assert_eq!(n.own_candidates().len(), 1);
        assert_eq!(n.port_mapping(), None);
    }

    #[test]
    fn a_lost_path_asks_for_a_remap_only_while_a_mapping_is_held() {
        let mut n = node();
        n.remap_wanted = true;
        assert!(!n.take_remap_request(), "no mapping: nothing to renew");
        n.set_port_mapping(Some(Mapping {
            protocol: MapProtocol::Pcp,
            external: "11.0.0.2:60000".parse().unwrap(),
            lifetime: Duration::from_secs(3600),
        }));
        n.remap_wanted = true;
        assert!(n.take_remap_request());
        assert!(!n.take_remap_request(), "asked once per loss");
    }
}
