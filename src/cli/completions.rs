//! `p2pvpn completions SHELL`: the script clap_complete generates from the command definition
//! (so it never falls behind the real options), plus completion of network names: after
//! `--network` and as the NETWORK argument of `up`, `down`, `status` and `leave`, the shell asks
//! `p2pvpn network-names` (a hidden subcommand listing the joined networks) at completion time.

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

/// Subcommands whose first argument is a network name.
const NETWORK_FIRST: &[&str] = &["up", "down", "status", "leave"];

/// bash: wrap the generated `_p2pvpn` in a function that answers network names itself and
/// leaves everything else to it; the later `complete` line replaces the generated one.
fn bash_extra() -> String {
    format!(
        r#"
# Network names come from the joined networks (`p2pvpn network-names`).
_p2pvpn_with_networks() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev=""
    if ((COMP_CWORD > 0)); then prev="${{COMP_WORDS[COMP_CWORD-1]}}"; fi
    if [[ "$prev" == "--network" ]] ||
        [[ $COMP_CWORD -eq 2 && "$cur" != -* && " {first} " == *" ${{COMP_WORDS[1]}} "* ]]; then
        COMPREPLY=($(compgen -W "$(p2pvpn network-names 2>/dev/null)" -- "$cur"))
        return 0
    fi
    _p2pvpn "$@"
}}
complete -F _p2pvpn_with_networks -o bashdefault -o default p2pvpn
"#,
        first = NETWORK_FIRST.join(" ")
    )
}

/// fish: extra candidates for the same options and arguments (fish merges them).
fn fish_extra() -> String {
    let names = "(p2pvpn network-names 2>/dev/null)";
    let mut out = String::from("\n# Network names come from the joined networks.\n");
    for sub in ["up", "down", "status", "doctor", "ping", "netcheck"] {
        out += &format!(
            "complete -c p2pvpn -n \"__fish_p2pvpn_using_subcommand {sub}\" -l network -f -a \
             \"{names}\"\n"
        );
    }
    for sub in NETWORK_FIRST {
        out += &format!(
            "complete -c p2pvpn -n \"__fish_p2pvpn_using_subcommand {sub}\" -f -a \"{names}\"\n"
        );
    }
    out
}

/// zsh: the generated specs complete NETWORK values with `_default` (files); point them at a
/// function that offers the joined networks instead. The function goes right after `#compdef`.
fn zsh_patch(script: &str) -> String {
    let helper = "\n_p2pvpn_networks() {\n    local -a names\n    names=(${(f)\"$(p2pvpn \
                  network-names 2>/dev/null)\"})\n    compadd -a names\n}\n";
    let body = script.replace(":NETWORK:_default'", ":NETWORK:_p2pvpn_networks'");
    let body = patch_zsh_positionals(&body);
    match body.split_once('\n') {
        Some((first, rest)) => format!("{first}\n{helper}{rest}"),
        None => body,
    }
}

/// Positional NETWORK arguments look like `'::network_name -- The network ...:_default'`.
fn patch_zsh_positionals(script: &str) -> String {
    script
        .lines()
        .map(|line| {
            let positional =
                line.starts_with("'::network_name -- ") || line.starts_with("':network -- ");
            match line.strip_suffix(":_default' \\") {
                Some(head) if positional => format!("{head}:_p2pvpn_networks' \\"),
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The completion script for `shell` with network names completed dynamically.
pub fn script(shell: Shell) -> String {
    // Generated into memory first: clap_complete panics on a failed write.
    let mut raw = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "p2pvpn", &mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    match shell {
        Shell::Bash => raw + &bash_extra(),
        Shell::Fish => raw + &fish_extra(),
        Shell::Zsh => zsh_patch(&raw),
        _ => raw,
    }
}

/// Writes the completion script for `shell`.
pub fn write_completions(shell: Shell, out: &mut dyn std::io::Write) -> Result<()> {
    super::man::quiet_on_broken_pipe(out.write_all(script(shell).as_bytes()))
        .context("writing the completion script")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_asks_for_network_names() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell);
            assert!(s.contains("p2pvpn network-names"), "{shell}");
        }
        let zsh = script(Shell::Zsh);
        assert!(zsh.starts_with("#compdef p2pvpn\n"), "{zsh}");
        // --network of up, down, status, doctor, ping, netcheck and the positional of up, down,
        // status, leave.
        let uses = zsh.matches(":_p2pvpn_networks'").count();
        assert!(uses >= 10, "only {uses} network completions in:\n{zsh}");
        assert!(!zsh.contains(":NETWORK:_default'"), "{zsh}");
    }
}
