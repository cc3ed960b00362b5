//! A TCP stream to the server, plain or inside TLS, run as two small tasks so the node's event
//! loop never blocks on the control channel: a reader that forwards received bytes, and a writer
//! fed by a channel. Events carry a generation number so the loop can ignore a stream it already
//! gave up on.

use super::tls;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Bound on the TCP connect, and separately on the TLS handshake that may follow it.
/// Short, so that a node behind a firewall that silently drops the plain port moves on to the
/// TLS address quickly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Queued writes are coalesced up to this many bytes.
pub const WRITE_BATCH: usize = 64 * 1024;

pub enum StreamEvent {
    /// `local` is the TCP socket's local address, also when TLS runs on top.
    Connected {
        local: SocketAddr,
        writer: mpsc::Sender<WriterCommand>,
    },
    Failed(String),
    Bytes(Vec<u8>),
    Closed,
}

pub enum WriterCommand {
    Write(Vec<u8>),
    Close,
}

/// Writes what the channel brings until it closes or says `Close`, then shuts the stream down.
/// Everything already queued goes out in one write and one flush: under relay load that is one
/// TLS record and one syscall for many frames, not one each. Shared by the node's stream and the
/// server's connections.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<WriterCommand>,
    mut write: W,
) {
    while let Some(WriterCommand::Write(mut batch)) = rx.recv().await {
        let mut close = false;
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(WriterCommand::Write(more)) => batch.extend_from_slice(&more),
                Ok(WriterCommand::Close) => {
                    close = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // The flush pushes out what TLS may still hold; plain TCP ignores it.
        if write.write_all(&batch).await.is_err() || write.flush().await.is_err() || close {
            break;
        }
    }
    let _ = write.shutdown().await;
}

/// Connects to `server` (inside TLS when `tls`) and pumps the stream until it ends; every event
/// is tagged with `gen`.
pub fn spawn(server: SocketAddr, tls: bool, gen: u64, events: mpsc::Sender<(u64, StreamEvent)>) {
    tokio::spawn(async move {
        let stream = match connect_tcp(server).await {
            Ok(s) => s,
            Err(msg) => {
                let _ = events.send((gen, StreamEvent::Failed(msg))).await;
                return;
            }
        };
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(e) => {
                let _ = events.send((gen, StreamEvent::Failed(e.to_string()))).await;
                return;
            }
        };
        if !tls {
            pump(stream, local, gen, events).await;
            return;
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, tls::connect(stream, server)).await {
            Ok(Ok(stream)) => pump(stream, local, gen, events).await,
            Ok(Err(e)) => {
                let msg = format!("TLS handshake failed: {e}");
                let _ = events.send((gen, StreamEvent::Failed(msg))).await;
            }
            Err(_) => {
                let msg = format!("no TLS handshake within {CONNECT_TIMEOUT:?}");
                let _ = events.send((gen, StreamEvent::Failed(msg))).await;
            }
        }
    });
}

async fn connect_tcp(server: SocketAddr) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(reason(&e)),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// A failed connect in words ("connection refused"), without the OS error number that the
/// log reader can do nothing with; uncommon errors keep the OS's own text.
fn reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        k @ (ConnectionRefused | ConnectionReset | TimedOut | HostUnreachable
        | NetworkUnreachable | AddrNotAvailable | PermissionDenied) => k.to_string(),
        _ => e.to_string(),
    }
}

/// Reports the stream as connected, then moves bytes both ways until either side ends it.
async fn pump<S>(stream: S, local: SocketAddr, gen: u64, events: mpsc::Sender<(u64, StreamEvent)>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read, write) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<WriterCommand>(64);
    if events
        .send((gen, StreamEvent::Connected { local, writer: tx }))
        .await
        .is_err()
    {
        return;
    }
    tokio::spawn(write_loop(rx, write));
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if events
                    .send((gen, StreamEvent::Bytes(buf[..n].to_vec())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = events.send((gen, StreamEvent::Closed)).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refused_connect_reads_as_words() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(super::reason(&e), "connection refused");
    }
}
