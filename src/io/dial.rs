//! The connection for a one-shot control exchange (`join`, `leave`): the servers in the order
//! the running node tries them (`ServerAddr::list`: plain, then TLS), each step under a timeout.
//! The first that answers wins; what went wrong with the others is kept to explain a failure.

use super::stream::CONNECT_TIMEOUT;
use super::tls;
use crate::core::rendezvous::client::ServerAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A control stream, plain TCP or TLS: the exchanges only read and write bytes.
pub trait ControlStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ControlStream for T {}

/// Connects to the first of `servers` that answers, allowing `tls_timeout` for a TLS handshake.
/// On failure, one line per server saying what happened there.
pub async fn first_reachable(
    servers: Vec<ServerAddr>,
    tls_timeout: Duration,
) -> Result<Box<dyn ControlStream>, Vec<String>> {
    let mut errors = Vec::new();
    for server in servers {
        if !errors.is_empty() {
            tracing::info!(%server, "trying the next server address");
        }
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server.addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    errors.push(format!("{server}: {e}"));
                    continue;
                }
                Err(_) => {
                    errors.push(format!("{server}: no answer within {CONNECT_TIMEOUT:?}"));
                    continue;
                }
            };
        if !server.tls {
            return Ok(Box::new(stream));
        }
        match tokio::time::timeout(tls_timeout, tls::connect(stream, server.addr)).await {
            Ok(Ok(stream)) => return Ok(Box::new(stream)),
            Ok(Err(e)) => errors.push(format!("{server}: TLS handshake failed: {e}")),
            Err(_) => errors.push(format!("{server}: no TLS handshake within {tls_timeout:?}")),
        }
    }
    Err(errors)
}
