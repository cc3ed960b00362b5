//! The server's TCP listeners, with an accept queue deep enough for a reconnect storm.
//!
//! `tokio::net::TcpListener::bind` listens with a backlog of 128 (the standard library's value).
//! When the server restarts with thousands of nodes online they all reconnect within a second or
//! two; past 128 queued connections the kernel drops their SYNs and each node's TCP retries only
//! after 1 s, then 3 s, then 7 s, so a restart took many seconds longer than the server needed.
//! The kernel caps the value at `net.core.somaxconn` (4096 by default since Linux 5.4).

use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Connections the kernel may queue for `accept`.
pub const BACKLOG: u32 = 4096;

/// Binds and listens on `addr` (with SO_REUSEADDR on Unix, as tokio's `bind` does; not on
/// Windows, see `os::LISTEN_REUSEADDR`). An IPv6 address listens on IPv6 only, so `[::]:P` and
/// `0.0.0.0:P` can both be given (`io::v6only`). Must run inside the runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    super::v6only::tcp_listener(addr, crate::os::LISTEN_REUSEADDR, BACKLOG as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 300 clients connect at once to a server that has not accepted yet: every handshake
    /// completes at once. With a backlog of 128 the ones past it wait for a SYN retry (1 s).
    #[tokio::test]
    async fn a_burst_of_connections_is_queued_not_dropped() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..300).map(|_| tokio::net::TcpStream::connect(addr));
        let all = futures_join_all(connects);
        let streams = tokio::time::timeout(Duration::from_millis(800), all)
            .await
            .expect("every connection completes without a SYN retry");
        assert!(streams.iter().all(|s| s.is_ok()));
        drop(listener);
    }

    async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let handles: Vec<_> = futures.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            if let Ok(v) = h.await {
                out.push(v);
            }
        }
        out
    }
}
