//! Admission: checking a join token and giving the new member a name and an address. The rules
//! live here once, whichever registry backs them.

use super::messages::Refusal;
use super::names::{check_node_name, NameError};
use super::registry::{Admitted, Member, Registry, RegistryError};
use super::token::Credential;
use crate::core::keys::PublicKey;
use ipnet::Ipv4Net;
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// A join request as the server sees it after the Noise handshake.
#[derive(Clone, Debug)]
pub struct JoinRequest<'a> {
    pub network: &'a str,
    pub credential: &'a Credential,
    pub name: &'a str,
    pub key: PublicKey,
}

/// The lowest free host address of `cidr` (the network and broadcast addresses are never handed
/// out for prefixes shorter than /31, RFC 3021 §2).
pub fn allocate_address(cidr: Ipv4Net, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    cidr.hosts().find(|a| !used.contains(a))
}

/// How often `redeem` reads again after losing a race to another server sharing the store; each
/// loss means another join succeeded, so this bounds the work, not correctness.
const REDEEM_ATTEMPTS: usize = 16;

/// Another server kept winning the race for this network's store (see [`Admitted::LostRace`]).
#[derive(Debug, thiserror::Error)]
#[error("the store kept changing under this join ({REDEEM_ATTEMPTS} attempts); try again")]
struct KeptLosing;

/// Checks the name and the token and admits the key. A key that is already a member gets its
/// existing record back (same name, same address), so re-running `join` on a machine is harmless.
/// Against a store shared by several servers the checks are re-read whenever the store reports
/// that another server changed what they were based on.
pub fn redeem<R: Registry>(
    registry: &mut R,
    req: &JoinRequest<'_>,
    unix_now: u64,
) -> Result<Result<Member, Refusal>, RegistryError> {
    for _ in 0..REDEEM_ATTEMPTS {
        if let Some(outcome) = redeem_once(registry, req, unix_now)? {
            return Ok(outcome);
        }
    }
    Err(RegistryError(Box::new(KeptLosing)))
}

/// One attempt; `None` when the store reported a lost race.
fn redeem_once<R: Registry>(
    registry: &mut R,
    req: &JoinRequest<'_>,
    unix_now: u64,
) -> Result<Option<Result<Member, Refusal>>, RegistryError> {
    // First, and whatever else is wrong: the name is what gets printed on other members' screens.
    if let Err(NameError::Node(name) | NameError::Network(name)) = check_node_name(req.name) {
        return Ok(Some(Err(Refusal::InvalidName { name })));
    }
    let Some(network) = registry.network(req.network)? else {
        return Ok(Some(Err(Refusal::UnknownNetwork {
            network: req.network.to_string(),
        })));
    };
    let hash = req.credential.hash();
    let Some(token) = registry.token(req.network, &hash)? else {
        return Ok(Some(Err(Refusal::BadCredential {
            network: req.network.to_string(),
        })));
    };
    let members = registry.members(req.network)?;
    if let Some(existing) = members.iter().find(|m| m.public_key == req.key) {
        return Ok(Some(Ok(existing.clone())));
    }
    if let Some(expires) = token.expires_unix {
        if unix_now >= expires {
            return Ok(Some(Err(Refusal::TokenExpired {
                expired_unix: expires,
            })));
        }
    }
    if token.uses >= token.max_uses {
        return Ok(Some(Err(Refusal::TokenUsedUp {
            uses: token.max_uses,
        })));
    }
    if members.iter().any(|m| m.name == req.name) {
        return Ok(Some(Err(Refusal::NameTaken {
            name: req.name.to_string(),
        })));
    }
    let used: HashSet<Ipv4Addr> = members.iter().map(|m| m.virtual_ip).collect();
    let Some(virtual_ip) = allocate_address(network.cidr, &used) else {
        return Ok(Some(Err(Refusal::NetworkFull { cidr: network.cidr })));
    };
    let member = Member::new(&network.name, req.name, req.key, virtual_ip, network.ipv6);
    Ok(match registry.admit(&member, &hash)? {
        Admitted::Yes => Some(Ok(member)),
        Admitted::LostRace => None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::registry::{MemoryRegistry, TokenRecord};
    use super::*;

    fn setup(max_uses: u32, expires_unix: Option<u64>) -> (MemoryRegistry, Credential) {
        let mut reg = MemoryRegistry::default();
        reg.create_network("office", "10.1.2.0/30".parse().unwrap());
        let cred = Credential([4; 32]);
        reg.add_token(
            "office",
            cred.hash(),
            TokenRecord {
                uses: 0,
                max_uses,
                expires_unix,
            },
        );
        (reg, cred)
    }

    fn req<'a>(cred: &'a Credential, name: &'a str, key: u8) -> JoinRequest<'a> {
        JoinRequest {
            network: "office",
            credential: cred,
            name,
            key: PublicKey([key; 32]),
        }
    }

    #[test]
    fn admits_and_allocates_in_order_then_runs_out() {
        let (mut reg, cred) = setup(5, None);
        let a = redeem(&mut reg, &req(&cred, "a", 1), 0).unwrap().unwrap();
        let b = redeem(&mut reg, &req(&cred, "b", 2), 0).unwrap().unwrap();
        assert_eq!(a.virtual_ip, Ipv4Addr::new(10, 1, 2, 1));
        assert_eq!(b.virtual_ip, Ipv4Addr::new(10, 1, 2, 2));
        let full = redeem(&mut reg, &req(&cred, "c", 3), 0).unwrap();
        assert!(matches!(full, Err(Refusal::NetworkFull { .. })));
    }

    #[test]
    fn a_rejoin_keeps_the_address_and_costs_no_use() {
        let (mut reg, cred) = setup(1, None);
        let first = redeem(&mut reg, &req(&cred, "a", 1), 0).unwrap().unwrap();
        let again = redeem(&mut reg, &req(&cred, "a", 1), 0).unwrap().unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn single_use_expired_wrong_and_duplicate_name_are_refused() {
        let (mut reg, cred) = setup(1, Some(100));
        redeem(&mut reg, &req(&cred, "a", 1), 10).unwrap().unwrap();
        let used = redeem(&mut reg, &req(&cred, "b", 2), 10).unwrap();
        assert_eq!(used, Err(Refusal::TokenUsedUp { uses: 1 }));

        let (mut reg, cred) = setup(3, Some(100));
        let late = redeem(&mut reg, &req(&cred, "a", 1), 100).unwrap();
        assert_eq!(late, Err(Refusal::TokenExpired { expired_unix: 100 }));

        let wrong = Credential([9; 32]);
        let bad = redeem(&mut reg, &req(&wrong, "a", 1), 0).unwrap();
        assert!(matches!(bad, Err(Refusal::BadCredential { .. })));

        redeem(&mut reg, &req(&cred, "a", 1), 0).unwrap().unwrap();
        let dup = redeem(&mut reg, &req(&cred, "a", 2), 0).unwrap();
        assert!(matches!(dup, Err(Refusal::NameTaken { .. })));
    }

    #[test]
    fn names_the_cli_would_refuse_are_refused_and_not_stored() {
        let (mut reg, cred) = setup(9, None);
        let long = "x".repeat(5000);
        for (i, bad) in ["", "a\nb", "\x1b[2J", long.as_str()]
            .into_iter()
            .enumerate()
        {
            let out = redeem(&mut reg, &req(&cred, bad, i as u8 + 1), 0).unwrap();
            let Err(Refusal::InvalidName { name }) = out else {
                panic!("{bad:?} admitted: {out:?}");
            };
            assert!(name.len() < 100, "quoted back whole: {} bytes", name.len());
        }
        assert!(reg.members("office").unwrap().is_empty());
    }

    /// Another server sharing the store admits `other` between this server's reads and its
    /// write (once), as PostgreSQL would interleave them.
    struct Interleaved {
        reg: MemoryRegistry,
        other: Option<(Member, [u8; 32])>,
    }

    impl Registry for Interleaved {
        fn network(&self, name: &str) -> Result<Option<Network>, RegistryError> {
            self.reg.network(name)
        }
        fn members(&self, network: &str) -> Result<Vec<Member>, RegistryError> {
            self.reg.members(network)
        }
        fn token(&self, network: &str, h: &[u8; 32]) -> Result<Option<TokenRecord>, RegistryError> {
            self.reg.token(network, h)
        }
        fn admit(&mut self, m: &Member, h: &[u8; 32]) -> Result<Admitted, RegistryError> {
            if let Some((other, oh)) = self.other.take() {
                assert_eq!(self.reg.admit(&other, &oh)?, Admitted::Yes);
            }
            self.reg.admit(m, h)
        }
        fn remove(&mut self, network: &str, key: &PublicKey) -> Result<bool, RegistryError> {
            self.reg.remove(network, key)
        }
    }

    use super::super::registry::Network;

    #[test]
    fn a_lost_race_is_read_again_and_takes_the_next_address_or_is_refused() {
        let (reg, cred) = setup(2, None);
        let other = Member::new(
            "office",
            "b",
            PublicKey([2; 32]),
            "10.1.2.1".parse().unwrap(),
            None,
        );
        let mut reg = Interleaved {
            reg,
            other: Some((other.clone(), cred.hash())),
        };
        // Both read .1 as free; the other server wrote first, so this join gets .2.
        let a = redeem(&mut reg, &req(&cred, "a", 1), 0).unwrap().unwrap();
        assert_eq!(a.virtual_ip.to_string(), "10.1.2.2");
        // A single-use token spent by the other server between the reads and the write.
        let (reg, cred) = setup(1, None);
        let mut reg = Interleaved {
            reg,
            other: Some((other, cred.hash())),
        };
        let refused = redeem(&mut reg, &req(&cred, "a", 1), 0).unwrap();
        assert_eq!(refused, Err(Refusal::TokenUsedUp { uses: 1 }));
    }
}
