//! The node's local control channel (`status`, `down`, `ping PEER SEQ`): one request line in,
//! one reply out. The request language and the answering live here; the channel itself is per
//! OS: a Unix socket of mode 0600 with the peer's uid checked (`unix.rs`), a named pipe whose
//! DACL admits only Administrators and SYSTEM on Windows (`windows.rs`). Both are named by
//! `Dirs::control_socket` (`STATE/NETWORK/control.sock`; on Windows the pipe's name is derived
//! from that path).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;

/// Whether a node answers on `path` right now (without sending it a request).
pub use os::answers_now;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Status,
    Down,
    /// One ICMP echo to a peer (name or virtual address) from the node itself; the reply is a
    /// `PingReply` as JSON, "timeout" or "error: ...".
    Ping {
        peer: String,
        seq: u16,
    },
}

/// How long a ping request waits for its echo reply before the answer is "timeout".
pub const PING_TIMEOUT: std::time::Duration = crate::core::node::PING_TIMEOUT;

impl Request {
    fn as_line(&self) -> String {
        match self {
            Request::Status => "status\n".to_string(),
            Request::Down => "down\n".to_string(),
            Request::Ping { peer, seq } => format!("ping {peer} {seq}\n"),
        }
    }

    fn parse(line: &str) -> Option<Request> {
        let mut words = line.split_whitespace();
        let request = match words.next()? {
            "status" => Request::Status,
            "down" => Request::Down,
            "ping" => Request::Ping {
                peer: words.next()?.to_string(),
                seq: words.next()?.parse().ok()?,
            },
            _ => return None,
        };
        words.next().is_none().then_some(request)
    }
}

pub struct ControlRequest {
    pub request: Request,
    pub reply: oneshot::Sender<String>,
}

/// Ends the channel (and removes the socket file, on Unix) when the node stops.
pub struct SocketGuard {
    path: PathBuf,
    accept: tokio::task::JoinHandle<()>,
    /// Closes when the accept loop and every answering task have ended (each holds a sender).
    answering: mpsc::Receiver<()>,
}

impl SocketGuard {
    /// Stops taking requests and waits (bounded) until the replies already given to the
    /// answering tasks are written: the node calls this last, so the reply to `down` reaches
    /// the caller instead of dying with the process.
    pub async fn finish(mut self) {
        self.accept.abort();
        let _ = (&mut self.accept).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.answering.recv()).await;
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.accept.abort();
        os::remove(&self.path);
    }
}

/// Opens the channel (refusing if another node already answers on it) and serves requests.
pub async fn serve(
    path: &Path,
    network: &str,
    requests: mpsc::Sender<ControlRequest>,
) -> Result<SocketGuard> {
    let (alive, answering) = mpsc::channel::<()>(1);
    let accept = os::listen(path, network, requests, alive).await?;
    Ok(SocketGuard {
        path: path.to_path_buf(),
        accept,
        answering,
    })
}

/// The refusal when a node already answers on `path`.
fn already_running(path: &Path, network: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "p2pvpn is already running for network {network:?} (it answers on {}); stop it first \
         with `p2pvpn down --network {network}`",
        path.display()
    )
}

/// Answers one connection: reads its request line, hands it to the node, writes the reply.
async fn answer<S>(stream: S, requests: mpsc::Sender<ControlRequest>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut line = String::new();
    BufReader::new(read.take(256)).read_line(&mut line).await?;
    let Some(request) = Request::parse(&line) else {
        write
            .write_all(format!("error: unknown request {:?}\n", line.trim()).as_bytes())
            .await?;
        return Ok(());
    };
    let is_ping = matches!(request, Request::Ping { .. });
    let (tx, rx) = oneshot::channel();
    requests.send(ControlRequest { request, reply: tx }).await?;
    let reply = if is_ping {
        // The node forgets unanswered pings on its own; dropping `rx` here tells it so sooner.
        match tokio::time::timeout(PING_TIMEOUT, rx).await {
            Ok(r) => r.unwrap_or_else(|_| "stopping\n".to_string()),
            Err(_) => "timeout\n".to_string(),
        }
    } else {
        rx.await.unwrap_or_else(|_| "stopping\n".to_string())
    };
    write.write_all(reply.as_bytes()).await?;
    write.flush().await?;
    Ok(())
}

/// Networks whose node answers under the state directory `state` (a `NAME/control.sock` in
/// it), sorted. A state directory this user may not read is an error that says to use sudo,
/// never an empty list: "no network is running" would be false while one runs.
pub fn running_networks(state: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(state) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(os::permission_denied(state))
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", state.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", state.display()))?;
        let socket = entry.path().join("control.sock");
        match os::exists(&socket) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(os::permission_denied(&entry.path()))
            }
            Err(_) => continue,
        }
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Sends one request to the node for `network` and returns its reply.
pub async fn request(path: &Path, network: &str, request: Request) -> Result<String> {
    let mut stream = match os::connect(path).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(os::permission_denied(path))
        }
        Err(_) => bail!(
            "p2pvpn is not running for network {network:?} (nothing answers on {}); start it \
             with `p2pvpn up --network {network}`",
            path.display()
        ),
    };
    stream.write_all(request.as_line().as_bytes()).await?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            // A named pipe whose server closed after its reply reads as a broken pipe, not as
            // end of file: the reply is complete all the same.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("reading the node's reply"),
        }
    }
    String::from_utf8(reply).context("the node's reply is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_their_lines() {
        for r in [
            Request::Status,
            Request::Down,
            Request::Ping {
                peer: "bob".into(),
                seq: 9,
            },
        ] {
            assert_eq!(Request::parse(&r.as_line()), Some(r));
        }
        assert_eq!(Request::parse("ping bob"), None);
        assert_eq!(Request::parse("ping bob x"), None);
        assert_eq!(Request::parse("ping bob 1 2"), None);
        assert_eq!(Request::parse("reboot"), None);
    }
}
