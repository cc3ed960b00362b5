//! The relay bind's cryptography: HMAC-SHA256 (RFC 2104) tags truncated to 128 bits (RFC 2104
//! §5 allows truncation to no less than half the hash), one label per message so a tag made for
//! one kind of datagram is never valid for another.
//!
//! - The bind key is 32 random bytes the server hands a node in its relay ticket over the Noise
//!   control channel; it never appears on UDP. Bind, Challenge and BindOk datagrams carry a tag
//!   under it, so only the node and the server can make them.
//! - The cookie (like the server NONCE of STUN's long-term credentials, RFC 8489 §9.2, or
//!   QUIC's PATH_CHALLENGE, RFC 9000 §8.2) is a tag under a secret only the server knows, over
//!   the relay id and the source address it is sent to. It is stateless: the server recomputes
//!   it for the address an answer comes from, so a cookie seen at one address is worthless at
//!   another.
//!
//! Labels and fields have fixed lengths, and every label is a different length, so no two
//! kinds of message ever feed HMAC the same bytes.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

pub const KEY_LEN: usize = 32;
pub const TAG_LEN: usize = 16;
pub const COOKIE_LEN: usize = 16;

const BIND: &[u8] = b"p2pvpn relay bind v1";
const BIND_OK: &[u8] = b"p2pvpn relay bind-ok v1";
const CHALLENGE: &[u8] = b"p2pvpn relay challenge v1";
const COOKIE: &[u8] = b"p2pvpn relay cookie v1";

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8; KEY_LEN], label: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts a key of any length (RFC 2104 §2), so this never fails.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length"); // ok: RFC 2104 §2
    mac.update(label);
    for p in parts {
        mac.update(p);
    }
    mac
}

fn tag(key: &[u8; KEY_LEN], label: &[u8], parts: &[&[u8]]) -> [u8; TAG_LEN] {
    let full = hmac(key, label, parts).finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// Constant-time check of a truncated tag.
fn check(key: &[u8; KEY_LEN], label: &[u8], parts: &[&[u8]], tag: &[u8; TAG_LEN]) -> bool {
    hmac(key, label, parts).verify_truncated_left(tag).is_ok()
}

/// The tag of a Bind: the node's key over its relay id, its counter and the cookie it echoes.
pub fn bind_tag(
    key: &[u8; KEY_LEN],
    id: u32,
    counter: u64,
    cookie: &[u8; COOKIE_LEN],
) -> [u8; TAG_LEN] {
    tag(
        key,
        BIND,
        &[&id.to_be_bytes(), &counter.to_be_bytes(), cookie],
    )
}

pub fn bind_valid(
    key: &[u8; KEY_LEN],
    id: u32,
    counter: u64,
    cookie: &[u8; COOKIE_LEN],
    t: &[u8; TAG_LEN],
) -> bool {
    check(
        key,
        BIND,
        &[&id.to_be_bytes(), &counter.to_be_bytes(), cookie],
        t,
    )
}

/// The tag of the server's BindOk for the Bind with `counter`.
pub fn bind_ok_tag(key: &[u8; KEY_LEN], id: u32, counter: u64) -> [u8; TAG_LEN] {
    tag(key, BIND_OK, &[&id.to_be_bytes(), &counter.to_be_bytes()])
}

pub fn bind_ok_valid(key: &[u8; KEY_LEN], id: u32, counter: u64, t: &[u8; TAG_LEN]) -> bool {
    check(
        key,
        BIND_OK,
        &[&id.to_be_bytes(), &counter.to_be_bytes()],
        t,
    )
}

/// The tag of the server's Challenge answering the Bind with `counter`.
pub fn challenge_tag(
    key: &[u8; KEY_LEN],
    id: u32,
    counter: u64,
    cookie: &[u8; COOKIE_LEN],
) -> [u8; TAG_LEN] {
    tag(
        key,
        CHALLENGE,
        &[&id.to_be_bytes(), &counter.to_be_bytes(), cookie],
    )
}

pub fn challenge_valid(
    key: &[u8; KEY_LEN],
    id: u32,
    counter: u64,
    cookie: &[u8; COOKIE_LEN],
    t: &[u8; TAG_LEN],
) -> bool {
    check(
        key,
        CHALLENGE,
        &[&id.to_be_bytes(), &counter.to_be_bytes(), cookie],
        t,
    )
}

/// The cookie for relay id `id` at source address `addr`, under the server's secret.
pub fn cookie(secret: &[u8; KEY_LEN], id: u32, addr: SocketAddr) -> [u8; COOKIE_LEN] {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    };
    tag(
        secret,
        COOKIE,
        &[&id.to_be_bytes(), &ip, &addr.port().to_be_bytes()],
    )
}

/// Compares cookies in constant time (a timing leak would let someone guess, byte by byte, the
/// cookie of an address where it does not receive).
pub fn same_cookie(a: &[u8; COOKIE_LEN], b: &[u8; COOKIE_LEN]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_check_only_with_the_same_key_label_and_fields() {
        let k = [1u8; KEY_LEN];
        let c = [2u8; COOKIE_LEN];
        let t = bind_tag(&k, 7, 3, &c);
        assert!(bind_valid(&k, 7, 3, &c, &t));
        assert!(!bind_valid(&[9; KEY_LEN], 7, 3, &c, &t));
        assert!(!bind_valid(&k, 7, 4, &c, &t));
        assert!(!bind_valid(&k, 8, 3, &c, &t));
        assert!(!bind_valid(&k, 7, 3, &[0; COOKIE_LEN], &t));
        // A bind tag is no challenge tag and no BindOk tag.
        assert!(!challenge_valid(&k, 7, 3, &c, &t));
        assert!(!bind_ok_valid(&k, 7, 3, &t));
        let a: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:1001".parse().unwrap();
        assert_ne!(cookie(&k, 7, a), cookie(&k, 7, b));
        assert_ne!(cookie(&k, 7, a), cookie(&k, 8, a));
        assert_eq!(cookie(&k, 7, a), cookie(&k, 7, a));
    }
}
