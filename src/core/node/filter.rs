//! The address rules of the data path, the same for IPv4 and IPv6: a packet goes out only to an
//! address inside the network's range, and a decrypted packet comes in only from the sending
//! peer's own overlay address and only to ours. WireGuard's cryptokey routing (whitepaper §2)
//! states the same rule as allowed IPs: here a peer's allowed IPs are its /32 and its /128.

use super::Assignment;
use crate::core::counters::DropReason;
use crate::core::ip::ip_endpoints;
use crate::core::peers::Peer;
use std::net::IpAddr;

/// A packet read from the TUN device for `dst`: in the network, or why not.
pub fn outbound(ours: &Assignment, dst: IpAddr) -> Result<(), DropReason> {
    match dst {
        IpAddr::V4(v4) if ours.cidr.contains(&v4) => Ok(()),
        IpAddr::V4(_) => Err(DropReason::NotInNetwork),
        IpAddr::V6(v6) => match ours.ipv6 {
            Some(net) if net.contains(&v6) => Ok(()),
            Some(_) => Err(DropReason::NotInNetwork),
            // A network without an IPv6 prefix (an older server) carries no IPv6.
            None => Err(DropReason::UnsupportedProtocol),
        },
    }
}

/// A packet `peer` sent us, decrypted: `src` is the source boringtun read from it. The source
/// must be one of the peer's addresses and the destination ours, in the same family.
pub fn inbound(
    peer: &Peer,
    ours: Option<&Assignment>,
    src: IpAddr,
    packet: &[u8],
) -> Result<(), DropReason> {
    let from_peer = match src {
        IpAddr::V4(v4) => v4 == peer.virtual_ip,
        IpAddr::V6(v6) => peer.ipv6 == Some(v6),
    };
    if !from_peer {
        return Err(DropReason::SpoofedSource);
    }
    let to_us = match (ip_endpoints(packet).map(|e| e.dst), ours) {
        (Ok(IpAddr::V4(dst)), Some(a)) => dst == a.virtual_ip,
        (Ok(IpAddr::V6(dst)), Some(a)) => a.ipv6.is_some_and(|n| n.addr() == dst),
        _ => false,
    };
    if !to_us {
        return Err(DropReason::WrongDestination);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::{PublicKey, SecretKey};
    use crate::core::peers::PeerTable;
    use crate::core::rendezvous::messages::PeerInfo;
    use crate::core::ula;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const PREFIX: [u8; 5] = [0x12, 0x34, 0x56, 0x78, 0x9a];

    fn assignment(v6: bool) -> Assignment {
        let prefix = ula::prefix_from_global_id(PREFIX);
        let v4 = Ipv4Addr::new(10, 77, 0, 1);
        Assignment {
            name: "alice".into(),
            virtual_ip: v4,
            cidr: "10.77.0.0/24".parse().unwrap(),
            ipv6: v6.then(|| ula::node_interface(prefix, v4)),
        }
    }

    fn v6(last: u8) -> Ipv6Addr {
        ula::node_address(
            ula::prefix_from_global_id(PREFIX),
            Ipv4Addr::new(10, 77, 0, last),
        )
    }

    /// A peer table holding bob (10.77.0.2 and its IPv6 address).
    fn bob() -> PeerTable {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let local = SecretKey::generate(&mut rng);
        let mut table = PeerTable::default();
        let info = PeerInfo {
            name: "bob".into(),
            public_key: PublicKey([2; 32]),
            virtual_ip: Ipv4Addr::new(10, 77, 0, 2),
            endpoints: vec![],
            online: true,
            nat: None,
            relay_id: None,
            ipv6: Some(v6(2)),
            run: None,
        };
        table.upsert(&info, &local, crate::test_now());
        table
    }

    fn packet(src: IpAddr, dst: IpAddr) -> Vec<u8> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut p = vec![0u8; 28];
                p[0] = 0x45;
                p[12..16].copy_from_slice(&s.octets());
                p[16..20].copy_from_slice(&d.octets());
                p
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut p = vec![0u8; 48];
                p[0] = 0x60;
                p[8..24].copy_from_slice(&s.octets());
                p[24..40].copy_from_slice(&d.octets());
                p
            }
            _ => unreachable!("one family per packet"),
        }
    }

    #[test]
    fn ipv6_follows_the_ipv4_rules() {
        let table = bob();
        let peer = table.get(&PublicKey([2; 32])).unwrap();
        let ours = assignment(true);
        let (bob6, alice6, carol6) = (v6(2), v6(1), v6(3));
        let ok = packet(bob6.into(), alice6.into());
        assert_eq!(inbound(peer, Some(&ours), bob6.into(), &ok), Ok(()));
        // Bob may not send as carol, nor to carol.
        let spoofed = packet(carol6.into(), alice6.into());
        assert_eq!(
            inbound(peer, Some(&ours), carol6.into(), &spoofed),
            Err(DropReason::SpoofedSource)
        );
        let elsewhere = packet(bob6.into(), carol6.into());
        assert_eq!(
            inbound(peer, Some(&ours), bob6.into(), &elsewhere),
            Err(DropReason::WrongDestination)
        );
        // Without our own IPv6 address nothing IPv6 is for us.
        assert_eq!(
            inbound(peer, Some(&assignment(false)), bob6.into(), &ok),
            Err(DropReason::WrongDestination)
        );
        // IPv4 as before.
        let bob4 = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
        let alice4 = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(
            inbound(peer, Some(&ours), bob4, &packet(bob4, alice4)),
            Ok(())
        );
        // Outbound: inside the /64 or the IPv4 range only.
        assert_eq!(outbound(&ours, bob6.into()), Ok(()));
        assert_eq!(outbound(&ours, bob4), Ok(()));
        let outside: Ipv6Addr = "fd00::1".parse().unwrap();
        assert_eq!(
            outbound(&ours, outside.into()),
            Err(DropReason::NotInNetwork)
        );
        assert_eq!(
            outbound(&assignment(false), bob6.into()),
            Err(DropReason::UnsupportedProtocol)
        );
    }

    proptest! {
        /// Whatever addresses a decrypted IPv6 packet carries, it passes only when it is from
        /// bob's address and to ours.
        #[test]
        fn only_bob_to_us_passes(src in any::<u128>(), dst in any::<u128>(), pick in 0u8..4) {
            let table = bob();
            let peer = table.get(&PublicKey([2; 32])).unwrap();
            let ours = assignment(true);
            let src = match pick & 1 { 0 => v6(2), _ => Ipv6Addr::from(src) };
            let dst = match pick & 2 { 0 => v6(1), _ => Ipv6Addr::from(dst) };
            let verdict = inbound(peer, Some(&ours), src.into(), &packet(src.into(), dst.into()));
            prop_assert_eq!(verdict.is_ok(), src == v6(2) && dst == v6(1));
        }
    }
}
