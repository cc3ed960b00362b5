//! The node's access rule state shared between the core and the data workers (issue 11): the
//! flow table changes on every packet in either direction, and the workers carry most packets,
//! so they must record and check flows on the same table as the core. One lock around [`Acl`]:
//! taken for one packet's check or record (a hash and a 4-way probe, no allocation, never across
//! I/O or decryption) by the core and by the data thread, so it is uncontended with one data
//! thread; with the two workers of `workers = 2` the TX and RX threads share it.
//!
//! Ownership stays with the core: only the core installs rules (`set_policy`) and reads the
//! status; workers only pass packets through `outbound` and `inbound`, with the `now` they are
//! given (nothing here reads a clock).

use super::Acl;
use std::sync::{Arc, Mutex, MutexGuard};

/// A handle on the node's [`Acl`]; clones share it.
#[derive(Clone)]
pub struct SharedAcl(Arc<Mutex<Acl>>);

impl SharedAcl {
    pub fn new(acl: Acl) -> Self {
        SharedAcl(Arc::new(Mutex::new(acl)))
    }

    /// The state, for one check or update. A panic while the lock was held (a bug) leaves the
    /// flow table as it was between two whole updates, so the state stays usable.
    pub fn lock(&self) -> MutexGuard<'_, Acl> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
