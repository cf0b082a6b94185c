//! Change events from the database: `LISTEN stackfed_containers` on a connection of its
//! own, reconnecting after any failure.

use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{Change, PostgresStore, CHANNEL};
use crate::name::{AccountName, ContainerName};

fn decode_hex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Parses a payload `hex(account)/hex(container)`; `None` for anything else.
pub(super) fn parse_payload(payload: &str) -> Option<Change> {
    let (a, c) = payload.split_once('/')?;
    Some(Change::Record {
        account: AccountName::new(decode_hex(a)?).ok()?,
        container: ContainerName::new(decode_hex(c)?).ok()?,
    })
}

impl PostgresStore {
    /// Listens for record changes until dropped, calling `on_change` for each. Every
    /// (re)connection is announced as [`Change::Resync`] once `LISTEN` is in place, so
    /// a caller that drops everything on `Resync` never keeps a record changed while
    /// nobody listened. Reconnects after a failure with a backoff from 50 ms up to 2 s.
    ///
    /// Spawn it on the owner of the process's background tasks; it never returns.
    pub fn watch<F>(&self, on_change: F) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        F: Fn(Change) + Send + Sync + 'static,
    {
        let config = self.pg.clone();
        let timeout = self.timeout;
        async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                match listen_once(&config, timeout, &on_change).await {
                    Ok(()) => {
                        tracing::warn!("PostgreSQL change feed closed; reconnecting");
                        backoff = Duration::from_millis(50);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "PostgreSQL change feed failed; reconnecting")
                    }
                }
                // Whatever happens next, changes may be missed until we listen again.
                on_change(Change::Resync);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn listen_once<F>(
    config: &tokio_postgres::Config,
    timeout: Duration,
    on_change: &F,
) -> Result<(), tokio_postgres::Error>
where
    F: Fn(Change) + Send + Sync,
{
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {CHANNEL}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    // A silent server (a half-open connection) is noticed by a periodic ping.
    let mut ping = tokio::time::interval(timeout.max(Duration::from_secs(1)));
    ping.tick().await;
    loop {
        tokio::select! {
            r = &mut listen, if !listening => {
                r?;
                listening = true;
                tracing::info!(channel = CHANNEL, "listening for record changes");
                on_change(Change::Resync);
            }
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(n))) => match parse_payload(n.payload()) {
                    Some(change) => on_change(change),
                    None => tracing::warn!(payload = n.payload(), "unreadable change notification"),
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            _ = ping.tick(), if listening => {
                // Driven by `messages`: the reply arrives through the same connection.
                let alive = tokio::select! {
                    r = tokio::time::timeout(timeout, client.simple_query("")) => matches!(r, Ok(Ok(_))),
                    m = messages.next() => match m {
                        Some(Ok(AsyncMessage::Notification(n))) => {
                            if let Some(change) = parse_payload(n.payload()) { on_change(change) }
                            true
                        }
                        Some(Ok(_)) => true,
                        Some(Err(e)) => return Err(e),
                        None => return Ok(()),
                    },
                };
                if !alive {
                    tracing::warn!("PostgreSQL change feed: no answer to a ping");
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_or_are_refused() {
        assert_eq!(
            parse_payload("415554485f78/66c3b6"),
            Some(Change::Record {
                account: AccountName::new("AUTH_x").unwrap(),
                container: ContainerName::new("fö").unwrap(),
            })
        );
        for bad in ["", "nohex", "41/", "/41", "4/41", "zz/41", "41/ff", "41/2f"] {
            assert_eq!(parse_payload(bad), None, "{bad:?}");
        }
    }
}
