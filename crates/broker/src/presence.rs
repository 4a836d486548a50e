//! Which edges hold an open sync stream right now. In memory only: after a restart every edge
//! reconnects, and "connected" means connected to this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Default)]
pub struct Presence {
    open: Mutex<HashMap<i64, usize>>,
}

impl Presence {
    /// Counts a stream of `edge_id` as open until the guard is dropped.
    pub fn connect(self: &Arc<Self>, edge_id: i64) -> PresenceGuard {
        *self.lock().entry(edge_id).or_insert(0) += 1;
        PresenceGuard {
            presence: Arc::clone(self),
            edge_id,
        }
    }

    pub fn is_connected(&self, edge_id: i64) -> bool {
        self.lock().get(&edge_id).is_some_and(|n| *n > 0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, usize>> {
        // The map holds plain counters, consistent after any panic.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One open stream; dropping it (the stream ended or the client hung up) counts it closed.
#[derive(Debug)]
pub struct PresenceGuard {
    presence: Arc<Presence>,
    edge_id: i64,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let mut map = self.presence.lock();
        if let Some(n) = map.get_mut(&self.edge_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.edge_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
