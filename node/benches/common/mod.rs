//! Helpers shared by the node's benchmarks: each bench target includes this module
//! (`mod common;`), so the copies of its functions stay one.

use std::time::Duration;

/// The `p` quantile (0 to 1) of `sorted` latencies, by nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let i = ((last as f64) * p.clamp(0.0, 1.0)).round() as usize;
    sorted.get(i.min(last)).copied().unwrap_or_default()
}
