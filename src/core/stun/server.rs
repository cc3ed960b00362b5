//! The server's STUN responder (RFC 5389 §7.3, RFC 5780 §6, RFC 3489 §8.1), sans-IO: it maps
//! one received datagram to at most one reply and names the local socket to send it from.
//!
//! Socket layout. Each primary listen address A:P gets an alternate port A:P' (P' = P + 1
//! unless configured). Two listen addresses with different IPs of the same family (A1, A2, paired
//! in the order given) make an RFC 5780 group of four sockets: A1:P1, A1:P1', A2:P2, A2:P2'. A
//! CHANGE-REQUEST flips the IP and/or the port within the group, and OTHER-ADDRESS names the
//! socket with both flipped. Without a second IP, "change IP" cannot be honoured: RFC 5780 §6.1
//! answers 420.

use super::attribute::{self, Attribute, ChangeRequest, ErrorCode};
use super::message::{Class, Message, BINDING};
use std::collections::HashMap;
use std::net::SocketAddr;
use thiserror::Error;

/// Sent in SOFTWARE (RFC 5389 §15.10) so operators can tell what answered.
const SOFTWARE: &str = concat!("p2pvpn ", env!("CARGO_PKG_VERSION"));

/// A datagram the driver must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StunReply {
    /// The local socket to send it from (one of [`StunResponder::sockets`]).
    pub via: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LayoutError {
    /// Port 65535 has no port after it.
    #[error("{addr} has no next port to use as its alternate")]
    NoAlternatePort { addr: SocketAddr },
    /// Two sockets of the layout would be the same address.
    #[error("the alternate port {port} of {addr} is also a listen port")]
    Collision { addr: SocketAddr, port: u16 },
}

/// Where a socket sits in its group: which IP (0 or 1) and which port (primary 0, alternate 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    group: usize,
    ip: usize,
    port: usize,
}

/// Answers Binding requests on every UDP socket of the server.
#[derive(Clone, Debug)]
pub struct StunResponder {
    /// `groups[g][ip][port]`; the second IP row is absent for an unpaired address.
    groups: Vec<Vec<[SocketAddr; 2]>>,
    positions: HashMap<SocketAddr, Position>,
}

impl StunResponder {
    /// Lays out the sockets for `listen` (the primaries, in order) with `alternate_port` for
    /// every primary, or P + 1 when `None`.
    pub fn new(listen: &[SocketAddr], alternate_port: Option<u16>) -> Result<Self, LayoutError> {
        let mut rows = Vec::new();
        for &addr in listen {
            let alt = match alternate_port {
                Some(p) => p,
                None => addr
                    .port()
                    .checked_add(1)
                    .ok_or(LayoutError::NoAlternatePort { addr })?,
            };
            rows.push([addr, SocketAddr::new(addr.ip(), alt)]);
        }
        let mut positions = HashMap::new();
        let mut groups: Vec<Vec<[SocketAddr; 2]>> = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let paired = rows.get(i + 1).filter(|next| pairable(rows[i][0], next[0]));
            let group = match paired {
                Some(next) => vec![rows[i], *next],
                None => vec![rows[i]],
            };
            i += group.len();
            for (ip, row) in group.iter().enumerate() {
                for (port, addr) in row.iter().enumerate() {
                    let pos = Position {
                        group: groups.len(),
                        ip,
                        port,
                    };
                    if positions.insert(*addr, pos).is_some() {
                        return Err(LayoutError::Collision {
                            addr: row[0],
                            port: row[1].port(),
                        });
                    }
                }
            }
            groups.push(group);
        }
        Ok(StunResponder { groups, positions })
    }

    /// Every UDP socket the server must bind: each primary, then its alternate port.
    pub fn sockets(&self) -> Vec<SocketAddr> {
        self.groups.iter().flatten().flatten().copied().collect()
    }

    /// The primary listen addresses that have a partner IP, so RFC 5780 tests work there.
    pub fn rfc5780_addresses(&self) -> Vec<SocketAddr> {
        self.groups
            .iter()
            .filter(|g| g.len() == 2)
            .flat_map(|g| g.iter().map(|row| row[0]))
            .collect()
    }

    /// The socket a response to a request received on `local` comes from under `change`.
    fn target(&self, local: SocketAddr, change: ChangeRequest) -> Option<SocketAddr> {
        let pos = self.positions.get(&local)?;
        let group = self.groups.get(pos.group)?;
        let ip = if change.change_ip {
            if group.len() < 2 {
                return None;
            }
            1 - pos.ip
        } else {
            pos.ip
        };
        let port = if change.change_port {
            1 - pos.port
        } else {
            pos.port
        };
        Some(group[ip][port])
    }

    /// OTHER-ADDRESS / CHANGED-ADDRESS for a request received on `local`: the socket that differs
    /// in both IP and port (RFC 5780 §7.4), when there is a second IP.
    pub fn other_address(&self, local: SocketAddr) -> Option<SocketAddr> {
        self.target(local, ChangeRequest::IP_AND_PORT)
    }

    /// The reply to `bytes`, received on the local socket `local` from `from`. `None` for
    /// anything that is not a Binding request (garbage, responses, other methods) and for
    /// requests arriving on a socket outside the layout.
    pub fn respond(&self, local: SocketAddr, from: SocketAddr, bytes: &[u8]) -> Option<StunReply> {
        if !self.positions.contains_key(&local) {
            return None;
        }
        let req = Message::decode(bytes).ok()?;
        if req.class != Class::Request || req.method != BINDING {
            return None;
        }
        let change = req
            .find(|a| match a {
                Attribute::ChangeRequest(c) => Some(*c),
                _ => None,
            })
            .unwrap_or_default();
        if req.id.is_classic() {
            return self.respond_classic(local, from, &req, change);
        }
        let error = |code, reason: &str, unknown: Vec<u16>| {
            let mut msg =
                Message::new(Class::Error, BINDING, req.id).with(Attribute::ErrorCode(ErrorCode {
                    code,
                    reason: reason.into(),
                }));
            if !unknown.is_empty() {
                msg.attributes.push(Attribute::UnknownAttributes(unknown));
            }
            msg.attributes.push(Attribute::Software(SOFTWARE.into()));
            msg.fingerprint = true;
            Some(StunReply {
                via: local,
                to: from,
                bytes: msg.encode(),
            })
        };
        // RFC 5389 §7.3.1: unknown comprehension-required attributes are refused with 420.
        if !req.unknown_required.is_empty() {
            return error(420, "Unknown Attribute", req.unknown_required.clone());
        }
        // RFC 5780 §6.1: a change this server cannot make is refused with 420 as well.
        let Some(via) = self.target(local, change) else {
            return error(420, "Unknown Attribute", vec![attribute::CHANGE_REQUEST]);
        };
        let response_port = req.find(|a| match a {
            Attribute::ResponsePort(p) => Some(*p),
            _ => None,
        });
        // RFC 5780 §7.5: the answer goes to the source IP and the given port; port 0 cannot be
        // sent to.
        let to = match response_port {
            Some(0) => return error(400, "Bad Request", Vec::new()),
            Some(port) => SocketAddr::new(from.ip(), port),
            None => from,
        };
        let mut msg =
            Message::new(Class::Success, BINDING, req.id).with(Attribute::XorMappedAddress(from));
        if !via.ip().is_unspecified() {
            msg.attributes.push(Attribute::ResponseOrigin(via));
        }
        if let Some(other) = self.other_address(local) {
            msg.attributes.push(Attribute::OtherAddress(other));
        }
        msg.attributes.push(Attribute::Software(SOFTWARE.into()));
        msg.fingerprint = true;
        Some(StunReply {
            via,
            to,
            bytes: msg.encode(),
        })
    }

    /// RFC 3489 §8.1: MAPPED-ADDRESS, SOURCE-ADDRESS and CHANGED-ADDRESS, the id copied (RFC
    /// 5389 §12.2). Classic clients know no 420 for CHANGE-REQUEST and would misread an error
    /// as an answer, so a change this server cannot make gets no reply at all: to the client
    /// that looks like the filtering it is testing for, which is the least wrong conclusion.
    /// Unknown attributes are not refused either: RFC 3489 clients such as the `stun` tool
    /// may carry USERNAME or RESPONSE-ADDRESS, which change nothing here.
    fn respond_classic(
        &self,
        local: SocketAddr,
        from: SocketAddr,
        req: &Message,
        change: ChangeRequest,
    ) -> Option<StunReply> {
        let via = self.target(local, change)?;
        let mut msg = Message::new(Class::Success, BINDING, req.id)
            .with(Attribute::MappedAddress(from))
            .with(Attribute::SourceAddress(via));
        if let Some(other) = self.other_address(local) {
            msg.attributes.push(Attribute::ChangedAddress(other));
        }
        msg.attributes.push(Attribute::Software(SOFTWARE.into()));
        Some(StunReply {
            via,
            to: from,
            bytes: msg.encode(),
        })
    }
}

/// Two primaries form an RFC 5780 group when their IPs differ, are of one family and are real
/// addresses (a wildcard socket cannot tell which of the host's IPs a reply leaves from).
fn pairable(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip() != b.ip()
        && a.is_ipv4() == b.is_ipv4()
        && !a.ip().is_unspecified()
        && !b.ip().is_unspecified()
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
