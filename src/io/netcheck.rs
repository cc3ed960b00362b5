//! Drives the sans-IO `Netcheck` with real UDP sockets and the clock: a main socket on an
//! ephemeral port plus the extra sockets it asks for, each with a receive task feeding one
//! channel. Needs no root, no TUN device and no running node.

use crate::core::nat::{Netcheck, NetcheckConfig, NetcheckReport};
use crate::core::transmit::{SocketCommand, SocketId, Transmit};
use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the caller may tune; the rest of [`NetcheckConfig`] is fixed here.
#[derive(Clone, Debug)]
pub struct NetcheckOptions {
    pub server: SocketAddr,
    pub samples: usize,
    pub lifetime: bool,
}

struct Received {
    socket: SocketId,
    from: SocketAddr,
    bytes: Vec<u8>,
}

struct ExtraSocket {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
}

/// The wildcard address of the server's family, so every socket can reach it.
fn wildcard(server: SocketAddr) -> SocketAddr {
    let ip = match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// The local IP the kernel would use toward `server`: connecting a UDP socket picks the route
/// and source address without sending anything.
fn local_ip_toward(server: SocketAddr) -> Result<IpAddr> {
    let probe = std::net::UdpSocket::bind(wildcard(server)).context("cannot open a UDP socket")?;
    probe.connect(server).with_context(|| {
        format!("no route to {server}; check the address and this host's network")
    })?;
    Ok(probe.local_addr()?.ip())
}

async fn bind(id: SocketId, addr: SocketAddr, tx: &mpsc::Sender<Received>) -> Result<ExtraSocket> {
    let socket = Arc::new(
        UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot bind a UDP socket on {addr}"))?,
    );
    let reader = tokio::spawn(read_loop(id, socket.clone(), tx.clone()));
    Ok(ExtraSocket { socket, reader })
}

async fn read_loop(socket: SocketId, udp: Arc<UdpSocket>, tx: mpsc::Sender<Received>) {
    let mut buf = vec![0u8; 2048];
    loop {
        match udp.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let msg = Received {
                    socket,
                    from,
                    bytes: buf[..n].to_vec(),
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive error");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn send(sockets: &HashMap<SocketId, ExtraSocket>, t: Transmit) {
    let Some(s) = sockets.get(&t.socket) else {
        return;
    };
    if let Some(ttl) = t.ttl {
        let _ = s.socket.set_ttl(u32::from(ttl));
    }
    if let Err(e) = s.socket.send_to(&t.payload, t.dst).await {
        // An unreachable destination is a finding for netcheck (no answer), not an error.
        tracing::debug!(dst = %t.dst, error = %e, "cannot send");
    }
}

/// Runs one netcheck; `progress` receives short human lines as the run goes.
pub async fn run(opts: NetcheckOptions, mut progress: impl FnMut(&str)) -> Result<NetcheckReport> {
    let local_ip = local_ip_toward(opts.server)?;
    let (tx, mut rx) = mpsc::channel::<Received>(1024);
    let mut sockets: HashMap<SocketId, ExtraSocket> = HashMap::new();
    let main = bind(SocketId::MAIN, wildcard(opts.server), &tx).await?;
    let main_port = main.socket.local_addr()?.port();
    sockets.insert(SocketId::MAIN, main);
    let config = NetcheckConfig {
        allocation_samples: opts.samples,
        lifetime: opts.lifetime,
        ..NetcheckConfig::new(opts.server)
    };
    let now = std::time::Instant::now();
    let mut nc = Netcheck::new(config, ChaCha8Rng::from_entropy(), now);
    nc.handle_socket_opened(SocketId::MAIN, SocketAddr::new(local_ip, main_port));
    let result = loop {
        while let Some(cmd) = nc.poll_socket_command() {
            match cmd {
                SocketCommand::Open(id) => {
                    let s = bind(id, wildcard(opts.server), &tx).await?;
                    let port = s.socket.local_addr()?.port();
                    sockets.insert(id, s);
                    nc.handle_socket_opened(id, SocketAddr::new(local_ip, port));
                }
                SocketCommand::Close(id) => {
                    if let Some(s) = sockets.remove(&id) {
                        s.reader.abort();
                    }
                }
            }
        }
        while let Some(t) = nc.poll_transmit() {
            send(&sockets, t).await;
        }
        while let Some(line) = nc.poll_progress() {
            progress(&line);
        }
        if let Some(report) = nc.report() {
            break report.clone();
        }
        let deadline = nc
            .poll_timeout()
            .unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(1));
        tokio::select! {
            Some(msg) = rx.recv() => {
                nc.handle_datagram(msg.socket, msg.from, &msg.bytes, std::time::Instant::now());
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                nc.handle_timeout(std::time::Instant::now());
            }
        }
    };
    for (_, s) in sockets.drain() {
        s.reader.abort();
    }
    Ok(result)
}
