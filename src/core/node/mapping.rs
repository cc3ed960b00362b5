//! The node's port mapping (`core::portmap`): the driver reports what the gateway granted, and
//! the mapped address joins the node's candidates right after the LAN ones, both in the endpoints
//! the server passes on and in punch offers.

use super::Node;
use crate::core::portmap::Mapping;
use crate::core::punch::{Candidate, Technique};

impl Node {
    /// The gateway granted (`Some`) or lost (`None`) a mapping for the main socket. A change is
    /// published at once; existing direct paths are kept, new attempts use it.
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
        out
    }
}
