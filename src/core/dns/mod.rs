//! The node's DNS responder for the network's own names (`bob.office.p2p`), sans-IO: a query's
//! bytes and the current hosts in, a reply's bytes (or nothing) out. Parsing and encoding are
//! hickory-proto's; this module only decides what to answer. The socket is `io::dns`.
//!
//! It is authoritative for one suffix and nothing else: names outside it are REFUSED and it never
//! recurses (RA=0), so it cannot be used as an open resolver or to amplify traffic.

mod responder;
mod status;
mod suffix;
#[cfg(test)]
mod tests;

pub use responder::{DnsCounters, Host, Responder, MAX_QUERY, TTL};
pub use status::DnsStatus;
pub use suffix::{check_suffix, default_suffix, SuffixError};
