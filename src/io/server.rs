//! The server's event loop: TCP listeners for the Noise control channel, plain or inside TLS
//! (one task pair per connection, the same for both), the UDP sockets that answer STUN and
//! carry the relay (bound by `server_udp`, read by this very loop through `server_relay`, which
//! forwards relayed datagrams in place), the store watched for changes made by `network`
//! commands. Connections are capped per source and in total (`conn_limit`), below the
//! file-descriptor limit (`fd_limit`); the core closes those that stall (`ConnDeadlines`).

mod conn_limit;
mod fd_limit;
mod throttle;

pub use conn_limit::ConnLimits;

use super::server_udp::ServerUdp;
use super::stream::WriterCommand;
use super::unix_now;
use crate::core::keys::SecretKey;
use crate::core::relay::server::{RelayLimits, RelayServer};
use crate::core::rendezvous::server::{ConnId, ServerCore, ServerOutput};
use crate::store_any::ServerStore;
use anyhow::{anyhow, Result};
use conn_limit::{ConnLimiter, Permit, Refused};
use rand::SeedableRng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use throttle::Throttle;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often the store is checked for changes made by other processes.
const STORE_POLL: Duration = Duration::from_secs(1);
/// How long a client may take over its TLS handshake before the connection is dropped, so that
/// silent or slow connections cannot pile up.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection's first read buffer: enough for a Noise handshake and the Join or Hello. It grows
/// to `READ_BUF_MAX` once a read fills it, i.e. for a node that relays traffic.
const READ_BUF_MIN: usize = 2 * 1024;
const READ_BUF_MAX: usize = 16 * 1024;
/// At most one log line per this period for accept failures and refused connections.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// The driver's handle on one connection.
struct ConnHandle {
    writer: mpsc::Sender<WriterCommand>,
    /// Told to the limiter once, when the core registers the node.
    member: bool,
}

/// What the server lets nodes use: the relay, and control connections.
pub struct Limits {
    pub relay: RelayLimits,
    pub conns: ConnLimits,
    /// `server --advertise`: the plain addresses this server names to the other servers of
    /// its store (empty: the listen addresses). Not a limit, but one of the settings `run` takes
    /// beside them.
    pub advertise: Vec<SocketAddr>,
}

/// `server --tls-listen`: the addresses and the acceptor holding the certificate.
pub struct TlsListen {
    pub addrs: Vec<SocketAddr>,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

enum ConnEvent {
    Open(ConnId, SocketAddr, mpsc::Sender<WriterCommand>),
    Bytes(ConnId, Vec<u8>),
    Closed(ConnId),
}

/// The bind error for `addr` in words that name the fix; `flag` is the option that asked for it.
pub(super) fn bind_error(
    addr: SocketAddr,
    proto: &str,
    flag: &str,
    e: std::io::Error,
) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow!(
            "{proto} {addr} is already in use by another program; stop it or choose another \
             {flag} address"
        ),
        std::io::ErrorKind::AddrNotAvailable => anyhow!(
            "{proto} {addr}: no interface on this machine has that address; use one it has, or \
             0.0.0.0"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow!(
            "{proto} {addr}: permission denied ({})",
            crate::os::BIND_PERMISSION
        ),
        _ => anyhow!("cannot listen on {proto} {addr}: {e}"),
    }
}

/// Runs the server until SIGINT/SIGTERM. `alternate_port` is the second STUN port on each listen
/// IP (RFC 5780 "change port"); `None` means the listen port + 1. `tls` adds TCP listeners that
/// carry the same control channel inside TLS.
pub async fn run(
    listen: Vec<SocketAddr>,
    tls: Option<TlsListen>,
    alternate_port: Option<u16>,
    limits: Limits,
    store: ServerStore,
    secret: SecretKey,
    metrics: Option<SocketAddr>,
) -> Result<()> {
    let Limits {
        relay: relay_limits,
        conns: conn_limits,
        advertise,
    } = limits;
    let nofile = fd_limit::raise_nofile();
    let total = fd_limit::conn_cap(conn_limits.total, nofile);
    if total < conn_limits.total {
        tracing::warn!(
            nofile,
            "the file descriptor limit allows only {total} connections, not --max-conns {}; raise \
             it (LimitNOFILE= in the unit, or ulimit -n) to allow more",
            conn_limits.total
        );
    }
    let conn_limits = ConnLimits {
        total,
        ..conn_limits
    };
    tracing::info!(
        max_conns = conn_limits.total,
        max_conns_per_ip = conn_limits.per_source,
        nofile,
        "connection limits"
    );
    let limiter = ConnLimiter::new(conn_limits);
    // Without --metrics the sender is dropped here and the loop's scrape branch never fires.
    let (scrape_tx, mut scrape_rx) = mpsc::channel::<super::metrics::Scrape>(8);
    if let Some(addr) = metrics {
        super::metrics::serve(addr, "--metrics", scrape_tx).await?;
    }
    let (ev_tx, mut ev_rx) = mpsc::channel::<ConnEvent>(1024);
    // UDP first, so that once TCP accepts, STUN answers too.
    let udp = ServerUdp::bind(&listen, alternate_port).await?;
    let mut listeners = Vec::new();
    for addr in &listen {
        let tcp =
            super::listen::bind(*addr).map_err(|e| bind_error(*addr, "TCP", "--listen", e))?;
        listeners.push((tcp, None));
    }
    let tls_addrs = tls.as_ref().map(|t| t.addrs.clone()).unwrap_or_default();
    if let Some(tls) = tls {
        for addr in &tls.addrs {
            let tcp = super::listen::bind(*addr)
                .map_err(|e| bind_error(*addr, "TCP", "--tls-listen", e))?;
            listeners.push((tcp, Some(tls.acceptor.clone())));
        }
    }
    let udp_lines = udp.describe();
    // The loop below reads the UDP sockets itself: relayed datagrams are forwarded in place,
    // with no task between the socket and the relay's state (`server_relay`).
    let mut udp = udp.into_loop();
    let udp_stats = udp.stats();
    // One counter for every listener: connection ids must be unique across all of them, however
    // their addresses and ports relate.
    let ids = Arc::new(AtomicU64::new(0));
    for (tcp, tls) in listeners {
        tokio::spawn(accept_loop(
            tcp,
            tls,
            ids.clone(),
            limiter.clone(),
            ev_tx.clone(),
        ));
    }
    let relay = RelayServer::new(
        relay_limits,
        rand_chacha::ChaCha8Rng::from_entropy(),
        std::time::Instant::now(),
    );
    let mut core = ServerCore::new(secret, store, relay);
    let mut version = core.registry_mut().data_version().unwrap_or(0);
    let plain = if advertise.is_empty() {
        &listen
    } else {
        &advertise
    };
    let mut mesh = super::server_mesh::Mesh::new(core.registry_mut(), plain, &tls_addrs);
    // PostgreSQL pushes changes (the tick stays the fallback); SQLite has only the tick.
    let mut pushed = match core.registry_mut() {
        ServerStore::Postgres(pg) => Some(super::store_listen::spawn(
            pg.url().to_string(),
            pg.connector().clone(),
        )),
        ServerStore::Sqlite(_) => None,
    };
    let mut writers: HashMap<ConnId, ConnHandle> = HashMap::new();
    for addr in &listen {
        println!("p2pvpn server listening on {addr}");
    }
    for addr in &tls_addrs {
        println!("p2pvpn server listening on {addr} (TLS)");
    }
    for line in udp_lines {
        println!("{line}");
    }
    println!("server key {}", core.public_key());
    let mut stop = super::signals::Shutdown::new()?;
    // Every listener is bound by now (binding failed above otherwise), so nodes can connect; and
    // SIGTERM is handled, so a manager that stops us right after READY=1 gets a clean exit.
    super::service::ready(&format!(
        "listening on {}",
        listen
            .iter()
            .chain(&tls_addrs)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut store_tick = tokio::time::interval(STORE_POLL);
    loop {
        let deadline = core
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
        tokio::select! {
            _ = stop.recv() => break,
            Some(event) = ev_rx.recv() => {
                let now = std::time::Instant::now();
                match event {
                    ConnEvent::Open(id, remote, writer) => {
                        writers.insert(id, ConnHandle { writer, member: false });
                        core.handle_open(id, remote, now);
                    }
                    ConnEvent::Bytes(id, bytes) => {
                        core.handle_bytes(id, &bytes, now, unix_now());
                        if let Some(h) = writers.get_mut(&id).filter(|h| !h.member) {
                            if core.is_member(id) {
                                h.member = true;
                                limiter.mark_member(id);
                            }
                        }
                    }
                    ConnEvent::Closed(id) => {
                        writers.remove(&id);
                        core.handle_closed(id);
                    }
                }
            }
            i = udp.readable() => {
                udp.handle_batch(i, &mut core, std::time::Instant::now()).await;
            }
            Some(()) = async { pushed.as_mut()?.recv().await } => {
                // A change committed through any server or `network` command: re-read now.
                core.handle_registry_changed();
                if let Ok(v) = core.registry_mut().data_version() {
                    version = v;
                }
            }
            _ = store_tick.tick() => {
                let read = core.registry_mut().data_version();
                let data_ok = read.is_ok();
                match read {
                    Ok(v) if v != version => {
                        version = v;
                        core.handle_registry_changed();
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "cannot read the store"),
                }
                if let Some(list) = mesh.tick(core.registry_mut(), data_ok) {
                    core.set_deployment(list);
                }
            }
            Some(scrape) = scrape_rx.recv() => {
                let figures = super::metrics::ServerFigures {
                    online_nodes: core.online_count(),
                    relay: core
                        .relay_stats()
                        .into_iter()
                        .map(|(net, key, stats)| (net, key.to_string(), stats))
                        .collect(),
                    stun_answered: udp_stats.stun_answered.load(Ordering::Relaxed),
                    udp_dropped: udp_stats.dropped.load(Ordering::Relaxed),
                    relay_queue_dropped: udp_stats.relay_dropped.load(Ordering::Relaxed),
                    control: core.stats(),
                    mesh: mesh.figures.clone(),
                };
                let _ = scrape.send(super::metrics::render_server(&figures));
            }
            _ = tokio::time::sleep_until(deadline) => core.handle_timeout(std::time::Instant::now()),
        }
        while let Some(out) = core.poll_output() {
            match out {
                ServerOutput::Send(id, bytes) => {
                    if let Some(h) = writers.get(&id) {
                        match h.writer.try_send(WriterCommand::Write(bytes)) {
                            Ok(()) => {}
                            // Its writer already ended (the node hung up or moved to the
                            // primary): the close is on its way, not a slow reader.
                            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                                tracing::debug!(conn = id, "connection already closed");
                                writers.remove(&id);
                                core.handle_closed(id);
                            }
                            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                                tracing::warn!(
                                    conn = id,
                                    "node is not reading; closing its connection"
                                );
                                writers.remove(&id);
                                core.handle_closed(id);
                            }
                        }
                    }
                }
                ServerOutput::Close(id) => {
                    if let Some(h) = writers.remove(&id) {
                        let _ = h.writer.try_send(WriterCommand::Close);
                    }
                }
                ServerOutput::Relay(id, bytes) => {
                    // A full queue drops the frame (the per-node queue limit), never the node.
                    if let Some(h) = writers.get(&id) {
                        let _ = h.writer.try_send(WriterCommand::Write(bytes));
                    }
                }
                ServerOutput::Udp { via, to, datagram } => udp.send_to(via, to, &datagram).await,
            }
        }
    }
    super::service::stopping("stopping");
    mesh.stop(core.registry_mut());
    let stats = core.stats();
    tracing::info!(?stats, ?udp_stats, open = limiter.open(), "server stopping");
    Ok(())
}

/// Accepts connections on one listener, admits each under the caps and gives it its own task.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ids: Arc<AtomicU64>,
    limiter: Arc<ConnLimiter>,
    events: mpsc::Sender<ConnEvent>,
) {
    let mut failures = Throttle::new(LOG_EVERY);
    let mut refusals = Throttle::new(LOG_EVERY);
    let mut evictions = Throttle::new(LOG_EVERY);
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning, and say so
                // once per period, not ten times a second.
                if let Some(count) = failures.hit(std::time::Instant::now()) {
                    tracing::warn!(
                        error = %e,
                        count,
                        "accept failed; if this says too many open files, raise the file \
                         descriptor limit (LimitNOFILE=) or lower --max-conns"
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = ids.fetch_add(1, Ordering::Relaxed) + 1;
        let permit = match limiter.admit(id, remote.ip()) {
            Ok(admitted) => {
                if let Some(old) = admitted.evicted {
                    tracing::debug!(conn = old, "evicted for a newcomer at --max-conns");
                    if let Some(count) = evictions.hit(std::time::Instant::now()) {
                        tracing::warn!(
                            count,
                            "at --max-conns: closed the oldest connections that had not \
                             registered yet to make room for new ones"
                        );
                    }
                }
                admitted.permit
            }
            Err(refused) => {
                // Dropping the stream closes it at once.
                if let Some(count) = refusals.hit(std::time::Instant::now()) {
                    match refused {
                        Refused::PerSource(source) => tracing::warn!(
                            %source,
                            count,
                            "refused connections over --max-conns-per-ip"
                        ),
                        Refused::Total => tracing::warn!(
                            count,
                            "refused connections at --max-conns (all registered nodes, or \
                             evicted ones still closing); raise --max-conns if it persists"
                        ),
                    }
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let events = events.clone();
        match &tls {
            None => {
                tokio::spawn(connection(id, stream, remote, events, permit));
            }
            Some(acceptor) => {
                // The handshake runs in the connection's own task so a slow client holds up
                // nobody else; the core hears of it only once TLS is up.
                let handshake = acceptor.accept(stream);
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake);
                    let result = tokio::select! {
                        r = handshake => r,
                        _ = permit.kill.notified() => return,
                    };
                    match result {
                        Ok(Ok(tls)) => connection(id, tls, remote, events, permit).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }
}

/// Pumps one control connection, plain TCP or TLS, between the socket and the event loop, until
/// either side ends it or a newcomer evicts it (`permit.kill`). The permit is given back when
/// this returns.
async fn connection<S>(
    id: ConnId,
    stream: S,
    remote: SocketAddr,
    events: mpsc::Sender<ConnEvent>,
    permit: Permit,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read, write) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<WriterCommand>(256);
    if events.send(ConnEvent::Open(id, remote, tx)).await.is_err() {
        return;
    }
    // The permit goes back when both halves are dropped, i.e. when the socket is closed.
    let permit = Arc::new(permit);
    let held = permit.clone();
    let mut writer = tokio::spawn(async move {
        super::stream::write_loop(rx, write).await;
        drop(held);
    });
    let mut buf = vec![0u8; READ_BUF_MIN];
    loop {
        tokio::select! {
            r = read.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if events.send(ConnEvent::Bytes(id, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                    if n == buf.len() && buf.len() < READ_BUF_MAX {
                        buf.resize(READ_BUF_MAX, 0);
                    }
                }
            },
            // The server closed this connection (refusal, deadline, removed member).
            _ = &mut writer => break,
            _ = permit.kill.notified() => {
                tracing::debug!(conn = id, %remote, "closing: evicted for a newcomer");
                // Close the socket now, not once the event loop gets round to it.
                writer.abort();
                break;
            }
        }
    }
    let _ = events.send(ConnEvent::Closed(id)).await;
}
