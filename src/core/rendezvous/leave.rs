//! One leave (`p2pvpn leave`): handshake with the node's own key, send `Leave`, read `Left` or
//! `Refused`. The server removes the member the handshake proved, so a node can only take
//! itself out.

use super::channel::SecureChannel;
use super::client::JoinError;
use super::messages::{decode, encode, ClientMessage, Refusal, ServerMessage};
use crate::core::keys::{PublicKey, SecretKey};

pub struct LeaveExchange {
    channel: SecureChannel,
    request: Option<Vec<u8>>,
}

impl LeaveExchange {
    pub fn new(
        secret: &SecretKey,
        server_key: &PublicKey,
        network: &str,
    ) -> Result<Self, JoinError> {
        let channel = SecureChannel::initiator(secret, server_key)?;
        let request = encode(&ClientMessage::Leave {
            network: network.to_string(),
        });
        Ok(LeaveExchange {
            channel,
            request: Some(request),
        })
    }

    pub fn take_outgoing(&mut self) -> Option<Vec<u8>> {
        self.channel.take_outgoing()
    }

    /// `Ok(None)` until the answer is complete.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<Option<Result<(), Refusal>>, JoinError> {
        self.channel.handle_bytes(bytes)?;
        if self.channel.is_established() {
            if let Some(request) = self.request.take() {
                self.channel.send(&request)?;
            }
        }
        let Some(reply) = self.channel.poll_message() else {
            return Ok(None);
        };
        match decode::<ServerMessage>(&reply) {
            Ok(ServerMessage::Left { .. }) => Ok(Some(Ok(()))),
            Ok(ServerMessage::Refused { refusal }) => Ok(Some(Err(refusal))),
            _ => Err(JoinError::Unexpected),
        }
    }
}
