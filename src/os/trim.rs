//! Giving back the pages a node used only to start (Linux; a no-op elsewhere): its code and
//! constants, and the allocator's free pages.
//!
//! A node runs far more code to start (configuration, the join, NAT discovery, the TUN device's
//! set-up) than it runs once it is up (the data path, timers, keepalives). The kernel maps a
//! binary's page when it is first touched, with the 64 KiB window around it (fault-around),
//! and keeps it mapped for the process's life: without this, a node carried every page of its
//! start-up in its RSS forever. [`trim`] drops the mappings of every clean, read-only,
//! file-backed mapping of the process (its own binary's code and constants, libc's, ld.so's)
//! with `madvise(MADV_DONTNEED)`; what the node still runs maps itself back on its next touch,
//! from the page cache. `scripts/pgo.sh` lays the code a settled node runs out first, so that
//! what comes back is a few windows, not every one the start-up touched.
//!
//! Why it is safe: such a mapping holds nothing but the file's bytes. `MADV_DONTNEED` on a
//! private file mapping removes page-table entries only, and the next access reads the same
//! bytes from the page cache, which is what the kernel itself does to these pages under memory
//! pressure. A mapping with any anonymous (copied-on-write) page, such as the relocated
//! `.data.rel.ro`, or one that is writable, is never touched: dropping it would lose the
//! writes. What this changes is what the process has mapped (RSS); the page cache keeps the
//! pages until the kernel needs the memory.
//!
//! Of the heap, only the pages of free chunks are given back (`os::malloc::release_free`,
//! glibc's `malloc_trim`): no object lives there, and the allocator writes a chunk before it
//! hands it out again.

/// One mapping of `/proc/self/smaps` that may be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    /// Resident before the drop, KiB.
    pub rss_kib: u64,
}

/// The mappings of a `/proc/PID/smaps` text that hold only a file's bytes: private
/// (copy-on-write, never shared writes), not writable, backed by a file (a path), with no
/// anonymous page. Anything this does not understand is left out.
pub fn droppable(smaps: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    // The mapping being read and whether it qualifies so far.
    let mut cur: Option<(Mapping, bool)> = None;
    for line in smaps.lines() {
        if let Some((mapping, ok)) = header(line) {
            if let Some((m, true)) = cur.take() {
                out.push(m);
            }
            cur = Some((mapping, ok));
            continue;
        }
        let Some((m, ok)) = cur.as_mut() else {
            continue;
        };
        let mut f = line.split_whitespace();
        let key = f.next().unwrap_or_default();
        let kib = f.next().and_then(|v| v.parse::<u64>().ok());
        match (key, kib) {
            ("Rss:", Some(v)) => m.rss_kib = v,
            ("Anonymous:", Some(0)) => {}
            // Any anonymous page, or a field that does not parse: not ours to drop.
            ("Anonymous:", _) => *ok = false,
            _ => {}
        }
    }
    if let Some((m, true)) = cur {
        out.push(m);
    }
    out
}

/// A mapping's header line ("start-end perms offset dev inode path"), and whether its
/// permissions and backing allow a drop; `None` for a field line.
fn header(line: &str) -> Option<(Mapping, bool)> {
    let mut f = line.split_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = f.next()?.as_bytes();
    let path = f.nth(3).unwrap_or_default();
    // "r-xp"/"r--p": readable, not writable, private. A path that is not absolute is a
    // pseudo-mapping ([vdso], [heap]) or an anonymous one.
    let ok = perms.len() == 4
        && perms[0] == b'r'
        && perms[1] == b'-'
        && perms[3] == b'p'
        && path.starts_with('/')
        && end > start;
    let m = Mapping {
        start,
        end,
        rss_kib: 0,
    };
    Some((m, ok))
}

#[cfg(target_os = "linux")]
mod imp {
    /// Drops every droppable mapping of this process and the allocator's free pages; returns the
    /// KiB that were resident in the dropped file mappings (what the process gave back; part of
    /// it maps itself back as soon as it runs).
    pub fn trim() -> u64 {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return 0;
        };
        // The heap first: the file mappings' drop must come last, or the code it runs (which
        // may share a large page-cache folio with cold code) maps itself back.
        crate::os::malloc::release_free();
        let mut kib = 0;
        for m in super::droppable(&smaps) {
            // SAFETY: `m` is a whole private, read-only, file-backed mapping of this process
            // with no anonymous page (module comment): MADV_DONTNEED only removes its page-table
            // entries, and every later access maps the file's same bytes again. No Rust object
            // lives in it. A mapping unmapped since smaps was read makes the call fail with
            // ENOMEM, harmlessly.
            let rc = unsafe {
                libc::madvise(
                    m.start as *mut libc::c_void,
                    m.end - m.start,
                    libc::MADV_DONTNEED,
                )
            };
            if rc == 0 {
                kib += m.rss_kib;
            }
        }
        kib
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    /// Other systems trim working sets themselves (Windows) or have no such call here.
    pub fn trim() -> u64 {
        0
    }
}

pub use imp::trim;

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0100000 r--p 00000000 fe:00 42    /usr/bin/p2pvpn
Rss:                 824 kB
Anonymous:             0 kB
55d0a0100000-55d0a0400000 r-xp 00100000 fe:00 42    /usr/bin/p2pvpn
Rss:                2296 kB
Anonymous:             0 kB
55d0a0400000-55d0a0450000 r--p 00400000 fe:00 42    /usr/bin/p2pvpn
Rss:                 316 kB
Anonymous:           316 kB
55d0a0450000-55d0a0460000 rw-p 00450000 fe:00 42    /usr/bin/p2pvpn
Rss:                  28 kB
Anonymous:            28 kB
55d0a1000000-55d0a1100000 rw-p 00000000 00:00 0    [heap]
Rss:                 328 kB
Anonymous:           328 kB
7f0000000000-7f0000100000 r-xp 00026000 fe:00 7     /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1080 kB
Anonymous:             0 kB
7f0000200000-7f0000201000 r--s 00000000 00:05 9     /dev/shm/shared
Rss:                   4 kB
Anonymous:             0 kB
7f0000300000-7f0000302000 r-xp 00000000 00:00 0    [vdso]
Rss:                   4 kB
Anonymous:             0 kB
7f0000400000-7f0000401000 r-xp 00000000 fe:00 7     /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                   4 kB
Anonymous:           bad kB
";

    #[test]
    fn only_clean_read_only_private_file_mappings() {
        let got = droppable(SMAPS);
        let starts: Vec<_> = got.iter().map(|m| (m.start, m.rss_kib)).collect();
        assert_eq!(
            starts,
            vec![
                (0x55d0a0000000, 824),
                (0x55d0a0100000, 2296),
                (0x7f0000000000, 1080)
            ],
            "the relocated .data.rel.ro, writable data, the heap, a shared mapping, [vdso] and \
             a mapping whose fields do not parse are never dropped"
        );
    }

    #[test]
    fn nothing_from_nothing() {
        assert!(droppable("").is_empty());
        assert!(droppable("garbage\nRss: 4 kB\n").is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_trimmed_process_keeps_running_and_maps_less() {
        // From the page tables (smaps_rollup), not /proc/self/status: since Linux 6.2 the
        // latter reads per-CPU counters without summing them and can lag by hundreds of KiB.
        fn rss_file_kib() -> u64 {
            let s = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
            let field = |name: &str| -> u64 {
                s.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0)
            };
            field("Rss:") - field("Anonymous:")
        }
        let before = rss_file_kib();
        let gave = trim();
        let after = rss_file_kib();
        assert!(gave > 0, "nothing was dropped");
        assert!(
            after < before,
            "file-backed RSS {before} KiB before, {after} KiB after the trim"
        );
        // The code and constants come back on use: formatting, hashing and a thread all run.
        let s = format!("{:?}", std::collections::HashMap::from([(1, "a")]));
        let t = std::thread::spawn(move || s.len()).join().ok();
        assert_eq!(t, Some(r#"{1: "a"}"#.len()));
    }
}
