//! The command line's parse, with a short way for `p2pvpn up ...`.
//!
//! A node runs for days, and whatever code it ran once stays mapped (the kernel maps the
//! binary in 64 KiB windows around each page first run; README, "Memory"). clap's derive
//! builds the definition of every subcommand before it parses (about 200 KB of generated code
//! for this command line, run once per start), so a node parsed through `Cli` ran the server's,
//! the network commands' and the access rules' definitions too. `up_only` knows the global
//! options and `up` alone; whenever it does not accept the command line as it is (any error,
//! `--help`, `--version`), the full parse runs and answers exactly as before. The two agree on
//! every command line `up_only` accepts (the tests below compare them), because both are made of
//! the same `LogArgs` and `UpArgs`.

use super::{logging::LogArgs, Cli, Command, UpArgs, VERSION};
use clap::{Parser, Subcommand};
use std::ffi::OsString;

/// `Cli` with no subcommand but `up`.
#[derive(Parser, Debug)]
#[command(name = "p2pvpn", version = VERSION)]
struct UpOnly {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: UpCommand,
}

#[derive(Subcommand, Debug)]
enum UpCommand {
    Up(UpArgs),
}

/// The process's command line, parsed; exits with clap's message and status on an error.
pub(super) fn parse() -> Cli {
    parse_from(std::env::args_os().collect())
}

fn parse_from(args: Vec<OsString>) -> Cli {
    up_only(&args).unwrap_or_else(|| Cli::parse_from(args))
}

/// The command line when it starts with `up` and the short parser takes it as it is.
fn up_only(args: &[OsString]) -> Option<Cli> {
    if args.get(1).is_none_or(|a| a != "up") {
        return None;
    }
    let UpOnly {
        log,
        command: UpCommand::Up(up),
    } = UpOnly::try_parse_from(args).ok()?;
    Some(Cli {
        log,
        command: Command::Up(up),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    /// Every `up` command line the short parser accepts parses as the full one parses it.
    #[test]
    fn the_short_parse_agrees_with_the_full_one() {
        for line in [
            "p2pvpn up",
            "p2pvpn up office",
            "p2pvpn up --network office",
            "p2pvpn up office -v --mtu 1300 --no-portmap --allow-overlap",
            "p2pvpn up --metrics 127.0.0.1:9101 -vv --log-format json",
            "p2pvpn up --config-dir /tmp/c --state-dir /tmp/s --log-level p2pvpn=debug",
            "p2pvpn up -q office",
        ] {
            let short = up_only(&args(line)).unwrap_or_else(|| panic!("not taken: {line}"));
            let full = Cli::try_parse_from(args(line)).expect(line);
            assert_eq!(format!("{short:?}"), format!("{full:?}"), "{line}");
        }
    }

    /// What the short parser does not take goes to the full parse, which answers it: other
    /// commands, options before `up`, help, version and every error.
    #[test]
    fn everything_else_is_left_to_the_full_parse() {
        for line in [
            "p2pvpn status",
            "p2pvpn -v up",
            "p2pvpn up --help",
            "p2pvpn up -h",
            "p2pvpn up --version",
            "p2pvpn up --mtu 100",
            "p2pvpn up a b",
            "p2pvpn up --network a b",
            "p2pvpn up --bogus",
            "p2pvpn up -v -q",
            "p2pvpn",
        ] {
            assert!(up_only(&args(line)).is_none(), "taken: {line}");
        }
    }
}
