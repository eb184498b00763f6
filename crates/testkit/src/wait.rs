//! Waiting on conditions with deadlines (never fixed sleeps).

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 100 ms until it returns `Some`, or fails with `what` and the last
/// observation after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let mut last;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}; last observation: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
