//! The command line (clap derive). Each subcommand's work lives in its own file; this one only
//! defines the interface, sets up logging and dispatches.

mod access_status;
mod cidr;
mod completions;
mod create_check;
mod doctor;
pub mod exit_code;
mod leave;
mod logging;
mod man;
mod netcheck;
mod network;
mod network_acl;
mod node;
mod parse;
mod ping;
mod preflight;
mod printable;
mod resolve;
mod server;
mod service;
mod table;
mod up_all;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub use completions::write_completions;
pub use man::write_man;

/// `p2pvpn --version` and `p2pvpn version`: the crate version and the commit it was built from
/// (build.rs; "unknown" outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("P2PVPN_GIT_COMMIT"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "p2pvpn",
    version = VERSION,
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
    #[arg(long, env = "P2PVPN_CONFIG_DIR", default_value_os_t = crate::os::default_config_dir())]
    pub config_dir: PathBuf,
    /// Directory of keys and runtime state.
    #[arg(long, env = "P2PVPN_STATE_DIR", default_value_os_t = crate::os::default_state_dir())]
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

/// The network a node command works on, as wg-quick users type it (`p2pvpn up office`) or as
/// an option (`--network office`); neither means the only joined network.
#[derive(clap::Args, Debug, Clone)]
pub struct NetworkArg {
    /// The network (default: the only joined one; `up` without one brings up every joined
    /// network in one process).
    #[arg(value_name = "NETWORK")]
    pub network_name: Option<String>,
    /// The network, as an option (same as the NETWORK argument).
    #[arg(long, value_name = "NETWORK", conflicts_with = "network_name")]
    pub network: Option<String>,
}

impl NetworkArg {
    /// The network meant, checked against the joined ones (did-you-mean on a typo).
    fn resolve(&self, dirs: &NodeDirs, verb: &str) -> Result<String> {
        resolve::node_network(
            self.network_name.as_deref(),
            self.network.as_deref(),
            &dirs.dirs(),
            verb,
        )
    }
}

/// Where the server keeps its key and database.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerDir {
    /// Server state directory (identity key and server.db).
    #[arg(
        long,
        env = "P2PVPN_SERVER_STATE_DIR",
        default_value_os_t = crate::os::default_server_state_dir()
    )]
    pub state_dir: PathBuf,
    /// Keep networks, members, tokens, tags and access rules in PostgreSQL instead of server.db,
    /// so that several servers can share them, e.g.
    /// postgres://p2pvpn:SECRET@127.0.0.1/p2pvpn (or key=value settings:
    /// host=/run/postgresql dbname=p2pvpn). The schema is created and migrated on
    /// start. The identity key stays in the state directory: give every server the same one.
    /// Add sslmode=require for TLS with the database's certificate verified (CA file in
    /// PGSSLROOTCERT, else the system's CAs).
    /// Prefer the environment variable for a URL with a password (not in `ps` or shell history).
    // hide_env_values: `--help` must not print the password from the environment.
    #[arg(long, env = "P2PVPN_STORE", value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
}

// The options of `p2pvpn up` (a plain comment: the help text is `Command::Up`'s, and a doc
// comment here would compete with it). A struct of their own for `parse::up_only`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub target: NetworkArg,
    /// Serve Prometheus metrics (peers by path, bytes per peer, drops, punching) on
    /// http://ADDR:PORT/metrics; loopback addresses only, e.g. 127.0.0.1:9101.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Go ahead even though the network's range overlaps a route this host already has
    /// (or set `allow_route_overlap = true` in the network's config).
    #[arg(long)]
    pub allow_overlap: bool,
    /// The TUN device's MTU for this run (576-9000), instead of the config's `mtu` or the
    /// size derived from the underlay's route MTU.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(576..=9000))]
    pub mtu: Option<u16>,
    /// Ask the gateway for no port mapping (UPnP IGD, NAT-PMP, PCP) in this run, as
    /// `portmap = false` in the network's config does.
    #[arg(long)]
    pub no_portmap: bool,
    #[command(flatten)]
    pub dirs: NodeDirs,
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
        /// With several servers on one `--store postgres://...`: the address nodes reach this
        /// server at, told to the other servers and their nodes (default: the --listen
        /// addresses). Needed when listening on 0.0.0.0 or behind NAT. Repeatable.
        #[arg(long, value_name = "ADDR:PORT")]
        advertise: Vec<std::net::SocketAddr>,
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
    ///
    /// With no NETWORK and several joined, brings up every joined network in this one process
    /// (what the systemd unit p2pvpn.service runs); each still has its own interface and
    /// control socket (`status`, `down NETWORK`). One that fails stops them all (exit 1).
    ///
    /// Peers' names resolve in DNS: the node answers NAME.SUFFIX (SUFFIX is `dns_suffix` in the
    /// network's config, default NETWORK.p2p) on its overlay address, UDP port 53, and
    /// registers that suffix with systemd-resolved where it manages the host's DNS; elsewhere
    /// it logs the line to add. It never rewrites /etc/resolv.conf.
    Up(UpArgs),
    /// Check this host and the running node, and explain a peer's path: both NAT profiles, the
    /// techniques tried for the pair and their outcome, and what would fix a relayed path.
    #[command(after_help = exit_code::DOCTOR_HELP)]
    Doctor {
        /// A peer's name or 10.x address to explain.
        peer: Option<String>,
        /// The network (default: the only joined one).
        #[arg(long, value_name = "NETWORK")]
        network: Option<String>,
        /// Print the checks as one JSON object for scripts (fields in README, "JSON output").
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Show peers, paths and counters of running networks.
    #[command(after_help = exit_code::STATUS_HELP)]
    Status {
        /// Only this network (default: every running one).
        #[arg(value_name = "NETWORK")]
        network_name: Option<String>,
        /// Only this network, as an option (same as the NETWORK argument).
        #[arg(long, value_name = "NETWORK", conflicts_with = "network_name")]
        network: Option<String>,
        /// Print JSON for scripts: {"networks": [...]}, one object per network (fields in README,
        /// "JSON output").
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Ping a peer through the running node, showing the path each reply took (direct, and how
    /// it was found, or relay) and its round trip.
    #[command(after_help = exit_code::PING_HELP)]
    Ping {
        /// The peer's name or virtual address.
        peer: String,
        /// Stop after this many requests (0: until interrupted).
        #[arg(long, short = 'c', value_name = "N", default_value_t = 4)]
        count: u32,
        /// The network (default: the only running one).
        #[arg(long, value_name = "NETWORK")]
        network: Option<String>,
        /// Seconds between requests.
        #[arg(long, short = 'i', value_name = "S", default_value_t = 1.0)]
        interval: f64,
        /// Print one JSON object at the end, with every reply, for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Stop a running network.
    Down {
        #[command(flatten)]
        target: NetworkArg,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Leave a network for good: deregister from the server (when it answers), then delete this
    /// node's key and config for it. The network must be down.
    Leave {
        /// The network to leave.
        #[arg(value_name = "NETWORK")]
        network: String,
        #[command(flatten)]
        dirs: NodeDirs,
    },
    /// Measure this host's NAT behaviour with STUN (RFC 5780): public address, mapping,
    /// filtering, port allocation, hairpinning. Needs no root and no running network.
    #[command(after_help = exit_code::NETCHECK_HELP)]
    Netcheck {
        /// STUN server to ask (default: the first server of the joined network).
        #[arg(long, value_name = "ADDR:PORT")]
        server: Option<String>,
        /// Take the server from this network's config (default: the only joined network).
        #[arg(long, value_name = "NETWORK")]
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
    /// Print the version and the commit it was built from.
    Version,
    /// Print a shell completion script, e.g. `p2pvpn completions bash >
    /// /etc/bash_completion.d/p2pvpn`. Network names are completed from the joined networks.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff), e.g. `p2pvpn man | man -l -`; `p2pvpn man network invite` for a
    /// subcommand's own page; `--out-dir DIR` writes every page.
    Man {
        /// A subcommand's own page instead, e.g. `p2pvpn man up`, `p2pvpn man network invite`.
        subcommand: Vec<String>,
        /// Write p2pvpn.1 and every subcommand's page into DIR instead of printing one.
        #[arg(long, value_name = "DIR", conflicts_with = "subcommand")]
        out_dir: Option<PathBuf>,
    },
    /// The Windows service (started by the service control manager, not by hand).
    #[command(subcommand, hide = true)]
    Service(ServiceCommand),
    /// The joined networks' names, one per line (for shell completion).
    #[command(hide = true)]
    NetworkNames {
        #[command(flatten)]
        dirs: NodeDirs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Run as the Windows service `p2pvpn`: bring up every joined network, report Running once
    /// they are up, stop them all on Stop or Shutdown. Windows only; on Linux use the systemd
    /// units (p2pvpn@NETWORK.service).
    Run {
        #[command(flatten)]
        dirs: NodeDirs,
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
        /// The network's IPv4 range, e.g. 10.77.0.0/24: a private range (RFC 1918 10/8,
        /// 172.16/12, 192.168/16, or 100.64.0.0/10), /30 or larger.
        #[arg(long, value_parser = cidr::parse)]
        cidr: ipnet::Ipv4Net,
        /// Accept a public or link-local range (one you own and that no member needs to reach
        /// on the internet).
        #[arg(long)]
        allow_public_range: bool,
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
        /// Print JSON for scripts (fields in README, "JSON output").
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// List a network's members.
    Members {
        name: String,
        /// Print JSON for scripts (fields in README, "JSON output").
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// Rename a member (found by name, key or address); peers see the new name when they next
    /// hear about it (at their next reconnect at the latest).
    RenameMember {
        name: String,
        /// The member's current name, key or address.
        old: String,
        /// The new name (1-63 characters from A-Z, a-z, 0-9, '-', '_' and '.').
        new: String,
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
        /// Print JSON for scripts (fields in README, "JSON output").
        #[arg(long)]
        json: bool,
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
    /// Set a member's tags (replacing its old ones; none removes them); rules name tags.
    Tag {
        name: String,
        /// The member's name, key or address.
        member: String,
        /// Tags, e.g. `admin server` (a leading `tag:` is accepted).
        tags: Vec<String>,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// Access rules: who may connect to whom, by tag or member, protocol and port (default:
    /// everyone may reach everyone).
    Acl {
        name: String,
        #[command(subcommand)]
        action: network_acl::AclAction,
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

/// `p2pvpn up`: one network in the foreground, or every joined one in this process.
async fn run_up(up: UpArgs) -> Result<()> {
    let UpArgs {
        target,
        metrics,
        allow_overlap,
        mtu,
        no_portmap,
        dirs,
    } = up;
    let dirs = dirs.dirs();
    let mut networks = resolve::up_networks(
        target.network_name.as_deref(),
        target.network.as_deref(),
        &dirs,
    )?;
    if networks.len() == 1 {
        let network = networks.remove(0);
        node::up(&network, &dirs, metrics, allow_overlap, mtu, no_portmap).await
    } else {
        up_all::run(networks, &dirs, metrics, allow_overlap, mtu, no_portmap).await
    }
}

pub fn run() -> Result<()> {
    let cli = parse::parse();
    // Output-only commands need no logging and no runtime.
    match cli.command {
        Command::Completions { shell } => {
            return write_completions(shell, &mut std::io::stdout());
        }
        Command::Man {
            subcommand,
            out_dir,
        } => {
            return match out_dir {
                Some(dir) => man::write_all(&dir),
                None => write_man(&subcommand, &mut std::io::stdout()),
            };
        }
        Command::Version => {
            println!("p2pvpn {VERSION}");
            return Ok(());
        }
        Command::NetworkNames { dirs } => {
            for name in resolve::joined_networks(&dirs.dirs()) {
                println!("{name}");
            }
            return Ok(());
        }
        // The service control manager's dispatcher takes this thread; the runtime and the
        // logging (to a file) are set up inside the service.
        Command::Service(ServiceCommand::Run { dirs }) => return service::run(&cli.log, &dirs),
        _ => {}
    }
    logging::init(&cli.log)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // `up` runs outside the dispatch below: a node then never runs the other commands' code,
    // which keeps it out of the pages a node maps (scripts/lib/link_order.py). Its future is
    // boxed: held by value, its state (tens of KiB) sat on the main thread's stack, copied
    // there more than once on its way in, and a stack's pages stay resident for the process's
    // life (with `run_command` apart: a bench node's stack 132 -> 96 KiB).
    match cli.command {
        Command::Up(up) => runtime.block_on(Box::pin(run_up(up))),
        command => run_command(&runtime, command),
    }
}

/// Every command but `up` and the output-only ones. A function of its own, never inlined: the
/// future below holds any command's state, tens of KiB that the stack probe touches page by
/// page, and a node's main thread (in `run` for its whole life) must not carry that frame.
#[inline(never)]
fn run_command(runtime: &tokio::runtime::Runtime, command: Command) -> Result<()> {
    runtime.block_on(async move {
        match command {
            Command::Server {
                listen,
                tls_listen,
                alternate_port,
                advertise,
                relay,
                conns,
                metrics,
                dir,
            } => {
                server::run(
                    listen,
                    tls_listen,
                    alternate_port,
                    crate::io::server::Limits {
                        relay: relay.limits(),
                        conns: conns.limits(),
                        advertise,
                    },
                    &dir,
                    metrics,
                )
                .await
            }
            Command::Network(cmd) => network::run(cmd),
            Command::Join { token, name, dirs } => node::join(&token, name, &dirs.dirs()).await,
            Command::Up(up) => run_up(up).await, // taken above
            Command::Doctor {
                peer,
                network,
                json,
                dirs,
            } => {
                let network = resolve::node_network(
                    None,
                    network.as_deref(),
                    &dirs.dirs(),
                    "doctor --network",
                )?;
                doctor::run(&network, peer.as_deref(), json, &dirs.dirs()).await
            }
            Command::Status {
                network_name,
                network,
                json,
                dirs,
            } => {
                let only = network_name.or(network);
                if let Some(n) = &only {
                    resolve::check_named(n, &dirs.dirs())?;
                }
                node::status(only.as_deref(), json, &dirs.dirs()).await
            }
            Command::Ping {
                peer,
                count,
                network,
                interval,
                json,
                dirs,
            } => {
                if let Some(n) = &network {
                    resolve::check_named(n, &dirs.dirs())?;
                }
                let opts = ping::Options {
                    count,
                    interval,
                    json,
                };
                ping::run(&peer, network.as_deref(), opts, &dirs.dirs()).await
            }
            Command::Down { target, dirs } => {
                node::down(&target.resolve(&dirs, "down")?, &dirs.dirs()).await
            }
            Command::Leave { network, dirs } => leave::run(&network, &dirs.dirs()).await,
            // Answered above, before the runtime started.
            Command::Completions { .. }
            | Command::Man { .. }
            | Command::Version
            | Command::Service(_)
            | Command::NetworkNames { .. } => Ok(()),
            Command::Netcheck {
                server,
                network,
                json,
                lifetime,
                samples,
                dirs,
            } => {
                if let Some(n) = &network {
                    resolve::check_named(n, &dirs.dirs())?;
                }
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

#[cfg(test)]
mod up_mtu_tests {
    use super::*;

    /// `up --mtu` takes what the config's `mtu` takes, and nothing a TUN device could not use.
    #[test]
    fn up_mtu_is_bounded_like_the_config() {
        let parse = |v: &str| Cli::try_parse_from(["p2pvpn", "up", "--network", "lab", "--mtu", v]);
        assert!(parse("1280").is_ok());
        for bad in ["575", "9001", "big"] {
            assert!(parse(bad).is_err(), "--mtu {bad} accepted");
        }
    }
}
