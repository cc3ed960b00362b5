//! The access rule part of `status` (`core::acl`): which rules admit traffic to this node, how
//! many flows each admitted, and what was dropped from whom.

use super::printable::printable;
use crate::core::node::NodeStatus;
use std::fmt::Write;

/// The section, or nothing when the network has no rules (all is allowed, as before).
pub fn section(s: &NodeStatus) -> String {
    let mut out = String::new();
    let Some(acl) = s.access.as_ref().filter(|a| a.enforced) else {
        return out;
    };
    let rules = acl.rules.as_deref().unwrap_or_default();
    let _ = writeln!(
        out,
        "access rules: {} for this node, {} packet(s) dropped, {} flow(s) tracked",
        match rules.len() {
            0 => "none admit connections".to_string(),
            n => format!("{n} admit connections"),
        },
        acl.denied,
        acl.flows
    );
    for r in rules {
        let _ = writeln!(
            out,
            "  rule {:<3} allow {}  ({} admitted)",
            r.id, r.rule, r.admitted
        );
    }
    if acl.truncated > 0 {
        let _ = writeln!(
            out,
            "  {} rule(s) were too large to send to this node and allow nothing: split them",
            acl.truncated
        );
    }
    for d in &acl.recent_denials {
        let who = s
            .peers
            .iter()
            .find(|p| p.virtual_ip == d.peer)
            .map_or(d.peer.to_string(), |p| printable(&p.name).to_string());
        let _ = writeln!(
            out,
            "  dropped  {who}: {} ({} packet(s), last {} s ago): no rule allows it \
             (`p2pvpn doctor {who}`)",
            d.what(),
            d.count,
            d.secs_ago
        );
    }
    out
}
