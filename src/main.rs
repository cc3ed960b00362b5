//! The `p2pvpn` binary: parses the command line and reports errors with their causes.

// Only in `scripts/pgo.sh`'s instrumented build: the training's profile, phase by phase.
#[cfg(p2pvpn_pgo_phases)]
mod pgo_training;
#[cfg(not(p2pvpn_pgo_phases))]
mod pgo_training {
    pub fn install() {}
}

fn main() -> std::process::ExitCode {
    quiet_broken_pipe();
    pgo_training::install();
    match p2pvpn::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(p2pvpn::cli::exit_code::of(&e))
        }
    }
}

/// `p2pvpn network acl office list --json | head -3`: the reader went away. Rust ignores
/// SIGPIPE, so `println!` panics on EPIPE and would print a panic message; end quietly instead,
/// with the status a shell gives a process that SIGPIPE ended (128 + 13), as other tools do.
/// Sockets are not affected: only a failed print to stdout ends the process.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
