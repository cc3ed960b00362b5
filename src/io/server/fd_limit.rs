//! The file-descriptor budget. Every TCP connection holds a descriptor; once the process runs
//! out, `accept` fails for everyone, legitimate nodes included, and even the database cannot be
//! opened. So the server raises its soft `RLIMIT_NOFILE` to the hard limit at start and keeps the
//! total connection cap below it, leaving room for everything else.

/// Raises the soft descriptor limit where the OS has one (`crate::os`) and returns the limit in
/// force; `None` when there is none to read.
pub use crate::os::raise_nofile;

/// Descriptors kept free of connections: listeners, UDP sockets, the database, metrics scrapes,
/// an over-cap connection between its accept and its close, and the evicted connections still
/// closing (`conn_limit::headroom`, at most 16 + 1/16 of the cap).
fn reserve(nofile: u64) -> u64 {
    32 + nofile / 8
}

/// The total connection cap: `requested` (`--max-conns`), lowered when the descriptor limit
/// `nofile` would not leave the reserve.
pub fn conn_cap(requested: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else {
        return requested;
    };
    let room = nofile.saturating_sub(reserve(nofile)).max(1);
    usize::try_from(room).map_or(requested, |room| requested.min(room))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        // The default limit outside systemd: 1,100 idle connections must not reach it.
        assert_eq!(conn_cap(10_000, Some(1024)), 864);
        assert_eq!(conn_cap(10_000, Some(256)), 192);
        // The unit's LimitNOFILE leaves the operator's cap alone.
        assert_eq!(conn_cap(10_000, Some(65_536)), 10_000);
        assert_eq!(conn_cap(10_000, Some(u64::MAX)), 10_000);
        assert_eq!(conn_cap(10_000, None), 10_000);
        assert_eq!(conn_cap(10_000, Some(8)), 1);
    }

    #[test]
    fn connections_still_closing_fit_too() {
        // 32 descriptors for everything else: listeners, UDP, the database, the runtime.
        for nofile in [256, 1024, 4096, 65_536, 1 << 20] {
            let cap = conn_cap(usize::MAX, Some(nofile)) as u64;
            let closing = super::super::conn_limit::headroom(cap as usize) as u64;
            assert!(cap + closing + 32 <= nofile, "{nofile}: {cap} + {closing}");
        }
    }
}
