//! The node's enforcement, as `status` and `doctor` report it.

use super::packet::tests::{echo, ports, v4};
use super::policy::{for_member, Member};
use super::rule::Rule;
use super::*;
use proptest::prelude::*;

const ALICE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const BOB: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const CAROL: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);

fn members() -> Vec<Member> {
    let m = |name: &str, ip, tags: &[&str]| Member {
        name: name.into(),
        virtual_ip: ip,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    };
    vec![
        m("alice", ALICE, &["admin"]),
        m("bob", BOB, &["server"]),
        m("carol", CAROL, &[]),
    ]
}

/// Bob's policy under `rules`.
fn bob_policy(rules: &[&str]) -> Option<NodePolicy> {
    let rules: Vec<Rule> = rules.iter().map(|r| r.parse().unwrap()).collect();
    let members = members();
    for_member(&rules, &members, &members[1])
}

fn tcp(from: Ipv4Addr, to: Ipv4Addr, src: u16, dst: u16) -> Vec<u8> {
    v4(6, from, to, &ports(src, dst))
}

fn ping(from: Ipv4Addr, to: Ipv4Addr, kind: u8) -> Vec<u8> {
    v4(1, from, to, &echo(kind, 42))
}

#[test]
fn only_tcp_22_from_admins_reaches_the_server() {
    let now = crate::test_now();
    let mut bob = Acl::new(5);
    bob.set_policy(bob_policy(&["tcp 22 from tag:admin to tag:server"]));
    assert_eq!(bob.inbound(ALICE, &tcp(ALICE, BOB, 40000, 22), now), Ok(()));
    assert_eq!(
        bob.inbound(ALICE, &tcp(ALICE, BOB, 40001, 80), now),
        Err(Denied {
            proto: Proto::Tcp,
            port: Some(80)
        })
    );
    assert!(bob.inbound(ALICE, &ping(ALICE, BOB, 8), now).is_err());
    assert!(bob
        .inbound(CAROL, &tcp(CAROL, BOB, 40000, 22), now)
        .is_err());
    let status = bob.status(now);
    assert!(status.enforced);
    assert_eq!(status.denied, 3);
    let rules = status.rules.unwrap();
    assert_eq!(rules[0].rule, "tcp 22 from tag:admin to tag:server");
    assert_eq!(rules[0].admitted, 1);
    let doctor = bob.explain(ALICE, "alice", now).join("\n");
    assert!(doctor.contains("rule 1: tcp 22 from tag:admin"), "{doctor}");
    assert!(
        doctor.contains("dropped from alice: tcp 80 (1 packet(s)"),
        "{doctor}"
    );
    assert!(doctor.contains("dropped from alice: icmp"), "{doctor}");
    let doctor = bob.explain(CAROL, "carol", now).join("\n");
    assert!(
        doctor.contains("no rule lets carol open connections"),
        "{doctor}"
    );
    assert!(
        doctor.contains("no rule lets this node open connections to carol"),
        "{doctor}"
    );
    // Alice's side: why her packets to bob may be dropped there.
    let members = members();
    let rules: Vec<Rule> = vec!["tcp 22 from tag:admin to tag:server".parse().unwrap()];
    let mut alice = Acl::new(1);
    alice.set_policy(for_member(&rules, &members, &members[0]));
    let doctor = alice.explain(BOB, "bob", now).join("\n");
    assert!(
        doctor.contains("this node may connect to bob under rule 1: tcp 22 from tag:admin"),
        "{doctor}"
    );
}

#[test]
fn replies_to_what_this_node_opened_pass() {
    let now = crate::test_now();
    // Alice is named by no `to`: nothing may start a connection to her.
    let members = members();
    let rules: Vec<Rule> = vec!["tcp 22 from tag:admin to tag:server".parse().unwrap()];
    let mut alice = Acl::new(5);
    alice.set_policy(for_member(&rules, &members, &members[0]));
    assert!(alice
        .inbound(BOB, &tcp(BOB, ALICE, 22, 40000), now)
        .is_err());
    alice.outbound(BOB, &tcp(ALICE, BOB, 40000, 22), now);
    assert_eq!(alice.inbound(BOB, &tcp(BOB, ALICE, 22, 40000), now), Ok(()));
    // Only that flow: another port of bob's, or carol using the same ports, is not a reply.
    assert!(alice
        .inbound(BOB, &tcp(BOB, ALICE, 23, 40000), now)
        .is_err());
    assert!(alice
        .inbound(CAROL, &tcp(CAROL, ALICE, 22, 40000), now)
        .is_err());
    // Echo replies to alice's ping pass, an echo request from bob does not.
    alice.outbound(BOB, &ping(ALICE, BOB, 8), now);
    assert_eq!(alice.inbound(BOB, &ping(BOB, ALICE, 0), now), Ok(()));
    // An ICMP error quoting alice's own segment to bob passes; one quoting another does not.
    let error_about = |sport: u16| {
        let mut l4 = vec![3, 3, 0, 0, 0, 0, 0, 0];
        l4.extend_from_slice(&tcp(ALICE, BOB, sport, 22)[..28]);
        v4(1, BOB, ALICE, &l4)
    };
    assert_eq!(alice.inbound(BOB, &error_about(40000), now), Ok(()));
    assert!(alice.inbound(BOB, &error_about(40009), now).is_err());
    // Once idle long enough, the flow is gone.
    let later = now + flows::TCP_IDLE + Duration::from_secs(1);
    assert!(alice
        .inbound(BOB, &tcp(BOB, ALICE, 22, 40000), later)
        .is_err());
}

#[test]
fn a_rule_change_applies_to_flows_already_open() {
    let now = crate::test_now();
    let mut bob = Acl::new(5);
    // No rules: all passes, as before rules existed.
    assert_eq!(bob.inbound(ALICE, &tcp(ALICE, BOB, 40000, 80), now), Ok(()));
    bob.outbound(ALICE, &tcp(BOB, ALICE, 80, 40000), now);
    // Bob's own connection to carol, opened before the rules.
    bob.outbound(CAROL, &tcp(BOB, CAROL, 50000, 443), now);
    bob.set_policy(bob_policy(&["tcp 22 from tag:admin to tag:server"]));
    // Alice's connection to port 80 was hers: judged by the new rules, dropped.
    assert!(bob
        .inbound(ALICE, &tcp(ALICE, BOB, 40000, 80), now)
        .is_err());
    // Bob's own connection keeps its replies.
    assert_eq!(
        bob.inbound(CAROL, &tcp(CAROL, BOB, 443, 50000), now),
        Ok(())
    );
    // The rule is removed (rules remain, none for bob): port 22 stops too.
    assert_eq!(bob.inbound(ALICE, &tcp(ALICE, BOB, 40002, 22), now), Ok(()));
    bob.outbound(ALICE, &tcp(BOB, ALICE, 22, 40002), now);
    bob.set_policy(bob_policy(&["icmp from * to carol"]));
    assert!(bob
        .inbound(ALICE, &tcp(ALICE, BOB, 40002, 22), now)
        .is_err());
    // All rules gone: all passes again.
    bob.set_policy(None);
    assert_eq!(bob.inbound(ALICE, &tcp(ALICE, BOB, 40002, 22), now), Ok(()));
    assert!(!bob.status(now).enforced);
}

#[test]
fn the_denial_log_is_bounded() {
    let now = crate::test_now();
    let mut bob = Acl::new(5);
    bob.set_policy(bob_policy(&[]).or(Some(NodePolicy::default())));
    for port in 1..=100u16 {
        assert!(bob.inbound(ALICE, &tcp(ALICE, BOB, 1, port), now).is_err());
    }
    let status = bob.status(now);
    assert_eq!(status.denied, 100);
    assert_eq!(status.recent_denials.len(), DENIAL_LOG);
}

fn packet() -> impl Strategy<Value = (bool, Vec<u8>)> {
    (any::<bool>(), 0u8..3, any::<u16>(), any::<u16>()).prop_map(|(from_alice, kind, a, b)| {
        let (src, dst) = if from_alice {
            (ALICE, BOB)
        } else {
            (CAROL, BOB)
        };
        let p = match kind {
            0 => tcp(src, dst, a, b),
            1 => v4(17, src, dst, &ports(a, b)),
            _ => v4(1, src, dst, &echo(8, a)),
        };
        (from_alice, p)
    })
}

proptest! {
    /// Under "tcp 22 from tag:admin to tag:server" a packet that opens something reaches bob
    /// exactly when it is TCP to port 22 from alice; drops are all counted.
    #[test]
    fn inbound_matches_the_rule_exactly(packets in prop::collection::vec(packet(), 1..50)) {
        let now = crate::test_now();
        let mut bob = Acl::new(9);
        bob.set_policy(bob_policy(&["tcp 22 from tag:admin to tag:server"]));
        let mut drops = 0;
        for (from_alice, p) in packets {
            let peer = if from_alice { ALICE } else { CAROL };
            let parsed = packet::parse(&p).unwrap();
            let want = from_alice
                && matches!(parsed.transport, Transport::Tcp { dst: 22, .. });
            let got = bob.inbound(peer, &p, now);
            prop_assert_eq!(got.is_ok(), want, "{:?}", parsed);
            drops += u64::from(got.is_err());
        }
        prop_assert_eq!(bob.status(now).denied, drops);
    }

    /// Without rules nothing is dropped.
    #[test]
    fn no_rules_allow_everything(packets in prop::collection::vec(packet(), 1..50)) {
        let now = crate::test_now();
        let mut bob = Acl::new(9);
        for (from_alice, p) in packets {
            let peer = if from_alice { ALICE } else { CAROL };
            prop_assert!(bob.inbound(peer, &p, now).is_ok());
        }
    }
}
