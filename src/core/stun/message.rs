//! The STUN message (RFC 5389 §6): a 20-byte header (type, length, magic cookie, 96-bit
//! transaction id) and attributes; plus RFC 3489 "classic" messages, whose header has no magic
//! cookie but a 128-bit transaction id. Also the small Binding API the node and netcheck use.

use super::attribute::{self, Attribute, ChangeRequest, Decoded, ErrorCode};
use super::fingerprint::fingerprint;
use super::StunError;
use crate::core::wire::STUN_MAGIC_COOKIE;
use rand::RngCore;
use std::fmt;
use std::net::SocketAddr;

/// The Binding method (RFC 5389 §18.1).
pub const BINDING: u16 = 0x001;

const HEADER_LEN: usize = 20;

/// The message class, two bits spread over the type field (RFC 5389 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// An RFC 5389 transaction id: 96 random bits (§6).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(pub [u8; 12]);

impl TransactionId {
    pub fn random(rng: &mut impl RngCore) -> Self {
        let mut id = [0u8; 12];
        rng.fill_bytes(&mut id);
        TransactionId(id)
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// What follows the length field: the magic cookie and a 96-bit id (RFC 5389), or a 128-bit id
/// (RFC 3489 §11.1; RFC 5389 §12 tells them apart by the cookie).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageId {
    Rfc5389(TransactionId),
    Rfc3489([u8; 16]),
}

impl MessageId {
    /// Header bytes 4..20; also the XOR key of XOR-MAPPED-ADDRESS (RFC 5389 §15.2).
    fn header_bytes(&self) -> [u8; 16] {
        match self {
            MessageId::Rfc5389(tid) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&STUN_MAGIC_COOKIE.to_be_bytes());
                b[4..].copy_from_slice(&tid.0);
                b
            }
            MessageId::Rfc3489(id) => *id,
        }
    }

    pub fn is_classic(&self) -> bool {
        matches!(self, MessageId::Rfc3489(_))
    }
}

/// A decoded or to-be-encoded STUN message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub class: Class,
    /// 12 bits; [`BINDING`] is the only method spoken here.
    pub method: u16,
    pub id: MessageId,
    /// In order; when a type repeats, the first one counts (RFC 5389 §15).
    pub attributes: Vec<Attribute>,
    /// Encode: append FINGERPRINT. Decode: it was present (and matched).
    pub fingerprint: bool,
    /// Comprehension-required attribute types the decoder did not know (RFC 5389 §7.3.1).
    pub unknown_required: Vec<u16>,
}

/// RFC 5389 §6: M11-M7 in bits 13-9, C1 in bit 8, M6-M4 in bits 7-5, C0 in bit 4, M3-M0 in 3-0.
fn message_type(class: Class, method: u16) -> u16 {
    let (c1, c0) = match class {
        Class::Request => (0, 0),
        Class::Indication => (0, 1),
        Class::Success => (1, 0),
        Class::Error => (1, 1),
    };
    let m = method & 0x0FFF;
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | (c0 << 4) | (c1 << 8)
}

fn split_type(t: u16) -> (Class, u16) {
    let class = match ((t >> 8) & 1, (t >> 4) & 1) {
        (0, 0) => Class::Request,
        (0, _) => Class::Indication,
        (_, 0) => Class::Success,
        _ => Class::Error,
    };
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    (class, method)
}

impl Message {
    pub fn new(class: Class, method: u16, id: MessageId) -> Self {
        Message {
            class,
            method,
            id,
            attributes: Vec::new(),
            fingerprint: false,
            unknown_required: Vec::new(),
        }
    }

    pub fn with(mut self, attribute: Attribute) -> Self {
        self.attributes.push(attribute);
        self
    }

    pub fn tid(&self) -> Option<TransactionId> {
        match self.id {
            MessageId::Rfc5389(tid) => Some(tid),
            MessageId::Rfc3489(_) => None,
        }
    }

    /// The first attribute `pick` accepts.
    pub fn find<T>(&self, pick: impl Fn(&Attribute) -> Option<T>) -> Option<T> {
        self.attributes.iter().find_map(pick)
    }

    pub fn encode(&self) -> Vec<u8> {
        let key = self.id.header_bytes();
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&message_type(self.class, self.method).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&key);
        for a in &self.attributes {
            a.encode(&mut out, &key);
        }
        if self.fingerprint {
            // §15.5: the CRC covers the header with a length that already counts FINGERPRINT.
            set_length(&mut out, 8);
            let crc = fingerprint(&out);
            attribute::write_tlv(&mut out, attribute::FINGERPRINT, &crc.to_be_bytes());
        }
        set_length(&mut out, 0);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, StunError> {
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(StunError::TooShort)?;
        if header[0] & 0xC0 != 0 {
            return Err(StunError::NotStun);
        }
        let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if declared % 4 != 0 || HEADER_LEN + declared != bytes.len() {
            return Err(StunError::BadLength {
                declared,
                actual: bytes.len(),
            });
        }
        let (class, method) = split_type(u16::from_be_bytes([header[0], header[1]]));
        let mut key = [0u8; 16];
        key.copy_from_slice(&header[4..]);
        let id = if key[..4] == STUN_MAGIC_COOKIE.to_be_bytes() {
            let mut tid = [0u8; 12];
            tid.copy_from_slice(&key[4..]);
            MessageId::Rfc5389(TransactionId(tid))
        } else {
            MessageId::Rfc3489(key)
        };
        let mut msg = Message::new(class, method, id);
        let mut after_integrity = false;
        let mut off = HEADER_LEN;
        while off < bytes.len() {
            let (kind, value, next) = read_tlv(bytes, off)?;
            if kind == attribute::FINGERPRINT {
                if next != bytes.len() {
                    return Err(StunError::AttributeAfterFingerprint);
                }
                let stored: [u8; 4] = value
                    .try_into()
                    .map_err(|_| StunError::MalformedAttribute { kind })?;
                if u32::from_be_bytes(stored) != fingerprint(&bytes[..off]) {
                    return Err(StunError::BadFingerprint);
                }
                msg.fingerprint = true;
            } else if !after_integrity {
                // §15.4: only FINGERPRINT may follow MESSAGE-INTEGRITY; anything else is ignored.
                after_integrity = kind == attribute::MESSAGE_INTEGRITY;
                match Attribute::decode(kind, value, &key)? {
                    Decoded::Known(a) => msg.attributes.push(a),
                    Decoded::UnknownRequired(k) => msg.unknown_required.push(k),
                    Decoded::Ignored | Decoded::UnknownOptional => {}
                }
            }
            off = next;
        }
        Ok(msg)
    }
}

/// Writes the length field: everything after the header plus `extra` bytes still to come.
fn set_length(out: &mut [u8], extra: usize) {
    let len = (out.len() - HEADER_LEN + extra) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
}

/// One attribute at `off`: its type, value, and the offset after its padding.
fn read_tlv(bytes: &[u8], off: usize) -> Result<(u16, &[u8], usize), StunError> {
    let head = bytes
        .get(off..off + 4)
        .ok_or(StunError::AttributeOverrun { kind: 0 })?;
    let kind = u16::from_be_bytes([head[0], head[1]]);
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let start = off + 4;
    let next = start + len + attribute::padding(len);
    if next > bytes.len() {
        return Err(StunError::AttributeOverrun { kind });
    }
    Ok((kind, &bytes[start..start + len], next))
}

/// A Binding request as netcheck and the node send it (RFC 5389 §7.1 with RFC 5780 §7.2 and
/// §7.5), with FINGERPRINT so it is told apart from other traffic on a shared socket.
pub fn binding_request(
    tid: TransactionId,
    change: ChangeRequest,
    response_port: Option<u16>,
) -> Vec<u8> {
    let mut msg = Message::new(Class::Request, BINDING, MessageId::Rfc5389(tid));
    if !change.is_none() {
        msg.attributes.push(Attribute::ChangeRequest(change));
    }
    if let Some(port) = response_port {
        msg.attributes.push(Attribute::ResponsePort(port));
    }
    msg.fingerprint = true;
    msg.encode()
}

/// What a client needs from a Binding request (the server side and hairpin detection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingRequest {
    pub tid: TransactionId,
    pub change: ChangeRequest,
    pub response_port: Option<u16>,
}

pub fn parse_binding_request(bytes: &[u8]) -> Result<BindingRequest, StunError> {
    let msg = Message::decode(bytes)?;
    if msg.class != Class::Request || msg.method != BINDING {
        return Err(StunError::NotBindingRequest);
    }
    let tid = msg.tid().ok_or(StunError::Classic)?;
    Ok(BindingRequest {
        tid,
        change: msg
            .find(|a| match a {
                Attribute::ChangeRequest(c) => Some(*c),
                _ => None,
            })
            .unwrap_or_default(),
        response_port: msg.find(|a| match a {
            Attribute::ResponsePort(p) => Some(*p),
            _ => None,
        }),
    })
}

/// What a client needs from a Binding success response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingResponse {
    pub tid: TransactionId,
    /// XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (RFC 5389 §12.1.2 accepts either).
    pub mapped: SocketAddr,
    /// OTHER-ADDRESS, else the RFC 3489 CHANGED-ADDRESS: a server sending either can answer
    /// from another IP and port.
    pub other_address: Option<SocketAddr>,
    /// RFC 5780 §7.3 RESPONSE-ORIGIN, else the RFC 3489 SOURCE-ADDRESS.
    pub response_origin: Option<SocketAddr>,
}

pub fn parse_binding_response(bytes: &[u8]) -> Result<BindingResponse, StunError> {
    let msg = Message::decode(bytes)?;
    let tid = msg.tid().ok_or(StunError::Classic)?;
    match (msg.class, msg.method) {
        (Class::Success, BINDING) => {}
        (Class::Error, BINDING) => {
            let code = msg
                .find(|a| match a {
                    Attribute::ErrorCode(ErrorCode { code, .. }) => Some(*code),
                    _ => None,
                })
                .unwrap_or(0);
            return Err(StunError::ErrorResponse { tid, code });
        }
        (class, method) => return Err(StunError::NotBindingResponse { class, method }),
    }
    if let Some(&kind) = msg.unknown_required.first() {
        return Err(StunError::UnknownRequired { kind });
    }
    let address = |want: u16| {
        msg.find(|a| match a {
            Attribute::XorMappedAddress(s)
            | Attribute::MappedAddress(s)
            | Attribute::OtherAddress(s)
            | Attribute::ChangedAddress(s)
            | Attribute::ResponseOrigin(s)
            | Attribute::SourceAddress(s)
                if a.kind() == want =>
            {
                Some(*s)
            }
            _ => None,
        })
    };
    Ok(BindingResponse {
        tid,
        mapped: address(attribute::XOR_MAPPED_ADDRESS)
            .or_else(|| address(attribute::MAPPED_ADDRESS))
            .ok_or(StunError::MissingMappedAddress)?,
        other_address: address(attribute::OTHER_ADDRESS)
            .or_else(|| address(attribute::CHANGED_ADDRESS)),
        response_origin: address(attribute::RESPONSE_ORIGIN)
            .or_else(|| address(attribute::SOURCE_ADDRESS)),
    })
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
