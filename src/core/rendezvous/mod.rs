//! The rendezvous protocol between a node and the server: a Noise IK channel over a TCP stream
//! (the node trusts only the server key from its join token), joining with a token, registering,
//! and learning the peer map as it changes.

pub mod admission;
pub mod candidates;
pub mod channel;
pub mod client;
pub mod deployment;
pub mod fanout;
pub mod leave;
pub mod messages;
pub mod names;
pub mod registry;
pub mod server;
pub mod token;
