//! Helpers shared by the node's integration tests.

use std::future::Future;
use std::time::Duration;

/// How often a condition on durable or network state is re-checked while waiting for it.
pub const RECHECK: Duration = Duration::from_millis(25);

/// Waits until `check` holds, re-checking it every [`RECHECK`]; panics naming `what` after
/// `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    tokio::time::timeout(within, async {
        while !check().await {
            tokio::time::sleep(RECHECK).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}
