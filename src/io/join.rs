//! Drives one join exchange over TCP: try each server in the token in turn (plain addresses,
//! then TLS ones), with timeouts, and turn the answer into a clear result.

use crate::core::keys::SecretKey;
use crate::core::rendezvous::client::{JoinExchange, Joined, ServerAddr};
use crate::core::rendezvous::token::JoinToken;
use anyhow::{anyhow, bail, Result};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const STEP_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn join(token: &JoinToken, secret: &SecretKey, name: &str) -> Result<Joined> {
    // The same order as the running node: TLS only when no plain address answers.
    let servers = ServerAddr::list(&token.servers, &token.tls_servers);
    match super::dial::first_reachable(servers, STEP_TIMEOUT).await {
        Ok(stream) => exchange(stream, token, secret, name).await,
        Err(errors) => bail!(
            "cannot reach the server ({}); check that `p2pvpn server` runs there and that TCP to \
             that port is allowed",
            errors.join("; ")
        ),
    }
}

async fn exchange<S>(
    mut stream: S,
    token: &JoinToken,
    secret: &SecretKey,
    name: &str,
) -> Result<Joined>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ex = JoinExchange::new(secret, token, name)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(bytes) = ex.take_outgoing() {
            stream.write_all(&bytes).await?;
        }
        // TLS may hold the last record back until flushed; plain TCP ignores this.
        stream.flush().await?;
        let n = match tokio::time::timeout(STEP_TIMEOUT, stream.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(anyhow!("lost the server during the join: {e}")),
            Err(_) => bail!("the server did not answer the join within {STEP_TIMEOUT:?}"),
        };
        if n == 0 {
            bail!(
                "the server closed the connection during the join: its identity does not match \
                 the key in the token (was the server's state directory recreated?); ask for a \
                 new token"
            );
        }
        match ex.handle_bytes(&buf[..n])? {
            None => continue,
            Some(Ok(joined)) => return Ok(joined),
            Some(Err(refusal)) => bail!("join refused: {refusal}"),
        }
    }
}
