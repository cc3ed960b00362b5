//! One simulated node: the real `ControlClient` driven over its own TCP socket, the way
//! `io::node` drives it, minus TUN and WireGuard. What it learns is kept as a bitset of online
//! peers; the figures go into `Shared`, lock-free, so thousands of these fit one process.

use super::stats::Hist;
use p2pvpn::core::keys::{PublicKey, SecretKey};
use p2pvpn::core::nat::NatProfile;
use p2pvpn::core::punch::PunchOffer;
use p2pvpn::core::relay::wire;
use p2pvpn::core::rendezvous::client::{ControlClient, ControlEvent, ServerAddr};
use p2pvpn::core::rendezvous::messages::PeerInfo;
use p2pvpn::core::rendezvous::token::JoinToken;
use rand::SeedableRng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub const PHASE_STORM: usize = 0;
pub const PHASE_UPDATE: usize = 1;
pub const PHASE_PUNCH: usize = 2;
pub const PHASE_RELAY: usize = 3;
pub const PHASE_RESTART: usize = 4;

/// What the controller asks one node to do.
pub enum Cmd {
    /// Announce the endpoint 127.0.0.1:PORT.
    Endpoints(u16),
    /// Send a punch offer to node i.
    Punch(usize),
    /// Send one relay frame to this relay id.
    Relay(u32),
    Stop,
}

/// Everything the nodes report, shared without locks.
pub struct Shared {
    start: Instant,
    index: HashMap<PublicKey, usize>,
    keys: Vec<PublicKey>,
    /// Microseconds after `start` + 1 at which node i last registered; 0 while it is not.
    registered_at: Vec<AtomicU64>,
    pub relay_id: Vec<AtomicU32>,
    pub registered: AtomicUsize,
    /// Nodes that know every other node online.
    pub complete: AtomicUsize,
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    phase: AtomicUsize,
    pub hist: Vec<Hist>,
    /// What the current measurement waits for (an endpoint port) and since when.
    marker: AtomicU64,
    marker_at: AtomicU64,
    pub seen: AtomicUsize,
}

impl Shared {
    pub fn new(secrets: &[SecretKey]) -> Self {
        let keys: Vec<PublicKey> = secrets.iter().map(SecretKey::public_key).collect();
        let n = keys.len();
        Shared {
            start: Instant::now(),
            index: keys.iter().enumerate().map(|(i, k)| (*k, i)).collect(),
            keys,
            registered_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            relay_id: (0..n).map(|_| AtomicU32::new(0)).collect(),
            registered: AtomicUsize::new(0),
            complete: AtomicUsize::new(0),
            connects: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            phase: AtomicUsize::new(PHASE_STORM),
            hist: (0..5).map(|_| Hist::new()).collect(),
            marker: AtomicU64::new(0),
            marker_at: AtomicU64::new(0),
            seen: AtomicUsize::new(0),
        }
    }

    fn micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64 + 1
    }

    pub fn set_phase(&self, phase: usize) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// Starts a measurement: count who sees `marker` (an endpoint port; 0 for punch/relay).
    pub fn expect(&self, marker: u16) {
        self.seen.store(0, Ordering::SeqCst);
        self.marker_at.store(self.micros(), Ordering::SeqCst);
        self.marker.store(u64::from(marker), Ordering::SeqCst);
    }

    fn since(&self, micros: u64) -> Duration {
        Duration::from_micros(self.micros().saturating_sub(micros))
    }
}

/// Node i's control client, announcing a loopback endpoint of its own.
pub fn client(
    i: usize,
    secret: SecretKey,
    token: &JoinToken,
    servers: Vec<ServerAddr>,
) -> ControlClient {
    let mut c = ControlClient::new(
        secret,
        token.server_key,
        servers,
        token.network.clone(),
        rand_chacha::ChaCha8Rng::seed_from_u64(i as u64),
        Instant::now(),
    );
    let port = 10_000 + (i % 50_000) as u16;
    c.set_endpoints(vec![SocketAddr::from(([127, 0, 0, 1], port))], None);
    c
}

struct Local {
    i: usize,
    n: usize,
    online: Vec<u64>,
    count: usize,
    registered: bool,
    complete: bool,
    last_marker: u64,
}

impl Local {
    fn set(&mut self, j: usize, on: bool) -> bool {
        let (w, b) = (j / 64, 1u64 << (j % 64));
        let was = self.online[w] & b != 0;
        if on {
            self.online[w] |= b;
        } else {
            self.online[w] &= !b;
        }
        was
    }

    fn check_complete(&mut self, s: &Shared) {
        let full = self.count + 1 == self.n;
        if full && !self.complete {
            self.complete = true;
            s.complete.fetch_add(1, Ordering::Relaxed);
        } else if !full && self.complete {
            self.complete = false;
            s.complete.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn disconnected(&mut self, s: &Shared) {
        if self.registered {
            self.registered = false;
            s.registered.fetch_sub(1, Ordering::Relaxed);
            s.registered_at[self.i].store(0, Ordering::Relaxed);
            s.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.online.iter_mut().for_each(|w| *w = 0);
        self.count = 0;
        self.check_complete(s);
    }

    fn peer(&mut self, s: &Shared, info: &PeerInfo) {
        let Some(&j) = s.index.get(&info.public_key) else {
            return;
        };
        let was = self.set(j, info.online);
        if info.online && !was {
            self.count += 1;
            let phase = s.phase.load(Ordering::Relaxed);
            let mine = s.registered_at[self.i].load(Ordering::Relaxed);
            let theirs = s.registered_at[j].load(Ordering::Relaxed);
            // An update: the peer registered after us (not part of the map we got at first).
            if (phase == PHASE_STORM || phase == PHASE_RESTART) && mine != 0 && theirs > mine {
                s.hist[phase].record(s.since(theirs));
            }
        } else if !info.online && was {
            self.count -= 1;
        }
        let marker = s.marker.load(Ordering::Relaxed);
        if marker != 0
            && marker != self.last_marker
            && info.endpoints.iter().any(|e| u64::from(e.port()) == marker)
        {
            self.last_marker = marker;
            s.seen.fetch_add(1, Ordering::Relaxed);
            s.hist[PHASE_UPDATE].record(s.since(s.marker_at.load(Ordering::Relaxed)));
        }
        self.check_complete(s);
    }
}

enum Wake {
    Bytes(usize),
    Closed,
    Timer,
    Cmd(Option<Cmd>),
}

async fn read_some(stream: &mut Option<(OwnedReadHalf, OwnedWriteHalf)>, buf: &mut [u8]) -> Wake {
    match stream {
        Some((r, _)) => match r.read(buf).await {
            Ok(0) | Err(_) => Wake::Closed,
            Ok(n) => Wake::Bytes(n),
        },
        None => std::future::pending().await,
    }
}

pub async fn run(
    i: usize,
    mut control: ControlClient,
    s: Arc<Shared>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    let n = s.keys.len();
    let mut local = Local {
        i,
        n,
        online: vec![0; n.div_ceil(64)],
        count: 0,
        registered: false,
        complete: false,
        last_marker: 0,
    };
    let mut stream: Option<(OwnedReadHalf, OwnedWriteHalf)> = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Events first: a `CloseStream` (e.g. a move to the deployment's primary) is about the
        // stream that was open when the last input was handled; handled after `poll_connect`,
        // it would drop the new stream to the primary instead.
        while let Some(ev) = control.poll_event() {
            match ev {
                ControlEvent::Registered { relay, .. } => {
                    s.registered_at[i].store(s.micros(), Ordering::Relaxed);
                    s.relay_id[i].store(relay.map_or(0, |t| t.id), Ordering::Relaxed);
                    if !local.registered {
                        local.registered = true;
                        s.registered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ControlEvent::Peer(info) => local.peer(&s, &info),
                ControlEvent::PeerGone(key) => {
                    if let Some(&j) = s.index.get(&key) {
                        if local.set(j, false) {
                            local.count -= 1;
                            local.check_complete(&s);
                        }
                    }
                }
                ControlEvent::Punch { .. } if s.phase.load(Ordering::Relaxed) == PHASE_PUNCH => {
                    s.seen.fetch_add(1, Ordering::Relaxed);
                    s.hist[PHASE_PUNCH].record(s.since(s.marker_at.load(Ordering::Relaxed)));
                }
                ControlEvent::RelayFrame { .. }
                    if s.phase.load(Ordering::Relaxed) == PHASE_RELAY =>
                {
                    s.seen.fetch_add(1, Ordering::Relaxed);
                    s.hist[PHASE_RELAY].record(s.since(s.marker_at.load(Ordering::Relaxed)));
                }
                ControlEvent::Refused { refusal, .. } => eprintln!("node {i}: refused: {refusal}"),
                ControlEvent::CloseStream | ControlEvent::Disconnected => {
                    stream = None;
                    local.disconnected(&s);
                }
                _ => {}
            }
        }
        if let Some(server) = control.poll_connect(Instant::now()) {
            s.connects.fetch_add(1, Ordering::Relaxed);
            let connect = TcpStream::connect(server.addr);
            match tokio::time::timeout(Duration::from_secs(3), connect).await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    stream = Some(tcp.into_split());
                    control.handle_connected(Instant::now());
                }
                _ => control.handle_connect_failed(Instant::now()),
            }
        }
        while let Some(bytes) = control.poll_bytes() {
            if let Some((_, w)) = &mut stream {
                if w.write_all(&bytes).await.is_err() {
                    stream = None;
                    local.disconnected(&s);
                    control.handle_closed(Instant::now());
                }
            }
        }
        let deadline = control
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let wake = tokio::select! {
            w = read_some(&mut stream, &mut buf) => w,
            _ = tokio::time::sleep_until(deadline.into()) => Wake::Timer,
            c = cmds.recv() => Wake::Cmd(c),
        };
        match wake {
            Wake::Bytes(len) => control.handle_bytes(&buf[..len], Instant::now()),
            Wake::Closed => {
                stream = None;
                local.disconnected(&s);
                control.handle_closed(Instant::now());
            }
            Wake::Timer => control.handle_timeout(Instant::now()),
            Wake::Cmd(None | Some(Cmd::Stop)) => return,
            Wake::Cmd(Some(Cmd::Endpoints(port))) => {
                control.set_endpoints(vec![SocketAddr::from(([127, 0, 0, 1], port))], None)
            }
            Wake::Cmd(Some(Cmd::Punch(j))) => {
                let offer = PunchOffer {
                    attempt: i as u64,
                    answer: false,
                    candidates: Vec::new(),
                    nat: NatProfile::default(),
                    prediction: None,
                };
                control.send_punch(s.keys[j], offer);
            }
            Wake::Cmd(Some(Cmd::Relay(dst))) => {
                control.send_relay_frame(&wire::stream_frame(dst, &[0u8; 64]));
            }
        }
    }
}
