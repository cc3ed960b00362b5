//! The allocator's settings for a long-running node (glibc only; a no-op elsewhere).
//!
//! A node allocates its batch buffers once at start (`io::udp_batch::RecvBufs`, the TUN
//! read and write buffers: 64 KiB each, zeroed or growing to 64 KiB under GRO) and then
//! never again on the data path. glibc serves blocks below its mmap threshold (128 KiB, and
//! it rises by itself after frees) from the heap, where `calloc` zeroes them by writing, so
//! every page of a buffer that may never be used in full becomes resident at once. Above the
//! threshold a block is its own anonymous mapping: the kernel hands out zero pages on first
//! touch, and only the bytes a batch really fills cost memory. A fixed 32 KiB threshold puts
//! every batch buffer there and leaves small allocations on the heap. Measured on the idle
//! node of `scripts/profile.sh`: RssAnon about 1 MiB lower (notes/relaybatch.md).

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    /// Blocks of at least this size get their own mapping.
    const MMAP_THRESHOLD: libc::c_int = 32 * 1024;

    pub fn tune_for_node() {
        // SAFETY: mallopt only sets a parameter of the allocator; it is called before the
        // node's buffers exist, and glibc applies it under its own lock.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        if ok == 0 {
            tracing::debug!("mallopt(M_MMAP_THRESHOLD) refused; batch buffers stay on the heap");
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    /// Other allocators already map large blocks lazily, or have no such knob.
    pub fn tune_for_node() {}
}

pub use imp::tune_for_node;
