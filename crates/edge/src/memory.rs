//! Gives freed memory back to the system after the lease set shrinks (see
//! [`grantwire_edge_core::memory`]): without it the edge stays at the size of the largest set it
//! ever held. Runs beside the data plane, never in it: it follows the lease count the data
//! plane publishes, and the release (a walk over the heap) runs on a blocking thread.

use std::time::Duration;

use grantwire_edge_core::memory::{release_free_memory, ShrinkTrim};
use tokio::sync::watch;
use tracing::debug;

use crate::metrics::Snapshot;

/// How long after the count fell to wait before releasing: the other holders of the old set
/// (the lease cache writer, the guard's pin update) drop their copies within it, and a burst
/// of sets (a revocation storm) ends in one release.
pub const SETTLE: Duration = Duration::from_millis(500);

/// Follows the data plane's snapshots until their sender is gone.
pub async fn release_after_shrink(mut snapshots: watch::Receiver<Snapshot>) {
    let mut trim = ShrinkTrim::default();
    while snapshots.changed().await.is_ok() {
        let leases = snapshots.borrow_and_update().leases;
        if !trim.observe(leases) {
            continue;
        }
        tokio::time::sleep(SETTLE).await;
        match tokio::task::spawn_blocking(release_free_memory).await {
            Ok(released) => debug!(leases, released, "freed memory returned to the system"),
            Err(e) => debug!(error = %e, "releasing freed memory failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ends_with_the_data_plane_and_survives_a_shrink() {
        let (tx, rx) = watch::channel(Snapshot::default());
        let task = tokio::spawn(release_after_shrink(rx));
        for leases in [5_000, 0, 3_000] {
            tx.send_replace(Snapshot {
                leases,
                ..Snapshot::default()
            });
            tokio::task::yield_now().await;
        }
        drop(tx);
        tokio::time::timeout(SETTLE * 4, task)
            .await
            .expect("the task ends when the data plane's sender goes")
            .expect("no panic");
    }
}
