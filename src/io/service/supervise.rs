//! Several networks' nodes as tasks of one process, for a service manager that supervises a
//! single process: the Windows service (`windows_scm.rs`) and `p2pvpn up` with several joined
//! networks (`all_networks.rs`, also the systemd unit `p2pvpn.service`) bring them up this way. Each network runs the same function as `p2pvpn up`; this module only decides what the
//! service manager is told:
//! - "running" once every network has reported ready (registered, adapter up: the same moment
//!   a systemd unit sends READY=1), with a progress report every `tick` while it waits;
//! - a failure when a network ends with an error or (with `Limits::slow_start_fails`) does not
//!   come up within `start_timeout` (like the systemd unit's TimeoutStartSec), after stopping
//!   the others, so that the manager's restart-on-failure brings the whole set back; without
//!   it, "running" for the others once `start_timeout` passed, the slow one still trying;
//! - a clean stop when the manager asks for one (every node removes its interface).
//!
//! A network stopped on purpose (`p2pvpn down NETWORK`) stays down; the others keep running
//! (and with `Limits::exit_when_all_stopped`, the process ends once none is left).
//! Written without any OS call so that the tests exercise it with stand-in networks.

use anyhow::{anyhow, Result};
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::{JoinSet, LocalSet};
use tokio::time::Instant;

/// One network's node, as `p2pvpn up` runs it.
pub type NodeFuture = std::pin::Pin<Box<dyn Future<Output = Result<()>>>>;

/// What the service runs: the joined networks, and how to bring one up.
pub struct ServiceBody {
    pub networks: Vec<String>,
    pub up: Box<dyn Fn(String) -> NodeFuture + Send>,
}

tokio::task_local! {
    /// The network a node task runs, and where it reports readiness (see [`mark_ready`]).
    static READY: (String, mpsc::UnboundedSender<String>);
}

/// Called by a node when it is ready (`service::ready`): inside a supervised task it tells the
/// supervisor and returns true; anywhere else (plain `p2pvpn up NETWORK`) it returns false.
pub fn mark_ready() -> bool {
    READY
        .try_with(|(network, tx)| {
            let _ = tx.send(network.clone());
        })
        .is_ok()
}

/// Whether the caller runs as one of several supervised networks: the supervisor, not the
/// node, then speaks for the process to the service manager (one READY=1 for all of them).
pub fn supervised() -> bool {
    READY.try_with(|_| ()).is_ok()
}

/// What the service manager is told while the networks start and stop.
pub trait Reporter {
    /// Still starting, waiting for these networks (called every `tick`).
    fn starting(&mut self, waiting_for: &[String]);
    /// Every network is up (or there is none).
    fn running(&mut self);
    /// Running although these networks are not up yet: the start timeout passed and
    /// `Limits::slow_start_fails` is off (they keep trying). By default the same as `running`.
    fn running_without(&mut self, _still_starting: &[String]) {
        self.running();
    }
    /// Stopping: the nodes are removing their interfaces.
    fn stopping(&mut self);
}

/// How long to wait, and how often to report while waiting.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub start_timeout: Duration,
    pub tick: Duration,
    pub stop_timeout: Duration,
    /// End (Ok) once every network was stopped with `p2pvpn down` (the foreground `up`); else
    /// stay idle until the manager's stop (the Windows service, which must keep running).
    pub exit_when_all_stopped: bool,
    /// A network not up within `start_timeout` fails the whole set (the Windows service); when
    /// false the others are reported running and it keeps trying, as `up NETWORK` does for an
    /// unreachable server (systemd: a restart loop would take the healthy networks down too).
    pub slow_start_fails: bool,
}

/// Runs `up(network)` for every network until `stop` resolves or one of them fails; on the way
/// out calls `request_stop` (which makes every node leave its loop, as Ctrl-C does for `up`) and
/// waits up to `stop_timeout` for them. Ok after a requested stop; the first failure otherwise.
pub async fn supervise<F, Fut>(
    networks: Vec<String>,
    up: F,
    stop: impl Future<Output = ()>,
    request_stop: impl Fn(),
    reporter: &mut impl Reporter,
    limits: Limits,
) -> Result<()>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<()>> + 'static,
{
    // Local tasks: a node's future is not Send (and need not be, on one thread).
    let local = LocalSet::new();
    local
        .run_until(async move {
            let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<String>();
            let mut tasks = JoinSet::new();
            let mut waiting: BTreeSet<String> = BTreeSet::new();
            for network in networks {
                waiting.insert(network.clone());
                let node = up(network.clone());
                let scope = (network.clone(), ready_tx.clone());
                tasks.spawn_local(READY.scope(scope, async move { (network, node.await) }));
            }
            drop(ready_tx);
            let failure = run(
                &mut tasks,
                &mut waiting,
                &mut ready_rx,
                stop,
                reporter,
                limits,
            )
            .await;
            reporter.stopping();
            request_stop();
            let drained = tokio::time::timeout(limits.stop_timeout, async {
                while let Some(joined) = tasks.join_next().await {
                    match joined {
                        Ok((network, Err(e))) => {
                            tracing::warn!("network {network} stopped with an error: {e:#}")
                        }
                        Ok((network, Ok(()))) => tracing::info!("network {network} stopped"),
                        Err(e) => tracing::warn!("a network's task ended abnormally: {e}"),
                    }
                }
            })
            .await;
            if drained.is_err() {
                // Dropping a node's future drops its TUN device too, which removes the adapter.
                tracing::warn!(
                    "networks still running after {:?}; aborting them",
                    limits.stop_timeout
                );
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
            failure.map_or(Ok(()), Err)
        })
        .await
}

/// The supervision loop: returns the failure that ends it, or None after a requested stop.
async fn run(
    tasks: &mut JoinSet<(String, Result<()>)>,
    waiting: &mut BTreeSet<String>,
    ready_rx: &mut mpsc::UnboundedReceiver<String>,
    stop: impl Future<Output = ()>,
    reporter: &mut impl Reporter,
    limits: Limits,
) -> Option<anyhow::Error> {
    tokio::pin!(stop);
    let started = Instant::now();
    let mut running = false;
    let mut tick = tokio::time::interval(limits.tick);
    loop {
        if !running && waiting.is_empty() {
            running = true;
            reporter.running();
        }
        if limits.exit_when_all_stopped && tasks.is_empty() {
            tracing::info!("every network was stopped");
            return None;
        }
        tokio::select! {
            // A signal reaches the nodes too, and they end at once: seen first, it is the
            // requested stop it is, not a string of networks stopped one by one.
            biased;
            _ = &mut stop => return None,
            Some(network) = ready_rx.recv() => {
                waiting.remove(&network);
            }
            Some(joined) = tasks.join_next() => match joined {
                Ok((network, Ok(()))) => {
                    // `p2pvpn down NETWORK`: stopped on purpose, nothing to wait for.
                    tracing::info!("network {network} was stopped; the others keep running");
                    waiting.remove(&network);
                }
                Ok((network, Err(e))) => return Some(e.context(format!("network {network}"))),
                Err(e) => return Some(anyhow!("a network's task ended abnormally: {e}")),
            },
            _ = tick.tick(), if !running => {
                let names: Vec<String> = waiting.iter().cloned().collect();
                if started.elapsed() >= limits.start_timeout && !limits.slow_start_fails {
                    tracing::warn!(
                        "{} not up after {} s; the other networks are ready, these keep trying \
                         (is the server reachable? see the lines above for each one's last step)",
                        names.join(", "),
                        limits.start_timeout.as_secs()
                    );
                    running = true;
                    reporter.running_without(&names);
                    continue;
                }
                if started.elapsed() >= limits.start_timeout {
                    return Some(anyhow!(
                        "{} did not come up within {} s (is the server reachable? see the lines \
                         above for each network's last step)",
                        names.join(", "),
                        limits.start_timeout.as_secs()
                    ));
                }
                reporter.starting(&names);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use tokio::sync::watch;

    #[derive(Default)]
    struct Log(Vec<String>);

    impl Reporter for Log {
        fn starting(&mut self, waiting_for: &[String]) {
            self.0.push(format!("starting {}", waiting_for.join(",")));
        }
        fn running(&mut self) {
            self.0.push("running".into());
        }
        fn running_without(&mut self, still_starting: &[String]) {
            self.0
                .push(format!("running without {}", still_starting.join(",")));
        }
        fn stopping(&mut self) {
            self.0.push("stopping".into());
        }
    }

    const LIMITS: Limits = Limits {
        start_timeout: Duration::from_secs(60),
        tick: Duration::from_secs(5),
        stop_timeout: Duration::from_secs(10),
        exit_when_all_stopped: false,
        slow_start_fails: true,
    };

    /// A stand-in node: ready after `ready_after` (never when None), then runs until the stop
    /// flag, or fails after `fail_after`; records that it stopped.
    async fn node(
        ready_after: Option<u64>,
        fail_after: Option<u64>,
        mut stop: watch::Receiver<bool>,
        stopped: Rc<RefCell<Vec<String>>>,
        name: String,
    ) -> Result<()> {
        if let Some(s) = ready_after {
            tokio::time::sleep(Duration::from_secs(s)).await;
            mark_ready();
        }
        let fail = async {
            match fail_after {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {
                stopped.borrow_mut().push(name);
                Ok(())
            }
            _ = fail => anyhow::bail!("cannot create TUN device"),
        }
    }

    struct Case {
        /// (name, ready after s, fail after s)
        nets: Vec<(&'static str, Option<u64>, Option<u64>)>,
        /// The manager's stop after this many seconds.
        stop_after: u64,
    }

    async fn supervise_case(case: Case) -> (Result<()>, Vec<String>, Vec<String>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = Rc::new(RefCell::new(Vec::new()));
        let plan: std::collections::HashMap<String, (Option<u64>, Option<u64>)> = case
            .nets
            .iter()
            .map(|(n, r, f)| (n.to_string(), (*r, *f)))
            .collect();
        let names = case.nets.iter().map(|(n, _, _)| n.to_string()).collect();
        let mut log = Log::default();
        let stopped2 = stopped.clone();
        let result = supervise(
            names,
            |name| {
                let (r, f) = plan[&name];
                node(r, f, stop_rx.clone(), stopped2.clone(), name)
            },
            tokio::time::sleep(Duration::from_secs(case.stop_after)),
            || {
                stop_tx.send_replace(true);
            },
            &mut log,
            LIMITS,
        )
        .await;
        let mut stopped = stopped.borrow().clone();
        stopped.sort();
        (result, log.0, stopped)
    }

    #[tokio::test(start_paused = true)]
    async fn running_only_after_every_network_is_ready_then_a_clean_stop() {
        let (result, log, stopped) = supervise_case(Case {
            nets: vec![("home", Some(2), None), ("office", Some(7), None)],
            stop_after: 30,
        })
        .await;
        result.unwrap();
        // At t=0 both are waiting, at t=5 only office; running after office at t=7.
        assert_eq!(
            log,
            [
                "starting home,office",
                "starting office",
                "running",
                "stopping"
            ]
        );
        assert_eq!(stopped, ["home", "office"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_network_that_fails_fails_the_service_and_stops_the_others() {
        let (result, log, stopped) = supervise_case(Case {
            nets: vec![("home", Some(1), None), ("office", Some(1), Some(20))],
            stop_after: 300,
        })
        .await;
        let err = format!("{:#}", result.unwrap_err());
        assert_eq!(err, "network office: cannot create TUN device");
        assert_eq!(log.last().map(String::as_str), Some("stopping"));
        assert!(log.contains(&"running".to_string()));
        assert_eq!(stopped, ["home"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_network_that_never_comes_up_times_out_the_start() {
        let (result, log, stopped) = supervise_case(Case {
            nets: vec![("home", Some(1), None), ("office", None, None)],
            stop_after: 600,
        })
        .await;
        let err = format!("{:#}", result.unwrap_err());
        assert!(
            err.starts_with("office did not come up within 60 s"),
            "{err}"
        );
        assert!(!log.contains(&"running".to_string()), "{log:?}");
        assert_eq!(stopped, ["home", "office"]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_slow_start_fails_the_others_run_and_the_slow_one_keeps_trying() {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = Rc::new(RefCell::new(Vec::new()));
        let mut log = Log::default();
        let limits = Limits {
            slow_start_fails: false,
            ..LIMITS
        };
        let result = supervise(
            vec!["home".to_string(), "office".to_string()],
            |name| {
                let ready = (name == "home").then_some(1);
                node(ready, None, stop_rx.clone(), stopped.clone(), name)
            },
            tokio::time::sleep(Duration::from_secs(600)),
            || {
                stop_tx.send_replace(true);
            },
            &mut log,
            limits,
        )
        .await;
        result.unwrap();
        assert_eq!(log.0.last().map(String::as_str), Some("stopping"));
        assert!(
            log.0.contains(&"running without office".to_string()),
            "{:?}",
            log.0
        );
        assert!(!log.0.contains(&"running".to_string()), "{:?}", log.0);
        let mut stopped = stopped.borrow().clone();
        stopped.sort();
        assert_eq!(stopped, ["home", "office"]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_network_joined_is_running_and_idle_until_stopped() {
        let (result, log, stopped) = supervise_case(Case {
            nets: vec![],
            stop_after: 3,
        })
        .await;
        result.unwrap();
        assert_eq!(log, ["running", "stopping"]);
        assert!(stopped.is_empty());
    }

    /// Two networks that come up and are then stopped with `down` (at 3 s and 5 s); the
    /// manager's stop comes at 300 s. Returns when supervise returned, and its result.
    async fn all_downed(exit_when_all_stopped: bool) -> (Duration, Result<()>) {
        let started = Instant::now();
        let mut log = Log::default();
        let limits = Limits {
            exit_when_all_stopped,
            ..LIMITS
        };
        let result = supervise(
            vec!["home".to_string(), "office".to_string()],
            |name| async move {
                assert!(supervised());
                assert!(mark_ready());
                let secs = if name == "home" { 3 } else { 5 };
                tokio::time::sleep(Duration::from_secs(secs)).await;
                Ok(())
            },
            tokio::time::sleep(Duration::from_secs(300)),
            || {},
            &mut log,
            limits,
        )
        .await;
        (started.elapsed(), result)
    }

    #[tokio::test(start_paused = true)]
    async fn up_ends_once_every_network_was_downed_and_the_service_stays() {
        let (took, result) = all_downed(true).await;
        result.unwrap();
        assert_eq!(took.as_secs(), 5);
        let (took, result) = all_downed(false).await;
        result.unwrap();
        assert_eq!(took.as_secs(), 300);
    }

    #[test]
    fn mark_ready_outside_a_supervised_task_does_nothing() {
        assert!(!mark_ready());
        assert!(!supervised());
    }
}
