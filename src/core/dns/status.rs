//! The responder as `status` shows it: where it listens, for which suffix, what it did.

use super::DnsCounters;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStatus {
    pub suffix: String,
    /// Where it listens: the node's overlay address, port 53.
    pub address: SocketAddr,
    #[serde(flatten)]
    pub counters: DnsCounters,
}

impl DnsStatus {
    /// `(name, count)` of every counter, for the metrics.
    pub fn results(&self) -> [(&'static str, u64); 5] {
        let c = &self.counters;
        [
            ("answered", c.answered),
            ("nxdomain", c.nxdomain),
            ("refused", c.refused),
            ("ambiguous", c.ambiguous),
            ("malformed", c.malformed),
        ]
    }
}

/// `names under office.p2p on 10.77.0.1:53 (3 answered, 1 refused)`: the counters that are
/// not zero.
impl std::fmt::Display for DnsStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "names under {} on {}", self.suffix, self.address)?;
        let seen: Vec<String> = self
            .results()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        if !seen.is_empty() {
            write!(f, " ({})", seen.join(", "))?;
        }
        Ok(())
    }
}
