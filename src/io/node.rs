//! The node's event loop: one UDP socket, the TUN device, the control stream to the server and
//! the local control socket, all feeding one `core::node::Node`. Buffers are allocated once; the
//! per-packet path (TUN read, encrypt, send; receive, decrypt, TUN write) does not allocate and
//! moves packets in batches (`dataplane`, `udp_batch`, `tun_batch`).

use super::control_socket::{self, ControlRequest, Request};
use super::dataplane;
use super::extra_reader::{read_extra, BufPool, ExtraDatagram};
use super::main_socket::{MainSocket, Turn};
use super::stream::{self, StreamEvent, WriterCommand};
use super::tun_batch::TunIo;
use super::udp_batch::{RecvBufs, UdpBatch};
use crate::config::{Dirs, NodeSettings};
use crate::core::crypto::Engine;
use crate::core::node::{
    DatagramOutcome, Node, NodeConfig, NodeEvent, SocketCommand, SocketId, Transmit, MAX_DATAGRAM,
};
use crate::core::peers::Path;
use crate::keyfile;
use anyhow::{anyhow, bail, Context, Result};
use rand::SeedableRng;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Prints one of the short progress lines `up` shows (see `progress` for the spinner).
fn progress(line: &str) {
    super::progress::line(line);
}

/// Node progress: slow steps drive the spinner, outcomes are lines.
fn node_progress(line: &str) {
    let body = line.split_once(": ").map(|(_, b)| b).unwrap_or(line);
    if body.starts_with("probing the NAT")
        || body.starts_with("netcheck: ")
        || body.contains(": punching")
    {
        super::progress::step(line);
    } else if body.starts_with("NAT: ")
        || body.contains(": direct (")
        || body.contains("no direct path")
    {
        super::progress::done();
        super::progress::line(line);
    } else {
        super::progress::line(line);
    }
}

/// How the data path runs for these settings: `[dataplane] workers = 2` on a TX and an RX
/// thread; `workers = 1` with our engine on one data thread where the OS has it (Linux) and the
/// main socket is batched; else (boringtun, whose sessions cannot leave the node task) in the
/// node's own loop (`None`).
fn data_threads(settings: &NodeSettings, udp: &MainSocket) -> Option<super::workers::Threads> {
    use super::workers::{Threads, DATA_THREAD};
    match settings.workers {
        2 => Some(Threads::Two),
        1 if settings.wireguard == Engine::Own && DATA_THREAD && udp.batched() => {
            Some(Threads::One)
        }
        _ => None,
    }
}

/// Starts the data workers on the new TUN device (`io::workers`).
fn start_workers(
    threads: super::workers::Threads,
    node: &mut Node,
    tun: &TunIo,
    udp: &MainSocket,
    to_core: &mpsc::Sender<super::workers::ToCore>,
) -> Result<super::workers::Workers> {
    let workers = super::workers::Workers::start(
        threads,
        tun,
        udp.clone(),
        node.tun_mtu(),
        node.worker_origin(),
        to_core.clone(),
    )
    .with_context(|| format!("starting the data workers ({threads:?} thread(s))"))?;
    node.enable_workers();
    match threads {
        super::workers::Threads::One => tracing::info!("data path on one data thread"),
        super::workers::Threads::Two => {
            tracing::info!("data path on two worker threads (TX and RX)")
        }
    }
    Ok(workers)
}

async fn write_tun(tun: &mut Option<TunIo>, packet: &[u8]) {
    if let Some(tun) = tun {
        if let Err(e) = tun.write_one(packet).await {
            tracing::debug!(error = %e, "TUN write failed");
        }
    }
}

async fn tun_read(tun: &mut Option<TunIo>) -> std::io::Result<usize> {
    match tun {
        Some(t) => t.read().await,
        None => std::future::pending().await,
    }
}

/// A TUN read error from the OS ends the node; one tun-rs raises about a malformed virtio
/// header or an unsplittable super-packet loses that packet only.
fn tun_read_fatal(e: &std::io::Error) -> bool {
    e.raw_os_error().is_some()
}

/// A socket opened for NAT discovery or birthday probing, with the task reading it
/// (`io::extra_reader`): probes, and a birthday-won path's whole stream.
struct ExtraSocket {
    socket: Arc<UdpSocket>,
    reader: tokio::task::JoinHandle<()>,
}

struct Driver {
    node: Node,
    settings: NodeSettings,
    /// Both halves of the main socket (`io::main_socket`).
    udp: MainSocket,
    udp_port: u16,
    /// The local address the kernel uses toward the first server.
    local_ip: IpAddr,
    extras: HashMap<SocketId, ExtraSocket>,
    extra_tx: mpsc::Sender<ExtraDatagram>,
    /// The extra sockets' datagram buffers, given back once handled.
    extra_pool: Arc<BufPool>,
    tun: Option<TunIo>,
    writer: Option<mpsc::Sender<WriterCommand>>,
    stream_gen: u64,
    stream_tx: mpsc::Sender<(u64, StreamEvent)>,
    /// `ping` requests awaiting their echo reply, by (peer, seq).
    pings: HashMap<(Ipv4Addr, u16), tokio::sync::oneshot::Sender<String>>,
    /// The server the current stream goes to, and what was logged about reaching it.
    server: Option<SocketAddr>,
    server_watch: super::server_watch::ServerWatch,
    /// The current stream got as far as registering (so its end is a lost server, not a
    /// failed attempt).
    registered_on_stream: bool,
    /// Each peer's path as last announced, to word the next change.
    paths: HashMap<Ipv4Addr, Path>,
    /// The DNS responder for the network's names, from registration on.
    dns: Option<super::dns::DnsServer>,
    /// Whether the route to the server still leaves from the stream's local address.
    underlay: super::underlay_watch::UnderlayWatch,
    /// Where the deployment's server list is kept across restarts (`io::learned_servers`).
    servers_file: std::path::PathBuf,
    /// The TX/RX data workers (`[dataplane] workers = 2`), from the TUN device on, and their
    /// channel to this task.
    workers: Option<super::workers::Workers>,
    to_core: mpsc::Sender<super::workers::ToCore>,
    /// When to give back start-up pages (`io::settle`, `os::trim`), from the TUN device on.
    settle: super::settle::Settle,
}

/// Runs the node until a signal or `down`; `metrics` serves Prometheus text on that address.
pub async fn run(settings: NodeSettings, dirs: Dirs, metrics: Option<SocketAddr>) -> Result<()> {
    let result = run_until_stopped(settings, dirs, metrics).await;
    // A spinner left on screen would have the shell's prompt (or the error) start after it.
    super::progress::done();
    result
}

async fn run_until_stopped(
    settings: NodeSettings,
    dirs: Dirs,
    metrics: Option<SocketAddr>,
) -> Result<()> {
    let network = settings.network.clone();
    let secret = keyfile::load(&dirs.key_file(&network))?;
    super::interface_check::check_free(
        &settings.interface,
        &crate::config::default_interface(&network),
        &dirs.config_file(&network),
    )?;
    let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, settings.listen_port))
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow!(
                    "UDP port {} is already in use; stop the other program or set listen_port \
                     in {} (0 picks a free port)",
                    settings.listen_port,
                    dirs.config_file(&network).display()
                )
            } else {
                anyhow!("cannot open the UDP socket: {e}")
            }
        })?;
    let udp_port = udp.local_addr()?.port();
    let udp6 = super::ipv6_underlay::bind(udp_port, settings.path_mtu_discovery);
    // After UdpBatch::new, which puts the kernel's default back over quinn-udp's DF setting.
    let udp = UdpBatch::new(udp).context("setting up the UDP socket")?;
    // With discovery off the kernel may fragment, as before; with it on, sizes are the search's.
    if settings.path_mtu_discovery {
        super::underlay_mtu::dont_fragment(udp.socket());
    }
    let local_ip = route_source(settings.servers.first().copied());
    let (req_tx, mut req_rx) = mpsc::channel::<ControlRequest>(16);
    let socket_guard =
        control_socket::serve(&dirs.control_socket(&network), &network, req_tx).await?;
    // Without --metrics the sender is dropped here and the loop's scrape branch never fires.
    let (scrape_tx, mut scrape_rx) = mpsc::channel::<super::metrics::Scrape>(8);
    if let Some(addr) = metrics {
        super::metrics::serve(addr, "--metrics", scrape_tx).await?;
    }

    let config = NodeConfig {
        network: network.clone(),
        secret,
        server_key: settings.server_key,
        servers: settings.servers.clone(),
        tls_servers: settings.tls_servers.clone(),
        punch: settings.punch,
    };
    let rng = rand_chacha::ChaCha8Rng::from_entropy();
    let mut node = Node::new(config, rng, Instant::now().into_std());
    let (tun_mtu, why) = super::underlay_mtu::choose(settings.mtu, &settings.servers);
    tracing::info!("TUN MTU {tun_mtu} ({why})");
    node.set_tun_mtu(tun_mtu);
    node.set_path_mtu_discovery(settings.path_mtu_discovery);
    node.set_wireguard(
        settings.wireguard,
        std::time::Instant::now(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    tracing::info!("WireGuard sessions: {:?}", settings.wireguard);
    node.handle_socket_opened(
        SocketId::MAIN,
        SocketAddr::new(local_ip, udp_port),
        std::time::Instant::now(),
    );
    let (stream_tx, mut stream_rx) = mpsc::channel(256);
    let (extra_tx, mut extra_rx) = mpsc::channel::<ExtraDatagram>(1024);
    let (to_core, mut from_workers) = mpsc::channel(super::workers::TO_CORE_ROOM);
    let mut worker_items = Vec::with_capacity(super::workers::TO_CORE_ROOM);
    let mut d = Driver {
        node,
        settings,
        udp: MainSocket::new(Arc::new(udp), udp6),
        udp_port,
        local_ip,
        extras: HashMap::new(),
        extra_tx,
        extra_pool: Arc::default(),
        tun: None,
        writer: None,
        stream_gen: 0,
        stream_tx,
        pings: HashMap::new(),
        server: None,
        server_watch: Default::default(),
        paths: HashMap::new(),
        registered_on_stream: false,
        dns: None,
        underlay: Default::default(),
        servers_file: dirs.servers_file(&network),
        workers: None,
        to_core,
        settle: Default::default(),
    };
    let learned = super::learned_servers::load(&d.servers_file);
    if !learned.is_empty() {
        tracing::info!(
            servers = learned.len(),
            "trying the deployment's servers a previous run learned first"
        );
        d.node.restore_servers(&learned);
    }
    d.start_ipv6();
    progress(&format!(
        "p2pvpn {network}: key {}, UDP port {udp_port}",
        d.node.public_key().short()
    ));
    if let Some(server) = d.settings.servers.first() {
        super::progress::step(&format!(
            "p2pvpn {network}: registering with the server at {server}"
        ));
    }
    // Port mapping (io::portmap): the gateway's answers arrive on `map_rx`.
    let (map_tx, mut map_rx) = mpsc::channel(4);
    let mapper = if d.settings.portmap {
        d.settings
            .servers
            .first()
            .and_then(|s| super::portmap::PortMapper::spawn(s.ip(), udp_port, map_tx))
    } else {
        tracing::info!(
            "port mapping switched off (portmap = false or --no-portmap): the gateway is not asked"
        );
        None
    };
    let mut spinner = tokio::time::interval(Duration::from_millis(100));
    let mut underlay_tick = tokio::time::interval(super::underlay_watch::CHECK_EVERY);
    let mut stop = super::signals::Shutdown::new()?;
    let mut udp_bufs = RecvBufs::default();
    let mut udp_turn = Turn::default();
    let mut tx = dataplane::TxBatch::new(d.node.tun_mtu());
    let mut out = vec![0u8; MAX_DATAGRAM + 64];
    let mut dns_buf = super::dns::buffer();
    // Answered once the node has stopped, so `down` can say it did.
    let mut down_reply = None;
    // The stop request and the core's timer live across turns of the loop: made once and
    // re-armed, not rebuilt and registered again with the signal and timer drivers on every
    // packet (a ping's echo takes two or three turns at each end).
    let stop_requested = stop.recv();
    tokio::pin!(stop_requested);
    let timer = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(timer);
    let settle_timer = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(settle_timer);

    loop {
        d.connect_if_due();
        let deadline = d
            .node
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if let Some(at) = d.settle.due().map(Instant::from_std) {
            if settle_timer.deadline() != at {
                settle_timer.as_mut().reset(at);
            }
        }
        tokio::select! {
            _ = &mut stop_requested => break,
            _ = spinner.tick(), if super::progress::active() => super::progress::tick(),
            r = d.udp.recv(&mut udp_bufs, &mut udp_turn), if d.workers.is_none() => {
                let Ok(n) = r else { continue };
                let now = std::time::Instant::now();
                dataplane::receive(&mut d.node, d.tun.as_mut(), &udp_bufs, n, &mut out, now).await;
            }
            Some((id, from, bytes)) = extra_rx.recv() => {
                let now = std::time::Instant::now();
                if let DatagramOutcome::WriteTun(packet) =
                    d.node.handle_datagram(id, from, &bytes, now, &mut out)
                {
                    write_tun(&mut d.tun, packet).await;
                }
                d.extra_pool.give(bytes);
            }
            r = tun_read(&mut d.tun), if d.workers.is_none() => {
                let n = match r {
                    Ok(n) => n,
                    Err(e) if tun_read_fatal(&e) => {
                        return Err(e).context("reading the TUN device");
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "TUN packet dropped");
                        continue;
                    }
                };
                d.send_tun_batch(n, &mut tx).await;
            }
            n = from_workers.recv_many(&mut worker_items, super::workers::TO_CORE_ROOM) => {
                if n > 0 {
                    d.take_from_workers(&mut worker_items, &mut tx, &mut out).await?;
                }
            }
            r = super::dns::recv(&d.dns, &mut dns_buf) => {
                if let (Ok((n, from)), Some(dns)) = (r, d.dns.as_mut()) {
                    dns.handle(&dns_buf[..n], from, d.node.hosts()).await;
                }
            }
            Some((gen, event)) = stream_rx.recv() => {
                if gen == d.stream_gen {
                    d.handle_stream_event(event);
                }
            }
            Some(req) = req_rx.recv() => {
                match req.request {
                    Request::Status => {
                        let _ = req.reply.send(d.status_json());
                    }
                    Request::Ping { peer, seq } => d.start_ping(&peer, seq, req.reply),
                    Request::Down => {
                        down_reply = Some(req.reply);
                        super::progress::done();
                        progress(&format!("p2pvpn {network}: stopping (down requested)"));
                        break;
                    }
                }
            }
            Some(scrape) = scrape_rx.recv() => {
                let _ = scrape.send(super::metrics::render_node(&d.status()));
            }
            _ = &mut timer => {
                d.node.handle_timeout(std::time::Instant::now());
            }
            Some(mapping) = map_rx.recv() => {
                super::portmap::announce(&network, d.node.port_mapping(), mapping);
                d.node.set_port_mapping(mapping);
            }
            _ = underlay_tick.tick() => d.check_underlay(),
            _ = &mut settle_timer, if d.settle.due().is_some() => d.trim_if_settled(),
        }
        d.drain().await?;
        if let Some(w) = &d.workers {
            w.sync(&mut d.node);
        }
        if d.node.take_remap_request() {
            if let Some(m) = &mapper {
                m.remap();
            }
        }
    }
    // Teardown from here on (the training keeps it out of the settled node's code).
    crate::os::pgo_phase::mark(crate::os::pgo_phase::Phase::Stopping);
    if let Some(m) = mapper {
        m.stop().await;
    }
    super::progress::done();
    super::service::stopping(&format!("p2pvpn {network}: stopping"));
    if let Some(w) = d.workers.take() {
        w.stop().await;
    }
    if let Some(w) = d.writer.take() {
        let _ = w.send(WriterCommand::Close).await;
    }
    for (_, extra) in d.extras.drain() {
        extra.reader.abort();
    }
    // Before the interface goes: resolved would drop the link's settings with it, but a revert
    // says so explicitly and covers a resolver that keeps them.
    if let Some(dns) = d.dns.take() {
        dns.stop().await;
    }
    let interface = std::mem::take(&mut d.settings.interface);
    let had_tun = d.tun.is_some();
    // Dropping the driver closes the TUN device, which removes the interface, and answers
    // pending requests with "stopping".
    drop(d);
    drop(req_rx);
    let stopped = if had_tun {
        format!("stopped; removed {interface}")
    } else {
        "stopped".to_string()
    };
    progress(&format!("p2pvpn {network}: {stopped}"));
    if let Some(reply) = down_reply {
        let _ = reply.send(format!("{stopped}\n"));
    }
    socket_guard.finish().await;
    Ok(())
}

impl Driver {
    fn connect_if_due(&mut self) {
        if let Some(server) = self.node.poll_connect(std::time::Instant::now()) {
            self.stream_gen += 1;
            self.server = Some(server.addr);
            tracing::debug!(%server, "connecting to the server");
            stream::spawn(
                server.addr,
                server.tls,
                self.stream_gen,
                self.stream_tx.clone(),
            );
        }
    }

    fn handle_stream_event(&mut self, event: StreamEvent) {
        let now = std::time::Instant::now();
        match event {
            StreamEvent::Connected { local, writer } => {
                if let Some(server) = self.server {
                    self.underlay.connected(server, local.ip());
                }
                self.registered_on_stream = false;
                self.writer = Some(writer);
                let endpoint = SocketAddr::new(local.ip(), self.udp_port);
                self.node.set_local_endpoints(vec![endpoint]);
                // The host's IPv6 addresses may have changed with the network (a new prefix).
                self.start_ipv6();
                self.node.handle_control_connected(now);
            }
            StreamEvent::Failed(reason) => {
                self.server_failed(&reason, now);
                self.node.handle_control_connect_failed(now);
            }
            StreamEvent::Bytes(bytes) => self.node.handle_control_bytes(&bytes, now),
            StreamEvent::Closed => {
                self.writer = None;
                self.node.handle_control_closed(now);
            }
        }
    }

    /// The route to the server left the stream's local address: roam (`core::node::roaming`).
    fn check_underlay(&mut self) {
        if self.underlay.changed(super::underlay_watch::source_toward) {
            if let Some(ip) = self.server.and_then(super::underlay_watch::source_toward) {
                self.local_ip = ip;
            }
            self.node.handle_underlay_changed(std::time::Instant::now());
        }
    }

    /// An attempt to reach the server failed: logged when it starts an outage (and as a
    /// reminder a minute at most), debug detail otherwise.
    fn server_failed(&mut self, reason: &str, now: std::time::Instant) {
        let server = self
            .server
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        if let Some(line) = self.server_watch.failed(server, reason, now) {
            tracing::warn!("{line}");
        }
        tracing::debug!(%server, %reason, "cannot reach the server; will retry");
    }

    /// The server took this node: the end of an outage, if there was one.
    fn server_registered(&mut self, now: std::time::Instant) {
        self.registered_on_stream = true;
        if let Some(line) = self
            .server
            .and_then(|s| self.server_watch.connected(s, now))
        {
            tracing::info!("{line}");
        }
    }

    fn start_ping(&mut self, peer: &str, seq: u16, reply: tokio::sync::oneshot::Sender<String>) {
        // A closed sender is a request the control socket already answered with "timeout".
        self.pings.retain(|_, r| !r.is_closed());
        if self.pings.len() >= crate::core::node::MAX_PINGS {
            let _ = reply.send("error: too many pings in flight\n".to_string());
            return;
        }
        match self.node.ping(peer, seq, std::time::Instant::now()) {
            Ok(ip) => {
                self.pings.insert((ip, seq), reply);
            }
            Err(e) => {
                let _ = reply.send(format!("error: {e}\n"));
            }
        }
    }

    fn status(&self) -> crate::core::node::NodeStatus {
        let mut status = self.node.status(super::unix_now());
        status.listen_port = self.udp_port;
        status.interface = self.settings.interface.clone();
        status.dns = self.dns.as_ref().map(|d| d.status());
        status.workers = self.workers.as_ref().map(|w| w.status());
        status
    }

    fn status_json(&self) -> String {
        serde_json::to_string(&self.status()).unwrap_or_default()
    }

    /// What the workers left to this task: done as the single loop does it.
    async fn take_from_workers(
        &mut self,
        items: &mut Vec<super::workers::ToCore>,
        tx: &mut dataplane::TxBatch,
        out: &mut [u8],
    ) -> Result<()> {
        use super::workers::ToCore;
        let now = std::time::Instant::now();
        let mut packets = Vec::new();
        for item in items.drain(..) {
            match item {
                ToCore::Tun(p) => packets.push(p),
                ToCore::Datagram(from, bytes) => {
                    if let DatagramOutcome::WriteTun(packet) =
                        self.node
                            .handle_datagram(SocketId::MAIN, from, &bytes, now, out)
                    {
                        write_tun(&mut self.tun, packet).await;
                    }
                }
                ToCore::Opened(packet) => {
                    if let Some(packet) = self.node.handle_worker_packet(&packet, now) {
                        write_tun(&mut self.tun, packet).await;
                    }
                }
                ToCore::TunFailed(e) => return Err(e).context("reading the TUN device"),
            }
        }
        if !packets.is_empty() {
            let max_segments = self.udp.max_segments();
            let iter = packets.iter().map(|p| p.as_slice());
            dataplane::encrypt_packets(&mut self.node, iter, tx, max_segments, now);
            self.send_batch(tx).await;
            for reply in tx.replies() {
                write_tun(&mut self.tun, reply).await;
            }
        }
        Ok(())
    }

    /// Tells the core about the IPv6 socket and the host's global IPv6 addresses on it.
    fn start_ipv6(&mut self) {
        let Some(udp6) = &self.udp.v6 else {
            return;
        };
        let port = udp6.socket().local_addr().map(|a| a.port()).unwrap_or(0);
        let hosts = super::ipv6_underlay::host_candidates(port);
        tracing::info!(
            port,
            addresses = ?hosts,
            "IPv6 underlay socket open"
        );
        self.node.set_ipv6_socket(hosts, std::time::Instant::now());
    }

    /// The socket a datagram to `dst` leaves from: the main socket has an IPv6 half.
    fn socket_to(&self, id: SocketId, dst: SocketAddr) -> Option<&UdpSocket> {
        if id == SocketId::MAIN {
            return self.udp.to(dst).map(|half| half.socket());
        }
        self.extras.get(&id).map(|e| e.socket.as_ref())
    }

    async fn send(&self, t: &Transmit) {
        let Some(socket) = self.socket_to(t.socket, t.dst) else {
            return;
        };
        // Low-TTL priming sets the TTL for one datagram and restores it after. Not on IPv6:
        // without a NAT there is no mapping for an early peer probe to steal, and a full-hop
        // probe opens our firewall just as well.
        let restore = match t.ttl.filter(|_| t.dst.is_ipv4()) {
            Some(ttl) => {
                let old = socket.ttl().unwrap_or(64);
                if let Err(e) = socket.set_ttl(u32::from(ttl)) {
                    tracing::debug!(error = %e, "cannot set the IP TTL");
                }
                Some(old)
            }
            None => None,
        };
        let sent = if t.socket == SocketId::MAIN {
            self.udp.send(t.dst, &t.payload, 0).await
        } else {
            socket.send_to(&t.payload, t.dst).await.map(drop)
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, dst = %t.dst, "UDP send failed");
        }
        if let Some(old) = restore {
            let _ = socket.set_ttl(old);
        }
    }

    async fn apply_socket_command(&mut self, command: SocketCommand) {
        match command {
            SocketCommand::Open(id) => {
                let socket = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open a probing socket");
                        return;
                    }
                };
                if self.settings.path_mtu_discovery {
                    super::underlay_mtu::dont_fragment(&socket);
                }
                let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
                let reader = tokio::spawn(read_extra(
                    id,
                    socket.clone(),
                    self.extra_tx.clone(),
                    self.extra_pool.clone(),
                ));
                self.extras.insert(id, ExtraSocket { socket, reader });
                self.node.handle_socket_opened(
                    id,
                    SocketAddr::new(self.local_ip, port),
                    std::time::Instant::now(),
                );
            }
            SocketCommand::Close(id) => {
                if let Some(extra) = self.extras.remove(&id) {
                    extra.reader.abort();
                }
            }
        }
    }

    /// Encrypts the `n` packets the last TUN read gave and sends them, a batch's room
    /// (`tun_batch::BATCH`) at a time, then writes the ICMP "fragmentation needed" / "packet
    /// too big" answers for packets the peer's path cannot carry back to their sender through
    /// the TUN device.
    async fn send_tun_batch(&mut self, n: usize, tx: &mut dataplane::TxBatch) {
        let now = std::time::Instant::now();
        let max_segments = self.udp.max_segments();
        for part in crate::io::tun_batch::parts(n) {
            let Some(tun) = &mut self.tun else { return };
            dataplane::encrypt(&mut self.node, tun, part, tx, max_segments, now);
            self.send_batch(tx).await;
            for reply in tx.replies() {
                write_tun(&mut self.tun, reply).await;
            }
        }
    }

    /// Sends a batch's runs, each from the socket the core chose for it (the main socket, the
    /// IPv6 one, or a probing socket).
    async fn send_batch(&self, tx: &dataplane::TxBatch) {
        let extras = &self.extras;
        dataplane::send(tx, &self.udp, |id| {
            extras.get(&id).map(|e| e.socket.as_ref())
        })
        .await;
    }

    async fn drain(&mut self) -> Result<()> {
        loop {
            let mut idle = true;
            while let Some(command) = self.node.poll_socket_command() {
                idle = false;
                self.apply_socket_command(command).await;
            }
            while let Some(t) = self.node.poll_transmit() {
                idle = false;
                self.send(&t).await;
            }
            if idle {
                break;
            }
        }
        while let Some(bytes) = self.node.poll_control_bytes() {
            if let Some(w) = &self.writer {
                let _ = w.send(WriterCommand::Write(bytes)).await;
            }
        }
        while let Some(r) = self.node.poll_ping_reply() {
            if let Some(reply) = self.pings.remove(&(r.virtual_ip, r.seq)) {
                let _ = reply.send(serde_json::to_string(&r).unwrap_or_default() + "\n");
            }
        }
        while let Some(event) = self.node.poll_event() {
            self.handle_node_event(event).await?;
            // Every event is a change of the control plane; the quiet spell counts from the
            // TUN device on (before it the node is still starting).
            if self.tun.is_some() {
                self.settle.changed(std::time::Instant::now());
            }
        }
        // Packets relayed through the control stream (UDP to the server is blocked).
        while let Some(packet) = self.node.poll_tun_packet() {
            write_tun(&mut self.tun, &packet).await;
        }
        Ok(())
    }

    /// Gives back the pages of code and constants the node ran only to start or to change,
    /// once its control plane has been quiet (`io::settle`).
    fn trim_if_settled(&mut self) {
        if !self.settle.fire(std::time::Instant::now()) {
            return;
        }
        // The profile-guided build's training tells the settled node's code from the rest here.
        crate::os::pgo_phase::mark(crate::os::pgo_phase::Phase::Settled);
        let kib = crate::os::trim::trim();
        tracing::debug!(
            kib,
            "control plane quiet: start-up pages given back (os::trim)"
        );
    }

    async fn handle_node_event(&mut self, event: NodeEvent) -> Result<()> {
        if matches!(event, NodeEvent::Registered(_)) {
            self.server_registered(std::time::Instant::now());
        }
        let net = &self.settings.network;
        match event {
            NodeEvent::Registered(a) => match &self.tun {
                None => {
                    // A config older than the recorded range was not checked by `up`: do it
                    // now, still before the TUN device and its route exist.
                    if self.settings.cidr != Some(a.cidr) {
                        super::routes::refuse_collisions(
                            a.cidr,
                            &self.settings.interface,
                            self.settings.allow_route_overlap,
                        )?;
                    }
                    let (tun, v6) = super::tun::create(
                        &self.settings.interface,
                        a.virtual_ip,
                        a.cidr.prefix_len(),
                        self.node.tun_mtu(),
                        a.ipv6,
                    )?;
                    let tun = TunIo::new(tun, self.node.tun_mtu());
                    if let Some(threads) = data_threads(&self.settings, &self.udp) {
                        let w =
                            start_workers(threads, &mut self.node, &tun, &self.udp, &self.to_core)?;
                        // The data thread took the main socket out of this task's reactor.
                        self.udp.detached = threads == super::workers::Threads::One;
                        self.workers = Some(w);
                    }
                    self.tun = Some(tun);
                    let v6 = v6.map(|n| format!(" and {n}")).unwrap_or_default();
                    self.dns = super::dns::DnsServer::start(
                        net,
                        a.virtual_ip,
                        &self.settings.dns_suffix,
                        &self.settings.interface,
                    )
                    .await;
                    let line = format!(
                        "p2pvpn {net}: registered as {} with {}/{}{v6} on {}",
                        a.name,
                        a.virtual_ip,
                        a.cidr.prefix_len(),
                        self.settings.interface
                    );
                    super::progress::done();
                    progress(&line);
                    // Ready only now: units ordered after this one expect the interface and
                    // its address to exist, not merely a process that is still connecting.
                    super::service::ready(&line);
                }
                Some(_) => progress(&format!("p2pvpn {net}: registered again with the server")),
            },
            NodeEvent::ServerDisconnected if self.registered_on_stream => {
                self.registered_on_stream = false;
                progress(&format!(
                    "p2pvpn {net}: lost the server; reconnecting (existing tunnels keep working)"
                ))
            }
            // A stream that closes before registering is one more failed attempt, not news.
            NodeEvent::ServerDisconnected => {
                let reason = "it closed the connection before registering this node";
                self.server_failed(reason, std::time::Instant::now());
            }
            NodeEvent::CloseControlStream => {
                self.stream_gen += 1;
                if let Some(w) = self.writer.take() {
                    let _ = w.send(WriterCommand::Close).await;
                }
                self.node.handle_control_closed(std::time::Instant::now());
            }
            NodeEvent::Refused { refusal, permanent } => {
                if permanent {
                    bail!("the server refused this node: {refusal}");
                }
                tracing::warn!(%refusal, "server refused; will retry");
            }
            NodeEvent::Progress(line) => node_progress(&format!("p2pvpn {net}: {line}")),
            NodeEvent::Servers(list) => {
                if let Err(e) = super::learned_servers::save(&self.servers_file, &list) {
                    tracing::warn!(error = %format!("{e:#}"), "cannot save the server list for the next start");
                }
            }
            NodeEvent::PeerAdded { name, virtual_ip } => progress(&format!(
                "p2pvpn {net}: peer {name} ({virtual_ip}) connecting"
            )),
            NodeEvent::PeerRemoved { name, virtual_ip } => {
                self.paths.remove(&virtual_ip);
                progress(&format!(
                    "p2pvpn {net}: peer {name} ({virtual_ip}) left the network"
                ))
            }
            NodeEvent::PathChanged {
                name,
                virtual_ip,
                path,
                endpoint,
                relay,
                detail,
            } => {
                if path == Path::Direct {
                    // The outcome of the punching the spinner showed.
                    super::progress::done();
                }
                let was = self.paths.insert(virtual_ip, path);
                let change = PathLine {
                    name: &name,
                    virtual_ip,
                    path,
                    was,
                    detail: detail.as_deref(),
                    relay,
                    endpoint,
                };
                progress(&format!("p2pvpn {net}: {change}"));
            }
        }
        Ok(())
    }
}

/// A peer's path change as `up` announces it.
struct PathLine<'a> {
    name: &'a str,
    virtual_ip: Ipv4Addr,
    path: Path,
    /// The path announced before, if any.
    was: Option<Path>,
    /// How a direct path was found, e.g. "direct (server-reflexive)".
    detail: Option<&'a str>,
    relay: Option<&'static str>,
    endpoint: Option<SocketAddr>,
}

impl std::fmt::Display for PathLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer {} ({}) ", self.name, self.virtual_ip)?;
        match (self.path, self.was) {
            // A working session went quiet: say so, rather than a bare "connecting" that reads
            // like the first attempt.
            (Path::Connecting, Some(was @ (Path::Direct | Path::Relay))) => write!(
                f,
                "stopped answering (was {}); trying to reach it again",
                was.as_str()
            ),
            (path, _) => {
                f.write_str(self.detail.unwrap_or(path.as_str()))?;
                if let Some(r) = self.relay {
                    write!(f, " ({r})")?;
                }
                if let Some(e) = self.endpoint {
                    write!(f, " via {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// The source address the kernel picks toward `server` (connecting a UDP socket sends nothing).
fn route_source(server: Option<SocketAddr>) -> IpAddr {
    let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let Some(server) = server else {
        return unspecified;
    };
    std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect(server)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(path: Path, was: Option<Path>, detail: Option<&str>) -> String {
        PathLine {
            name: "bob",
            virtual_ip: Ipv4Addr::new(10, 77, 0, 2),
            path,
            was,
            detail,
            relay: (path == Path::Relay).then_some("udp"),
            endpoint: "192.0.2.7:51820".parse().ok(),
        }
        .to_string()
    }

    #[test]
    fn path_changes_read_as_what_happened_to_the_peer() {
        assert_eq!(
            line(Path::Direct, None, Some("direct (server-reflexive)")),
            "peer bob (10.77.0.2) direct (server-reflexive) via 192.0.2.7:51820"
        );
        assert_eq!(
            line(Path::Relay, Some(Path::Connecting), None),
            "peer bob (10.77.0.2) relay (udp) via 192.0.2.7:51820"
        );
        assert_eq!(
            line(Path::Connecting, Some(Path::Direct), None),
            "peer bob (10.77.0.2) stopped answering (was direct); trying to reach it again"
        );
    }
}
