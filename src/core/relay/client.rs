//! The node's side of the relay: binds its UDP socket to the relay identity the server gave it
//! over the control channel, keeps the binding fresh, and says which transport relayed packets
//! take: UDP when the binding is confirmed, else the control stream (TCP, or TLS on 443). A
//! binding that gets no answer within about a second counts as "UDP blocked", so nothing waits
//! on UDP that will never come.

use super::server::RelayTicket;
use super::wire;
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
    pub progress: VecDeque<String>,
}

impl RelayClient {
    pub fn new(server: Option<SocketAddr>) -> Self {
        RelayClient {
            server,
            ticket: None,
            bind: Bind::Idle,
            progress: VecDeque::new(),
        }
    }

    pub fn ticket(&self) -> Option<RelayTicket> {
        self.ticket
    }

    /// A new registration brought a ticket (or none: the relay is full).
    pub fn set_ticket(&mut self, ticket: Option<RelayTicket>, now: Instant) {
        self.ticket = ticket;
        self.bind = match ticket {
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

    pub fn handle_bind_ok(&mut self, token: &[u8; wire::TOKEN_LEN], now: Instant) {
        if self.ticket.map(|t| t.token) != Some(*token) {
            return;
        }
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
        let (Some(ticket), Some(server)) = (self.ticket, self.server) else {
            return;
        };
        let send = |out: &mut VecDeque<Transmit>| {
            out.push_back(Transmit::main(server, wire::bind(&ticket.token)));
        };
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
                    send(out);
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
                    send(out);
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

    #[test]
    fn binds_over_udp_or_falls_back_to_the_stream_within_about_a_second() {
        let now = crate::test_now();
        let server = "198.51.100.1:7400".parse().unwrap();
        let ticket = RelayTicket {
            id: 7,
            token: [3; wire::TOKEN_LEN],
        };
        let mut c = RelayClient::new(Some(server));
        c.set_ticket(Some(ticket), now);
        assert_eq!(c.transport(true), Some(RelayTransport::Stream));
        let mut out = VecDeque::new();
        let mut t = now;
        for _ in 0..10 {
            c.handle_timeout(t, &mut out);
            t += BIND_RETRY;
        }
        assert_eq!(out.len(), BIND_TRIES as usize);
        assert!(c.progress.iter().any(|l| l.contains("control stream")));
        assert_eq!(c.transport(true), Some(RelayTransport::Stream));
        assert_eq!(c.transport(false), None);
        // An answer (even late) switches to UDP; a wrong token does not.
        c.handle_bind_ok(&[9; wire::TOKEN_LEN], t);
        assert_eq!(c.transport(true), Some(RelayTransport::Stream));
        c.handle_bind_ok(&ticket.token, t);
        assert_eq!(c.transport(false), Some(RelayTransport::Udp));
        c.clear();
        assert_eq!(c.transport(true), None);
    }
}
