//! A Noise IK channel over a byte stream: `Noise_IK_25519_ChaChaPoly_BLAKE2s` (Noise spec §7.5,
//! via the snow crate) with each message framed by a two-byte big-endian length (spec §3 limits a
//! Noise message to 65535 bytes). The initiator (node) must know the responder's (server's)
//! static key in advance: a node trusts only the key carried in its join token. The responder
//! learns the initiator's static key from the first message, which is how the server knows which
//! member is talking.

use crate::core::keys::{PublicKey, SecretKey};
use std::collections::VecDeque;

const PATTERN: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"p2pvpn control v1";
/// Largest Noise message (spec §3).
pub const MAX_MESSAGE: usize = 65535;
/// ChaChaPoly tag.
const TAG_LEN: usize = 16;
/// Largest plaintext that fits one message.
pub const MAX_PLAINTEXT: usize = MAX_MESSAGE - TAG_LEN;
/// Room for one IK handshake message with an empty payload (the longest, the first, is
/// 32 + 48 + 16 = 96 bytes; Noise spec §7.5).
const HANDSHAKE_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("noise protocol failure: {0}")]
    Noise(#[from] snow::Error),
    #[error("message of {0} bytes exceeds the Noise limit")]
    TooLarge(usize),
    #[error("channel is not established yet")]
    NotEstablished,
    #[error("channel already failed")]
    Failed,
}

enum Phase {
    /// A responder that has received nothing yet: its handshake state (a few kilobytes) is
    /// built from the first frame, so a connection that never speaks costs only the key.
    Waiting(Box<SecretKey>),
    Handshake(Box<snow::HandshakeState>),
    Transport(Box<snow::TransportState>),
    Failed,
}

/// One end of the channel. Feed it received bytes; take the bytes to write.
pub struct SecureChannel {
    phase: Phase,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    inbox: VecDeque<Vec<u8>>,
    remote: Option<PublicKey>,
}

fn params() -> snow::params::NoiseParams {
    // The pattern string is a constant that snow parses; a failure would be a build defect.
    PATTERN
        .parse()
        .unwrap_or_else(|_| unreachable!("constant Noise pattern parses"))
}

impl SecureChannel {
    /// The node's side; queues the first handshake message.
    pub fn initiator(local: &SecretKey, server: &PublicKey) -> Result<Self, ChannelError> {
        let hs = snow::Builder::new(params())
            .prologue(PROLOGUE)
            .local_private_key(local.as_bytes())
            .remote_public_key(&server.0)
            .build_initiator()?;
        let mut channel = SecureChannel::new(Phase::Handshake(Box::new(hs)));
        channel.remote = Some(*server);
        channel.write_handshake()?;
        Ok(channel)
    }

    /// The server's side; waits for the first handshake message.
    pub fn responder(local: &SecretKey) -> Result<Self, ChannelError> {
        Ok(SecureChannel::new(Phase::Waiting(Box::new(local.clone()))))
    }

    fn build_responder(local: &SecretKey) -> Result<snow::HandshakeState, ChannelError> {
        Ok(snow::Builder::new(params())
            .prologue(PROLOGUE)
            .local_private_key(local.as_bytes())
            .build_responder()?)
    }

    fn new(phase: Phase) -> Self {
        SecureChannel {
            phase,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            inbox: VecDeque::new(),
            remote: None,
        }
    }

    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Transport(_))
    }

    /// The other side's static key: known in advance by the initiator, learned by the responder.
    pub fn remote_static(&self) -> Option<PublicKey> {
        self.remote
    }

    fn write_handshake(&mut self) -> Result<(), ChannelError> {
        let Phase::Handshake(hs) = &mut self.phase else {
            return Err(ChannelError::Failed);
        };
        // Written in place at the end of the outgoing bytes, like `send`: a handshake message
        // of IK is under 100 bytes, so no message-sized buffer is held for it.
        let start = self.outbuf.len();
        self.outbuf.resize(start + 2 + HANDSHAKE_MAX, 0);
        match hs.write_message(&[], &mut self.outbuf[start + 2..]) {
            Ok(len) => {
                self.outbuf.truncate(start + 2 + len);
                self.outbuf[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
            }
            Err(e) => {
                self.outbuf.truncate(start);
                return Err(e.into());
            }
        }
        self.finish_handshake_if_done()
    }

    fn finish_handshake_if_done(&mut self) -> Result<(), ChannelError> {
        let phase = std::mem::replace(&mut self.phase, Phase::Failed);
        self.phase = match phase {
            Phase::Handshake(hs) if hs.is_handshake_finished() => {
                Phase::Transport(Box::new(hs.into_transport_mode()?))
            }
            other => other,
        };
        Ok(())
    }

    /// Feeds received stream bytes; complete messages become readable with `poll_message`.
    /// Any error leaves the channel failed: the caller should close the stream.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        if matches!(self.phase, Phase::Failed) {
            return Err(ChannelError::Failed);
        }
        self.inbuf.extend_from_slice(bytes);
        let result = self.drain_frames();
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    fn drain_frames(&mut self) -> Result<(), ChannelError> {
        let mut start = 0;
        while self.inbuf.len() - start >= 2 {
            let len = usize::from(u16::from_be_bytes([
                self.inbuf[start],
                self.inbuf[start + 1],
            ]));
            if self.inbuf.len() - start - 2 < len {
                break;
            }
            let frame: Vec<u8> = self.inbuf[start + 2..start + 2 + len].to_vec();
            start += 2 + len;
            self.handle_frame(&frame)?;
        }
        self.inbuf.drain(..start);
        Ok(())
    }

    fn handle_frame(&mut self, frame: &[u8]) -> Result<(), ChannelError> {
        if let Phase::Waiting(local) = &self.phase {
            let hs = Self::build_responder(local)?;
            self.phase = Phase::Handshake(Box::new(hs));
        }
        match &mut self.phase {
            Phase::Handshake(hs) => {
                let mut payload = vec![0u8; frame.len()];
                hs.read_message(frame, &mut payload)?;
                if self.remote.is_none() {
                    let key: Option<[u8; 32]> =
                        hs.get_remote_static().and_then(|k| k.try_into().ok());
                    self.remote = key.map(PublicKey);
                }
                let our_turn = hs.is_my_turn() && !hs.is_handshake_finished();
                if our_turn {
                    self.write_handshake()
                } else {
                    self.finish_handshake_if_done()
                }
            }
            Phase::Transport(ts) => {
                let mut plaintext = vec![0u8; frame.len()];
                let len = ts.read_message(frame, &mut plaintext)?;
                plaintext.truncate(len);
                self.inbox.push_back(plaintext);
                Ok(())
            }
            Phase::Waiting(_) | Phase::Failed => Err(ChannelError::Failed),
        }
    }

    /// Encrypts one message for sending.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<(), ChannelError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(ChannelError::TooLarge(plaintext.len()));
        }
        let Phase::Transport(ts) = &mut self.phase else {
            return Err(ChannelError::NotEstablished);
        };
        // Encrypted in place at the end of the outgoing bytes: no per-channel scratch buffer,
        // since a server holds one channel per online node and 64 KiB each was most of its
        // memory.
        let max = plaintext.len() + TAG_LEN;
        let start = self.outbuf.len();
        self.outbuf.resize(start + 2 + max, 0);
        match ts.write_message(plaintext, &mut self.outbuf[start + 2..]) {
            Ok(len) => {
                self.outbuf.truncate(start + 2 + len);
                self.outbuf[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
                Ok(())
            }
            Err(e) => {
                self.outbuf.truncate(start);
                Err(e.into())
            }
        }
    }

    pub fn poll_message(&mut self) -> Option<Vec<u8>> {
        self.inbox.pop_front()
    }

    /// Bytes waiting to be written to the stream.
    pub fn take_outgoing(&mut self) -> Option<Vec<u8>> {
        if self.outbuf.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.outbuf))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn pair() -> (SecureChannel, SecureChannel, SecretKey) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (node, server) = (SecretKey::generate(&mut rng), SecretKey::generate(&mut rng));
        let client = SecureChannel::initiator(&node, &server.public_key()).unwrap();
        let responder = SecureChannel::responder(&server).unwrap();
        (client, responder, node)
    }

    fn pump(a: &mut SecureChannel, b: &mut SecureChannel) {
        for _ in 0..4 {
            if let Some(bytes) = a.take_outgoing() {
                b.handle_bytes(&bytes).unwrap();
            }
            if let Some(bytes) = b.take_outgoing() {
                a.handle_bytes(&bytes).unwrap();
            }
        }
    }

    #[test]
    fn handshake_reveals_the_node_key_and_carries_messages_both_ways() {
        let (mut client, mut server, node) = pair();
        pump(&mut client, &mut server);
        assert!(client.is_established() && server.is_established());
        assert_eq!(server.remote_static(), Some(node.public_key()));
        client.send(b"hello").unwrap();
        server.send(b"welcome").unwrap();
        pump(&mut client, &mut server);
        assert_eq!(server.poll_message().as_deref(), Some(&b"hello"[..]));
        assert_eq!(client.poll_message().as_deref(), Some(&b"welcome"[..]));
    }

    #[test]
    fn buffers_grow_on_demand_up_to_the_largest_message() {
        let (mut client, mut server, _) = pair();
        // A responder that has heard nothing holds no message-sized buffer.
        assert!(server.inbuf.capacity() < 1024 && server.outbuf.capacity() < 1024);
        pump(&mut client, &mut server);
        assert!(server.inbuf.capacity() < 1024 && server.outbuf.capacity() < 1024);
        let big = vec![7u8; MAX_PLAINTEXT];
        client.send(b"small").unwrap();
        client.send(&big).unwrap();
        server.send(&big).unwrap();
        pump(&mut client, &mut server);
        assert_eq!(server.poll_message().as_deref(), Some(&b"small"[..]));
        assert_eq!(server.poll_message(), Some(big.clone()));
        assert_eq!(client.poll_message(), Some(big));
    }

    #[test]
    fn bytes_split_anywhere_still_reassemble() {
        let (mut client, mut server, _) = pair();
        pump(&mut client, &mut server);
        client.send(b"one").unwrap();
        client.send(b"two").unwrap();
        let bytes = client.take_outgoing().unwrap();
        for b in &bytes {
            server.handle_bytes(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(server.poll_message().as_deref(), Some(&b"one"[..]));
        assert_eq!(server.poll_message().as_deref(), Some(&b"two"[..]));
    }

    #[test]
    fn the_largest_message_fits_one_frame_and_one_byte_more_is_refused() {
        let (mut client, mut server, _) = pair();
        pump(&mut client, &mut server);
        let big = vec![7u8; MAX_PLAINTEXT];
        client.send(&big).unwrap();
        client.send(b"after").unwrap();
        assert!(matches!(
            client.send(&vec![0u8; MAX_PLAINTEXT + 1]),
            Err(ChannelError::TooLarge(_))
        ));
        let bytes = client.take_outgoing().unwrap();
        assert_eq!(bytes.len(), 2 + MAX_MESSAGE + 2 + 5 + TAG_LEN);
        server.handle_bytes(&bytes).unwrap();
        assert_eq!(server.poll_message(), Some(big));
        assert_eq!(server.poll_message().as_deref(), Some(&b"after"[..]));
    }

    #[test]
    fn a_node_talking_to_the_wrong_server_key_fails() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let (node, server, impostor) = (
            SecretKey::generate(&mut rng),
            SecretKey::generate(&mut rng),
            SecretKey::generate(&mut rng),
        );
        let mut client = SecureChannel::initiator(&node, &server.public_key()).unwrap();
        let mut fake = SecureChannel::responder(&impostor).unwrap();
        let first = client.take_outgoing().unwrap();
        assert!(fake.handle_bytes(&first).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..5)) {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
            let server = SecretKey::generate(&mut rng);
            let mut responder = SecureChannel::responder(&server).unwrap();
            for chunk in chunks {
                let _ = responder.handle_bytes(&chunk);
            }
        }
    }
}
