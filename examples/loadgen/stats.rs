//! Figures for the load generator: a lock-free latency histogram (1 ms buckets up to two
//! minutes) and samples of a process's CPU time and resident memory from /proc.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: usize = 120_000;

/// Latencies in whole milliseconds; anything longer lands in the last bucket.
pub struct Hist {
    buckets: Vec<AtomicU64>,
}

impl Hist {
    pub fn new() -> Self {
        Hist {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn record(&self, d: Duration) {
        let ms = usize::try_from(d.as_millis())
            .unwrap_or(usize::MAX)
            .min(BUCKETS - 1);
        self.buckets[ms].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The smallest bucket at or below which a fraction `q` of the samples lie.
    pub fn quantile_ms(&self, q: f64) -> Option<usize> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let want = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= want {
                return Some(ms);
            }
        }
        Some(BUCKETS - 1)
    }
}

/// CPU time (user + system) and resident set of one process.
pub struct ProcSample {
    pub cpu_secs: f64,
    pub rss_kb: u64,
}

impl ProcSample {
    pub fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces; the fields after it start past ')'.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        // SAFETY: sysconf only reads a constant of the running system.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some(ProcSample {
            cpu_secs: (utime + stime) as f64 / tick,
            rss_kb: rss_kb(&format!("/proc/{pid}/status"))?,
        })
    }
}

fn rss_kb(path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn own_rss_kb() -> u64 {
    rss_kb("/proc/self/status").unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_samples() {
        let h = Hist::new();
        assert_eq!(h.quantile_ms(0.5), None);
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.quantile_ms(0.5), Some(50));
        assert_eq!(h.quantile_ms(0.99), Some(99));
        assert!(ProcSample::read(std::process::id()).is_some_and(|s| s.rss_kb > 0));
    }
}
