//! The control messages carried inside the Noise channel, as JSON (one message per Noise frame).
//! Unknown fields are ignored so either side can add fields without breaking the other.

use crate::core::acl::policy::NodePolicy;
use crate::core::keys::PublicKey;
use crate::core::nat::NatProfile;
use crate::core::punch::PunchOffer;
use crate::core::relay::server::RelayTicket;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Node to server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Redeem a join token: admit this channel's static key to `network`.
    Join {
        network: String,
        credential: String,
        name: String,
    },
    /// Register a running node; the key comes from the Noise handshake.
    Hello {
        network: String,
        endpoints: Vec<SocketAddr>,
        #[serde(default)]
        nat: Option<NatProfile>,
    },
    /// The node's UDP endpoints or its measured NAT profile changed.
    Endpoints {
        endpoints: Vec<SocketAddr>,
        #[serde(default)]
        nat: Option<NatProfile>,
    },
    /// Relay a punch offer or answer to `peer` (a member of the same network).
    Punch {
        peer: PublicKey,
        offer: PunchOffer,
    },
    Ping,
    /// Leave `network` for good (`p2pvpn leave`): the server forgets this channel's key there.
    Leave {
        network: String,
    },
}

/// Server to node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined {
        network: String,
        name: String,
        virtual_ip: Ipv4Addr,
        cidr: Ipv4Net,
        /// The node's IPv6 address with the network's prefix length (`core::ula`). Absent
        /// from older servers, ignored by older nodes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ipv6: Option<Ipv6Net>,
    },
    Welcome {
        network: String,
        name: String,
        virtual_ip: Ipv4Addr,
        cidr: Ipv4Net,
        /// This node's relay identity; none when the relay is full.
        #[serde(default)]
        relay: Option<RelayTicket>,
        /// As in `Joined`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ipv6: Option<Ipv6Net>,
        /// The access rules this node enforces on what its peers send (`core::acl`); absent
        /// when the network has none (allow all) and from older servers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acl: Option<NodePolicy>,
    },
    /// The node's access rules changed (`None`: the network has no rules now, allow all).
    /// Older nodes ignore it as an undecodable message.
    Acl {
        #[serde(default)]
        policy: Option<NodePolicy>,
    },
    Refused {
        refusal: Refusal,
    },
    Peer {
        peer: PeerInfo,
    },
    /// Several peer entries at once: the full map on registration and the batched deltas
    /// after (`fanout`). Each entry means what one `Peer` message means.
    Peers {
        peers: Vec<PeerInfo>,
    },
    PeerGone {
        public_key: PublicKey,
    },
    /// A punch offer or answer from `peer`.
    Punch {
        peer: PublicKey,
        offer: PunchOffer,
    },
    Pong,
    /// The answer to `Leave`: the node is no longer a member of `network`.
    Left {
        network: String,
    },
}

/// What a node learns about one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub name: String,
    pub public_key: PublicKey,
    pub virtual_ip: Ipv4Addr,
    pub endpoints: Vec<SocketAddr>,
    pub online: bool,
    /// The peer's NAT profile as it measured it, once it has.
    #[serde(default)]
    pub nat: Option<NatProfile>,
    /// The peer's relay id while it is online and has one.
    #[serde(default)]
    pub relay_id: Option<u32>,
    /// The peer's IPv6 overlay address (`core::ula`); none from servers older than IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
}

/// Why the server refused a join or a registration. Each message names the fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    UnknownNetwork {
        network: String,
    },
    BadCredential {
        network: String,
    },
    TokenExpired {
        expired_unix: u64,
    },
    TokenUsedUp {
        uses: u32,
    },
    NotAMember {
        network: String,
    },
    Removed {
        network: String,
    },
    NameTaken {
        name: String,
    },
    /// The node name breaks the shared rule (`names`); `name` is quoted back shortened.
    InvalidName {
        name: String,
    },
    NetworkFull {
        cidr: Ipv4Net,
    },
    ServerError,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnknownNetwork { network } => write!(
                f,
                "the server has no network named {network:?}; check the name, or create it with \
                 `p2pvpn network create {network} --cidr ...` on the server"
            ),
            Refusal::BadCredential { network } => write!(
                f,
                "the join token is not valid for network {network:?} (wrong or revoked \
                 credential); ask the network owner for a new one from `p2pvpn network invite`"
            ),
            Refusal::TokenExpired { expired_unix } => write!(
                f,
                "the join token expired (at unix time {expired_unix}); ask the network owner \
                 for a new one from `p2pvpn network invite --expires ...`"
            ),
            Refusal::TokenUsedUp { uses } => write!(
                f,
                "the join token was already used ({uses} of {uses} uses); ask the network owner \
                 for a new one from `p2pvpn network invite --uses N`"
            ),
            Refusal::NotAMember { network } => write!(
                f,
                "this node's key is not a member of network {network:?}; join it first with \
                 `p2pvpn join TOKEN`"
            ),
            Refusal::Removed { network } => write!(
                f,
                "this node was removed from network {network:?}; ask the owner for a new token \
                 and run `p2pvpn join` again"
            ),
            Refusal::NameTaken { name } => write!(
                f,
                "another node in this network is already named {name:?}; choose another with \
                 `p2pvpn join TOKEN --name OTHER`"
            ),
            Refusal::InvalidName { name } => write!(
                f,
                "the server does not accept the node name {name:?}: use 1-{} characters from \
                 A-Z, a-z, 0-9, '-', '_' and '.'; choose another with `p2pvpn join TOKEN --name \
                 OTHER`",
                super::names::NODE_NAME_MAX
            ),
            Refusal::NetworkFull { cidr } => write!(
                f,
                "network {cidr} has no free address; the owner must remove members or use a \
                 larger range"
            ),
            Refusal::ServerError => write!(
                f,
                "the server failed to handle the request (see the server's log); try again"
            ),
        }
    }
}

/// A message that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("undecodable control message: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serialising these plain data types cannot fail (no maps with non-string keys, no I/O).
    serde_json::to_vec(message).unwrap_or_default()
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    Ok(serde_json::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip() {
        let peer = PeerInfo {
            name: "bob".into(),
            public_key: PublicKey([9; 32]),
            virtual_ip: Ipv4Addr::new(10, 0, 0, 2),
            endpoints: vec!["192.0.2.1:5000".parse().unwrap()],
            online: true,
            nat: None,
            relay_id: None,
            ipv6: Some("fd12:3456:789a::a00:2".parse().unwrap()),
        };
        let messages = vec![
            ServerMessage::Peer { peer: peer.clone() },
            ServerMessage::Peers {
                peers: vec![peer.clone(), peer],
            },
            ServerMessage::Refused {
                refusal: Refusal::TokenUsedUp { uses: 1 },
            },
            ServerMessage::Pong,
        ];
        for m in messages {
            let back: ServerMessage = decode(&encode(&m)).unwrap();
            assert_eq!(back, m);
        }
        let hello = ClientMessage::Hello {
            network: "office".into(),
            endpoints: vec![],
            nat: Some(NatProfile::default()),
        };
        assert_eq!(decode::<ClientMessage>(&encode(&hello)).unwrap(), hello);
    }

    /// A server from before IPv6 sends no `ipv6` fields; a node from before IPv6 ignores them.
    #[test]
    fn ipv6_fields_are_optional_both_ways() {
        let old = br#"{"type":"welcome","network":"n","name":"a","virtual_ip":"10.0.0.1","cidr":"10.0.0.0/24"}"#;
        let ServerMessage::Welcome { ipv6, .. } = decode(old).unwrap() else {
            panic!("not a welcome");
        };
        assert_eq!(ipv6, None);
        let new = ServerMessage::Joined {
            network: "n".into(),
            name: "a".into(),
            virtual_ip: Ipv4Addr::new(10, 0, 0, 1),
            cidr: "10.0.0.0/24".parse().unwrap(),
            ipv6: Some("fd00:1:2::a00:1/64".parse().unwrap()),
        };
        let text = String::from_utf8(encode(&new)).unwrap();
        assert!(text.contains(r#""ipv6":"fd00:1:2::a00:1/64""#), "{text}");
        assert_eq!(decode::<ServerMessage>(text.as_bytes()).unwrap(), new);
        let peer = br#"{"name":"b","public_key":"CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=","virtual_ip":"10.0.0.2","endpoints":[],"online":false}"#;
        assert_eq!(decode::<PeerInfo>(peer).unwrap().ipv6, None);
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode::<ClientMessage>(&bytes);
            let _ = decode::<ServerMessage>(&bytes);
        }
    }
}
