//! The join token: one copy-pastable string carrying the server addresses, the server's public
//! key, the network name and a random credential. Only the credential's SHA-256 is stored on the
//! server, so a stolen database does not yield usable tokens.
//!
//! Text form: `p2pvpn1-` followed by unpadded base64url of a small JSON object.

use crate::core::keys::PublicKey;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

pub const TOKEN_PREFIX: &str = "p2pvpn1-";

/// A join secret. Its hash is what the server keeps.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(pub [u8; 32]);

impl Credential {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Credential(bytes)
    }

    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes = STANDARD.decode(text).ok()?;
        bytes.try_into().ok().map(Credential)
    }
}

/// How many hex digits of a token's stored hash name it (`network invites`, `network revoke`).
pub const TOKEN_ID_LEN: usize = 8;

/// The short name of a stored token: the first hex digits of its hash. The hash is of a 256-bit
/// random credential, so showing part of it gives nothing away.
pub fn token_id(hash: &[u8; 32]) -> String {
    hash.iter()
        .take(TOKEN_ID_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct Body {
    n: String,
    s: Vec<SocketAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    t: Vec<SocketAddr>,
    k: PublicKey,
    c: String,
}

/// A decoded join token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    pub network: String,
    pub servers: Vec<SocketAddr>,
    /// The server's TLS addresses (e.g. port 443), for networks that allow nothing else.
    pub tls_servers: Vec<SocketAddr>,
    pub server_key: PublicKey,
    pub credential: Credential,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error(
        "this is not a p2pvpn join token (it should start with \"{TOKEN_PREFIX}\"); copy the \
         whole line printed by `p2pvpn network invite`"
    )]
    Prefix,
    #[error(
        "the join token is damaged ({0}); copy the whole line printed by `p2pvpn network invite`"
    )]
    Damaged(&'static str),
}

impl JoinToken {
    pub fn encode(&self) -> String {
        let body = Body {
            n: self.network.clone(),
            s: self.servers.clone(),
            t: self.tls_servers.clone(),
            k: self.server_key,
            c: self.credential.to_base64(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(text: &str) -> Result<Self, TokenError> {
        let rest = text
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::Prefix)?;
        let json = URL_SAFE_NO_PAD
            .decode(rest)
            .map_err(|_| TokenError::Damaged("not base64url"))?;
        let body: Body =
            serde_json::from_slice(&json).map_err(|_| TokenError::Damaged("fields missing"))?;
        if body.s.is_empty() {
            return Err(TokenError::Damaged("no server address"));
        }
        let credential =
            Credential::from_base64(&body.c).ok_or(TokenError::Damaged("bad credential"))?;
        Ok(JoinToken {
            network: body.n,
            servers: body.s,
            tls_servers: body.t,
            server_key: body.k,
            credential,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> JoinToken {
        JoinToken {
            network: "office".into(),
            servers: vec!["203.0.113.1:7400".parse().unwrap()],
            tls_servers: vec!["203.0.113.1:443".parse().unwrap()],
            server_key: PublicKey([7; 32]),
            credential: Credential([1; 32]),
        }
    }

    #[test]
    fn round_trips() {
        let token = sample();
        let text = token.encode();
        assert!(text.starts_with(TOKEN_PREFIX));
        assert_eq!(JoinToken::decode(&format!("  {text}\n")), Ok(token));
    }

    #[test]
    fn a_token_id_is_the_start_of_its_hash_in_hex() {
        let mut hash = [0u8; 32];
        hash[..5].copy_from_slice(&[0x0a, 0xbc, 0xde, 0xf0, 0x12]);
        assert_eq!(token_id(&hash), "0abcdef0");
    }

    #[test]
    fn damage_is_named() {
        assert_eq!(JoinToken::decode("hello"), Err(TokenError::Prefix));
        let mut text = sample().encode();
        text.truncate(text.len() - 5);
        assert!(matches!(
            JoinToken::decode(&text),
            Err(TokenError::Damaged(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = JoinToken::decode(&text);
            let _ = JoinToken::decode(&format!("{TOKEN_PREFIX}{text}"));
        }
    }
}
