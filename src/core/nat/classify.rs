//! Pure classification: from the mapped addresses netcheck observed to RFC 4787 behaviours. Kept
//! apart from the transaction machinery so every rule is unit-tested on plain numbers.

use super::profile::{Filtering, Mapping, PortAllocation};
use std::net::SocketAddr;

/// Port blocks at most this wide count as "random within a range" (a CGNAT block, a hash range).
pub const RANGE_SPAN: u16 = 4096;
/// A delta beyond this is not a sequential allocator but noise.
const MAX_DELTA: i32 = 64;

/// RFC 5780 §4.3: mapping behaviour from the mapped addresses toward the primary address (m1),
/// the alternate IP (m2) and the alternate IP and port (m3).
pub fn mapping(m1: SocketAddr, m2: Option<SocketAddr>, m3: Option<SocketAddr>) -> Mapping {
    match (m2, m3) {
        (Some(m2), _) if m2 == m1 => Mapping::EndpointIndependent,
        (Some(m2), Some(m3)) if m3 == m2 => Mapping::AddressDependent,
        (Some(_), Some(_)) => Mapping::AddressAndPortDependent,
        _ => Mapping::Unknown,
    }
}

/// RFC 5780 §4.4: filtering from which change-request answers got through.
pub fn filtering(answered_both: Option<bool>, answered_port: Option<bool>) -> Filtering {
    match (answered_both, answered_port) {
        (Some(true), _) => Filtering::EndpointIndependent,
        (Some(false), Some(true)) => Filtering::AddressDependent,
        (Some(false), Some(false)) => Filtering::AddressAndPortDependent,
        _ => Filtering::Unknown,
    }
}

/// Port allocation from `(local port, mapped port)` of fresh flows opened one after another.
pub fn allocation(samples: &[(u16, u16)]) -> PortAllocation {
    if samples.len() < 3 {
        return PortAllocation::Unknown;
    }
    if samples.iter().all(|(local, mapped)| local == mapped) {
        return PortAllocation::Preserving;
    }
    let ports: Vec<u16> = samples.iter().map(|(_, m)| *m).collect();
    let deltas: Vec<i32> = ports
        .windows(2)
        .map(|w| i32::from(w[1]) - i32::from(w[0]))
        .collect();
    // The most common delta; a sequential allocator shows it nearly every time (another host's
    // flow may slip in between two of ours).
    let mut best = (0i32, 0usize);
    for d in &deltas {
        let count = deltas.iter().filter(|x| *x == d).count();
        if count > best.1 {
            best = (*d, count);
        }
    }
    let (delta, count) = best;
    if delta != 0 && delta.abs() <= MAX_DELTA && count * 4 >= deltas.len() * 3 {
        return PortAllocation::Sequential { delta };
    }
    let (low, high) = ports
        .iter()
        .fold((u16::MAX, 0u16), |(lo, hi), p| (lo.min(*p), hi.max(*p)));
    if high - low < RANGE_SPAN {
        PortAllocation::RandomInRange { low, high }
    } else {
        PortAllocation::Random
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mapping_follows_rfc5780_section_4_3() {
        let m1 = a("203.0.113.1:1000");
        assert_eq!(mapping(m1, Some(m1), None), Mapping::EndpointIndependent);
        let m2 = a("203.0.113.1:1001");
        assert_eq!(mapping(m1, Some(m2), Some(m2)), Mapping::AddressDependent);
        let m3 = a("203.0.113.1:1002");
        assert_eq!(
            mapping(m1, Some(m2), Some(m3)),
            Mapping::AddressAndPortDependent
        );
        assert_eq!(mapping(m1, None, None), Mapping::Unknown);
    }

    #[test]
    fn filtering_follows_rfc5780_section_4_4() {
        assert_eq!(
            filtering(Some(true), Some(true)),
            Filtering::EndpointIndependent
        );
        assert_eq!(
            filtering(Some(false), Some(true)),
            Filtering::AddressDependent
        );
        assert_eq!(
            filtering(Some(false), Some(false)),
            Filtering::AddressAndPortDependent
        );
        assert_eq!(filtering(None, None), Filtering::Unknown);
    }

    #[test]
    fn allocation_tells_preserving_sequential_block_and_random() {
        let same: Vec<(u16, u16)> = (0..8).map(|i| (40000 + i, 40000 + i)).collect();
        assert_eq!(allocation(&same), PortAllocation::Preserving);
        let seq: Vec<(u16, u16)> = (0..8).map(|i| (40000 + i, 20000 + 4 * i)).collect();
        assert_eq!(allocation(&seq), PortAllocation::Sequential { delta: 4 });
        // One foreign flow in between still reads as sequential.
        let mut noisy = seq.clone();
        for s in noisy.iter_mut().skip(4) {
            s.1 += 4;
        }
        assert_eq!(allocation(&noisy), PortAllocation::Sequential { delta: 4 });
        let block = [20017u16, 20480, 20002, 20311, 20145, 20077, 20500, 20233];
        let block: Vec<(u16, u16)> = block.iter().map(|p| (40000, *p)).collect();
        assert_eq!(
            allocation(&block),
            PortAllocation::RandomInRange {
                low: 20002,
                high: 20500
            }
        );
        let wide = [1500u16, 61000, 33000, 12000, 45000, 2000, 59000, 7000];
        let wide: Vec<(u16, u16)> = wide.iter().map(|p| (40000, *p)).collect();
        assert_eq!(allocation(&wide), PortAllocation::Random);
        assert_eq!(allocation(&wide[..2]), PortAllocation::Unknown);
    }
}
