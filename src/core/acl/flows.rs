//! The node's flow table: which connections are under way with which peer, so that replies to
//! a connection this node opened pass the access rules (a stateful firewall, as Nebula's
//! conntrack). Fixed size, allocated once: `SETS` sets of `WAYS` slots, the set chosen by a
//! keyed hash (the seed comes from the node's RNG, so a peer choosing ports cannot aim at the
//! set holding another flow). A full set gives up its slot closest to expiry. Entries expire by
//! the `now` the caller passes; nothing here reads a clock.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Slots in all: 4096 flows at about 40 bytes each.
pub const SETS: usize = 1024;
pub const WAYS: usize = 4;

/// How long a flow lives after its last packet (Nebula's defaults for TCP and UDP).
pub const TCP_IDLE: Duration = Duration::from_secs(12 * 60);
pub const UDP_IDLE: Duration = Duration::from_secs(3 * 60);
pub const ICMP_IDLE: Duration = Duration::from_secs(30);

/// A flow seen from this node: the peer (by its overlay IPv4 address, which also names its
/// IPv6 one), the protocol, our port and theirs (an echo's identifier as our port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub peer: Ipv4Addr,
    pub v6: bool,
    /// 6 TCP, 17 UDP, 1 echo (either family).
    pub proto: u8,
    pub local_port: u16,
    pub remote_port: u16,
}

/// Who opened the flow. Replies to a flow we opened pass without a rule; a flow a peer opened
/// is checked against the rules on every packet, so a rule removed stops it at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Local,
    Remote,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: FlowKey,
    origin: Origin,
    expires: Instant,
}

pub struct FlowTable {
    slots: Box<[Option<Slot>]>,
    seed: u64,
}

impl FlowTable {
    pub fn new(seed: u64) -> Self {
        FlowTable {
            slots: vec![None; SETS * WAYS].into_boxed_slice(),
            seed,
        }
    }

    fn set(&self, key: &FlowKey) -> usize {
        // splitmix64 over the packed key, keyed by the seed.
        let packed = (u64::from(u32::from(key.peer)) << 32)
            ^ (u64::from(key.local_port) << 16)
            ^ u64::from(key.remote_port)
            ^ (u64::from(key.proto) << 56)
            ^ (u64::from(key.v6) << 63);
        let mut z = packed
            .wrapping_add(self.seed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z as usize % SETS) * WAYS
    }

    /// Who opened the live flow `key`, if there is one.
    pub fn get(&self, key: &FlowKey, now: Instant) -> Option<Origin> {
        let base = self.set(key);
        self.slots[base..base + WAYS]
            .iter()
            .flatten()
            .find(|s| s.key == *key && s.expires > now)
            .map(|s| s.origin)
    }

    /// Records a packet of `key` at `now`: a live flow keeps its origin and lives `idle` longer;
    /// a new one takes a free or expired slot, else the slot closest to expiry in its set.
    pub fn touch(&mut self, key: FlowKey, origin: Origin, idle: Duration, now: Instant) {
        let base = self.set(&key);
        let set = &mut self.slots[base..base + WAYS];
        let expires = now + idle;
        if let Some(s) = set
            .iter_mut()
            .flatten()
            .find(|s| s.key == key && s.expires > now)
        {
            s.expires = expires;
            return;
        }
        let victim = set
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.map(|s| (s.expires > now, s.expires)))
            .map(|(i, _)| i)
            .unwrap_or(0); // ok: WAYS > 0
        set[victim] = Some(Slot {
            key,
            origin,
            expires,
        });
    }

    /// Forgets the flows peers opened (the rules changed; they are checked again anyway).
    pub fn forget_remote(&mut self) {
        for slot in self.slots.iter_mut() {
            if slot.is_some_and(|s| s.origin == Origin::Remote) {
                *slot = None;
            }
        }
    }

    /// Live flows, for `status`.
    pub fn live(&self, now: Instant) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.expires > now)
            .count()
    }

    pub const fn capacity() -> usize {
        SETS * WAYS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(peer: u8, local: u16, remote: u16) -> FlowKey {
        FlowKey {
            peer: Ipv4Addr::new(10, 77, 0, peer),
            v6: false,
            proto: 6,
            local_port: local,
            remote_port: remote,
        }
    }

    #[test]
    fn a_flow_lives_until_it_idles_out() {
        let now = crate::test_now();
        let mut t = FlowTable::new(1);
        let k = key(2, 40000, 22);
        assert_eq!(t.get(&k, now), None);
        t.touch(k, Origin::Local, TCP_IDLE, now);
        assert_eq!(t.get(&k, now + TCP_IDLE / 2), Some(Origin::Local));
        // Another packet keeps it alive and keeps who opened it.
        t.touch(k, Origin::Remote, TCP_IDLE, now + TCP_IDLE / 2);
        assert_eq!(t.get(&k, now + TCP_IDLE), Some(Origin::Local));
        assert_eq!(t.get(&k, now + TCP_IDLE * 2), None);
        assert_eq!(t.live(now + TCP_IDLE * 2), 0);
    }

    #[test]
    fn forgetting_remote_flows_keeps_ours() {
        let now = crate::test_now();
        let mut t = FlowTable::new(1);
        t.touch(key(2, 1, 2), Origin::Local, UDP_IDLE, now);
        t.touch(key(2, 22, 3), Origin::Remote, UDP_IDLE, now);
        t.forget_remote();
        assert_eq!(t.get(&key(2, 1, 2), now), Some(Origin::Local));
        assert_eq!(t.get(&key(2, 22, 3), now), None);
    }

    #[test]
    fn a_flood_of_flows_stays_within_capacity() {
        let now = crate::test_now();
        let mut t = FlowTable::new(7);
        for i in 0..3 * FlowTable::capacity() as u32 {
            let k = key((i % 200) as u8, (i / 200) as u16, 80);
            t.touch(k, Origin::Remote, UDP_IDLE, now);
            assert_eq!(t.get(&k, now), Some(Origin::Remote));
        }
        let live = t.live(now);
        assert!(live <= FlowTable::capacity(), "{live}");
        assert!(
            live > FlowTable::capacity() * 9 / 10,
            "{live}: the sets fill evenly"
        );
    }

    proptest! {
        /// However many flows arrive, the table never holds more than its capacity, the newest
        /// flow is always found, and nothing expired is reported.
        #[test]
        fn bounded_and_the_newest_is_kept(
            seed in any::<u64>(),
            flows in prop::collection::vec((any::<u8>(), any::<u16>(), any::<u16>(), 0u64..400), 1..600),
        ) {
            let start = crate::test_now();
            let mut t = FlowTable::new(seed);
            let mut now = start;
            for (peer, l, r, dt) in flows {
                now += Duration::from_millis(dt);
                let k = key(peer, l, r);
                t.touch(k, Origin::Local, ICMP_IDLE, now);
                prop_assert_eq!(t.get(&k, now), Some(Origin::Local));
                prop_assert_eq!(t.get(&k, now + ICMP_IDLE), None);
            }
            prop_assert!(t.live(now) <= FlowTable::capacity());
        }
    }
}
