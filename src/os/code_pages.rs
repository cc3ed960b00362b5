//! Read-ahead advice for the binary's own code and read-only data (Linux; a no-op elsewhere).
//!
//! A node executes a small part of its 8-9 MB text (the data path, the control loop), but a page
//! fault on a file mapping reads ahead around the faulting page (`do_sync_mmap_readahead`, 128
//! KiB and more, in large folios on ext4 since Linux 6.16), and fault-around then maps every
//! neighbour already in the page cache (`fault_around_bytes`, 64 KiB). Both count in the
//! process's RSS although most of those pages never run. `madvise(MADV_RANDOM)` (madvise(2))
//! on the binary's read-only mappings turns the read-ahead off for them, so a fault reads and
//! maps what is touched. It evicts nothing and does not stop fault-around from mapping
//! neighbours that another process already brought into the page cache: it only lowers RSS
//! when the binary's pages are not cached yet (the first process after boot or an upgrade).
//!
//! `P2PVPN_KEEP_READAHEAD=1` in the environment skips it (measurements; the lab test compares).

/// Environment variable that keeps the kernel's default read-ahead on the binary's pages.
pub const KEEP_READAHEAD_ENV: &str = "P2PVPN_KEEP_READAHEAD";

/// The address ranges (start, end) of `exe`'s read-only, non-writable mappings in the text of
/// `/proc/self/maps` (proc(5): `start-end perms offset dev inode path`). Writable mappings
/// (`.data`, relocated `.data.rel.ro` before `mprotect`) are left alone: their pages are
/// copied on write anyway.
pub fn read_only_ranges(maps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    for line in maps.lines() {
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        // The path is the sixth field, after padding spaces; it may itself contain spaces.
        let path = fields.nth(3).map(str::trim_start).unwrap_or("");
        if path != exe || !perms.starts_with('r') || perms.as_bytes().get(1) != Some(&b'-') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        if let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) {
            if start < end {
                ranges.push((start, end));
            }
        }
    }
    ranges
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{read_only_ranges, KEEP_READAHEAD_ENV};

    /// Advises `MADV_RANDOM` on the binary's read-only mappings; returns how many bytes it
    /// covered. Failures only cost memory, so they are logged at debug level, never fatal.
    pub fn advise_random_access() -> usize {
        if std::env::var_os(KEEP_READAHEAD_ENV).is_some_and(|v| v != "0") {
            return 0;
        }
        let (Ok(exe), Ok(maps)) = (
            std::fs::read_link("/proc/self/exe"),
            std::fs::read_to_string("/proc/self/maps"),
        ) else {
            return 0;
        };
        let Some(exe) = exe.to_str() else {
            return 0;
        };
        let mut covered = 0;
        for (start, end) in read_only_ranges(&maps, exe) {
            // SAFETY: the range is one of this process's own mappings as the kernel listed it,
            // page-aligned; MADV_RANDOM only changes read-ahead, never the contents or the
            // protection, so no Rust object can observe it.
            let rc = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM)
            };
            if rc == 0 {
                covered += end - start;
            }
        }
        covered
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    /// Other systems: no equivalent knob is needed or measured yet.
    pub fn advise_random_access() -> usize {
        0
    }
}

pub use imp::advise_random_access;

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0000000-55d0c0100000 r--p 00000000 fd:00 1234                       /usr/bin/p2p vpn
55d0c0100000-55d0c0900000 r-xp 00100000 fd:00 1234                       /usr/bin/p2p vpn
55d0c0900000-55d0c0b00000 r--p 00900000 fd:00 1234                       /usr/bin/p2p vpn
55d0c0b00000-55d0c0b10000 rw-p 00b00000 fd:00 1234                       /usr/bin/p2p vpn
55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000100000 r-xp 00000000 fd:00 99                         /usr/lib/libc.so.6
garbage line
";

    #[test]
    fn picks_the_binarys_read_only_mappings_only() {
        let got = read_only_ranges(MAPS, "/usr/bin/p2p vpn");
        assert_eq!(
            got,
            vec![
                (0x55d0c0000000, 0x55d0c0100000),
                (0x55d0c0100000, 0x55d0c0900000),
                (0x55d0c0900000, 0x55d0c0b00000),
            ]
        );
    }

    #[test]
    fn another_path_or_a_prefix_matches_nothing() {
        assert!(read_only_ranges(MAPS, "/usr/bin/p2p").is_empty());
        assert!(read_only_ranges(MAPS, "/usr/lib/libc.so").is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_test_binary_finds_its_own_code() {
        let exe = std::fs::read_link("/proc/self/exe").expect("ok: /proc is mounted on Linux");
        let maps = std::fs::read_to_string("/proc/self/maps").expect("ok: /proc is mounted");
        let exe = exe.to_str().expect("ok: test binary path is UTF-8");
        let ranges = read_only_ranges(&maps, exe);
        let code = ranges.iter().map(|(s, e)| e - s).sum::<usize>();
        // A Rust test binary has at least a few hundred KiB of code and read-only data.
        assert!(code > 100 * 1024, "{ranges:x?}");
    }
}
