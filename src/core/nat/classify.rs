//! Turns raw discovery results into RFC 4787 behaviours: mapping from the three mapped addresses
//! of RFC 5780 §4.3, filtering from the answers of §4.4, and the port-allocation model from a
//! run of fresh mappings (RFC 4787 §4.2.1; sequential allocation as in Wei et al.'s
//! prediction work). Pure functions, so the rules can be tested without a network.

use super::profile::{Filtering, Mapping, PortAllocation};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A span of observed ports at most this wide counts as a block (CGNAT port-block allocation).
pub const PORT_BLOCK_MAX_SPAN: u16 = 4096;

/// RFC 5780 §4.3: test I mapped `m1` (primary address), test II `m2` (alternate IP, primary
/// port), test III `m3` (alternate IP and port).
pub fn classify_mapping(m1: SocketAddr, m2: Option<SocketAddr>, m3: Option<SocketAddr>) -> Mapping {
    match (m2, m3) {
        (None, _) => Mapping::Unknown,
        (Some(m2), _) if m2 == m1 => Mapping::EndpointIndependent,
        (Some(m2), Some(m3)) if m3 == m2 => Mapping::AddressDependent,
        (Some(_), Some(_)) => Mapping::AddressAndPortDependent,
        (Some(_), None) => Mapping::Unknown,
    }
}

/// RFC 5780 §4.4 on a socket that has talked only to the primary address: an answer from the
/// other IP and port means endpoint-independent filtering; else one from the other port only
/// means address-dependent; neither means address and port-dependent.
pub fn classify_filtering(changed_ip_and_port: bool, changed_port: bool) -> Filtering {
    if changed_ip_and_port {
        Filtering::EndpointIndependent
    } else if changed_port {
        Filtering::AddressDependent
    } else {
        Filtering::AddressAndPortDependent
    }
}

/// One fresh mapping: the socket's local port and the public port the server saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSample {
    pub local: u16,
    pub mapped: u16,
}

/// The allocation model that explains `samples` (in the order their mappings were made), and
/// a note when the call needed judgement.
pub fn classify_allocation(samples: &[PortSample]) -> (PortAllocation, Option<String>) {
    let n = samples.len();
    if n < 2 {
        return (
            PortAllocation::Unknown,
            Some(format!(
                "port allocation needs at least 2 answered samples, got {n}"
            )),
        );
    }
    let kept = samples.iter().filter(|s| s.local == s.mapped).count();
    if kept == n {
        return (PortAllocation::Preserving, None);
    }
    // Linux and most home routers keep the port unless it is taken; a few collisions out of
    // many still describe a port-preserving NAT.
    if kept * 4 >= n * 3 {
        return (
            PortAllocation::Preserving,
            Some(format!(
                "{} of {n} samples got another port than their own (port collisions)",
                n - kept
            )),
        );
    }
    if let Some(found) = sequential(samples) {
        return found;
    }
    let low = samples.iter().map(|s| s.mapped).min().unwrap_or(0);
    let high = samples.iter().map(|s| s.mapped).max().unwrap_or(0);
    if high - low <= PORT_BLOCK_MAX_SPAN {
        (PortAllocation::RandomInRange { low, high }, None)
    } else {
        (PortAllocation::Random, None)
    }
}

/// A constant step between consecutive mappings. Other hosts behind the same NAT take ports in
/// between now and then, so a step that covers at least two thirds of the gaps, with the other
/// gaps being same-direction multiples of it (up to 64 steps), still counts, with a note.
fn sequential(samples: &[PortSample]) -> Option<(PortAllocation, Option<String>)> {
    let diffs: Vec<i32> = samples
        .windows(2)
        .map(|w| i32::from(w[1].mapped) - i32::from(w[0].mapped))
        .collect();
    let mut counts: HashMap<i32, usize> = HashMap::new();
    for d in &diffs {
        *counts.entry(*d).or_default() += 1;
    }
    let (&delta, &count) = counts
        .iter()
        .max_by_key(|(d, c)| (**c, std::cmp::Reverse(d.abs())))?;
    // Two samples always show "a constant step"; it takes three to see one.
    if delta == 0 || diffs.len() < 2 {
        return None;
    }
    if count == diffs.len() {
        return Some((PortAllocation::Sequential { delta }, None));
    }
    let gaps_fit = diffs.iter().all(|d| {
        *d == delta
            || (d.signum() == delta.signum() && d % delta == 0 && d.abs() <= 64 * delta.abs())
    });
    if count * 3 >= diffs.len() * 2 && gaps_fit {
        let skipped = diffs.len() - count;
        return Some((
            PortAllocation::Sequential { delta },
            Some(format!(
                "{skipped} of {} steps skipped ports: other traffic through the NAT took them",
                diffs.len()
            )),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(mapped: &[u16]) -> Vec<PortSample> {
        mapped
            .iter()
            .enumerate()
            .map(|(i, &m)| PortSample {
                local: 40000 + i as u16 * 7,
                mapped: m,
            })
            .collect()
    }

    #[test]
    fn mapping_follows_rfc5780_section_4_3() {
        let a: SocketAddr = "203.0.113.5:1000".parse().unwrap();
        let b: SocketAddr = "203.0.113.5:1001".parse().unwrap();
        let c: SocketAddr = "203.0.113.5:1002".parse().unwrap();
        assert_eq!(
            classify_mapping(a, Some(a), None),
            Mapping::EndpointIndependent
        );
        assert_eq!(
            classify_mapping(a, Some(b), Some(b)),
            Mapping::AddressDependent
        );
        assert_eq!(
            classify_mapping(a, Some(b), Some(c)),
            Mapping::AddressAndPortDependent
        );
        assert_eq!(classify_mapping(a, None, None), Mapping::Unknown);
        assert_eq!(classify_mapping(a, Some(b), None), Mapping::Unknown);
    }

    #[test]
    fn filtering_follows_rfc5780_section_4_4() {
        assert_eq!(
            classify_filtering(true, true),
            Filtering::EndpointIndependent
        );
        assert_eq!(
            classify_filtering(true, false),
            Filtering::EndpointIndependent
        );
        assert_eq!(classify_filtering(false, true), Filtering::AddressDependent);
        assert_eq!(
            classify_filtering(false, false),
            Filtering::AddressAndPortDependent
        );
    }

    #[test]
    fn allocation_models() {
        let kept: Vec<PortSample> = (0..12)
            .map(|i| PortSample {
                local: 30000 + i * 13,
                mapped: 30000 + i * 13,
            })
            .collect();
        assert_eq!(classify_allocation(&kept).0, PortAllocation::Preserving);
        let seq: Vec<u16> = (0..12).map(|i| 20000 + i * 2).collect();
        assert_eq!(
            classify_allocation(&samples(&seq)),
            (PortAllocation::Sequential { delta: 2 }, None)
        );
        let down: Vec<u16> = (0..12).map(|i| 50000 - i).collect();
        assert_eq!(
            classify_allocation(&samples(&down)).0,
            PortAllocation::Sequential { delta: -1 }
        );
        let block = [20011, 20400, 20007, 20333, 20100, 20501, 20002, 20250];
        assert_eq!(
            classify_allocation(&samples(&block)).0,
            PortAllocation::RandomInRange {
                low: 20002,
                high: 20501
            }
        );
        let random = [1200, 60011, 33000, 4711, 50000, 2222];
        assert_eq!(
            classify_allocation(&samples(&random)).0,
            PortAllocation::Random
        );
        assert_eq!(
            classify_allocation(&samples(&[5])).0,
            PortAllocation::Unknown
        );
    }

    #[test]
    fn sequential_tolerates_ports_taken_by_others() {
        let gappy = [
            20000, 20001, 20002, 20004, 20005, 20006, 20007, 20009, 20010, 20011,
        ];
        let (alloc, note) = classify_allocation(&samples(&gappy));
        assert_eq!(alloc, PortAllocation::Sequential { delta: 1 });
        assert!(note.unwrap().contains("2 of 9 steps"));
    }

    #[test]
    fn a_few_collisions_still_preserve() {
        let mut s: Vec<PortSample> = (0..12)
            .map(|i| PortSample {
                local: 30000 + i * 13,
                mapped: 30000 + i * 13,
            })
            .collect();
        s[3].mapped = 61000;
        let (alloc, note) = classify_allocation(&s);
        assert_eq!(alloc, PortAllocation::Preserving);
        assert!(note.is_some());
    }
}
