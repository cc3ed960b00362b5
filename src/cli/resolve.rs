//! Which network a command means: the one named (positionally or with `--network`), else the
//! only one joined on this host. A name that is not known gets "no network named 'offcie';
//! joined: office" with a did-you-mean, here on the node and in `network ...` on the server, so
//! a typo never silently prints an empty table or "not running".

use crate::config::{self, Dirs};
use anyhow::{bail, Result};

/// Edit distance: insertions, deletions, substitutions and swaps of two neighbours each cost 1
/// (optimal string alignment), since "offcie" for "office" is the commonest typo.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // d[i][j]: distance between the first i chars of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The known name closest to `wanted`, if it is close enough to be a typo of it: at most a third
/// of the name's length away (at least 1, at most 3), or one is a prefix of the other.
pub fn did_you_mean<'a>(wanted: &str, known: &'a [String]) -> Option<&'a str> {
    let limit = (wanted.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(wanted, k), k))
        .filter(|(d, k)| {
            *d <= limit || (!wanted.is_empty() && (k.starts_with(wanted) || wanted.starts_with(*k)))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// "no network named 'offcie'; joined: office; did you mean 'office'?" (`which` says where the
/// known names come from: "joined", "on this server").
pub fn unknown_network(wanted: &str, known: &[String], which: &str) -> String {
    let shown = super::printable::printable(wanted);
    let mut msg = if known.is_empty() {
        format!("no network named '{shown}'; none {which}")
    } else {
        format!("no network named '{shown}'; {which}: {}", known.join(", "))
    };
    if let Some(near) = did_you_mean(wanted, known) {
        msg += &format!("; did you mean '{near}'?");
    }
    msg
}

/// Networks with a config file in the config directory (what `join` wrote), sorted.
pub fn joined_networks(dirs: &Dirs) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&dirs.config)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let net = name.strip_suffix(".toml")?;
            config::validate_network_name(net).ok()?;
            Some(net.to_string())
        })
        .collect();
    names.sort();
    names
}

/// Joined networks plus any running one (a node started with another `--config-dir` still
/// answers on its control socket), sorted, without repeats.
pub fn known_networks(dirs: &Dirs) -> Vec<String> {
    let mut names = joined_networks(dirs);
    // Unreadable (not root): the joined ones are all this can name.
    names.extend(super::node::running_networks(dirs).unwrap_or_default());
    names.sort();
    names.dedup();
    names
}

/// `network` if it is joined or running here, else an error with the joined ones and a guess.
pub fn check_known(network: &str, dirs: &Dirs) -> Result<()> {
    config::validate_network_name(network)
        .map_err(|e| anyhow::anyhow!("{}", unknown_or(network, dirs, &e.to_string())))?;
    if known_networks(dirs).iter().any(|n| n == network) {
        return Ok(());
    }
    bail!("{}", unknown_or(network, dirs, ""));
}

fn unknown_or(network: &str, dirs: &Dirs, rule: &str) -> String {
    let known = known_networks(dirs);
    let mut msg = unknown_network(network, &known, "joined");
    if known.is_empty() {
        msg += &format!(
            " (no config in {}): join one with `p2pvpn join TOKEN`, or point --config-dir \
             (P2PVPN_CONFIG_DIR) at the directory `join` wrote to",
            dirs.config.display()
        );
    }
    if !rule.is_empty() && did_you_mean(network, &known).is_none() {
        msg += &format!(" ({rule})");
    }
    msg
}

/// Like [`check_known`], but a host with no network at all passes: the command then reports
/// its own, more specific, failure ("no configuration for network ... at PATH: join ...").
pub fn check_named(network: &str, dirs: &Dirs) -> Result<()> {
    if known_networks(dirs).is_empty() {
        return config::validate_network_name(network);
    }
    check_known(network, dirs)
}

/// The network a node command works on: `positional` or `flag` (at most one may be given; clap
/// enforces it), else the only joined one. `verb` is the command, for the hint.
pub fn node_network(
    positional: Option<&str>,
    flag: Option<&str>,
    dirs: &Dirs,
    verb: &str,
) -> Result<String> {
    if let Some(name) = positional.or(flag) {
        check_named(name, dirs)?;
        return Ok(name.to_string());
    }
    let joined = joined_networks(dirs);
    match joined.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no network is joined here (no config in {}): join one with `p2pvpn join TOKEN`, or \
             point --config-dir (P2PVPN_CONFIG_DIR) at the directory `join` wrote to",
            dirs.config.display()
        ),
        many => bail!(
            "several networks are joined ({}); say which: `p2pvpn {verb} {}`",
            many.join(", "),
            many[0]
        ),
    }
}

/// The networks `up` brings up: the one named, else every joined one (several run as tasks of
/// one process, see `cli::up_all`). None joined is an error that says how to join.
pub fn up_networks(
    positional: Option<&str>,
    flag: Option<&str>,
    dirs: &Dirs,
) -> Result<Vec<String>> {
    if positional.is_some() || flag.is_some() {
        return Ok(vec![node_network(positional, flag, dirs, "up")?]);
    }
    let joined = joined_networks(dirs);
    if joined.is_empty() {
        // The same message as for one network.
        node_network(None, None, dirs, "up")?;
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("office", "office"), 0);
        assert_eq!(edit_distance("offcie", "office"), 1);
        assert_eq!(edit_distance("ofice", "office"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn a_typo_gets_the_closest_name_and_a_stranger_gets_none() {
        let known = names(&["home", "lab", "office"]);
        assert_eq!(did_you_mean("offcie", &known), Some("office"));
        assert_eq!(did_you_mean("lba", &known), Some("lab"));
        assert_eq!(did_you_mean("off", &known), Some("office"));
        assert_eq!(did_you_mean("engineering", &known), None);
        assert_eq!(did_you_mean("x", &names(&[])), None);
    }

    #[test]
    fn the_message_lists_what_is_joined() {
        let msg = unknown_network("offcie", &names(&["office"]), "joined");
        assert_eq!(
            msg,
            "no network named 'offcie'; joined: office; did you mean 'office'?"
        );
        let msg = unknown_network("x\x1b[2J", &names(&[]), "joined");
        assert!(!msg.contains('\x1b'), "{msg:?}");
    }

    #[test]
    fn the_only_joined_network_is_the_default() {
        let dir = std::env::temp_dir().join(format!("p2pvpn-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dirs = Dirs {
            config: dir.join("etc"),
            state: dir.join("state"),
        };
        let none = node_network(None, None, &dirs, "up")
            .unwrap_err()
            .to_string();
        assert!(none.contains("no network is joined"), "{none}");
        let none = up_networks(None, None, &dirs).unwrap_err().to_string();
        assert!(none.contains("no network is joined"), "{none}");
        // Nothing joined at all: the command itself says what is missing (the config file).
        assert_eq!(
            node_network(Some("office"), None, &dirs, "up").unwrap(),
            "office"
        );
        assert!(check_known("office", &dirs).is_err());
        std::fs::create_dir_all(&dirs.config).unwrap();
        std::fs::write(dirs.config.join("office.toml"), "").unwrap();
        std::fs::write(dirs.config.join("notes.txt"), "").unwrap();
        assert_eq!(node_network(None, None, &dirs, "up").unwrap(), "office");
        let typo = node_network(Some("offcie"), None, &dirs, "up")
            .unwrap_err()
            .to_string();
        assert_eq!(
            typo,
            "no network named 'offcie'; joined: office; did you mean 'office'?"
        );
        std::fs::write(dirs.config.join("home.toml"), "").unwrap();
        let many = node_network(None, None, &dirs, "down")
            .unwrap_err()
            .to_string();
        assert!(
            many.contains("several networks are joined (home, office)"),
            "{many}"
        );
        assert!(many.contains("`p2pvpn down home`"), "{many}");
        assert_eq!(
            node_network(None, Some("home"), &dirs, "up").unwrap(),
            "home"
        );
        // `up` alone means every joined network; a name still means that one only.
        assert_eq!(up_networks(None, None, &dirs).unwrap(), ["home", "office"]);
        assert_eq!(
            up_networks(Some("office"), None, &dirs).unwrap(),
            ["office"]
        );
        assert!(up_networks(Some("offcie"), None, &dirs).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
