//! The Windows service `p2pvpn` (installed by the .msi, started by the service control
//! manager as `p2pvpn.exe service run`): one process that brings up every joined network under
//! `%ProgramData%\p2pvpn` with the same node code as `p2pvpn up` (see `supervise.rs`), reports
//! Running only once all of them are up, and on Stop or system Shutdown stops every node, which
//! removes its wintun adapter, before reporting Stopped.
//!
//! Recovery: the program sets its own failure actions (restart after 5 s, 30 s, then every
//! 60 s; failure count reset after a day; also on a non-crash failure, i.e. Stopped with an
//! error code) each time it starts, through ChangeServiceConfig2 (`update_failure_actions`).
//! The .msi cannot: wixl has no support for the MSIServiceConfigFailureActions table.

use super::supervise::{self, Limits, Reporter, ServiceBody};
use crate::io::signals;
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::windows::io::AsRawHandle;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod, ServiceState, ServiceStatus,
    ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::Console::{
    GetStdHandle, SetStdHandle, STD_ERROR_HANDLE, STD_HANDLE, STD_OUTPUT_HANDLE,
};

/// The service's name, as the .msi's ServiceInstall registers it (`sc query p2pvpn`).
pub const SERVICE_NAME: &str = "p2pvpn";

/// The systemd unit's TimeoutStartSec, and a progress report (and SCM checkpoint) every 5 s.
const LIMITS: Limits = Limits {
    start_timeout: Duration::from_secs(120),
    tick: Duration::from_secs(5),
    stop_timeout: Duration::from_secs(20),
    exit_when_all_stopped: false,
    slow_start_fails: true,
};

/// The stack of the thread that runs the nodes.
const NODE_STACK: usize = 16 << 20;

/// ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: the process was not started by the SCM.
const NOT_STARTED_BY_SCM: i32 = 1063;

/// The service-specific exit code of a failed run, which triggers the recovery actions.
const EXIT_FAILED: u32 = 1;

/// Handed from `run_service` to `service_main`, which the SCM calls on its own thread with no
/// way to pass data; and the outcome back.
static BODY: Mutex<Option<ServiceBody>> = Mutex::new(None);
static OUTCOME: Mutex<Option<Result<()>>> = Mutex::new(None);

define_windows_service!(ffi_service_main, service_main);

/// Sends the output to `log` (a service has no console), calls `init_log` (the tracing
/// subscriber, which writes to stderr), connects to the SCM and runs the service until it
/// stops. Fails at once, with a message that says what to do, when started from a prompt
/// instead of by the SCM (the output is then back on the prompt).
pub fn run_service(
    log: &Path,
    init_log: impl FnOnce() -> Result<()>,
    body: ServiceBody,
) -> Result<()> {
    // Without its log the service still runs (and from a prompt the message below is what
    // matters), so a log that cannot be opened is a warning, not the end.
    let output = redirect_output(log);
    init_log()?;
    let _output = match output {
        Ok(guard) => Some(guard),
        Err(e) => {
            tracing::warn!("p2pvpn service: no log file: {e:#}");
            None
        }
    };
    *BODY.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(|e| match e {
        windows_service::Error::Winapi(io) if io.raw_os_error() == Some(NOT_STARTED_BY_SCM) => {
            anyhow!(
                "`p2pvpn service run` is what the Windows service control manager starts; it \
                 does not run from a prompt. Start the service with `sc start {SERVICE_NAME}`, \
                 or run one network in the foreground with `p2pvpn up NETWORK`"
            )
        }
        e => anyhow!(e).context("cannot connect to the Windows service control manager"),
    })?;
    OUTCOME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or(Ok(()))
}

fn service_main(_args: Vec<OsString>) {
    let result = serve();
    *OUTCOME.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
}

fn serve() -> Result<()> {
    let body = BODY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .context("the service was started twice in one process")?;
    let handle = service_control_handler::register(SERVICE_NAME, |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            tracing::info!("p2pvpn service: {control:?} requested; stopping every network");
            signals::request_stop();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })
    .context("cannot register the service control handler")?;
    let mut scm = Scm {
        handle,
        checkpoint: 0,
    };
    scm.set(
        ServiceState::StartPending,
        LIMITS.tick * 2,
        ServiceExitCode::NO_ERROR,
    );
    match set_recovery_actions() {
        Ok(()) => tracing::info!(
            "p2pvpn service: recovery actions set (restart after 5 s, 30 s, then every 60 s)"
        ),
        Err(e) => tracing::warn!(
            "p2pvpn service: cannot set all of the recovery actions (a failure may not \
             restart the service): {e:#}"
        ),
    }
    tracing::info!(
        "p2pvpn service: bringing up {}",
        if body.networks.is_empty() {
            "no network (none is joined; join one, then restart the service)".to_string()
        } else {
            body.networks.join(", ")
        }
    );
    // On a thread of our own with a known stack: the SCM's thread has the default 1 MiB, and
    // the nodes' futures (large in a debug build) run on the stack of the thread that polls
    // them.
    let (result, mut scm) = std::thread::Builder::new()
        .name("p2pvpn-service".into())
        .stack_size(NODE_STACK)
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")
                .and_then(|runtime| {
                    runtime.block_on(supervise::supervise(
                        body.networks,
                        body.up,
                        signals::stop_requested(),
                        signals::request_stop,
                        &mut scm,
                        LIMITS,
                    ))
                });
            (result, scm)
        })
        .context("cannot start the service's thread")?
        .join()
        .map_err(|_| anyhow!("the service's thread panicked"))?;
    // Logged before Stopped is reported: the SCM may end the process right after that.
    let exit = match &result {
        Ok(()) => ServiceExitCode::NO_ERROR,
        Err(e) => {
            tracing::error!("p2pvpn service: {e:#}");
            ServiceExitCode::ServiceSpecific(EXIT_FAILED)
        }
    };
    tracing::info!("p2pvpn service: stopped");
    scm.set(ServiceState::Stopped, Duration::ZERO, exit);
    result
}

/// Restart on failure, set by the program itself (see the header).
fn set_recovery_actions() -> Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("connecting to the service control manager")?;
    // SERVICE_START too: a restart action is refused without it.
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::CHANGE_CONFIG | ServiceAccess::START,
        )
        .context("opening the service's configuration")?;
    let restart = |secs| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
            reboot_msg: None,
            command: None,
            // The last action repeats for every later failure.
            actions: Some(vec![restart(5), restart(30), restart(60)]),
        })
        .context("ChangeServiceConfig2(SERVICE_CONFIG_FAILURE_ACTIONS)")?;
    // A run that ends with an error code (a network failed) counts as a failure too, not only
    // a crash.
    service
        .set_failure_actions_on_non_crash_failures(true)
        .context("ChangeServiceConfig2(SERVICE_CONFIG_FAILURE_ACTIONS_FLAG)")?;
    Ok(())
}

/// What the SCM is told (`sc query p2pvpn` shows it).
struct Scm {
    handle: service_control_handler::ServiceStatusHandle,
    checkpoint: u32,
}

impl Scm {
    fn set(&mut self, state: ServiceState, wait_hint: Duration, exit_code: ServiceExitCode) {
        let pending = matches!(
            state,
            ServiceState::StartPending | ServiceState::StopPending
        );
        self.checkpoint = if pending { self.checkpoint + 1 } else { 0 };
        // The SCM delivers no control to a pending service anyway; Running takes Stop and the
        // system's Shutdown.
        let controls_accepted = if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        };
        let status = ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted,
            exit_code,
            checkpoint: self.checkpoint,
            wait_hint,
            process_id: None,
        };
        if let Err(e) = self.handle.set_service_status(status) {
            tracing::warn!("p2pvpn service: cannot report {state:?} to the SCM: {e}");
        }
    }
}

impl Reporter for Scm {
    fn starting(&mut self, waiting_for: &[String]) {
        tracing::info!("p2pvpn service: waiting for {}", waiting_for.join(", "));
        self.set(
            ServiceState::StartPending,
            LIMITS.tick * 2,
            ServiceExitCode::NO_ERROR,
        );
    }

    fn running(&mut self) {
        tracing::info!("p2pvpn service: running");
        self.set(
            ServiceState::Running,
            Duration::ZERO,
            ServiceExitCode::NO_ERROR,
        );
    }

    fn stopping(&mut self) {
        tracing::info!("p2pvpn service: stopping");
        self.set(
            ServiceState::StopPending,
            LIMITS.stop_timeout + Duration::from_secs(5),
            ServiceExitCode::NO_ERROR,
        );
    }
}

/// A service has no console: its stdout (the node's progress lines) and stderr (the log) go to
/// `log` instead, appended, until the guard is dropped. The previous log is kept as `.old` once
/// it passes 8 MiB, so the file cannot grow without bound across restarts.
fn redirect_output(log: &Path) -> Result<OutputGuard> {
    if let Some(dir) = log.parent() {
        crate::os::ensure_private_dir(dir)?;
    }
    if std::fs::metadata(log).is_ok_and(|m| m.len() > 8 << 20) {
        let _ = std::fs::rename(log, log.with_extension("log.old"));
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open the service log {}", log.display()))?;
    let handle = file.as_raw_handle() as HANDLE;
    let mut guard = OutputGuard {
        previous: Vec::new(),
        _file: file,
    };
    for which in [STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
        // SAFETY: plain Win32 calls; `handle` stays open as long as the guard holds the file,
        // and the guard puts the previous handle back before it closes it.
        let previous = unsafe { GetStdHandle(which) };
        if unsafe { SetStdHandle(which, handle) } == 0 {
            bail!(
                "cannot send the service's output to {}: {}",
                log.display(),
                std::io::Error::last_os_error()
            );
        }
        guard.previous.push((which, previous));
    }
    Ok(guard)
}

/// Puts stdout and stderr back when dropped (so that an error reaches the prompt).
struct OutputGuard {
    previous: Vec<(STD_HANDLE, HANDLE)>,
    _file: File,
}

impl Drop for OutputGuard {
    fn drop(&mut self) {
        for (which, previous) in self.previous.drain(..) {
            // SAFETY: restores the handle that was in place before `redirect_output`.
            unsafe { SetStdHandle(which, previous) };
        }
    }
}
