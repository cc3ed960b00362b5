//! Logging: the global `-v`/`-q`/`--log-level`/`--log-format` options and the tracing
//! subscriber they configure.
//!
//! Two things make the log readable rather than merely present:
//! - boringtun logs its timer events (`HANDSHAKE(REKEY_TIMEOUT)` every 5 s for a peer that
//!   left, `CONNECTION_EXPIRED`) without saying which peer; the node reports each peer's state
//!   change itself, with the peer's name, so boringtun's own lines are off unless `-vv` asks for
//!   everything.
//! - log lines go through the spinner (`io::progress::around_log`), so on a terminal they never
//!   run into the spinner line.

use anyhow::{Context, Result};
use clap::ValueEnum;
use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The global logging options.
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// More log detail: -v shows debug messages, -vv traces everything (including the
    /// WireGuard library's own timer messages). RUST_LOG, when set, overrides the level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Log only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log level (error, warn, info, debug, trace, or tracing directives such as
    /// p2pvpn=debug); -v and -q take precedence, RUST_LOG overrides both.
    #[arg(long, global = true, default_value = "info", env = "P2PVPN_LOG")]
    pub log_level: String,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Crates whose logs say nothing a user can act on at the normal levels (see the header).
const QUIET_DEPENDENCIES: &str = "boringtun=off";

impl LogArgs {
    /// The filter directives these options ask for (without RUST_LOG).
    pub fn directives(&self) -> String {
        let level = match (self.quiet, self.verbose) {
            (true, _) => "warn",
            (false, 0) => self.log_level.as_str(),
            (false, 1) => "debug",
            (false, _) => return "trace".to_string(),
        };
        // A level that is already "trace", or names boringtun itself, is taken as asked.
        if level == "trace" || level.contains("boringtun") {
            level.to_string()
        } else {
            format!("{level},{QUIET_DEPENDENCIES}")
        }
    }
}

/// Installs the subscriber: RUST_LOG if set, else the options' level, on stderr.
pub fn init(args: &LogArgs) -> Result<()> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => EnvFilter::try_new(args.directives())
            .with_context(|| format!("--log-level {:?} is not a log level", args.log_level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(SpinnerAware)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Makes a [`LogLine`] per event.
struct SpinnerAware;

impl<'a> MakeWriter<'a> for SpinnerAware {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::with_capacity(256))
    }
}

/// One log event, collected whole and written to stderr on drop with the spinner out of the
/// way, so neither a spinner frame nor another event lands in its middle.
struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        crate::io::progress::around_log(|| {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&self.0);
            let _ = err.flush();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    fn directives(args: &[&str]) -> String {
        let mut argv = vec!["p2pvpn"];
        argv.extend_from_slice(args);
        Cli::parse_from(argv).log.directives()
    }

    #[test]
    fn verbosity_flags_pick_the_level() {
        assert_eq!(directives(&[]), "info,boringtun=off");
        assert_eq!(directives(&["-v"]), "debug,boringtun=off");
        assert_eq!(directives(&["-vv"]), "trace");
        assert_eq!(directives(&["-q"]), "warn,boringtun=off");
        assert_eq!(
            directives(&["--log-level", "error", "-v"]),
            "debug,boringtun=off"
        );
        assert_eq!(directives(&["--log-level", "error"]), "error,boringtun=off");
        assert_eq!(
            directives(&["--log-level", "info,boringtun=debug"]),
            "info,boringtun=debug"
        );
        assert!(Cli::try_parse_from(["p2pvpn", "-v", "-q"]).is_err());
    }

    #[test]
    fn boringtun_timer_warnings_are_filtered_at_the_normal_levels() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = seen.clone();
        let make = move || Sink(sink.clone());
        let filter = EnvFilter::try_new(directives(&[])).unwrap_or_else(|e| panic!("{e}"));
        let subscriber = tracing_subscriber::registry().with(filter).with(
            tracing_subscriber::fmt::layer()
                .with_writer(make)
                .with_ansi(false),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "boringtun::noise::timers", "HANDSHAKE(REKEY_TIMEOUT)");
            tracing::warn!(target: "p2pvpn::io::node", "server unreachable");
        });
        let text =
            String::from_utf8_lossy(&seen.lock().unwrap_or_else(|e| e.into_inner())).to_string();
        assert!(!text.contains("REKEY_TIMEOUT"), "{text}");
        assert!(text.contains("server unreachable"), "{text}");
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
