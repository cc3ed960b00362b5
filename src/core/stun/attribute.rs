//! STUN attributes (RFC 5389 §15, RFC 5780 §7, RFC 3489 §11.2): their type codes and the
//! encoding of each value. Attribute framing is type (16 bits), length (16 bits, the value's
//! length before padding), value, then padding to a multiple of 4 bytes (RFC 5389 §15).

use super::StunError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const MAPPED_ADDRESS: u16 = 0x0001;
/// RFC 3489 §11.2.2; deprecated by RFC 5389 and never honoured here (it would let anyone aim
/// our answers at a third party).
pub const RESPONSE_ADDRESS: u16 = 0x0002;
pub const CHANGE_REQUEST: u16 = 0x0003;
pub const SOURCE_ADDRESS: u16 = 0x0004;
pub const CHANGED_ADDRESS: u16 = 0x0005;
pub const USERNAME: u16 = 0x0006;
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ERROR_CODE: u16 = 0x0009;
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// RFC 5780 §7.6: only pads the message for MTU tests; its value carries no meaning.
pub const PADDING: u16 = 0x0026;
pub const RESPONSE_PORT: u16 = 0x0027;
pub const SOFTWARE: u16 = 0x8022;
pub const FINGERPRINT: u16 = 0x8028;
pub const RESPONSE_ORIGIN: u16 = 0x802B;
pub const OTHER_ADDRESS: u16 = 0x802C;

/// RFC 5389 §15.1 address families.
const FAMILY_IPV4: u8 = 0x01;
const FAMILY_IPV6: u8 = 0x02;

/// RFC 5780 §7.2 / RFC 3489 §11.2.4: which of its addresses the server should answer from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChangeRequest {
    pub change_ip: bool,
    pub change_port: bool,
}

impl ChangeRequest {
    pub const NONE: ChangeRequest = ChangeRequest {
        change_ip: false,
        change_port: false,
    };
    pub const PORT: ChangeRequest = ChangeRequest {
        change_ip: false,
        change_port: true,
    };
    pub const IP_AND_PORT: ChangeRequest = ChangeRequest {
        change_ip: true,
        change_port: true,
    };

    pub fn is_none(self) -> bool {
        self == Self::NONE
    }
}

/// ERROR-CODE (RFC 5389 §15.6): a code 300-699 and a reason phrase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: u16,
    pub reason: String,
}

/// The attributes this codec understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    MappedAddress(SocketAddr),
    /// RFC 5389 §15.2: the address XORed with the magic cookie (and transaction id for IPv6) so
    /// that NATs rewriting addresses they find in payloads leave it alone.
    XorMappedAddress(SocketAddr),
    SourceAddress(SocketAddr),
    ChangedAddress(SocketAddr),
    ResponseOrigin(SocketAddr),
    OtherAddress(SocketAddr),
    ChangeRequest(ChangeRequest),
    ResponsePort(u16),
    ErrorCode(ErrorCode),
    UnknownAttributes(Vec<u16>),
    Software(String),
}

/// What one attribute in a received message turned out to be.
pub(super) enum Decoded {
    Known(Attribute),
    /// Known, but carries nothing this codec acts on (PADDING, USERNAME, MESSAGE-INTEGRITY).
    Ignored,
    /// RFC 5389 §15: types 0x0000-0x7FFF must be understood, or the request is refused with
    /// 420 and a response discarded.
    UnknownRequired(u16),
    /// Types 0x8000-0xFFFF may be skipped.
    UnknownOptional,
}

impl Attribute {
    pub fn kind(&self) -> u16 {
        match self {
            Attribute::MappedAddress(_) => MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => XOR_MAPPED_ADDRESS,
            Attribute::SourceAddress(_) => SOURCE_ADDRESS,
            Attribute::ChangedAddress(_) => CHANGED_ADDRESS,
            Attribute::ResponseOrigin(_) => RESPONSE_ORIGIN,
            Attribute::OtherAddress(_) => OTHER_ADDRESS,
            Attribute::ChangeRequest(_) => CHANGE_REQUEST,
            Attribute::ResponsePort(_) => RESPONSE_PORT,
            Attribute::ErrorCode(_) => ERROR_CODE,
            Attribute::UnknownAttributes(_) => UNKNOWN_ATTRIBUTES,
            Attribute::Software(_) => SOFTWARE,
        }
    }

    /// Appends type, length, value and padding. `xor_key` is header bytes 4..20 (magic cookie
    /// and transaction id).
    pub(super) fn encode(&self, out: &mut Vec<u8>, xor_key: &[u8; 16]) {
        let mut value = Vec::with_capacity(20);
        match self {
            Attribute::MappedAddress(a)
            | Attribute::SourceAddress(a)
            | Attribute::ChangedAddress(a)
            | Attribute::ResponseOrigin(a)
            | Attribute::OtherAddress(a) => encode_address(&mut value, *a, None),
            Attribute::XorMappedAddress(a) => encode_address(&mut value, *a, Some(xor_key)),
            Attribute::ChangeRequest(c) => {
                // RFC 5780 §7.2: bit 0x4 is "change IP", 0x2 "change port".
                let flags = (u32::from(c.change_ip) << 2) | (u32::from(c.change_port) << 1);
                value.extend_from_slice(&flags.to_be_bytes());
            }
            Attribute::ResponsePort(p) => {
                // RFC 5780 §7.5: the port, then two bytes of padding inside the value.
                value.extend_from_slice(&p.to_be_bytes());
                value.extend_from_slice(&[0, 0]);
            }
            Attribute::ErrorCode(e) => {
                // RFC 5389 §15.6: 21 reserved bits, class (hundreds, 3 bits), number (0-99).
                let class = ((e.code / 100) & 0x07) as u8;
                let number = (e.code % 100) as u8;
                value.extend_from_slice(&[0, 0, class, number]);
                value.extend_from_slice(truncate_utf8(&e.reason, 763).as_bytes());
            }
            Attribute::UnknownAttributes(kinds) => {
                for k in kinds {
                    value.extend_from_slice(&k.to_be_bytes());
                }
            }
            Attribute::Software(s) => {
                // RFC 5389 §15.10: fewer than 128 characters (763 bytes).
                value.extend_from_slice(truncate_utf8(s, 763).as_bytes());
            }
        }
        write_tlv(out, self.kind(), &value);
    }

    pub(super) fn decode(
        kind: u16,
        value: &[u8],
        xor_key: &[u8; 16],
    ) -> Result<Decoded, StunError> {
        let bad = StunError::MalformedAttribute { kind };
        let address = || decode_address(value, None).ok_or(bad.clone());
        let attr = match kind {
            MAPPED_ADDRESS => Attribute::MappedAddress(address()?),
            SOURCE_ADDRESS => Attribute::SourceAddress(address()?),
            CHANGED_ADDRESS => Attribute::ChangedAddress(address()?),
            RESPONSE_ORIGIN => Attribute::ResponseOrigin(address()?),
            OTHER_ADDRESS => Attribute::OtherAddress(address()?),
            XOR_MAPPED_ADDRESS => Attribute::XorMappedAddress(
                decode_address(value, Some(xor_key)).ok_or(bad.clone())?,
            ),
            CHANGE_REQUEST => {
                let flags = u32::from_be_bytes(value.try_into().map_err(|_| bad.clone())?);
                Attribute::ChangeRequest(ChangeRequest {
                    change_ip: flags & 0x4 != 0,
                    change_port: flags & 0x2 != 0,
                })
            }
            RESPONSE_PORT => match value {
                [a, b, _, _] => Attribute::ResponsePort(u16::from_be_bytes([*a, *b])),
                _ => return Err(bad),
            },
            ERROR_CODE => match value {
                // RFC 5389 §15.6: the number is the code modulo 100, so 0-99; a larger one would
                // decode to a code no encoder can write back (255 made "code 955").
                [_, _, class, number, reason @ ..] if *number < 100 => {
                    Attribute::ErrorCode(ErrorCode {
                        code: u16::from(class & 0x07) * 100 + u16::from(*number),
                        reason: String::from_utf8_lossy(reason).into_owned(),
                    })
                }
                _ => return Err(bad),
            },
            UNKNOWN_ATTRIBUTES => {
                if value.len() % 2 != 0 {
                    return Err(bad);
                }
                let kinds = value
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                Attribute::UnknownAttributes(kinds)
            }
            SOFTWARE => Attribute::Software(String::from_utf8_lossy(value).into_owned()),
            PADDING | USERNAME | MESSAGE_INTEGRITY | RESPONSE_ADDRESS => {
                return Ok(Decoded::Ignored)
            }
            k if k < 0x8000 => return Ok(Decoded::UnknownRequired(k)),
            _ => return Ok(Decoded::UnknownOptional),
        };
        Ok(Decoded::Known(attr))
    }
}

/// Type, length, value, zero padding to 4 bytes.
pub(super) fn write_tlv(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    // Values this codec writes are at most a few hundred bytes, so the cast cannot truncate.
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + padding(value.len()), 0);
}

/// Bytes of padding after a value of `len` bytes.
pub(super) fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// RFC 5389 §15.1 (plain) and §15.2 (XORed): reserved byte, family, port, address.
fn encode_address(out: &mut Vec<u8>, addr: SocketAddr, xor_key: Option<&[u8; 16]>) {
    let key = xor_key.copied().unwrap_or([0; 16]);
    let port = addr.port() ^ u16::from_be_bytes([key[0], key[1]]);
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[0, FAMILY_IPV4]);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend(ip.octets().iter().zip(&key[..4]).map(|(a, k)| a ^ k));
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[0, FAMILY_IPV6]);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend(ip.octets().iter().zip(&key).map(|(a, k)| a ^ k));
        }
    }
}

fn decode_address(value: &[u8], xor_key: Option<&[u8; 16]>) -> Option<SocketAddr> {
    let key = xor_key.copied().unwrap_or([0; 16]);
    let (family, rest) = match value {
        [_, family, rest @ ..] => (*family, rest),
        _ => return None,
    };
    let port =
        u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) ^ u16::from_be_bytes([key[0], key[1]]);
    let raw = &rest[2..];
    let ip = match (family, raw.len()) {
        (FAMILY_IPV4, 4) => {
            let mut o = [0u8; 4];
            for (i, b) in o.iter_mut().enumerate() {
                *b = raw[i] ^ key[i];
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        (FAMILY_IPV6, 16) => {
            let mut o = [0u8; 16];
            for (i, b) in o.iter_mut().enumerate() {
                *b = raw[i] ^ key[i];
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}
