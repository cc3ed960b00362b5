//! The node's side of the relay: binds its UDP socket to the relay identity the server gave it
//! over the control channel, keeps the binding fresh, and says which transport relayed packets
//! take: UDP when the binding is confirmed, else the control stream (TCP, or TLS on 443). A
//! binding that gets no answer within about a second counts as "UDP blocked", so nothing waits
//! on UDP that will never come.
//!
//! Every Bind carries a fresh counter and a tag under the ticket's bind key (see `server` for
//! why). When the server answers with a Challenge (the first bind, or after the node's NAT gave
//! it a new public address) the node repeats the Bind, with the Challenge's cookie, at once; it
//! answers each Challenge at most once and only for a Bind it sent since its last answer, so a
//! forged or repeated Challenge cannot make it loop, and forgets the cookie once a Bind is
//! confirmed.

use super::auth::{self, COOKIE_LEN};
use super::server::RelayTicket;
use super::wire::{self, Signed};
use crate::core::transmit::Transmit;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const BIND_RETRY: Duration = Duration::from_millis(300);
const BIND_TRIES: u32 = 4;
/// Refresh well inside the server's 45 s binding lifetime and any NAT's UDP timeout.
pub const REFRESH: Duration = Duration::from_secs(15);
const STALE: Duration = Duration::from_secs(40);
const RETRY_BLOCKED: Duration = Duration::from_secs(30);

/// How relayed packets travel to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayTransport {
    Udp,
    Stream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bind {
    Idle,
    Binding { tries: u32, next: Instant },
    Bound { last_ok: Instant, next: Instant },
    Blocked { retry_at: Instant },
}

pub struct RelayClient {
    server: Option<SocketAddr>,
    ticket: Option<RelayTicket>,
    bind: Bind,
    /// The counter of the last Bind sent under this ticket.
    counter: u64,
    /// The counter of the last Bind that answered a Challenge: older Challenges are stale.
    answered: u64,
    /// The counter of the last BindOk accepted.
    confirmed: u64,
    /// The cookie of the last Challenge, echoed in every Bind until one is confirmed. Then it
    /// is dropped: a refresh from the bound address needs none, and a refresh that carried it
    /// would be a ready-made move to that address for anyone who out-raced it from there.
    cookie: [u8; COOKIE_LEN],
    last_bind: Option<Vec<u8>>,
    pub progress: VecDeque<String>,
}

impl RelayClient {
    pub fn new(server: Option<SocketAddr>) -> Self {
        RelayClient {
            server,
            ticket: None,
            bind: Bind::Idle,
            counter: 0,
            answered: 0,
            confirmed: 0,
            cookie: [0; COOKIE_LEN],
            last_bind: None,
            progress: VecDeque::new(),
        }
    }

    /// The node registered with another server of its deployment: bind there (the ticket
    /// that follows is that server's).
    pub fn set_server(&mut self, server: SocketAddr) {
        self.server = Some(server);
    }

    pub fn ticket(&self) -> Option<RelayTicket> {
        self.ticket
    }

    /// A new registration brought a ticket (or none: the relay is full).
    pub fn set_ticket(&mut self, ticket: Option<RelayTicket>, now: Instant) {
        self.clear();
        self.ticket = ticket;
        self.bind = match ticket {
            // A server from before keyed binds: its UDP bind would refuse ours.
            Some(t) if t.key == [0; auth::KEY_LEN] => {
                self.progress.push_back(
                    "relay: the server is older than this node and cannot bind UDP securely; \
                     relaying through the control stream (TCP/TLS)"
                        .into(),
                );
                Bind::Idle
            }
            Some(_) => Bind::Binding {
                tries: 0,
                next: now,
            },
            None => Bind::Idle,
        };
    }

    /// The control stream ended: the server forgot the relay identity.
    pub fn clear(&mut self) {
        self.ticket = None;
        self.bind = Bind::Idle;
        self.counter = 0;
        self.answered = 0;
        self.confirmed = 0;
        self.cookie = [0; COOKIE_LEN];
        self.last_bind = None;
    }

    /// The last Bind datagram sent, as it went on the wire (for tests that play someone who
    /// watches this node's traffic).
    #[doc(hidden)]
    pub fn last_bind(&self) -> Option<&[u8]> {
        self.last_bind.as_deref()
    }

    /// The next Bind: a fresh counter, the current cookie, tagged under the bind key.
    fn next_bind(&mut self) -> Option<Vec<u8>> {
        let t = self.ticket?;
        self.counter += 1;
        let b = Signed {
            id: t.id,
            counter: self.counter,
            cookie: self.cookie,
            tag: auth::bind_tag(&t.key, t.id, self.counter, &self.cookie),
        };
        let bytes = wire::bind(&b);
        self.last_bind = Some(bytes.clone());
        Some(bytes)
    }

    fn send_bind(&mut self, out: &mut VecDeque<Transmit>) {
        if let (Some(server), Some(bytes)) = (self.server, self.next_bind()) {
            out.push_back(Transmit::main(server, bytes));
        }
    }

    /// The transport for relayed packets now, given whether the control stream is registered.
    pub fn transport(&self, stream_up: bool) -> Option<RelayTransport> {
        self.ticket?;
        match self.bind {
            Bind::Bound { .. } => Some(RelayTransport::Udp),
            _ if stream_up => Some(RelayTransport::Stream),
            _ => None,
        }
    }

    /// The server asks this address to prove it receives: repeat the Bind with its cookie.
    pub fn handle_challenge(&mut self, c: &Signed, out: &mut VecDeque<Transmit>) {
        let Some(t) = self.ticket.filter(|t| t.id == c.id) else {
            return;
        };
        let fresh = c.counter > self.answered && c.counter <= self.counter;
        if !fresh || !auth::challenge_valid(&t.key, t.id, c.counter, &c.cookie, &c.tag) {
            return;
        }
        self.cookie = c.cookie;
        self.send_bind(out);
        self.answered = self.counter;
    }

    pub fn handle_bind_ok(&mut self, ok: &wire::BindOk, now: Instant) {
        let Some(t) = self.ticket.filter(|t| t.id == ok.id) else {
            return;
        };
        let fresh = ok.counter > self.confirmed && ok.counter <= self.counter;
        if !fresh || !auth::bind_ok_valid(&t.key, t.id, ok.counter, &ok.tag) {
            return;
        }
        self.confirmed = ok.counter;
        self.cookie = [0; COOKIE_LEN];
        if !matches!(self.bind, Bind::Bound { .. }) {
            self.progress
                .push_back("relay: UDP to the server works; relaying over UDP".into());
        }
        self.bind = Bind::Bound {
            last_ok: now,
            next: now + REFRESH,
        };
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut VecDeque<Transmit>) {
        if self.ticket.is_none() || self.server.is_none() {
            return;
        }
        match self.bind {
            Bind::Binding { tries, next } if now >= next => {
                if tries >= BIND_TRIES {
                    self.progress.push_back(
                        "relay: no answer over UDP from the server; relaying through the control \
                         stream (TCP/TLS)"
                            .into(),
                    );
                    self.bind = Bind::Blocked {
                        retry_at: now + RETRY_BLOCKED,
                    };
                } else {
                    self.send_bind(out);
                    self.bind = Bind::Binding {
                        tries: tries + 1,
                        next: now + BIND_RETRY,
                    };
                }
            }
            Bind::Bound { last_ok, next } if now >= next => {
                if now.saturating_duration_since(last_ok) >= STALE {
                    self.bind = Bind::Binding {
                        tries: 0,
                        next: now,
                    };
                } else {
                    self.send_bind(out);
                    self.bind = Bind::Bound {
                        last_ok,
                        next: now + REFRESH,
                    };
                }
            }
            Bind::Blocked { retry_at } if now >= retry_at => {
                self.bind = Bind::Binding {
                    tries: 0,
                    next: now,
                };
            }
            _ => {}
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ticket?;
        match self.bind {
            Bind::Idle => None,
            Bind::Binding { next, .. } | Bind::Bound { next, .. } => Some(next),
            Bind::Blocked { retry_at } => Some(retry_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "198.51.100.1:7400";

    fn ticket() -> RelayTicket {
        RelayTicket {
            id: 7,
            key: [3; auth::KEY_LEN],
            token: [0; 16],
        }
    }

    fn bind_of(t: &Transmit) -> Signed {
        match wire::parse(&t.payload) {
            Some(wire::RelayDatagram::Bind(b)) => b,
            other => panic!("expected a Bind, got {other:?}"),
        }
    }

    fn ok_for(t: &RelayTicket, counter: u64) -> wire::BindOk {
        wire::BindOk {
            id: t.id,
            counter,
            tag: auth::bind_ok_tag(&t.key, t.id, counter),
        }
    }

    #[test]
    fn binds_over_udp_or_falls_back_to_the_stream_within_about_a_second() {
        let now = crate::test_now();
        let ticket = ticket();
        let mut c = RelayClient::new(Some(SERVER.parse().unwrap()));
        c.set_ticket(Some(ticket), now);
        assert_eq!(c.transport(true), Some(RelayTransport::Stream));
        let mut out = VecDeque::new();
        let mut t = now;
        for _ in 0..10 {
            c.handle_timeout(t, &mut out);
            t += BIND_RETRY;
        }
        assert_eq!(out.len(), BIND_TRIES as usize);
        // Every Bind has a fresh counter and a valid tag.
        let counters: Vec<u64> = out.iter().map(|t| bind_of(t).counter).collect();
        assert_eq!(counters, vec![1, 2, 3, 4]);
        let b = bind_of(&out[3]);
        assert!(auth::bind_valid(
            &ticket.key,
            b.id,
            b.counter,
            &b.cookie,
            &b.tag
        ));
        assert!(c.progress.iter().any(|l| l.contains("control stream")));
        assert_eq!(c.transport(true), Some(RelayTransport::Stream));
        assert_eq!(c.transport(false), None);
        // An answer (even late) switches to UDP; a forged one or one for a Bind never sent
        // does not.
        let mut forged = ok_for(&ticket, 4);
        forged.tag = [0; auth::TAG_LEN];
        c.handle_bind_ok(&forged, t);
        c.handle_bind_ok(&ok_for(&ticket, 9), t);
        assert_eq!(c.transport(true), Some(RelayTransport::Stream));
        c.handle_bind_ok(&ok_for(&ticket, 4), t);
        assert_eq!(c.transport(false), Some(RelayTransport::Udp));
        c.clear();
        assert_eq!(c.transport(true), None);
    }

    #[test]
    fn answers_each_genuine_challenge_once_with_its_cookie() {
        let now = crate::test_now();
        let ticket = ticket();
        let mut c = RelayClient::new(Some(SERVER.parse().unwrap()));
        c.set_ticket(Some(ticket), now);
        let mut out = VecDeque::new();
        c.handle_timeout(now, &mut out);
        let first = bind_of(&out[0]);
        let cookie = [5; COOKIE_LEN];
        let challenge = Signed {
            id: ticket.id,
            counter: first.counter,
            cookie,
            tag: auth::challenge_tag(&ticket.key, ticket.id, first.counter, &cookie),
        };
        // A forged challenge (bad tag) is ignored.
        c.handle_challenge(
            &Signed {
                tag: [0; auth::TAG_LEN],
                ..challenge
            },
            &mut out,
        );
        assert_eq!(out.len(), 1);
        c.handle_challenge(&challenge, &mut out);
        assert_eq!(out.len(), 2);
        let answer = bind_of(&out[1]);
        assert_eq!((answer.counter, answer.cookie), (2, cookie));
        // The same challenge again (replayed, or duplicated on the way) is not answered again.
        c.handle_challenge(&challenge, &mut out);
        assert_eq!(out.len(), 2);
        // Later binds echo the cookie until one is confirmed; refreshes after that carry none.
        c.handle_timeout(now + BIND_RETRY, &mut out);
        assert_eq!(bind_of(&out[2]).cookie, cookie);
        c.handle_bind_ok(&ok_for(&ticket, 3), now + BIND_RETRY);
        assert_eq!(c.transport(false), Some(RelayTransport::Udp));
        c.handle_timeout(now + BIND_RETRY + REFRESH, &mut out);
        assert_eq!(bind_of(&out[3]).cookie, [0; COOKIE_LEN]);
    }

    #[test]
    fn a_ticket_without_a_key_relays_through_the_stream_only() {
        let now = crate::test_now();
        let mut c = RelayClient::new(Some(SERVER.parse().unwrap()));
        c.set_ticket(
            Some(RelayTicket {
                key: [0; auth::KEY_LEN],
                ..ticket()
            }),
            now,
        );
        let mut out = VecDeque::new();
        c.handle_timeout(now, &mut out);
        assert!(out.is_empty());
        assert_eq!(c.transport(true), Some(RelayTransport::Stream));
        assert!(c.progress.iter().any(|l| l.contains("older")));
    }
}
