//! Sans-IO protocol logic: no sockets, no clock reads, no OS randomness beyond what the crypto
//! crates use for ephemeral keys. Every state machine here is driven by `handle_*` calls and
//! drained with `poll_*` calls, so the in-process simulator and the real drivers run the same code.

pub mod acl;
pub mod counters;
pub mod crypto;
pub mod dns;
pub mod icmp;
pub mod ip;
pub mod keys;
pub mod nat;
pub mod node;
pub mod peers;
pub mod pmtu;
pub mod portmap;
pub mod punch;
pub mod relay;
pub mod rendezvous;
pub mod stun;
pub mod transmit;
pub mod ula;
pub mod wg;
pub mod wire;
