//! The one thread that changes the guard once the edge is serving.
//!
//! Capabilities are per thread on Linux. After `--user` (see `privileges`) only the thread that
//! dropped root holds CAP_NET_ADMIN; tokio's workers and its blocking pool hold none, and an
//! `nft` they exec has none either (a non-root process passes a capability through execve only
//! from the exec'ing thread's ambient set). So every guard change after setup (the pin sets on
//! each lease set, the removal at a clean stop) runs on this thread, which the dropping thread
//! spawns right after the drop: a new thread starts with its creator's credentials, the kept
//! capability included. One thread also applies the changes in the order they were asked for.

use std::sync::mpsc;

use ipnet::IpNet;
use tokio::sync::oneshot;

use super::{Guard, GuardError};

/// The thread's name, as `/proc/PID/task/TID/status` shows it (15 bytes at most).
pub const THREAD_NAME: &str = "grantwire-guard";

type Job<G> = Box<dyn FnOnce(&mut G) + Send>;

/// A handle on the guard's thread. The thread ends when the last handle is dropped.
pub struct GuardThread<G> {
    jobs: mpsc::Sender<Job<G>>,
}

impl<G> Clone for GuardThread<G> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<G: Guard + Send + 'static> GuardThread<G> {
    /// Starts the thread with the calling thread's credentials. Call it from the thread that
    /// holds the capability the guard needs, after any privilege drop.
    pub fn spawn(guard: G) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job<G>>();
        std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                let mut guard = guard;
                for job in queue {
                    job(&mut guard);
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the guard's thread, after every job asked for before it, and returns what
    /// it returned.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut G) -> R + Send + 'static,
    ) -> Result<R, GuardError> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Box::new(move |guard| {
                // The asker may have stopped waiting (an aborted task): the job is done anyway.
                let _ = answer.send(job(guard));
            }))
            .map_err(|_| GuardError::ThreadGone)?;
        answered.await.map_err(|_| GuardError::ThreadGone)
    }

    /// [`Guard::set_pins`] on the guard's thread.
    pub async fn set_pins(&self, pins: Vec<IpNet>) -> Result<(), GuardError> {
        self.run(move |guard| guard.set_pins(&pins)).await?
    }

    /// [`Guard::remove`] on the guard's thread.
    pub async fn remove(&self) -> Result<(), GuardError> {
        self.run(|guard| guard.remove()).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{FakeGuard, GuardSpec};

    /// Records which thread each change ran on.
    #[derive(Default)]
    struct Recorder {
        fake: FakeGuard,
        threads: Vec<Option<String>>,
        history: Vec<Vec<IpNet>>,
    }

    impl Guard for Recorder {
        fn install(&mut self, spec: &GuardSpec) -> Result<(), GuardError> {
            self.fake.install(spec)
        }

        fn remove(&mut self) -> Result<(), GuardError> {
            self.threads
                .push(std::thread::current().name().map(str::to_owned));
            self.fake.remove()
        }

        fn set_pins(&mut self, pins: &[IpNet]) -> Result<(), GuardError> {
            self.threads
                .push(std::thread::current().name().map(str::to_owned));
            self.history.push(pins.to_vec());
            self.fake.set_pins(pins)
        }
    }

    fn pins(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_change_runs_on_the_guard_thread_in_the_order_asked() {
        let thread = GuardThread::spawn(Recorder::default()).unwrap();
        // Asked from several tasks (tokio's workers), as the edge's tasks do.
        let mut asks = Vec::new();
        for i in 0..20u8 {
            let thread = thread.clone();
            let set = pins(&[&format!("192.0.2.{i}/32")]);
            asks.push(tokio::spawn(async move { thread.set_pins(set).await }));
        }
        for ask in asks {
            ask.await.unwrap().unwrap();
        }
        // In order from one asker: each one waits for the one before.
        thread.set_pins(pins(&["198.51.100.1/32"])).await.unwrap();
        thread.set_pins(pins(&[])).await.unwrap();
        thread.remove().await.unwrap();

        let recorded = thread
            .run(|r| (r.threads.clone(), r.history.clone(), r.fake.removals))
            .await
            .unwrap();
        let (threads, history, removals) = recorded;
        assert_eq!(threads.len(), 23);
        assert!(
            threads.iter().all(|t| t.as_deref() == Some(THREAD_NAME)),
            "{threads:?}"
        );
        assert_eq!(history[20..], [pins(&["198.51.100.1/32"]), pins(&[])]);
        assert_eq!(removals, 1);
    }

    #[tokio::test]
    async fn a_guard_error_comes_back_to_the_asker() {
        struct Refusing;
        impl Guard for Refusing {
            fn install(&mut self, _: &GuardSpec) -> Result<(), GuardError> {
                Err(GuardError::NotPermitted)
            }
            fn remove(&mut self) -> Result<(), GuardError> {
                Err(GuardError::NotPermitted)
            }
            fn set_pins(&mut self, _: &[IpNet]) -> Result<(), GuardError> {
                Err(GuardError::Nft("no such set".into()))
            }
        }
        let thread = GuardThread::spawn(Refusing).unwrap();
        let err = thread.set_pins(vec![]).await.unwrap_err();
        assert!(
            matches!(err, GuardError::Nft(ref m) if m == "no such set"),
            "{err:?}"
        );
        let err = thread.remove().await.unwrap_err();
        assert!(matches!(err, GuardError::NotPermitted), "{err:?}");
    }

    #[tokio::test]
    async fn a_dead_thread_is_an_error_not_a_hang() {
        let thread = GuardThread::spawn(FakeGuard::default()).unwrap();
        let err = thread
            .run::<()>(|_| panic!("the guard's job panicked"))
            .await
            .unwrap_err();
        assert!(matches!(err, GuardError::ThreadGone), "{err:?}");
        let err = thread.remove().await.unwrap_err();
        assert!(matches!(err, GuardError::ThreadGone), "{err:?}");
    }
}
