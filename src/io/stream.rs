//! A TCP stream to the server run as two small tasks, so the node's event loop never blocks on
//! the control channel: a reader that forwards received bytes, and a writer fed by a channel.
//! Events carry a generation number so the loop can ignore a stream it already gave up on.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub enum StreamEvent {
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

/// Connects to `server` (inside TLS when `tls`) and pumps the stream until it ends; every event
/// is tagged with `gen`.
pub fn spawn(server: SocketAddr, tls: bool, gen: u64, events: mpsc::Sender<(u64, StreamEvent)>) {
    tokio::spawn(async move {
        if tls {
            let msg = "TLS transport is not built into this binary yet".to_string();
            let _ = events.send((gen, StreamEvent::Failed(msg))).await;
            return;
        }
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = events.send((gen, StreamEvent::Failed(e.to_string()))).await;
                return;
            }
            Err(_) => {
                let msg = format!("no answer within {CONNECT_TIMEOUT:?}");
                let _ = events.send((gen, StreamEvent::Failed(msg))).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(e) => {
                let _ = events.send((gen, StreamEvent::Failed(e.to_string()))).await;
                return;
            }
        };
        let (mut read, mut write) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<WriterCommand>(64);
        if events
            .send((gen, StreamEvent::Connected { local, writer: tx }))
            .await
            .is_err()
        {
            return;
        }
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    WriterCommand::Write(bytes) => {
                        if write.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    WriterCommand::Close => break,
                }
            }
            let _ = write.shutdown().await;
        });
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
    });
}
