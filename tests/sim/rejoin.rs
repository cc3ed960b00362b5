//! A member removed and joined again under its old name before the server's next look at the
//! store (the soak's fast re-join): the server gives the freed address to the new key, and the
//! record of the new key can reach the other nodes before the removal of the old one. They must
//! end up talking to the new key, not keep the old one and drop the new one's handshakes.

use crate::harness::{ping_packet, UNIX_NOW};
use p2pvpn::core::peers::Path;
use std::time::Duration;

#[test]
fn a_member_removed_and_rejoined_at_once_is_reachable_under_its_new_key() {
    let mut sim = crate::two_nodes();
    let old_bob = sim.nodes[1].secret.public_key();
    // `network remove-member sim bob` in the store; the server has not polled the store yet.
    assert!(sim.server.registry_mut().remove_member("sim", "bob"));
    if let Some(conn) = sim.nodes[1].conn.take() {
        sim.server.handle_closed(conn);
    }
    sim.nodes.remove(1);
    // bob joins again at once with a fresh key and comes up; it gets the freed address.
    let new_bob = sim.add_node("bob", "198.51.100.13:51000");
    sim.advance(Duration::from_secs(2));
    // Only now does the server see the removal in the store.
    sim.server.handle_registry_changed();
    sim.advance(Duration::from_secs(6));

    let alice = sim.nodes[0].node.status(UNIX_NOW);
    let bob = alice
        .peers
        .iter()
        .find(|p| p.name == "bob")
        .expect("alice knows bob");
    assert_ne!(
        bob.public_key, old_bob,
        "alice still holds bob's removed key"
    );
    assert_eq!(bob.public_key, sim.nodes[new_bob].secret.public_key());
    assert_eq!(
        bob.virtual_ip.octets(),
        crate::B_IP,
        "the freed address is reused"
    );
    assert_eq!(alice.peers.len(), 1, "{:?}", alice.peers);
    assert_ne!(bob.path, Path::Offline, "{bob:?}");
    let packet = ping_packet(crate::A_IP, crate::B_IP, 7);
    assert!(sim.send_from_tun(0, &packet));
    sim.advance(Duration::from_secs(1));
    assert!(
        sim.nodes[new_bob].tun_out.contains(&packet),
        "the new bob never got alice's packet"
    );
}
