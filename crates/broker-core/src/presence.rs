//! Which edges hold an open sync stream right now, and which stream of an edge is the current
//! one. In memory only: after a restart every edge reconnects, and "connected" means connected
//! to this process.
//!
//! One stream per edge credential: a new stream replaces the old one, which ends. An edge
//! whose old connection died without a FIN (a NAT dropped it) reconnects at once, and the
//! broker must not keep pushing sets into the dead one until TCP notices; and a copied
//! credential used by a second host shows up as streams replacing each other in the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct Presence {
    open: Mutex<HashMap<i64, Slot>>,
    /// Stream numbers, unique for the life of the process.
    next: AtomicU64,
}

#[derive(Debug)]
struct Slot {
    open: usize,
    /// The number of the edge's newest stream.
    current: watch::Sender<u64>,
}

impl Presence {
    /// Counts a stream of `edge_id` as open until the guard is dropped, and makes it the
    /// edge's current stream: any older one learns it was replaced ([`PresenceGuard::replaced`]).
    pub fn connect(self: &Arc<Self>, edge_id: i64) -> PresenceGuard {
        let number = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut map = self.lock();
        let slot = map.entry(edge_id).or_insert_with(|| Slot {
            open: 0,
            current: watch::Sender::new(number),
        });
        slot.open += 1;
        slot.current.send_replace(number);
        let current = slot.current.subscribe();
        drop(map);
        PresenceGuard {
            presence: Arc::clone(self),
            edge_id,
            number,
            current,
        }
    }

    pub fn is_connected(&self, edge_id: i64) -> bool {
        self.lock().get(&edge_id).is_some_and(|s| s.open > 0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Slot>> {
        // The map holds plain counters, consistent after any panic.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One open stream; dropping it (the stream ended or the client hung up) counts it closed.
#[derive(Debug)]
pub struct PresenceGuard {
    presence: Arc<Presence>,
    edge_id: i64,
    number: u64,
    current: watch::Receiver<u64>,
}

impl PresenceGuard {
    /// Resolves once a newer stream of the same edge has connected (at once if one already
    /// has).
    pub async fn replaced(&mut self) {
        let number = self.number;
        // An error means the slot is gone, which cannot happen while this guard counts in
        // it; waiting forever is then the safe answer (the stream ends by other means).
        if self.current.wait_for(|n| *n != number).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let mut map = self.presence.lock();
        if let Some(slot) = map.get_mut(&self.edge_id) {
            slot.open = slot.open.saturating_sub(1);
            if slot.open == 0 {
                map.remove(&self.edge_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn ready(fut: impl Future<Output = ()>) -> bool {
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        fut.as_mut().poll(&mut cx) == Poll::Ready(())
    }

    #[test]
    fn a_stream_counts_until_dropped() {
        let p = Arc::new(Presence::default());
        let a = p.connect(1);
        let b = p.connect(1);
        assert!(p.is_connected(1));
        assert!(!p.is_connected(2));
        drop(a);
        assert!(p.is_connected(1));
        drop(b);
        assert!(!p.is_connected(1));
    }

    #[test]
    fn a_newer_stream_of_the_same_edge_replaces_the_older_only() {
        let p = Arc::new(Presence::default());
        let mut old = p.connect(1);
        let mut other_edge = p.connect(2);
        assert!(!ready(old.replaced()), "alone, a stream is current");
        let mut new = p.connect(1);
        assert!(ready(old.replaced()), "the older stream is replaced");
        assert!(!ready(new.replaced()), "the newest stream stays current");
        assert!(
            !ready(other_edge.replaced()),
            "another edge's stream is untouched"
        );
        drop(old);
        assert!(p.is_connected(1));
        assert!(!ready(new.replaced()));
    }
}
