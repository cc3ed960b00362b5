//! Load generator for the rendezvous server: thousands of simulated nodes in one process, each
//! the real control-client state machine (`ControlClient`, Noise IK over its own TCP socket on
//! loopback), against a real `p2pvpn server`. No TUN, no WireGuard: only what the server sees.
//!
//! Phases, one network: join (token redemption, bounded concurrency), registration storm (every
//! node connects at once, as after a server restart, until every node knows every other node
//! online), idle (pings only), peer-update latency (one node changes its endpoints, everyone
//! must hear), punch coordination (every node sends an offer to the next), relay (every node
//! sends one frame through the server to the next), and with `--restart` a real server restart
//! that the script performs when asked (all nodes reconnect on their own backoff).
//!
//! With a token naming several servers of one deployment (PostgreSQL store), `--spread` starts
//! node i on the token's server i mod k; the server list the deployment sends moves every node
//! to the primary, so the storm then includes those moves (`storm_connects` above `nodes`).
//!
//! Results are printed as `result KEY=VALUE` lines (scripts/load.sh makes the table); the
//! server's RSS and CPU come from /proc/PID of the pid in `--server-pid-file`.
//!
//!     scripts/load.sh            # builds, starts the server, runs this at 100/1000/10000
//!     cargo run --release --example loadgen -- --token TOKEN --nodes 1000 \
//!         --server-pid-file /tmp/x/server.pid

// A driver like io/: it owns the clock and spawns the tasks the core never does.
#![allow(clippy::disallowed_methods)]

mod node;
mod stats;

use anyhow::{bail, Context, Result};
use clap::Parser;
use node::{Cmd, Shared};
use p2pvpn::core::keys::SecretKey;
use p2pvpn::core::rendezvous::client::{JoinExchange, ServerAddr};
use p2pvpn::core::rendezvous::token::JoinToken;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stats::{Hist, ProcSample};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
struct Args {
    /// Join token from `p2pvpn network invite NET --uses N` (N at least --nodes).
    #[arg(long)]
    token: String,
    /// Simulated nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 64)]
    join_concurrency: usize,
    /// File holding the server's pid (re-read after a restart).
    #[arg(long)]
    server_pid_file: PathBuf,
    /// Ask for a server restart (a line on stdout) and measure the reconnection.
    #[arg(long)]
    restart: bool,
    /// Bound on each phase.
    #[arg(long, default_value_t = 300)]
    phase_timeout_secs: u64,
    /// Seconds of idle (pings only) to measure the server's idle CPU.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// With a token naming several servers: node i joins through, and first registers with,
    /// the token's server i mod k (the others follow as its fail-over order), so a deployment's
    /// non-primary servers take their share of the joins and their nodes move to the primary.
    /// Without it every node starts with the token's first server, as a real node does.
    #[arg(long)]
    spread: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(run(args))
}

fn result(key: &str, value: impl std::fmt::Display) {
    println!("result {key}={value}");
}

fn server_sample(args: &Args) -> Option<ProcSample> {
    let pid = std::fs::read_to_string(&args.server_pid_file).ok()?;
    ProcSample::read(pid.trim().parse().ok()?)
}

/// Waits until `done()` or the phase bound; true if done.
async fn wait_for(bound: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + bound;
    while Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}

async fn run(args: Args) -> Result<()> {
    let token = JoinToken::decode(&args.token).context("--token")?;
    if token.servers.is_empty() {
        bail!("the token names no plain TCP server address");
    }
    if let Some(server) = token.servers.iter().find(|s| !s.ip().is_loopback()) {
        bail!("the load generator only talks to loopback servers, not {server}");
    }
    // Node i's servers in the order it tries them (plain TCP only: the generator has no TLS).
    let k = token.servers.len();
    let order = |i: usize| -> Vec<ServerAddr> {
        let first = if args.spread { i % k } else { 0 };
        (0..k)
            .map(|j| ServerAddr {
                addr: token.servers[(first + j) % k],
                tls: false,
            })
            .collect()
    };
    result("token_servers", k);
    let n = args.nodes;
    if n < 2 {
        bail!("--nodes must be at least 2");
    }
    let bound = Duration::from_secs(args.phase_timeout_secs);
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let secrets: Vec<SecretKey> = (0..n).map(|_| SecretKey::generate(&mut rng)).collect();

    // Join: every node redeems the token once.
    let before = server_sample(&args);
    let t = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(args.join_concurrency.max(1)));
    let mut joins = Vec::with_capacity(n);
    for (i, secret) in secrets.iter().enumerate() {
        let (secret, token, sem) = (secret.clone(), token.clone(), sem.clone());
        let server = order(i)[0].addr; // ok: k >= 1 checked above
        joins.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.ok()?;
            tokio::time::timeout(Duration::from_secs(60), join(server, &secret, &token, i))
                .await
                .ok()?
                .ok()
        }));
    }
    let mut joined = 0;
    for j in joins {
        if let Ok(Some(())) = j.await {
            joined += 1;
        }
    }
    let join_secs = t.elapsed().as_secs_f64();
    result("nodes", n);
    result("joined", joined);
    result("join_secs", format!("{join_secs:.2}"));
    result("join_rate", format!("{:.0}", joined as f64 / join_secs));
    if let (Some(a), Some(b)) = (&before, &server_sample(&args)) {
        result(
            "join_server_cpu_secs",
            format!("{:.2}", b.cpu_secs - a.cpu_secs),
        );
    }
    if joined < n {
        bail!("only {joined} of {n} nodes joined; is the token's --uses at least {n}?");
    }

    // Registration storm: everyone at once.
    let base = server_sample(&args);
    let shared = Arc::new(Shared::new(&secrets));
    let mut cmds: Vec<mpsc::UnboundedSender<Cmd>> = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    let own_base = ProcSample::read(std::process::id());
    let storm_start = Instant::now();
    for (i, secret) in secrets.into_iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        cmds.push(tx);
        let client = node::client(i, secret, &token, order(i));
        tasks.push(tokio::spawn(node::run(i, client, shared.clone(), rx)));
    }
    let all_registered = {
        let s = shared.clone();
        let t = Instant::now();
        let ok = wait_for(bound, || s.registered.load(Ordering::Relaxed) == n).await;
        ok.then(|| t.elapsed())
    };
    let all_complete = wait_for(bound, || shared.complete.load(Ordering::Relaxed) == n).await;
    let storm = storm_start.elapsed();
    let online = server_sample(&args);
    match all_registered {
        Some(d) => {
            result("hello_secs", format!("{:.2}", d.as_secs_f64()));
            result("hello_rate", format!("{:.0}", n as f64 / d.as_secs_f64()));
        }
        None => result("hello_secs", "timeout"),
    }
    result(
        "full_map_secs",
        if all_complete {
            format!("{:.2}", storm.as_secs_f64())
        } else {
            format!("timeout({}/{n})", shared.complete.load(Ordering::Relaxed))
        },
    );
    result(
        "storm_disconnects",
        shared.disconnects.load(Ordering::Relaxed),
    );
    result("storm_connects", shared.connects.load(Ordering::Relaxed));
    report_hist("storm_latency", &shared.hist[node::PHASE_STORM]);
    if let (Some(a), Some(b)) = (&base, &online) {
        result(
            "storm_server_cpu_secs",
            format!("{:.2}", b.cpu_secs - a.cpu_secs),
        );
        result(
            "server_rss_base_mb",
            format!("{:.1}", a.rss_kb as f64 / 1024.0),
        );
        result(
            "server_rss_online_mb",
            format!("{:.1}", b.rss_kb as f64 / 1024.0),
        );
        let per_k = (b.rss_kb.saturating_sub(a.rss_kb)) as f64 / 1024.0 / n as f64 * 1000.0;
        result("server_rss_mb_per_1000", format!("{per_k:.1}"));
    }
    result(
        "loadgen_rss_mb",
        format!("{:.1}", stats::own_rss_kb() as f64 / 1024.0),
    );
    if let (Some(a), Some(b)) = (&own_base, &ProcSample::read(std::process::id())) {
        result(
            "storm_loadgen_cpu_secs",
            format!("{:.2}", b.cpu_secs - a.cpu_secs),
        );
    }

    if !all_complete {
        // The later phases measure a settled network; waiting out their bounds on one that
        // never settled only makes the run longer.
        eprintln!("not every node got the full map; skipping the later phases");
        stop(cmds, tasks).await;
        return Ok(());
    }

    // Idle: only pings (every 15 s per node).
    if let Some(a) = server_sample(&args) {
        tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
        if let Some(b) = server_sample(&args) {
            let pct = (b.cpu_secs - a.cpu_secs) / args.idle_secs as f64 * 100.0;
            result("idle_server_cpu_pct", format!("{pct:.1}"));
        }
    }

    // Peer-update latency: node 0 moves, five times, far enough apart to be separate batches.
    shared.set_phase(node::PHASE_UPDATE);
    for round in 0..5u16 {
        let port = 60_000 + round;
        shared.expect(port);
        let _ = cmds[0].send(Cmd::Endpoints(port));
        let s = shared.clone();
        wait_for(bound, || s.seen.load(Ordering::Relaxed) >= n - 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    report_hist("update_latency", &shared.hist[node::PHASE_UPDATE]);

    // Punch coordination: every node offers to the next; the server forwards.
    shared.set_phase(node::PHASE_PUNCH);
    shared.expect(0);
    for (i, c) in cmds.iter().enumerate() {
        let _ = c.send(Cmd::Punch((i + 1) % n));
    }
    wait_for(bound, || shared.seen.load(Ordering::Relaxed) >= n).await;
    result("punch_delivered", shared.seen.load(Ordering::Relaxed));
    report_hist("punch_latency", &shared.hist[node::PHASE_PUNCH]);

    // Relay through the control streams: every node sends one frame to the next.
    shared.set_phase(node::PHASE_RELAY);
    shared.expect(0);
    let mut expected = 0;
    for (i, c) in cmds.iter().enumerate() {
        let dst = shared.relay_id[(i + 1) % n].load(Ordering::Relaxed);
        if dst != 0 && shared.relay_id[i].load(Ordering::Relaxed) != 0 {
            expected += 1;
            let _ = c.send(Cmd::Relay(dst));
        }
    }
    wait_for(bound.min(Duration::from_secs(10)), || {
        shared.seen.load(Ordering::Relaxed) >= expected
    })
    .await;
    result("relay_sent", expected);
    result("relay_delivered", shared.seen.load(Ordering::Relaxed));
    report_hist("relay_latency", &shared.hist[node::PHASE_RELAY]);

    if args.restart {
        shared.set_phase(node::PHASE_RESTART);
        let connects = shared.connects.load(Ordering::Relaxed);
        let disconnects = shared.disconnects.load(Ordering::Relaxed);
        println!("LOADGEN restart the server now");
        let down = wait_for(bound, || shared.registered.load(Ordering::Relaxed) == 0).await;
        let t = Instant::now();
        let back = down && wait_for(bound, || shared.registered.load(Ordering::Relaxed) == n).await;
        let registered = t.elapsed();
        let complete =
            back && wait_for(bound, || shared.complete.load(Ordering::Relaxed) == n).await;
        result(
            "restart_registered_secs",
            if back {
                format!("{:.2}", registered.as_secs_f64())
            } else {
                "timeout".into()
            },
        );
        result(
            "restart_full_map_secs",
            if complete {
                format!("{:.2}", t.elapsed().as_secs_f64())
            } else {
                "timeout".into()
            },
        );
        result(
            "restart_connects",
            shared.connects.load(Ordering::Relaxed) - connects,
        );
        // One per node is the restart itself; more means the server cut nodes off.
        result(
            "restart_disconnects",
            shared.disconnects.load(Ordering::Relaxed) - disconnects,
        );
        report_hist("restart_latency", &shared.hist[node::PHASE_RESTART]);
    }

    stop(cmds, tasks).await;
    Ok(())
}

async fn stop(cmds: Vec<mpsc::UnboundedSender<Cmd>>, tasks: Vec<tokio::task::JoinHandle<()>>) {
    for c in &cmds {
        let _ = c.send(Cmd::Stop);
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
}

fn report_hist(name: &str, h: &Hist) {
    result(&format!("{name}_samples"), h.count());
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        match h.quantile_ms(q) {
            Some(ms) => result(&format!("{name}_{label}_ms"), ms),
            None => result(&format!("{name}_{label}_ms"), "-"),
        }
    }
}

/// One `p2pvpn join` exchange, as the CLI runs it, over its own TCP connection.
async fn join(
    server: std::net::SocketAddr,
    secret: &SecretKey,
    token: &JoinToken,
    i: usize,
) -> Result<()> {
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let mut ex = JoinExchange::new(secret, token, &format!("load-{i}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(bytes) = ex.take_outgoing() {
            stream.write_all(&bytes).await?;
        }
        let len = stream.read(&mut buf).await?;
        if len == 0 {
            bail!("the server closed the join");
        }
        match ex.handle_bytes(&buf[..len])? {
            None => continue,
            Some(Ok(_)) => return Ok(()),
            Some(Err(refusal)) => bail!("join refused: {refusal}"),
        }
    }
}
