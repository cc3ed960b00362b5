//! Admission: checking a join token and giving the new member a name and an address. The rules
//! live here once, whichever registry backs them.

use super::messages::Refusal;
use super::names::{check_node_name, NameError};
use super::registry::{Member, Registry, RegistryError};
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

/// Checks the name and the token and admits the key. A key that is already a member gets its
/// existing record back (same name, same address), so re-running `join` on a machine is harmless.
pub fn redeem<R: Registry>(
    registry: &mut R,
    req: &JoinRequest<'_>,
    unix_now: u64,
) -> Result<Result<Member, Refusal>, RegistryError> {
    // First, and whatever else is wrong: the name is what gets printed on other members' screens.
    if let Err(NameError::Node(name) | NameError::Network(name)) = check_node_name(req.name) {
        return Ok(Err(Refusal::InvalidName { name }));
    }
    let Some(network) = registry.network(req.network)? else {
        return Ok(Err(Refusal::UnknownNetwork {
            network: req.network.to_string(),
        }));
    };
    let hash = req.credential.hash();
    let Some(token) = registry.token(req.network, &hash)? else {
        return Ok(Err(Refusal::BadCredential {
            network: req.network.to_string(),
        }));
    };
    let members = registry.members(req.network)?;
    if let Some(existing) = members.iter().find(|m| m.public_key == req.key) {
        return Ok(Ok(existing.clone()));
    }
    if let Some(expires) = token.expires_unix {
        if unix_now >= expires {
            return Ok(Err(Refusal::TokenExpired {
                expired_unix: expires,
            }));
        }
    }
    if token.uses >= token.max_uses {
        return Ok(Err(Refusal::TokenUsedUp {
            uses: token.max_uses,
        }));
    }
    if members.iter().any(|m| m.name == req.name) {
        return Ok(Err(Refusal::NameTaken {
            name: req.name.to_string(),
        }));
    }
    let used: HashSet<Ipv4Addr> = members.iter().map(|m| m.virtual_ip).collect();
    let Some(virtual_ip) = allocate_address(network.cidr, &used) else {
        return Ok(Err(Refusal::NetworkFull { cidr: network.cidr }));
    };
    let member = Member::new(&network.name, req.name, req.key, virtual_ip, network.ipv6);
    registry.admit(&member, &hash)?;
    Ok(Ok(member))
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
}
