//! Connection caps, checked as each TCP connection is accepted (before TLS or Noise), shared by
//! every listener: at most `per_source` connections from one address and `total` in all.
//!
//! Over the per-source cap a connection is closed at once: one address cannot crowd out the
//! others. At the total cap a newcomer takes the place of the oldest connection that has not
//! registered as a member yet (still in TLS or Noise, or not yet past Join/Hello); only when
//! every connection is a member's is the newcomer refused. So connections that send nothing
//! cannot lock nodes out: to keep a node from registering, an attacker would have to open more
//! than `total` connections within the node's one round trip.
//!
//! A place is given back only when the connection's socket is closed (its `Permit` is dropped
//! by the last task holding part of it), so the count is of descriptors really in use. An
//! evicted connection keeps its place until its tasks have closed it; during a burst, at most
//! `headroom` such connections may be closing at once beyond `total`, after which newcomers
//! are refused until they are gone. `fd_limit` keeps `total + headroom` below the descriptor
//! limit.

use crate::core::rendezvous::server::ConnId;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    pub total: usize,
    pub per_source: usize,
}

/// What the per-source cap counts: an IPv4 address, or an IPv6 /64, since one host or site
/// normally holds a whole /64 (RFC 4291 §2.5.1: 64-bit interface identifiers) and could
/// otherwise pick a fresh address for every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => Source::V6Prefix((v6.to_bits() >> 64) as u64),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::V4(ip) => write!(f, "{ip}"),
            Source::V6Prefix(p) => {
                let ip = std::net::Ipv6Addr::from_bits(u128::from(*p) << 64);
                write!(f, "{ip}/64")
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `--max-conns-per-ip` reached for this source.
    PerSource(Source),
    /// `--max-conns` reached, and every connection is a member's or still closing.
    Total,
}

struct Entry {
    source: Source,
    kill: Arc<Notify>,
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Entry>,
    per_source: HashMap<Source, usize>,
    /// Connections not registered as members, oldest (lowest id) first: eviction candidates.
    pending: BTreeSet<ConnId>,
}

impl State {
    fn remove(&mut self, id: ConnId) -> Option<Entry> {
        let entry = self.conns.remove(&id)?;
        self.pending.remove(&id);
        if let Some(n) = self.per_source.get_mut(&entry.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&entry.source);
            }
        }
        Some(entry)
    }
}

pub struct ConnLimiter {
    limits: ConnLimits,
    /// `limits.total` plus the evicted connections that may still be closing.
    ceiling: usize,
    state: Mutex<State>,
}

/// How many evicted connections may still be closing beyond the total cap.
pub fn headroom(total: usize) -> usize {
    16 + total / 16
}

/// A connection's place under the caps, given back when dropped. `kill` fires when a newcomer
/// evicted this connection: its task must then close it.
pub struct Permit {
    id: ConnId,
    limiter: Arc<ConnLimiter>,
    pub kill: Arc<Notify>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.lock().remove(self.id);
    }
}

pub struct Admitted {
    pub permit: Permit,
    /// The pending connection closed to make room, if the total cap was reached.
    pub evicted: Option<ConnId>,
}

impl ConnLimiter {
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(ConnLimiter {
            limits,
            ceiling: limits.total.saturating_add(headroom(limits.total)),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement that changes it, so a panic elsewhere
        // while the lock was held leaves nothing to repair.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connection `id` from `ip` was accepted: admit it or say why not.
    pub fn admit(self: &Arc<Self>, id: ConnId, ip: IpAddr) -> Result<Admitted, Refused> {
        let source = Source::of(ip);
        let mut st = self.lock();
        if st.per_source.get(&source).copied().unwrap_or(0) >= self.limits.per_source {
            return Err(Refused::PerSource(source));
        }
        let live = st.conns.len();
        if live >= self.ceiling {
            return Err(Refused::Total);
        }
        let mut evicted = None;
        if live >= self.limits.total {
            let oldest = st.pending.pop_first().ok_or(Refused::Total)?;
            // It keeps its place (and its descriptor) until its tasks have closed it.
            if let Some(entry) = st.conns.get(&oldest) {
                entry.kill.notify_one();
            }
            evicted = Some(oldest);
        }
        let kill = Arc::new(Notify::new());
        st.conns.insert(
            id,
            Entry {
                source,
                kill: kill.clone(),
            },
        );
        *st.per_source.entry(source).or_insert(0) += 1;
        st.pending.insert(id);
        Ok(Admitted {
            permit: Permit {
                id,
                limiter: self.clone(),
                kill,
            },
            evicted,
        })
    }

    /// `id` registered as a member: it is no longer evicted for newcomers.
    pub fn mark_member(&self, id: ConnId) {
        self.lock().pending.remove(&id);
    }

    /// Connections holding a place now.
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_source_cannot_take_more_than_its_share() {
        let l = ConnLimiter::new(ConnLimits {
            total: 10,
            per_source: 2,
        });
        let a = l.admit(1, ip("192.0.2.1")).unwrap();
        let _b = l.admit(2, ip("192.0.2.1")).unwrap();
        let src = Source::of(ip("192.0.2.1"));
        assert_eq!(
            l.admit(3, ip("192.0.2.1")).err(),
            Some(Refused::PerSource(src))
        );
        // The same address written as IPv4-mapped IPv6 is the same source.
        assert!(l.admit(3, ip("::ffff:192.0.2.1")).is_err());
        assert!(l.admit(4, ip("192.0.2.2")).is_ok());
        drop(a);
        assert!(l.admit(5, ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn an_ipv6_64_is_one_source() {
        let l = ConnLimiter::new(ConnLimits {
            total: 10,
            per_source: 1,
        });
        let _a = l.admit(1, ip("2001:db8:1:2::1")).unwrap();
        assert!(l.admit(2, ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(l.admit(3, ip("2001:db8:1:3::1")).is_ok());
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[tokio::test]
    async fn at_the_total_cap_the_oldest_pending_connection_makes_room() {
        let l = ConnLimiter::new(ConnLimits {
            total: 3,
            per_source: 10,
        });
        let member = l.admit(1, ip("192.0.2.1")).unwrap();
        l.mark_member(1);
        let oldest = l.admit(2, ip("192.0.2.2")).unwrap();
        let _newer = l.admit(3, ip("192.0.2.3")).unwrap();
        let admitted = l.admit(4, ip("192.0.2.4")).unwrap();
        assert_eq!(admitted.evicted, Some(2));
        tokio::time::timeout(Duration::from_secs(1), oldest.permit.kill.notified())
            .await
            .expect("the evicted connection is told to close");
        // Until its socket is closed it still counts.
        assert_eq!(l.open(), 4);
        drop(oldest);
        assert_eq!(l.open(), 3);
        // The member is never evicted: with only members left, newcomers are refused.
        l.mark_member(3);
        l.mark_member(4);
        assert_eq!(l.admit(5, ip("192.0.2.5")).err(), Some(Refused::Total));
        drop(member);
        assert!(l.admit(6, ip("192.0.2.5")).is_ok());
    }

    #[test]
    fn a_burst_cannot_pile_up_closing_connections_past_the_ceiling() {
        let total = 32;
        let l = ConnLimiter::new(ConnLimits {
            total,
            per_source: 1000,
        });
        let ceiling = total + headroom(total);
        // Nobody closes anything: every newcomer past the cap evicts one that is still closing.
        let held: Vec<_> = (0..ceiling as u64)
            .map(|id| l.admit(id, ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(l.admit(999, ip("192.0.2.2")).err(), Some(Refused::Total));
        assert_eq!(l.open(), ceiling);
        drop(held);
        assert_eq!(l.open(), 0);
    }
}
