//! Tests of one module at a time (see the crate's doc).

use std::sync::{Condvar, Mutex, MutexGuard};

/// Tests of the same module run side by side (as they did in one binary); a test of another
/// module waits until none of them is left. libtest starts tests in name order, so a module's
/// tests come together and the waiting is only at module borders.
pub struct Gate {
    running: Mutex<Running>,
    changed: Condvar,
}

/// Which module's tests are running, how many of them, and how many tests of other modules wait.
struct Running {
    module: Option<&'static str>,
    tests: usize,
    waiting: usize,
}

static GATE: Gate = Gate::new();

/// Held for the whole of a test of `module` (pass `module_path!()`).
pub fn one_module_at_a_time(module: &'static str) -> Alone<'static> {
    GATE.enter(module)
}

#[must_use = "the test runs alone only while this is held"]
pub struct Alone<'a>(&'a Gate);

impl Gate {
    const fn new() -> Self {
        Self {
            running: Mutex::new(Running {
                module: None,
                tests: 0,
                waiting: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, Running> {
        // The state is two counters and a name, never left half-changed: a panic elsewhere that
        // poisoned the lock must not fail every later test.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self, module: &'static str) -> Alone<'_> {
        let mut state = self.state();
        while state.module.is_some_and(|m| m != module) {
            state.waiting += 1;
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting -= 1;
        }
        state.module = Some(module);
        state.tests += 1;
        Alone(self)
    }
}

impl Drop for Alone<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.tests -= 1;
        if state.tests == 0 {
            state.module = None;
            self.0.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn another_module_waits_until_the_last_test_of_the_first_has_ended() {
        let gate = Gate::new();
        let first = gate.enter("it::e2e");
        let second = gate.enter("it::e2e");
        let entered = AtomicBool::new(false);
        std::thread::scope(|s| {
            let other = s.spawn(|| {
                let _alone = gate.enter("it::flood");
                entered.store(true, Ordering::SeqCst);
            });
            while gate.state().waiting == 0 && !entered.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            drop(first);
            assert!(!entered.load(Ordering::SeqCst), "one e2e test still runs");
            assert_eq!(gate.state().waiting, 1);
            drop(second);
            other.join().unwrap();
        });
        assert!(entered.load(Ordering::SeqCst));
        assert_eq!(gate.state().module, None);
    }
}
