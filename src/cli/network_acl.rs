//! `p2pvpn network tag` and `p2pvpn network acl`: members' tags and the network's access rules
//! (`core::acl::rule` for the format). A running server sends each node its share within about a
//! second (it polls the store's `data_version`).

use super::printable::printable;
use super::ServerDir;
use crate::core::acl::rule::{PolicyFile, Rule};
use crate::store::Store;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum AclAction {
    /// Print the rules, numbered, and the members' tags.
    List {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// Add an allow rule, e.g. `tcp 22 from tag:admin to tag:server`, `icmp from * to bob`,
    /// `udp 5000-5010,53 from alice,tag:ops to *`, `any from tag:ops to tag:db`. The first
    /// rule switches the network from "allow all" to "allow only what a rule allows".
    Add {
        /// PROTO [PORTS] from WHO to WHOM (quoted or as separate words).
        #[arg(required = true, num_args = 1..)]
        rule: Vec<String>,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// Remove rule number N (see `list`); removing the last rule allows all again.
    Remove {
        number: usize,
        #[command(flatten)]
        dir: ServerDir,
    },
    /// Replace all rules with those of a TOML policy file (`[[allow]]` tables with `from`,
    /// `to`, `proto`, `ports`); an empty file removes every rule.
    Load {
        file: PathBuf,
        #[command(flatten)]
        dir: ServerDir,
    },
}

fn open(dir: &Path, network: &str) -> Result<Store> {
    super::network::open_network(dir, network)
}

/// `network tag NAME MEMBER TAG...`: replaces the member's tags (none: removes them all).
pub fn tag(network: &str, member: &str, tags: &[String], dir: &ServerDir) -> Result<()> {
    let store = open(&dir.state_dir, network)?;
    let tags: Vec<String> = tags
        .iter()
        .map(|t| t.strip_prefix("tag:").unwrap_or(t).to_string())
        .collect();
    let name = store.set_tags(network, member, &tags)?;
    if tags.is_empty() {
        println!("{} has no tags now", printable(&name));
    } else {
        println!("{} is tagged {}", printable(&name), tags.join(", "));
    }
    Ok(())
}

pub fn acl(network: &str, action: AclAction) -> Result<()> {
    match action {
        AclAction::List { json, dir } => list(&open(&dir.state_dir, network)?, network, json),
        AclAction::Add { rule, dir } => {
            let text = rule.join(" ");
            let rule: Rule = text.parse()?;
            let store = open(&dir.state_dir, network)?;
            let first = store.rules_of(network)?.is_empty();
            let n = store.add_rule(network, &rule)?;
            println!("rule {n} of {network}: allow {rule}");
            if first {
                println!(
                    "{network} now allows only what its rules allow (replies to allowed \
                     connections always pass)"
                );
            }
            Ok(())
        }
        AclAction::Remove { number, dir } => {
            let store = open(&dir.state_dir, network)?;
            let rule = store.remove_rule(network, number)?;
            println!("removed rule {number} of {network}: allow {rule}");
            if store.rules_of(network)?.is_empty() {
                println!("{network} has no rules now: everything is allowed again");
            }
            Ok(())
        }
        AclAction::Load { file, dir } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the policy file {}", file.display()))?;
            let policy: PolicyFile = toml::from_str(&text).with_context(|| {
                format!(
                    "{} is not a policy file: write `[[allow]]` tables with from = [...], to = \
                     [...], proto = \"tcp\", ports = [22]",
                    file.display()
                )
            })?;
            policy.validate()?;
            let store = open(&dir.state_dir, network)?;
            store.replace_rules(network, &policy.allow)?;
            println!(
                "{network} now has {} rule(s) from {}",
                policy.allow.len(),
                file.display()
            );
            Ok(())
        }
    }
}

fn list(store: &Store, network: &str, json: bool) -> Result<()> {
    let rules = store.rules_of(network)?;
    let tags = store.tags_of(network)?;
    let members = store.members_of(network)?;
    let tagged: Vec<(String, Vec<String>)> = members
        .iter()
        .filter_map(|m| tags.get(&m.public_key).map(|t| (m.name.clone(), t.clone())))
        .collect();
    if json {
        let value = serde_json::json!({
            "network": network,
            "enforced": !rules.is_empty(),
            "rules": rules.iter().enumerate().map(|(i, r)| serde_json::json!({
                "number": i + 1,
                "rule": r.to_string(),
                "from": r.from,
                "to": r.to,
                "proto": r.proto,
                "ports": r.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "tags": tagged.iter().map(|(n, t)| serde_json::json!({"member": n, "tags": t}))
                .collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if rules.is_empty() {
        println!("{network} has no access rules: every member may reach every other");
    } else {
        println!("{:<4} RULE (allow)", "#");
        for (i, r) in rules.iter().enumerate() {
            println!("{:<4} {r}", i + 1);
        }
    }
    for (name, t) in tagged {
        println!("tag  {}: {}", printable(&name), t.join(", "));
    }
    Ok(())
}
