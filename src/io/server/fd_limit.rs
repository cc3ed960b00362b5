//! The file-descriptor budget. Every TCP connection holds a descriptor; once the process runs
//! out, `accept` fails for everyone, legitimate nodes included, and even the database cannot be
//! opened. So the server raises its soft `RLIMIT_NOFILE` to the hard limit at start and keeps the
//! total connection cap below it, leaving room for everything else.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (allowed without privileges) and returns the
/// soft limit now in force, or `None` when it cannot be read.
pub fn raise_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct. It fails, harmlessly, when the hard limit is
        // above the kernel's nr_open or a syscall filter forbids it; the soft limit then stays.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::debug!(
                soft = lim.rlim_cur,
                hard = lim.rlim_max,
                "cannot raise the file descriptor limit"
            );
        }
    }
    Some(lim.rlim_cur)
}

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

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let soft = raise_nofile().unwrap();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, soft);
    }
}
