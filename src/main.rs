//! The `p2pvpn` binary: parses the command line and reports errors with their causes.

fn main() -> std::process::ExitCode {
    match p2pvpn::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(p2pvpn::cli::exit_code::of(&e))
        }
    }
}
