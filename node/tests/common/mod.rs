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

/// Sends the node's `debug` events to the test's captured output, so that a failure in CI
/// shows what the nodes did (the test harness prints captured output only for failures).
/// `RUST_LOG` overrides the filter. Safe to call from every test.
pub fn trace_to_test_output() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("lienthong_node=debug,info"));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
