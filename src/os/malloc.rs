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
        // The threshold alone is not enough: glibc serves a block from the heap's free top
        // whenever the top is large enough, and maps only when it must grow the heap. The top
        // keeps M_TOP_PAD (128 KiB) spare after every growth and up to M_TRIM_THRESHOLD
        // (128 KiB) after frees, so the node's 64 KiB receive buffers landed there, zeroed by
        // writing (`calloc` on reused memory) and resident whole (measured: four of them, 256
        // KiB, in the heap of a bench node). With no pad and a trim at the threshold, the top
        // stays below it and every batch buffer is a mapping of its own.
        let settings = [
            (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (libc::M_TOP_PAD, 0),
            (libc::M_TRIM_THRESHOLD, MMAP_THRESHOLD),
        ];
        for (param, value) in settings {
            // SAFETY: mallopt only sets a parameter of the allocator; it is called before the
            // node's buffers exist, and glibc applies it under its own lock.
            if unsafe { libc::mallopt(param, value) } == 0 {
                tracing::debug!(
                    param,
                    value,
                    "mallopt refused; batch buffers may stay on the heap"
                );
            }
        }
    }

    /// Gives the allocator's free pages back to the kernel: the top of each arena and the
    /// whole pages inside its free chunks (glibc's `malloc_trim`, which does the latter since
    /// 2.8). Start-up frees much of what it allocated (the configuration's text, the join's
    /// messages, NAT discovery's state) and the heap kept those pages resident.
    pub fn release_free() {
        // SAFETY: malloc_trim takes the allocator's own locks and only releases free memory.
        unsafe { libc::malloc_trim(0) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    /// Other allocators already map large blocks lazily, or have no such knob.
    pub fn tune_for_node() {}

    /// Other allocators return free memory by their own rules.
    pub fn release_free() {}
}

pub use imp::{release_free, tune_for_node};
