//! Node configuration: one TOML file per network in the config directory, written by `join` and
//! read by `up`. The file is parsed into raw serde types (unknown keys refused), then validated
//! into [`NodeSettings`]; every error names the file and what to change.

use crate::core::crypto::Engine;
use crate::core::dns;
use crate::core::keys::PublicKey;
use crate::core::punch::session::PunchConfig;
use crate::core::rendezvous::names;
use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Linux interface names hold at most 15 bytes (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// The file as written on disk.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNodeConfig {
    pub network: String,
    pub name: String,
    pub servers: Vec<String>,
    /// The server's TLS addresses, tried when the plain ones fail (written from the token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_servers: Vec<String>,
    pub server_public_key: String,
    /// UDP port for peer traffic; 0 picks a free one at each start.
    #[serde(default)]
    pub listen_port: u16,
    #[serde(default)]
    pub interface: Option<String>,
    /// The TUN device's MTU; absent, `up` derives it from the underlay's route MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Probe each peer's path MTU (RFC 8899) and fit packets to it; `false` leaves packet sizes
    /// to the TUN MTU alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_mtu_discovery: Option<bool>,
    /// The network's range, recorded by `join` so that `up` can check it against the host's
    /// routes before it registers (absent in configs written by older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Bring the network up even though its range overlaps a route the host already has.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_route_overlap: bool,
    /// The suffix the node's DNS responder answers for (default `NETWORK.p2p`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_suffix: Option<String>,
    /// Ask the default gateway for a port mapping (UPnP IGD, NAT-PMP, PCP); `false` never
    /// sends it a mapping request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portmap: Option<bool>,
    #[serde(default)]
    pub punch: Option<RawPunchConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<RawDataplaneConfig>,
}

/// `[dataplane]`: how packets are carried.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataplaneConfig {
    /// The WireGuard implementation: "own" (`core::wg`; the default on Linux) or "boringtun"
    /// (the default elsewhere): [`default_engine`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<String>,
    /// Data-path threads: 1 (default: one thread carries packets; on our engine on Linux that is
    /// the data thread, else the node's own loop) or 2 (a TX and an RX worker; needs
    /// `wireguard = "own"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u8>,
}

/// `[punch]`: hole-punching knobs.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPunchConfig {
    /// Many-port (birthday) probing against symmetric NATs with random ports.
    #[serde(default)]
    pub birthday: Option<bool>,
    /// TTL of the priming packets sent before the first real probe.
    #[serde(default)]
    pub priming_ttl: Option<u8>,
}

/// A validated node configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    pub network: String,
    pub name: String,
    pub servers: Vec<SocketAddr>,
    pub tls_servers: Vec<SocketAddr>,
    pub server_key: PublicKey,
    pub listen_port: u16,
    pub interface: String,
    /// The TUN MTU set in the config; `None` derives it from the underlay (`io::underlay_mtu`).
    pub mtu: Option<u16>,
    /// Probe each peer's path MTU (default true).
    pub path_mtu_discovery: bool,
    /// Ask the default gateway for a port mapping (default true; `portmap = false`, `up
    /// --no-portmap`).
    pub portmap: bool,
    pub punch: PunchConfig,
    pub cidr: Option<Ipv4Net>,
    pub allow_route_overlap: bool,
    /// Lower case, without the final dot (`core::dns::check_suffix`).
    pub dns_suffix: String,
    /// `[dataplane] wireguard`: which implementation carries the sessions.
    pub wireguard: Engine,
    /// `[dataplane] workers`: 1 or 2 data-path threads (2 needs the own engine; 1 is the data
    /// thread on our engine on Linux, the node's loop otherwise: `io::node::data_threads`).
    pub workers: u8,
}

/// The engine a node runs when its config does not say: ours where the data thread runs
/// (Linux: `io::workers::DATA_THREAD`), which is what makes it faster, boringtun elsewhere.
pub fn default_engine() -> Engine {
    if crate::io::workers::DATA_THREAD {
        Engine::Own
    } else {
        Engine::Boringtun
    }
}

/// Where a node keeps its files.
#[derive(Clone, Debug)]
pub struct Dirs {
    pub config: PathBuf,
    pub state: PathBuf,
}

impl Dirs {
    pub fn config_file(&self, network: &str) -> PathBuf {
        self.config.join(format!("{network}.toml"))
    }

    pub fn network_state(&self, network: &str) -> PathBuf {
        self.state.join(network)
    }

    pub fn key_file(&self, network: &str) -> PathBuf {
        self.network_state(network).join("private.key")
    }

    /// The deployment's server list as last learned (`io::learned_servers`).
    pub fn servers_file(&self, network: &str) -> PathBuf {
        self.network_state(network).join("servers")
    }

    pub fn control_socket(&self, network: &str) -> PathBuf {
        self.network_state(network).join("control.sock")
    }
}

/// Network names become file names and interface names: keep them short and plain. The rule
/// itself is shared with the server (`core::rendezvous::names`).
pub fn validate_network_name(name: &str) -> Result<()> {
    Ok(names::check_network_name(name)?)
}

pub fn validate_node_name(name: &str) -> Result<()> {
    Ok(names::check_node_name(name)?)
}

/// What the Linux kernel accepts as an interface name (`dev_valid_name` in net/core/dev.c).
fn interface_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

pub fn default_interface(network: &str) -> String {
    let mut name = format!("p2p-{network}");
    name.truncate(IFNAME_MAX);
    name
}

/// FNV-1a (32 bit): a stable hash for interface name suffixes (std's hasher may change).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The interface name `join` gives a network: `p2p-NAME` when it fits in 15 bytes and no other
/// joined network uses it; otherwise the start of the name and a short hash of the whole, so
/// `engineering-a` and `engineering-b` do not both become `p2p-engineering`.
pub fn unique_interface(network: &str, taken: &[String]) -> String {
    let plain = format!("p2p-{network}");
    if plain.len() <= IFNAME_MAX && !taken.contains(&plain) {
        return plain;
    }
    let head: String = network.chars().take(6).collect();
    (0u32..)
        .map(|i| {
            let seed = if i == 0 {
                network.to_string()
            } else {
                format!("{network}#{i}")
            };
            format!("p2p-{head}-{:04x}", fnv1a(seed.as_bytes()) & 0xffff)
        })
        .find(|name| !taken.contains(name))
        .unwrap_or(plain) // ok: the iterator is endless, `find` returns once a name is free
}

/// Every other network's config in the config directory, with its file; unreadable ones are
/// skipped (their own `up` reports them).
pub fn other_networks(dirs: &Dirs, network: &str) -> Vec<(PathBuf, NodeSettings)> {
    let mut out: Vec<(PathBuf, NodeSettings)> = std::fs::read_dir(&dirs.config)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let s = parse(&text, &p).ok()?;
            (s.network != network).then_some((p, s))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

impl RawNodeConfig {
    pub fn validate(self, file: &Path) -> Result<NodeSettings> {
        let at = || format!("in {}", file.display());
        validate_network_name(&self.network).with_context(at)?;
        validate_node_name(&self.name).with_context(at)?;
        if self.servers.is_empty() {
            bail!(
                "{}: `servers` is empty; list at least one \"ADDRESS:PORT\"",
                file.display()
            );
        }
        let servers = self
            .servers
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>().with_context(|| {
                    format!("{}: server {s:?} is not ADDRESS:PORT", file.display())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tls_servers = self
            .tls_servers
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>().with_context(|| {
                    format!("{}: TLS server {s:?} is not ADDRESS:PORT", file.display())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let server_key = PublicKey::from_base64(&self.server_public_key).with_context(|| {
            format!(
                "{}: `server_public_key` is not a key; run `p2pvpn join TOKEN` again",
                file.display()
            )
        })?;
        let interface = self
            .interface
            .unwrap_or_else(|| default_interface(&self.network));
        if !interface_name_ok(&interface) {
            bail!(
                "{}: `interface` {interface:?} is not a usable interface name: use 1-{IFNAME_MAX} \
                 characters without '/', ':' or spaces, or remove the line for the default {}",
                file.display(),
                default_interface(&self.network)
            );
        }
        if let Some(mtu) = self.mtu.filter(|m| !(576..=9000).contains(m)) {
            bail!(
                "{}: `mtu` {mtu} is outside 576-9000; remove the line to derive it from the \
                 underlay",
                file.display()
            );
        }
        let mtu = self.mtu;
        let defaults = PunchConfig::default();
        let raw_punch = self.punch.unwrap_or_default();
        let priming_ttl = raw_punch.priming_ttl.unwrap_or(defaults.priming_ttl);
        if !(1..=64).contains(&priming_ttl) {
            bail!(
                "{}: `punch.priming_ttl` {priming_ttl} is outside 1-64 (2 suits a host behind one \
                 home router)",
                file.display()
            );
        }
        let punch = PunchConfig {
            birthday: raw_punch.birthday.unwrap_or(defaults.birthday),
            priming_ttl,
        };
        let cidr = match &self.cidr {
            None => None,
            Some(text) => Some(text.parse::<Ipv4Net>().ok().with_context(|| {
                format!(
                    "{}: `cidr` {text:?} is not an IPv4 range; remove the line (join writes it)",
                    file.display()
                )
            })?),
        };
        let dns_suffix = dns::check_suffix(
            &self
                .dns_suffix
                .unwrap_or_else(|| dns::default_suffix(&self.network)),
        )
        .with_context(|| format!("{}: `dns_suffix`", file.display()))?;
        let wireguard = match self.dataplane.as_ref().and_then(|d| d.wireguard.as_deref()) {
            None => default_engine(),
            Some(name) => match Engine::from_name(name) {
                Some(engine) => engine,
                None => bail!(
                    "{}: `dataplane.wireguard` {name:?} is not known: use \"own\" (the default \
                 where the data thread runs, Linux) or \"boringtun\" (the default elsewhere)",
                    file.display()
                ),
            },
        };
        let workers = self.dataplane.as_ref().and_then(|d| d.workers).unwrap_or(1);
        if !(1..=2).contains(&workers) {
            bail!(
                "{}: `dataplane.workers` {workers} is not supported: use 1 (the default) or 2 \
                 (a TX and an RX thread)",
                file.display()
            );
        }
        if workers == 2 && wireguard != Engine::Own {
            bail!(
                "{}: `dataplane.workers = 2` needs our own WireGuard engine, whose keys the \
                 workers share: add `wireguard = \"own\"` under [dataplane], or set `workers = 1`",
                file.display()
            );
        }
        Ok(NodeSettings {
            wireguard,
            workers,
            dns_suffix,
            punch,
            cidr,
            allow_route_overlap: self.allow_route_overlap,
            network: self.network,
            name: self.name,
            servers,
            tls_servers,
            server_key,
            listen_port: self.listen_port,
            interface,
            mtu,
            path_mtu_discovery: self.path_mtu_discovery.unwrap_or(true),
            portmap: self.portmap.unwrap_or(true),
        })
    }
}

impl NodeSettings {
    pub fn to_raw(&self) -> RawNodeConfig {
        RawNodeConfig {
            network: self.network.clone(),
            name: self.name.clone(),
            servers: self.servers.iter().map(|s| s.to_string()).collect(),
            tls_servers: self.tls_servers.iter().map(|s| s.to_string()).collect(),
            server_public_key: self.server_key.to_base64(),
            listen_port: self.listen_port,
            interface: Some(self.interface.clone()),
            mtu: self.mtu,
            path_mtu_discovery: (!self.path_mtu_discovery).then_some(false),
            portmap: (!self.portmap).then_some(false),
            punch: (self.punch != PunchConfig::default()).then_some(RawPunchConfig {
                birthday: Some(self.punch.birthday),
                priming_ttl: Some(self.punch.priming_ttl),
            }),
            cidr: self.cidr.map(|c| c.to_string()),
            allow_route_overlap: self.allow_route_overlap,
            dns_suffix: (self.dns_suffix != dns::default_suffix(&self.network))
                .then(|| self.dns_suffix.clone()),
            dataplane: (self.wireguard != default_engine() || self.workers != 1).then(|| {
                RawDataplaneConfig {
                    wireguard: (self.wireguard != default_engine())
                        .then(|| self.wireguard.name().into()),
                    workers: (self.workers != 1).then_some(self.workers),
                }
            }),
        }
    }
}

/// Parses and validates a config file's text; errors carry the file, line and column.
pub fn parse(text: &str, file: &Path) -> Result<NodeSettings> {
    let raw: RawNodeConfig =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    raw.validate(file)
}

pub fn load(dirs: &Dirs, network: &str) -> Result<NodeSettings> {
    let file = dirs.config_file(network);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no configuration for network {network:?} at {}: join the network first with \
             `p2pvpn join TOKEN`, or point --config-dir (P2PVPN_CONFIG_DIR) at the directory \
             join wrote to",
            file.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", file.display()));
        }
    };
    let settings = parse(&text, &file)?;
    if settings.network != network {
        bail!(
            "{} is for network {:?}, not {network:?}; rename the file or fix `network`",
            file.display(),
            settings.network
        );
    }
    Ok(settings)
}

pub fn save(dirs: &Dirs, settings: &NodeSettings) -> Result<PathBuf> {
    std::fs::create_dir_all(&dirs.config)
        .with_context(|| format!("cannot create {}", dirs.config.display()))?;
    let file = dirs.config_file(&settings.network);
    let text = toml::to_string(&settings.to_raw()).context("cannot serialise the config")?;
    let header = "# Written by `p2pvpn join`. See config/node.example.toml for every option.\n";
    std::fs::write(&file, format!("{header}{text}"))
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
network = "office"
name = "alice"
servers = ["203.0.113.1:7400"]
server_public_key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
"#;

    #[test]
    fn parses_with_defaults() {
        let s = parse(GOOD, Path::new("office.toml")).unwrap();
        assert_eq!(s.interface, "p2p-office");
        assert_eq!(s.mtu, None, "derived from the underlay unless set");
        assert_eq!(s.listen_port, 0);
    }

    /// The documented example is a valid config, TLS addresses included.
    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../config/node.example.toml");
        let s = parse(text, Path::new("config/node.example.toml")).unwrap();
        assert_eq!(s.tls_servers, vec!["203.0.113.1:443".parse().unwrap()]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = GOOD.replace("name = \"alice\"", "name = \"alice\"\ncolour = \"blue\"");
        let err = format!(
            "{:#}",
            parse(&bad, Path::new("/etc/p2pvpn/office.toml")).unwrap_err()
        );
        assert!(err.contains("/etc/p2pvpn/office.toml"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_network_name("office-1").is_ok());
        assert!(validate_network_name("Office").is_err());
        assert!(validate_network_name("../etc").is_err());
        for bad in ["", "a/b", "eth0:1", "..", "two words", "sixteen-chars-xx"] {
            let text = GOOD.replace(
                "name = \"alice\"",
                &format!("name = \"alice\"\ninterface = {bad:?}"),
            );
            let err = format!("{:#}", parse(&text, Path::new("o.toml")).unwrap_err());
            assert!(
                err.contains("not a usable interface name"),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(
            default_interface("averyveryverylongname"),
            "p2p-averyveryve"
        );
    }

    /// Two names sharing a prefix used to get the same interface, `p2p-engineering`.
    #[test]
    fn interface_names_are_unique_and_fit() {
        assert_eq!(unique_interface("office", &[]), "p2p-office");
        let a = unique_interface("engineering-a", &[]);
        let b = unique_interface("engineering-b", std::slice::from_ref(&a));
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(interface_name_ok(name), "{name}");
            assert!(name.starts_with("p2p-engine"), "{name}");
        }
        // Stable: the same network gets the same name on every host.
        assert_eq!(unique_interface("engineering-a", &[]), a);
        // Taken even though it fits: a suffix is added.
        let taken = vec!["p2p-office".to_string()];
        let other = unique_interface("office", &taken);
        assert_ne!(other, "p2p-office");
        assert!(interface_name_ok(&other));
    }

    /// Port mapping is on unless the file says `portmap = false`, and a saved config keeps
    /// the choice (join rewrites the file).
    #[test]
    fn portmap_defaults_on_and_false_is_kept() {
        let s = parse(GOOD, Path::new("o.toml")).unwrap();
        assert!(s.portmap);
        assert!(!toml::to_string(&s.to_raw()).unwrap().contains("portmap"));
        let text = format!("{GOOD}portmap = false\n");
        let s = parse(&text, Path::new("o.toml")).unwrap();
        assert!(!s.portmap);
        let again = toml::to_string(&s.to_raw()).unwrap();
        assert!(again.contains("portmap = false"), "{again}");
        assert_eq!(parse(&again, Path::new("o.toml")).unwrap(), s);
        let bad = format!("{GOOD}portmap = \"no\"\n");
        let err = format!("{:#}", parse(&bad, Path::new("o.toml")).unwrap_err());
        assert!(err.contains("portmap"), "{err}");
    }

    #[test]
    fn the_dns_suffix_defaults_to_the_network_and_a_bad_one_is_named() {
        let s = parse(GOOD, Path::new("o.toml")).unwrap();
        assert_eq!(s.dns_suffix, "office.p2p");
        assert!(!toml::to_string(&s.to_raw()).unwrap().contains("dns_suffix"));
        let text = format!("{GOOD}dns_suffix = \"Corp.Example.\"\n");
        let s = parse(&text, Path::new("o.toml")).unwrap();
        assert_eq!(s.dns_suffix, "corp.example");
        let again = toml::to_string(&s.to_raw()).unwrap();
        assert_eq!(parse(&again, Path::new("o.toml")).unwrap(), s);
        let bad = format!("{GOOD}dns_suffix = \"a b\"\n");
        let err = format!("{:#}", parse(&bad, Path::new("o.toml")).unwrap_err());
        assert!(err.contains("o.toml: `dns_suffix`"), "{err}");
        assert!(err.contains("not allowed"), "{err}");
    }

    #[test]
    fn the_range_round_trips_and_a_bad_one_is_named() {
        let text = format!("{GOOD}cidr = \"10.77.0.0/24\"\n");
        let s = parse(&text, Path::new("o.toml")).unwrap();
        assert_eq!(s.cidr, Some("10.77.0.0/24".parse().unwrap()));
        let again = toml::to_string(&s.to_raw()).unwrap();
        assert_eq!(parse(&again, Path::new("o.toml")).unwrap(), s);
        let bad = format!("{GOOD}cidr = \"10.77.0.0\"\n");
        let err = format!("{:#}", parse(&bad, Path::new("o.toml")).unwrap_err());
        assert!(err.contains("`cidr`"), "{err}");
    }

    #[test]
    fn two_workers_need_our_engine_and_the_error_names_the_fix() {
        let s = parse(GOOD, Path::new("o.toml")).unwrap();
        assert_eq!(s.workers, 1);
        let text = format!("{GOOD}[dataplane]\nwireguard = \"own\"\nworkers = 2\n");
        let s = parse(&text, Path::new("o.toml")).unwrap();
        assert_eq!(s.workers, 2);
        let again = toml::to_string(&s.to_raw()).unwrap();
        assert_eq!(parse(&again, Path::new("o.toml")).unwrap(), s);
        let bad = format!("{GOOD}[dataplane]\nwireguard = \"boringtun\"\nworkers = 2\n");
        let err = format!("{:#}", parse(&bad, Path::new("o.toml")).unwrap_err());
        assert!(err.contains("wireguard = \"own\""), "{err}");
        let bad = format!("{GOOD}[dataplane]\nwireguard = \"own\"\nworkers = 3\n");
        let err = format!("{:#}", parse(&bad, Path::new("o.toml")).unwrap_err());
        assert!(err.contains("use 1 (the default) or 2"), "{err}");
    }

    #[test]
    fn the_wireguard_engine_defaults_by_platform_and_both_round_trip() {
        let s = parse(GOOD, Path::new("o.toml")).unwrap();
        let expected = if cfg!(target_os = "linux") {
            Engine::Own
        } else {
            Engine::Boringtun
        };
        assert_eq!(s.wireguard, expected);
        assert!(!toml::to_string(&s.to_raw()).unwrap().contains("dataplane"));
        for (name, engine) in [("own", Engine::Own), ("boringtun", Engine::Boringtun)] {
            let text = format!("{GOOD}[dataplane]\nwireguard = \"{name}\"\n");
            let s = parse(&text, Path::new("o.toml")).unwrap();
            assert_eq!(s.wireguard, engine);
            let again = toml::to_string(&s.to_raw()).unwrap();
            assert_eq!(parse(&again, Path::new("o.toml")).unwrap(), s, "{again}");
        }
        let bad = format!("{GOOD}[dataplane]\nwireguard = \"kernel\"\n");
        let err = format!("{:#}", parse(&bad, Path::new("o.toml")).unwrap_err());
        assert!(err.contains("`dataplane.wireguard` \"kernel\""), "{err}");
    }
}
