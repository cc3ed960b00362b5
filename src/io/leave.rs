//! Drives one leave exchange over TCP (`p2pvpn leave`): the node's servers in order, plain then
//! TLS, with timeouts, like `join`.

use crate::config::NodeSettings;
use crate::core::keys::SecretKey;
use crate::core::rendezvous::client::ServerAddr;
use crate::core::rendezvous::leave::LeaveExchange;
use crate::core::rendezvous::messages::Refusal;
use anyhow::{anyhow, bail, Result};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the server to forget this node: true when it did, false when it had no such member
/// (removed there already); an error says why it could not (unreachable, refused).
pub async fn leave(settings: &NodeSettings, secret: &SecretKey) -> Result<bool> {
    let servers = ServerAddr::list(&settings.servers, &settings.tls_servers);
    match super::dial::first_reachable(servers, STEP_TIMEOUT).await {
        Ok(stream) => exchange(stream, settings, secret).await,
        Err(errors) => bail!("cannot reach the server ({})", errors.join("; ")),
    }
}

async fn exchange<S>(mut stream: S, settings: &NodeSettings, secret: &SecretKey) -> Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ex = LeaveExchange::new(secret, &settings.server_key, &settings.network)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(bytes) = ex.take_outgoing() {
            stream.write_all(&bytes).await?;
        }
        stream.flush().await?;
        let n = match tokio::time::timeout(STEP_TIMEOUT, stream.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(anyhow!("lost the server: {e}")),
            Err(_) => bail!("the server did not answer within {STEP_TIMEOUT:?}"),
        };
        if n == 0 {
            bail!(
                "the server closed the connection (an older server that does not know `leave`, \
                 or not the server this node joined)"
            );
        }
        match ex.handle_bytes(&buf[..n])? {
            None => continue,
            Some(Ok(())) => return Ok(true),
            Some(Err(Refusal::NotAMember { .. })) => return Ok(false),
            Some(Err(refusal)) => bail!("the server refused: {refusal}"),
        }
    }
}
