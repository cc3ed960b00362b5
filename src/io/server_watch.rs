//! What the node logs about reaching the server. The control stream retries with backoff
//! (1 s, 2 s, 4 s, ... 30 s), and logging every failed attempt filled the log with the same
//! warning while saying nothing new. This logs the transitions instead: "unreachable" once when
//! attempts start failing, "reachable again" once when one succeeds, and in between at most one
//! reminder a minute. Pure logic on a passed-in clock, so it is tested without waiting.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The shortest time between two "still unreachable" reminders.
pub const REMINDER_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct ServerWatch {
    /// Set while attempts fail: since when, and when the last line about it was logged.
    down: Option<Down>,
}

#[derive(Debug)]
struct Down {
    /// The server that failed first (a failover then reaches another one).
    server: SocketAddr,
    since: Instant,
    said: Instant,
    attempts: u32,
}

/// Whole seconds, as "1m 5s": the sub-second part is noise here.
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

impl ServerWatch {
    /// An attempt to reach `server` failed with `reason`; returns the line to log, if any.
    pub fn failed(&mut self, server: SocketAddr, reason: &str, now: Instant) -> Option<String> {
        match &mut self.down {
            None => {
                self.down = Some(Down {
                    server,
                    since: now,
                    said: now,
                    attempts: 1,
                });
                Some(format!(
                    "server {server} unreachable ({reason}); retrying in the background, \
                     existing tunnels keep working"
                ))
            }
            Some(d) => {
                d.attempts = d.attempts.saturating_add(1);
                if now.saturating_duration_since(d.said) < REMINDER_EVERY {
                    return None;
                }
                d.said = now;
                Some(format!(
                    "server still unreachable after {} ({} attempts; last: {server}, {reason})",
                    human(now.saturating_duration_since(d.since)),
                    d.attempts
                ))
            }
        }
    }

    /// A connection to `server` opened; returns the line to log if it had been unreachable.
    pub fn connected(&mut self, server: SocketAddr, now: Instant) -> Option<String> {
        let d = self.down.take()?;
        let after = human(now.saturating_duration_since(d.since));
        if d.server != server {
            return Some(format!(
                "reached the deployment's server {server} after {after} ({} is unreachable)",
                d.server
            ));
        }
        Some(format!("server {server} reachable again after {after}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "127.0.0.1:7000";

    /// The lines logged for a server that fails every `every` for `total`, then answers.
    fn lines_over(total: Duration, every: Duration) -> Vec<String> {
        let server: SocketAddr = SERVER.parse().unwrap_or_else(|_| unreachable!());
        let start = Instant::now();
        let mut w = ServerWatch::default();
        let mut lines = Vec::new();
        let mut t = Duration::ZERO;
        while t < total {
            lines.extend(w.failed(server, "connection refused", start + t));
            t += every;
        }
        lines.extend(w.connected(server, start + t));
        lines.extend(w.connected(server, start + t + every));
        lines
    }

    #[test]
    fn a_server_down_for_ten_seconds_is_one_line_down_and_one_line_up() {
        let lines = lines_over(Duration::from_secs(10), Duration::from_secs(1));
        assert_eq!(
            lines,
            [
                "server 127.0.0.1:7000 unreachable (connection refused); retrying in the \
                 background, existing tunnels keep working",
                "server 127.0.0.1:7000 reachable again after 10s",
            ]
        );
    }

    #[test]
    fn a_failover_names_the_server_reached_and_the_one_lost() {
        let start = crate::test_now();
        let (a, b) = (SERVER.parse().unwrap(), "127.0.0.2:7000".parse().unwrap());
        let mut w = ServerWatch::default();
        assert!(w.failed(a, "connection refused", start).is_some());
        assert_eq!(
            w.connected(b, start + Duration::from_secs(1)).as_deref(),
            Some("reached the deployment's server 127.0.0.2:7000 after 1s (127.0.0.1:7000 is unreachable)")
        );
    }

    #[test]
    fn a_long_outage_gets_a_reminder_a_minute_at_most() {
        let lines = lines_over(Duration::from_secs(185), Duration::from_secs(5));
        assert_eq!(lines.len(), 1 + 3 + 1, "{lines:#?}");
        assert_eq!(
            lines[1],
            "server still unreachable after 1m (13 attempts; last: 127.0.0.1:7000, connection \
             refused)"
        );
        assert!(
            lines[4].ends_with("reachable again after 3m 5s"),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_connection_without_an_outage_says_nothing() {
        let server: SocketAddr = SERVER.parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(
            ServerWatch::default().connected(server, Instant::now()),
            None
        );
    }
}
