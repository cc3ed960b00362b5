//! The relay: how nodes with no direct path reach each other through the server. `wire` frames
//! relayed packets (on UDP, and inside the control stream when UDP to the server is blocked),
//! `server` forwards them by node identity under per-node and total limits, `client` is the
//! node's binding of its UDP socket to its relay identity, `auth` the keyed tags and cookies that
//! keep anyone else from moving that binding. The relay only ever carries WireGuard
//! messages that are end-to-end encrypted between the peers; it holds no session key and cannot
//! read or forge traffic.

pub mod auth;
pub mod client;
pub mod server;
pub mod wire;
