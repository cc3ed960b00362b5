//! The exit codes of every command, defined once, with the `--help` text that documents them,
//! so scripts can tell "the check ran and found something" from "the command could not run".

/// The command did what was asked and found nothing wrong.
pub const OK: u8 = 0;
/// The command could not do its work (bad arguments, missing config, no permission, the node
/// not running); the message on stderr says why and what to do.
pub const ERROR: u8 = 1;
/// The command line itself was wrong (clap's own code for usage errors).
pub const USAGE: u8 = 2;
/// `doctor` ran every check and at least one failed (each FAIL line names the fix).
pub const PROBLEMS_FOUND: u8 = 3;
/// `netcheck` got no STUN answer from the server at all (UDP blocked or the server down; the
/// report says which).
pub const NO_ANSWER: u8 = 4;

/// An error that ends the command with a specific exit code (others end with [`ERROR`]).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

/// The exit code for an error a command returned.
pub fn of(error: &anyhow::Error) -> u8 {
    error.downcast_ref::<Exit>().map_or(ERROR, |e| e.code)
}

/// `--help` of `doctor`.
pub const DOCTOR_HELP: &str = "\
Exit status:
  0  every check passed
  1  doctor could not run (bad arguments)
  2  usage error
  3  problems found: see the FAIL lines, each with its fix";

/// `--help` of `netcheck`.
pub const NETCHECK_HELP: &str = "\
Exit status:
  0  the server answered; the report describes this host's NAT
  1  netcheck could not run (bad arguments, no server to ask)
  2  usage error
  4  no STUN answer at all: the report says whether UDP is blocked (the server answers over
     TCP) or the server is unreachable (TCP fails too); --json still prints the report";

/// `--help` of `status`.
pub const STATUS_HELP: &str = "\
Exit status:
  0  status printed
  1  no node is running, or permission denied (run with sudo: the control socket is root's)
  2  usage error";

/// `--help` of `ping`.
pub const PING_HELP: &str = "\
Exit status:
  0  at least one reply came back
  1  no reply, the peer is offline or unknown, no node is running, or permission denied (run
     with sudo)
  2  usage error";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_error_keeps_its_code_and_others_are_one() {
        let e = anyhow::Error::new(Exit {
            code: PROBLEMS_FOUND,
            message: "2 problems found".into(),
        });
        assert_eq!(of(&e), 3);
        assert_eq!(e.to_string(), "2 problems found");
        assert_eq!(of(&anyhow::anyhow!("boom")), ERROR);
        assert_ne!(OK, ERROR);
        assert_ne!(USAGE, NO_ANSWER);
    }
}
