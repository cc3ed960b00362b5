//! Relay framing.
//!
//! On UDP (the server's control port, shared with STUN): `magic 0xF0 'r' 'l' 'y' | type | ...`
//! - 5 Bind `id(4) counter(8) cookie(16) tag(16)`: node to server, asks to bind this source
//!   address to relay id `id`. `tag` is an HMAC under the bind key from the relay ticket (sent
//!   over the Noise control channel, never on UDP) over id, counter and cookie; the counter
//!   grows with every Bind. `cookie` is the last one the server sent this node, or zeros.
//! - 6 BindOk `id(4) counter(8) tag(16)`: server to node, the Bind with `counter` was accepted.
//! - 7 Challenge `id(4) counter(8) cookie(16) tag(16)`: server to a new source address, "prove
//!   you receive here": the node repeats its Bind with this cookie from the same address.
//! - 3 ToPeer `dst id(4)` + WireGuard message: node to server.
//! - 4 FromPeer `src id(4)` + WireGuard message: server to node.
//!
//! Types 1 and 2 were the unkeyed Bind/BindOk of earlier versions (a fixed token in the clear,
//! which anyone who saw it could replay); they are no longer accepted. A Challenge is exactly as
//! long as the Bind that caused it, so a spoofed Bind reflects no more bytes than it cost (RFC
//! 9000 §8 limits amplification for the same reason). See `server` for the binding rules.
//!
//! ToPeer and FromPeer have the same header length, so the server rewrites the header in place
//! and forwards the very buffer it received. Inside the Noise control stream a relayed packet is
//! one message `0x01 | peer id(4) | WireGuard message` (control messages are JSON and start with
//! '{', so the first byte tells them apart).

use super::auth::{COOKIE_LEN, TAG_LEN};

pub const MAGIC: [u8; 4] = [0xF0, b'r', b'l', b'y'];
/// Header of ToPeer / FromPeer datagrams.
pub const DATA_HEADER: usize = 9;
/// First byte of a relay frame inside the control stream.
pub const STREAM_TAG: u8 = 0x01;
/// Header of a relay frame inside the control stream.
pub const STREAM_HEADER: usize = 5;

const TO_PEER: u8 = 3;
const FROM_PEER: u8 = 4;
const BIND: u8 = 5;
const BIND_OK: u8 = 6;
const CHALLENGE: u8 = 7;

const SIGNED_LEN: usize = 4 + 8 + COOKIE_LEN + TAG_LEN;
const BIND_OK_LEN: usize = 4 + 8 + TAG_LEN;

/// The fields of a Bind (node to server) or a Challenge (server to node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed {
    pub id: u32,
    pub counter: u64,
    pub cookie: [u8; COOKIE_LEN],
    pub tag: [u8; TAG_LEN],
}

/// The fields of a BindOk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindOk {
    pub id: u32,
    pub counter: u64,
    pub tag: [u8; TAG_LEN],
}

/// A relay datagram, parsed without copying the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayDatagram<'a> {
    Bind(Signed),
    BindOk(BindOk),
    Challenge(Signed),
    ToPeer { dst: u32, payload: &'a [u8] },
    FromPeer { src: u32, payload: &'a [u8] },
}

pub fn is_relay(datagram: &[u8]) -> bool {
    datagram.len() >= 5 && datagram[..4] == MAGIC
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

fn parse_signed(body: &[u8]) -> Option<Signed> {
    (body.len() == SIGNED_LEN).then_some(())?;
    Some(Signed {
        id: u32::from_be_bytes(array(body, 0)?),
        counter: u64::from_be_bytes(array(body, 4)?),
        cookie: array(body, 12)?,
        tag: array(body, 12 + COOKIE_LEN)?,
    })
}

fn parse_bind_ok(body: &[u8]) -> Option<BindOk> {
    (body.len() == BIND_OK_LEN).then_some(())?;
    Some(BindOk {
        id: u32::from_be_bytes(array(body, 0)?),
        counter: u64::from_be_bytes(array(body, 4)?),
        tag: array(body, 12)?,
    })
}

pub fn parse(datagram: &[u8]) -> Option<RelayDatagram<'_>> {
    if !is_relay(datagram) {
        return None;
    }
    let body = &datagram[5..];
    let id = || -> Option<u32> { Some(u32::from_be_bytes(array(body, 0)?)) };
    match datagram[4] {
        BIND => Some(RelayDatagram::Bind(parse_signed(body)?)),
        BIND_OK => Some(RelayDatagram::BindOk(parse_bind_ok(body)?)),
        CHALLENGE => Some(RelayDatagram::Challenge(parse_signed(body)?)),
        TO_PEER => Some(RelayDatagram::ToPeer {
            dst: id()?,
            payload: &body[4..],
        }),
        FROM_PEER => Some(RelayDatagram::FromPeer {
            src: id()?,
            payload: &body[4..],
        }),
        _ => None,
    }
}

fn signed(kind: u8, s: &Signed) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + SIGNED_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(kind);
    out.extend_from_slice(&s.id.to_be_bytes());
    out.extend_from_slice(&s.counter.to_be_bytes());
    out.extend_from_slice(&s.cookie);
    out.extend_from_slice(&s.tag);
    out
}

pub fn bind(b: &Signed) -> Vec<u8> {
    signed(BIND, b)
}

pub fn challenge(c: &Signed) -> Vec<u8> {
    signed(CHALLENGE, c)
}

pub fn bind_ok(ok: &BindOk) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + BIND_OK_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(BIND_OK);
    out.extend_from_slice(&ok.id.to_be_bytes());
    out.extend_from_slice(&ok.counter.to_be_bytes());
    out.extend_from_slice(&ok.tag);
    out
}

/// Writes a ToPeer header into `buf[..DATA_HEADER]` (the payload already follows it).
pub fn write_to_peer_header(buf: &mut [u8], dst: u32) {
    write_data_header(buf, TO_PEER, dst);
}

/// Turns a ToPeer datagram into the FromPeer the destination receives, in place.
pub fn rewrite_to_from_peer(buf: &mut [u8], src: u32) {
    write_data_header(buf, FROM_PEER, src);
}

fn write_data_header(buf: &mut [u8], kind: u8, id: u32) {
    if buf.len() >= DATA_HEADER {
        buf[..4].copy_from_slice(&MAGIC);
        buf[4] = kind;
        buf[5..9].copy_from_slice(&id.to_be_bytes());
    }
}

/// A relay frame for the control stream.
pub fn stream_frame(peer: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(STREAM_HEADER + payload.len());
    out.push(STREAM_TAG);
    out.extend_from_slice(&peer.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Parses a control-stream message that is a relay frame: (peer id, payload).
pub fn parse_stream_frame(message: &[u8]) -> Option<(u32, &[u8])> {
    if message.first() != Some(&STREAM_TAG) || message.len() < STREAM_HEADER {
        return None;
    }
    let id = u32::from_be_bytes(message[1..5].try_into().ok()?);
    Some((id, &message[STREAM_HEADER..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_rewrite_in_place() {
        let b = Signed {
            id: 0x0102_0304,
            counter: 1 << 40,
            cookie: [7; COOKIE_LEN],
            tag: [8; TAG_LEN],
        };
        assert_eq!(parse(&bind(&b)), Some(RelayDatagram::Bind(b)));
        assert_eq!(parse(&challenge(&b)), Some(RelayDatagram::Challenge(b)));
        // No amplification: a Challenge is as long as the Bind it answers.
        assert_eq!(challenge(&b).len(), bind(&b).len());
        let ok = BindOk {
            id: 9,
            counter: 3,
            tag: [1; TAG_LEN],
        };
        assert_eq!(parse(&bind_ok(&ok)), Some(RelayDatagram::BindOk(ok)));
        // The unkeyed Bind of earlier versions (type 1, a 16-byte token) is not accepted.
        let mut old = MAGIC.to_vec();
        old.push(1);
        old.extend_from_slice(&[7; 16]);
        assert_eq!(parse(&old), None);
        // A truncated Bind is not a Bind.
        let short = bind(&b);
        assert_eq!(parse(&short[..short.len() - 1]), None);
        let mut buf = vec![0u8; DATA_HEADER + 3];
        buf[DATA_HEADER..].copy_from_slice(b"abc");
        write_to_peer_header(&mut buf, 42);
        assert_eq!(
            parse(&buf),
            Some(RelayDatagram::ToPeer {
                dst: 42,
                payload: b"abc"
            })
        );
        rewrite_to_from_peer(&mut buf, 9);
        assert_eq!(
            parse(&buf),
            Some(RelayDatagram::FromPeer {
                src: 9,
                payload: b"abc"
            })
        );
        let frame = stream_frame(5, b"wg");
        assert_eq!(parse_stream_frame(&frame), Some((5, &b"wg"[..])));
        assert_eq!(parse_stream_frame(b"{\"type\":\"ping\"}"), None);
    }

    proptest! {
        #[test]
        fn parsing_garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..80), framed in any::<bool>()) {
            if framed && bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&MAGIC);
            }
            let _ = parse(&bytes);
            let _ = parse_stream_frame(&bytes);
        }
    }
}
