//! The IPv6 side of a network's address plan: a Unique Local Address prefix per network
//! (RFC 4193) and each node's address in it.
//!
//! A network's prefix is `fd00::/8` + a random 40-bit global ID (RFC 4193 §3.2: "MUST be generated
//! with a pseudo-random algorithm"; §3.2.2's SHA-1 recipe is one way, plain randomness from a
//! good RNG is another) = a /48 for the network, of which subnet 0 is the nodes' /64. A node's
//! interface identifier is its IPv4 overlay address in the low 32 bits, so its IPv6 address is as
//! stable as the IPv4 one the server already allocates and keeps (and an operator can read one
//! from the other: 10.77.0.2 is `fdxx:xxxx:xxxx::a4d:2`). The IPv4 allocator never hands out
//! 0.0.0.0, so the identifier is never zero (the subnet-router anycast address, RFC 4291 §2.6.1).

use ipnet::Ipv6Net;
use rand::RngCore;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The nodes' subnet inside a network's /48.
pub const NODE_PREFIX_LEN: u8 = 64;

/// `fc00::/7` with the L bit set (RFC 4193 §3.1): locally assigned.
const ULA_LOCAL: u8 = 0xfd;

/// The nodes' /64 of a network whose /48 has `global_id` (RFC 4193 §3.1 layout: prefix + L bit,
/// 40-bit global ID, 16-bit subnet ID 0).
pub fn prefix_from_global_id(global_id: [u8; 5]) -> Ipv6Net {
    let mut octets = [0u8; 16];
    octets[0] = ULA_LOCAL;
    octets[1..6].copy_from_slice(&global_id);
    // 64 is a valid IPv6 prefix length: the fallback is never taken.
    Ipv6Net::new(Ipv6Addr::from(octets), NODE_PREFIX_LEN).unwrap_or_default()
}

/// A fresh random prefix for a new network (`network create`, or an older network on upgrade).
pub fn random_prefix(rng: &mut impl RngCore) -> Ipv6Net {
    let mut global_id = [0u8; 5];
    rng.fill_bytes(&mut global_id);
    prefix_from_global_id(global_id)
}

/// Whether `net` is a prefix this code hands out: a /64 inside `fd00::/8`. A stored value that is
/// not is treated as damaged rather than given to nodes.
pub fn is_node_prefix(net: &Ipv6Net) -> bool {
    net.prefix_len() == NODE_PREFIX_LEN
        && net.network().octets()[0] == ULA_LOCAL
        && net.addr() == net.network()
}

/// Whether a node address from the server (address/prefix length) is one this code would
/// allocate: inside a node prefix. Anything else (a link-local or global address, another
/// length) is ignored rather than put on the TUN device.
pub fn is_node_interface(net: &Ipv6Net) -> bool {
    is_node_prefix(&net.trunc()) && net.addr() != net.network()
}

/// The node with IPv4 overlay address `v4` in the network with the nodes' prefix `prefix`.
pub fn node_address(prefix: Ipv6Net, v4: Ipv4Addr) -> Ipv6Addr {
    let mut octets = prefix.network().octets();
    octets[8..12].fill(0);
    octets[12..16].copy_from_slice(&v4.octets());
    Ipv6Addr::from(octets)
}

/// `node_address` with the prefix length, as the TUN device is configured with it.
pub fn node_interface(prefix: Ipv6Net, v4: Ipv4Addr) -> Ipv6Net {
    // The length comes from a valid Ipv6Net: the fallback is never taken.
    Ipv6Net::new(node_address(prefix, v4), prefix.prefix_len()).unwrap_or(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn layout_follows_rfc_4193() {
        let p = prefix_from_global_id([0x12, 0x34, 0x56, 0x78, 0x9a]);
        assert_eq!(p.to_string(), "fd12:3456:789a::/64");
        assert!(is_node_prefix(&p));
        let a = node_address(p, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(a.to_string(), "fd12:3456:789a::a4d:2");
        assert_eq!(
            node_interface(p, Ipv4Addr::new(10, 77, 0, 2)).to_string(),
            "fd12:3456:789a::a4d:2/64"
        );
        assert!(!is_node_prefix(&"fe80::/64".parse().unwrap()));
        assert!(!is_node_prefix(&"fd12:3456:789a::/48".parse().unwrap()));
        assert!(!is_node_prefix(&"fd12:3456:789a::1/64".parse().unwrap()));
        assert!(is_node_interface(&"fd12:3456:789a::1/64".parse().unwrap()));
        assert!(!is_node_interface(&"fd12:3456:789a::/64".parse().unwrap()));
        assert!(!is_node_interface(&"2001:db8::1/64".parse().unwrap()));
        assert!(!is_node_interface(
            &"fd12:3456:789a::1/128".parse().unwrap()
        ));
    }

    #[test]
    fn random_prefixes_differ() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let a = random_prefix(&mut rng);
        let b = random_prefix(&mut rng);
        assert_ne!(a, b);
        assert!(is_node_prefix(&a) && is_node_prefix(&b));
    }

    proptest! {
        #[test]
        fn every_prefix_is_a_ula_64_and_addresses_stay_inside_and_distinct(
            id in any::<[u8; 5]>(), a in 1u32.., b in 1u32..,
        ) {
            let p = prefix_from_global_id(id);
            prop_assert!(is_node_prefix(&p));
            prop_assert_eq!(&p.network().octets()[1..6], &id[..]);
            let (va, vb) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            let (xa, xb) = (node_address(p, va), node_address(p, vb));
            prop_assert!(p.contains(&xa));
            prop_assert_ne!(xa, p.network());
            prop_assert_eq!(xa == xb, a == b);
        }
    }
}
