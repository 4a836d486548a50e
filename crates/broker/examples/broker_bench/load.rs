//! Load shapes (a closed loop of N workers, an open loop at an offered rate, one request at a
//! time), the samples they collect, and the CPU time the broker and the generator spend.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grantwire_proto::{PrivateKey, PublicKey};
use rand::RngCore as _;
use reqwest::{Client, RequestBuilder};
use tokio::sync::{watch, Barrier};
use tokio::task::{JoinHandle, JoinSet};

/// Builds one request; the number is the worker (closed loop) or the sequence (open loop).
pub type MakeRequest = Arc<dyn Fn(&Client, usize) -> RequestBuilder + Send + Sync>;

/// Answers by HTTP status, each with when it completed (since the start) and how long it took.
#[derive(Debug, Default)]
pub struct Samples {
    by_status: BTreeMap<u16, Vec<(Duration, Duration)>>,
    /// First response body per status, for saying why a request was refused.
    pub first_body: BTreeMap<u16, String>,
    /// Requests without an HTTP answer (connect, TLS, reset).
    pub failed: u64,
    pub first_failure: Option<String>,
    /// Length of the measured window.
    pub window: Duration,
}

impl Samples {
    pub fn count(&self, status: u16) -> usize {
        self.by_status.get(&status).map_or(0, Vec::len)
    }

    /// Latencies of the answers with `status`, sorted.
    pub fn latencies(&self, status: u16) -> Vec<Duration> {
        let mut v: Vec<Duration> = self
            .by_status
            .get(&status)
            .map(|s| s.iter().map(|(_, lat)| *lat).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Answers with `status` per second completed between `from` and `to` into the window.
    pub fn rate_between(&self, status: u16, from: Duration, to: Duration) -> f64 {
        let n = self.by_status.get(&status).map_or(0, |s| {
            s.iter().filter(|(at, _)| *at >= from && *at < to).count()
        });
        n as f64 / (to - from).as_secs_f64()
    }

    /// Statuses other than `expected`, as "429: 12, 500: 1".
    pub fn others(&self, expected: &[u16]) -> String {
        let mut parts: Vec<String> = self
            .by_status
            .iter()
            .filter(|(status, _)| !expected.contains(status))
            .map(|(status, v)| format!("{status}: {}", v.len()))
            .collect();
        if self.failed > 0 {
            parts.push(format!("no answer: {}", self.failed));
        }
        parts.join(", ")
    }

    fn record(&mut self, at: Duration, lat: Duration, answer: Result<(u16, String), String>) {
        match answer {
            Ok((status, body)) => {
                self.by_status.entry(status).or_default().push((at, lat));
                self.first_body.entry(status).or_insert(body);
            }
            Err(e) => {
                self.failed += 1;
                self.first_failure.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Samples) {
        for (status, v) in other.by_status {
            self.by_status.entry(status).or_default().extend(v);
        }
        for (status, body) in other.first_body {
            self.first_body.entry(status).or_insert(body);
        }
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }
}

/// `concurrency` workers sending back to back for `duration` (and at most `max_requests` in
/// all). Each worker first opens its connection with `warmup` (a cheap request), so TLS
/// handshakes fall outside the window.
pub async fn closed_loop(
    client: &Client,
    warmup: &str,
    concurrency: usize,
    duration: Duration,
    max_requests: u64,
    make: MakeRequest,
) -> Samples {
    let barrier = Arc::new(Barrier::new(concurrency + 1));
    let sent = Arc::new(AtomicU64::new(0));
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let mut workers = JoinSet::new();
    for worker in 0..concurrency {
        let (client, warmup, make) = (client.clone(), warmup.to_owned(), make.clone());
        let (barrier, sent, mut start_rx) = (barrier.clone(), sent.clone(), start_rx.clone());
        workers.spawn(async move {
            let _ = answer(client.get(&warmup)).await;
            barrier.wait().await;
            let mut samples = Samples::default();
            let start = start_rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|s| *s);
            let Some(start) = start else { return samples };
            let deadline = start + duration;
            while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < max_requests {
                let t0 = Instant::now();
                let result = answer(make(&client, worker)).await;
                let t1 = Instant::now();
                samples.record(t1 - start, t1 - t0, result);
            }
            samples
        });
    }
    barrier.wait().await;
    let start = Instant::now();
    start_tx.send_replace(Some(start));
    let mut all = Samples::default();
    while let Some(done) = workers.join_next().await {
        if let Ok(samples) = done {
            all.merge(samples);
        }
    }
    all.window = start.elapsed();
    all
}

/// Requests offered at `per_sec` regardless of how fast they are answered (an open loop, as a
/// flood of clients behaves), until [`OpenLoop::finish`].
pub struct OpenLoop {
    stop: watch::Sender<bool>,
    task: JoinHandle<(Samples, u64)>,
}

impl OpenLoop {
    pub fn start(client: Client, per_sec: u32, make: MakeRequest) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let period = Duration::from_secs(1) / per_sec.max(1);
            // Burst: a late tick is made up at once, so the offered rate holds on average.
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let start = Instant::now();
            let mut in_flight = JoinSet::new();
            let mut all = Samples::default();
            let mut offered = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let req = make(&client, usize::try_from(offered).unwrap_or(0));
                        offered += 1;
                        in_flight.spawn(async move {
                            let t0 = Instant::now();
                            let result = answer(req).await;
                            let t1 = Instant::now();
                            let mut one = Samples::default();
                            one.record(t1 - start, t1 - t0, result);
                            one
                        });
                    }
                    Some(Ok(one)) = in_flight.join_next(), if !in_flight.is_empty() => {
                        all.merge(one);
                    }
                    _ = stopped.changed() => break,
                }
            }
            all.window = start.elapsed();
            while let Some(done) = in_flight.join_next().await {
                if let Ok(one) = done {
                    all.merge(one);
                }
            }
            (all, offered)
        });
        Self { stop, task }
    }

    /// Stops offering, waits for the answers still due, and returns them with the number
    /// offered.
    pub async fn finish(self) -> anyhow::Result<(Samples, u64)> {
        self.stop.send_replace(true);
        Ok(self.task.await?)
    }
}

/// One request at a time for `duration`, `gap` apart: the latency a lone client sees.
pub async fn sequential(
    client: &Client,
    duration: Duration,
    gap: Duration,
    make: &MakeRequest,
) -> Samples {
    let mut samples = Samples::default();
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < duration {
        let t0 = Instant::now();
        let result = answer(make(client, n)).await;
        let t1 = Instant::now();
        samples.record(t1 - start, t1 - t0, result);
        n += 1;
        tokio::time::sleep(gap).await;
    }
    samples.window = start.elapsed();
    samples
}

/// Sends the request and reads the whole body: its status and the start of its body.
async fn answer(req: RequestBuilder) -> Result<(u16, String), String> {
    let resp = req.send().await.map_err(|e| error_chain(&e))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| error_chain(&e))?;
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    Ok((status, text))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A WireGuard public key nobody has used, as a client makes one per device.
pub fn fresh_public_key() -> PublicKey {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    PrivateKey::from_random_bytes(bytes).public_key()
}

/// CPU time of the broker and of this process over a phase, in cores (1.0 = one core busy).
pub struct CpuMeter {
    broker_pid: String,
    start: Instant,
    broker: f64,
    own: f64,
}

impl CpuMeter {
    pub fn start(broker_pid: u32) -> Self {
        let broker_pid = broker_pid.to_string();
        Self {
            broker: cpu_secs(&broker_pid),
            own: cpu_secs("self"),
            broker_pid,
            start: Instant::now(),
        }
    }

    /// (broker, generator) cores used since [`CpuMeter::start`].
    pub fn stop(&self) -> (f64, f64) {
        let wall = self.start.elapsed().as_secs_f64();
        let broker = (cpu_secs(&self.broker_pid) - self.broker) / wall;
        let own = (cpu_secs("self") - self.own) / wall;
        (broker, own)
    }
}

/// User + system CPU seconds of a process, from `/proc/PID/stat`.
fn cpu_secs(pid: &str) -> f64 {
    // USER_HZ, which the kernel fixes at 100 for /proc on every architecture Linux ships.
    const TICKS_PER_SEC: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; fields after its ')' are space-separated,
    // utime and stime being the 14th and 15th of the line.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / TICKS_PER_SEC,
        _ => 0.0,
    }
}
