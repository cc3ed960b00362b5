//! The command line (clap derive). Each subcommand's work lives in its own file; this one only
//! defines the interface, sets up logging and dispatches.

mod doctor;
mod logging;
mod netcheck;
mod network;
mod node;
mod ping;
mod printable;
mod server;
mod table;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "p2pvpn",
    version,
    about = "Peer-to-peer mesh VPN: nodes join a network through a rendezvous server and talk \
             directly over end-to-end encrypted WireGuard-class tunnels."
)]
pub struct Cli {
    #[command(flatten)]
    pub log: logging::LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where a node keeps its config and state.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeDirs {
    /// Directory of per-network config files.
    #[arg(long, env = "P2PVPN_CONFIG_DIR", default_value = crate::config::DEFAULT_CONFIG_DIR)]
    pub config_dir: PathBuf,
    /// Directory of keys and runtime state.
    #[arg(long, env = "P2PVPN_STATE_DIR", default_value = crate::config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

impl NodeDirs {
    pub fn dirs(&self) -> crate::config::Dirs {
        crate::config::Dirs {
            config: self.config_dir.clone(),
            state: self.state_dir.clone(),
        }
    }
}

/// Where the server keeps its key and database.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerDir {
    /// Server state directory (identity key and server.db).
    #[arg(
        long,
        env = "P2PVPN_SERVER_STATE_DIR",
        default_value = "/var/lib/p2pvpn-server"
    )]
    pub state_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the rendezvous server in the foreground.
    Server {
        /// Address to listen on (TCP for the control channel, UDP on the same port for STUN).
        /// Repeat for a second address; two with different IPs enable RFC 5780 NAT discovery.
        #[arg(long, required = true, value_name = "ADDR:PORT")]
        listen: Vec<std::net::SocketAddr>,
        /// Also accept the control channel inside TLS on this TCP address, for nodes on networks
        /// that let nothing out but TLS (HTTPS) on port 443, e.g. 198.51.100.1:443. Repeatable.
        /// Tokens from `network invite` carry these addresses; nodes try them when the plain
        /// ones fail. The certificate is self-signed and kept in the state directory
        /// (tls-cert.pem, tls-key.pem): nodes check the server's identity through the key in
        /// their token, not through the certificate.
        #[arg(long, value_name = "ADDR:PORT")]
        tls_listen: Vec<std::net::SocketAddr>,
        /// Second UDP port for STUN on each listen IP, for RFC 5780 "change port" answers
        /// (default: the listen port + 1).
        #[arg(long, value_name = "PORT")]
        alternate_port: Option<u16>,
        #[command(flatten)]
        relay: RelayArgs,
        #[command(flatten)]
        conns: server::ConnArgs,
        /// Serve Prometheus metrics (online nodes, relay traffic per node, STUN answers) on
        /// http://ADDR:PORT/metrics; loopback addresses only, e.g. 127.0.0.1:9102.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// Manage networks on the server host.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Join a network with a token from `p2pvpn network invite`: writes the config and the key.
    Join {
        /// The token, as printed by `network invite`.
        token: String,
        /// This node's name in the network (default: the host name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Bring a network up in the foreground until SIGINT/SIGTERM or `p2pvpn down`.
    Up {
        #[arg(long)]
        network: String,
        /// Serve Prometheus metrics (peers by path, bytes per peer, drops, punching) on
        /// http://ADDR:PORT/metrics; loopback addresses only, e.g. 127.0.0.1:9101.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Check this host and the running node, and explain a peer's path: both NAT profiles, the
    /// techniques tried for the pair and their outcome, and what would fix a relayed path.
    Doctor {
        /// A peer's name or 10.x address to explain.
        peer: Option<String>,
        #[arg(long)]
        network: String,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Show peers, paths and counters of running networks.
    Status {
        /// Only this network (default: every running one).
        #[arg(long)]
        network: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Ping a peer through the running node, showing the path each reply took (direct, and how
    /// it was found, or relay) and its round trip.
    Ping {
        /// The peer's name or virtual address.
        peer: String,
        /// Stop after this many requests (0: until interrupted).
        #[arg(long, short = 'c', value_name = "N", default_value_t = 4)]
        count: u32,
        /// The network (default: the only running one).
        #[arg(long, value_name = "NET")]
        network: Option<String>,
        /// Seconds between requests.
        #[arg(long, short = 'i', value_name = "S", default_value_t = 1.0)]
        interval: f64,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Stop a running network.
    Down {
        #[arg(long)]
        network: String,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Measure this host's NAT behaviour with STUN (RFC 5780): public address, mapping,
    /// filtering, port allocation, hairpinning. Needs no root and no running network.
    Netcheck {
        /// STUN server to ask (default: the first server of the joined network).
        #[arg(long, value_name = "ADDR:PORT")]
        server: Option<String>,
        /// Take the server from this network's config (default: the only joined network).
        #[arg(long, value_name = "NET")]
        network: Option<String>,
        /// Print the report as one JSON object for scripts.
        #[arg(long)]
        json: bool,
        /// Also measure how long an idle UDP mapping lives (takes up to two minutes).
        #[arg(long)]
        lifetime: bool,
        /// Fresh mappings made to model port allocation (3-64).
        #[arg(long, value_name = "N", default_value_t = 12)]
        samples: u16,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Print a shell completion script, e.g. `p2pvpn completions bash >
    /// /etc/bash_completion.d/p2pvpn`.
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `p2pvpn man > /usr/share/man/man1/p2pvpn.1`.
    #[command(hide = true)]
    Man {
        /// A subcommand's own page instead, e.g. `p2pvpn man up > p2pvpn-up.1`.
        subcommand: Option<String>,
    },
}

/// Limits of the relay that carries traffic between nodes with no direct path.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// Relay bandwidth one node may use, in Mbit/s (beyond it its packets are dropped).
    #[arg(long, value_name = "MBIT/S", default_value_t = 100)]
    relay_node_mbps: u64,
    /// Relay bandwidth of all nodes together, in Mbit/s.
    #[arg(long, value_name = "MBIT/S", default_value_t = 1000)]
    relay_total_mbps: u64,
    /// Nodes that may use the relay at once (others still register, without a relay).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    relay_max_nodes: usize,
    /// Nodes of one network that may use the relay at once, so one network cannot take the
    /// whole --relay-max-nodes.
    #[arg(long, value_name = "N", default_value_t = 250)]
    relay_max_nodes_per_network: usize,
}

impl RelayArgs {
    fn limits(&self) -> crate::core::relay::server::RelayLimits {
        crate::core::relay::server::RelayLimits {
            node_bytes_per_sec: self.relay_node_mbps.saturating_mul(125_000),
            total_bytes_per_sec: self.relay_total_mbps.saturating_mul(125_000),
            max_nodes: self.relay_max_nodes,
            max_nodes_per_network: self.relay_max_nodes_per_network,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network with an address range.
    Create {
        name: String,
        /// The network's IPv4 range, e.g. 10.77.0.0/24.
        #[arg(long)]
        cidr: ipnet::Ipv4Net,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// Print a join token.
    Invite {
        name: String,
        /// How many nodes may join with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it stays valid (e.g. 30m, 24h, 7d).
        #[arg(long, default_value = "24h")]
        expires: humantime::Duration,
        /// Server address to put in the token (default: the addresses the server listens on).
        /// Repeat for several.
        #[arg(long, value_name = "ADDR:PORT")]
        server: Vec<std::net::SocketAddr>,
        /// TLS server address to put in the token, tried by nodes when no --server address
        /// answers (default: the server's --tls-listen addresses). Repeat for several.
        #[arg(long, value_name = "ADDR:PORT")]
        tls_server: Vec<std::net::SocketAddr>,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// List networks.
    List {
        #[command(flatten)]
        dir: ServerDir,
    },
    /// List a network's members.
    Members {
        name: String,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// Remove a member (by name, key or address); the running mesh cuts it off within seconds.
    RemoveMember {
        name: String,
        peer: String,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// List a network's join tokens: id, uses, expiry.
    Invites {
        name: String,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// Revoke a join token by its id (from `network invites`); joins with it are then refused.
    Revoke {
        name: String,
        /// The token's id, or enough of its start to tell it apart.
        token_id: String,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// Delete a network with its members and tokens; a running server cuts the members off.
    Delete {
        name: String,
        /// Delete it even though it has members (they are cut off and must join again).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dir: ServerDir,
    },
}

/// Writes the completion script for `shell` (generated from the clap definition, so it never
/// falls behind the real options).
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) -> Result<()> {
    // Generated into memory first: clap_complete panics on a failed write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "p2pvpn", &mut script);
    quiet_on_broken_pipe(out.write_all(&script)).context("writing the completion script")
}

/// `p2pvpn man | head` is not an error: the reader just stopped reading.
fn quiet_on_broken_pipe(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Writes the man page in roff: p2pvpn(1), or with `subcommand` that command's own page
/// (p2pvpn-up(1) and so on), since p2pvpn(1) lists subcommands without their options.
pub fn write_man(subcommand: Option<&str>, out: &mut dyn std::io::Write) -> Result<()> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match subcommand {
        None => cmd,
        Some(name) => {
            let Some(sub) = cmd
                .get_subcommands()
                .find(|s| s.get_name() == name && !s.is_hide_set())
            else {
                anyhow::bail!("no subcommand {name:?}; see `p2pvpn --help`");
            };
            // After build() a subcommand carries its display name (p2pvpn-up), the page's title,
            // and its bin name (p2pvpn up) for the synopsis.
            sub.clone()
        }
    };
    quiet_on_broken_pipe(clap_mangen::Man::new(page).render(out)).context("writing the man page")
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    // Output-only commands need no logging and no runtime.
    match cli.command {
        Command::Completions { shell } => {
            return write_completions(shell, &mut std::io::stdout());
        }
        Command::Man { subcommand } => {
            return write_man(subcommand.as_deref(), &mut std::io::stdout())
        }
        _ => {}
    }
    logging::init(&cli.log)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server {
                listen,
                tls_listen,
                alternate_port,
                relay,
                conns,
                metrics,
                dir,
            } => {
                server::run(
                    listen,
                    tls_listen,
                    alternate_port,
                    relay.limits(),
                    conns.limits(),
                    &dir.state_dir,
                    metrics,
                )
                .await
            }
            Command::Network(cmd) => network::run(cmd),
            Command::Join { token, name, dirs } => node::join(&token, name, &dirs.dirs()).await,
            Command::Up {
                network,
                metrics,
                dirs,
            } => node::up(&network, &dirs.dirs(), metrics).await,
            Command::Doctor {
                peer,
                network,
                dirs,
            } => doctor::run(&network, peer.as_deref(), &dirs.dirs()).await,
            Command::Status {
                network,
                json,
                dirs,
            } => node::status(network.as_deref(), json, &dirs.dirs()).await,
            Command::Ping {
                peer,
                count,
                network,
                interval,
                dirs,
            } => ping::run(&peer, count, network.as_deref(), interval, &dirs.dirs()).await,
            Command::Down { network, dirs } => node::down(&network, &dirs.dirs()).await,
            // Answered above, before the runtime started.
            Command::Completions { .. } | Command::Man { .. } => Ok(()),
            Command::Netcheck {
                server,
                network,
                json,
                lifetime,
                samples,
                dirs,
            } => {
                netcheck::run(
                    server.as_deref(),
                    network.as_deref(),
                    json,
                    lifetime,
                    usize::from(samples),
                    &dirs.dirs(),
                )
                .await
            }
        }
    })
}
