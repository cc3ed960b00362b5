//! Changes pushed from the PostgreSQL store: the server keeps one async connection that LISTENs
//! on the store's change channel (`store_pg::CHANGES_CHANNEL`, notified by triggers at commit) and
//! wakes the server loop on each notification, so a change made through another server or a
//! `network` command reaches this server's nodes within milliseconds instead of on the next 1 s
//! store tick. The tick stays as the fallback (and the heartbeat); a lost connection is opened
//! again with backoff, and the tick's re-read covers what was missed in between.

use crate::store_pg::tls::Connector;
use crate::store_pg::CHANGES_CHANNEL;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, NoTls, Socket};

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Starts the listener; the receiver yields once per batch of notifications (coalesced).
pub fn spawn(url: String, connector: Connector) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut backoff = BACKOFF_MIN;
        loop {
            let result = match &connector {
                Connector::Plain => listen(&url, NoTls, &tx).await,
                Connector::Tls(make) => listen(&url, make.clone(), &tx).await,
            };
            match result {
                Ok(()) => return, // the server loop is gone
                Err(e) => tracing::warn!(
                    error = %e,
                    "lost the store's change notifications; polling each second until they are back"
                ),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    });
    rx
}

/// One connection's life: LISTEN, then forward notifications until it breaks (`Err`) or the
/// receiver is dropped (`Ok`).
async fn listen<T>(url: &str, tls: T, tx: &mpsc::Sender<()>) -> Result<(), String>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut conn) = tokio_postgres::connect(url, tls)
        .await
        .map_err(|e| e.to_string())?;
    // The connection object does the I/O: poll it while the LISTEN runs.
    let command = format!("LISTEN {CHANGES_CHANNEL}");
    let listen = client.batch_execute(&command);
    tokio::pin!(listen);
    loop {
        tokio::select! {
            done = &mut listen => { done.map_err(|e| e.to_string())?; break; }
            m = std::future::poll_fn(|cx| conn.poll_message(cx)) => match m {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the connection closed".into()),
            }
        }
    }
    tracing::info!("listening for the store's change notifications");
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(_))) => {
                if tx.is_closed() {
                    return Ok(());
                }
                // Full: a wake-up is already pending, which covers this change too.
                let _ = tx.try_send(());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the connection closed".into()),
        }
    }
}
