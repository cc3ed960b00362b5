//! The readers of the node's extra sockets (NAT discovery, birthday probing): one task per
//! socket hands each datagram to the node task over a channel. A path that birthday probing
//! won keeps its probing socket (`Route::Direct { socket, .. }` names it), so a peer behind
//! two hard NATs sends its whole stream through here; the datagrams' buffers therefore come
//! from a small pool the node task gives them back to, and a steady stream allocates nothing
//! (tests/extra_alloc.rs).

use crate::core::node::SocketId;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// A datagram read on an extra socket: (socket, sender, bytes).
pub type ExtraDatagram = (SocketId, SocketAddr, Vec<u8>);

/// Buffers the pool keeps: the channel's items in flight at a steady rate are a handful;
/// more than this are a burst, whose extra buffers are freed.
const KEEP: usize = 64;

/// The capacity a new buffer gets: a full-size WireGuard datagram on a 1500-byte path and a
/// path MTU probe fit; a larger datagram grows its buffer once, and the grown one is kept.
const INITIAL: usize = 2048;

/// Datagram buffers shared by every reader and the node task.
pub struct BufPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Default for BufPool {
    fn default() -> Self {
        BufPool {
            free: Mutex::new(Vec::with_capacity(KEEP)),
        }
    }
}

impl BufPool {
    /// A buffer holding `bytes`: a kept one if there is one, else a new one.
    pub fn filled(&self, bytes: &[u8]) -> Vec<u8> {
        let kept = self.lock().pop();
        let mut buf = kept.unwrap_or_else(|| Vec::with_capacity(INITIAL.max(bytes.len())));
        buf.clear();
        buf.extend_from_slice(bytes);
        buf
    }

    /// Takes a buffer back once its datagram has been handled.
    pub fn give(&self, buf: Vec<u8>) {
        let mut free = self.lock();
        if free.len() < KEEP {
            free.push(buf);
        }
    }

    /// The free list; a reader that panicked while holding the lock left it consistent (a
    /// push or a pop), so a poisoned lock is used as it is.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads `socket` (known to the core as `id`) until the task is aborted or the node task has
/// gone, handing each datagram to `tx` in a buffer from `pool`.
pub async fn read_extra(
    id: SocketId,
    socket: Arc<UdpSocket>,
    tx: mpsc::Sender<ExtraDatagram>,
    pool: Arc<BufPool>,
) {
    let mut buf = vec![0u8; crate::core::node::MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let bytes = pool.filled(&buf[..n]);
                if tx.send((id, from, bytes)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "probing socket read failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
