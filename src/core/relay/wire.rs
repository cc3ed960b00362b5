//! Relay framing.
//!
//! On UDP (the server's control port, shared with STUN): `magic 0xF0 'r' 'l' 'y' | type | ...`
//! - 1 Bind `token(16)`: node to server, binds this source address to the node's relay id (the
//!   token came over the authenticated control channel, like a TURN allocation's credentials).
//! - 2 BindOk `token(16)`: server to node.
//! - 3 ToPeer `dst id(4)` + WireGuard message: node to server.
//! - 4 FromPeer `src id(4)` + WireGuard message: server to node.
//!
//! ToPeer and FromPeer have the same header length, so the server rewrites the header in place
//! and forwards the very buffer it received. Inside the Noise control stream a relayed packet is
//! one message `0x01 | peer id(4) | WireGuard message` (control messages are JSON and start with
//! '{', so the first byte tells them apart).

pub const MAGIC: [u8; 4] = [0xF0, b'r', b'l', b'y'];
pub const TOKEN_LEN: usize = 16;
/// Header of ToPeer / FromPeer datagrams.
pub const DATA_HEADER: usize = 9;
/// First byte of a relay frame inside the control stream.
pub const STREAM_TAG: u8 = 0x01;
/// Header of a relay frame inside the control stream.
pub const STREAM_HEADER: usize = 5;

const BIND: u8 = 1;
const BIND_OK: u8 = 2;
const TO_PEER: u8 = 3;
const FROM_PEER: u8 = 4;

/// A relay datagram, parsed without copying the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayDatagram<'a> {
    Bind { token: [u8; TOKEN_LEN] },
    BindOk { token: [u8; TOKEN_LEN] },
    ToPeer { dst: u32, payload: &'a [u8] },
    FromPeer { src: u32, payload: &'a [u8] },
}

pub fn is_relay(datagram: &[u8]) -> bool {
    datagram.len() >= 5 && datagram[..4] == MAGIC
}

pub fn parse(datagram: &[u8]) -> Option<RelayDatagram<'_>> {
    if !is_relay(datagram) {
        return None;
    }
    let body = &datagram[5..];
    let token = || -> Option<[u8; TOKEN_LEN]> {
        (body.len() == TOKEN_LEN).then(|| {
            let mut t = [0u8; TOKEN_LEN];
            t.copy_from_slice(body);
            t
        })
    };
    let id = || -> Option<u32> { Some(u32::from_be_bytes(body.get(..4)?.try_into().ok()?)) };
    match datagram[4] {
        BIND => Some(RelayDatagram::Bind { token: token()? }),
        BIND_OK => Some(RelayDatagram::BindOk { token: token()? }),
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

fn control(kind: u8, token: &[u8; TOKEN_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + TOKEN_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(kind);
    out.extend_from_slice(token);
    out
}

pub fn bind(token: &[u8; TOKEN_LEN]) -> Vec<u8> {
    control(BIND, token)
}

pub fn bind_ok(token: &[u8; TOKEN_LEN]) -> Vec<u8> {
    control(BIND_OK, token)
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
        let token = [7u8; TOKEN_LEN];
        assert_eq!(parse(&bind(&token)), Some(RelayDatagram::Bind { token }));
        assert_eq!(
            parse(&bind_ok(&token)),
            Some(RelayDatagram::BindOk { token })
        );
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
