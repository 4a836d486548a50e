//! The daemons under test (`grantwire-broker serve`, `grantwire-edge run`) as child processes
//! whose log lines are kept in memory (and copied to a file) so the measurements can read them.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

pub struct Daemon {
    child: Child,
    label: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
    /// Reaped: its PID may belong to another process now.
    stopped: bool,
}

impl Daemon {
    /// Starts `cmd` with stderr captured into `log_file`; its PID goes to `pid_file` for the
    /// script's cleanup.
    pub fn start(
        label: &'static str,
        mut cmd: Command,
        log_file: &Path,
        pid_file: &Path,
    ) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {label}"))?;
        std::fs::write(pid_file, child.id().to_string())?;
        let stderr = child.stderr.take().context("stderr")?;
        let mut log = std::fs::File::create(log_file)?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                sink.lock().expect("log lock").push(line);
            }
        });
        Ok(Self {
            child,
            label,
            lines,
            stopped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("log lock").clone()
    }

    pub fn line_count(&self) -> usize {
        self.lines.lock().expect("log lock").len()
    }

    /// Waits for a line from index `from` on that `matches`; returns it and its index.
    pub fn wait_line(
        &mut self,
        from: usize,
        timeout: Duration,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> anyhow::Result<(usize, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let lines = self.lines.lock().expect("log lock");
                if let Some((i, l)) = lines
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, l)| matches(l))
                {
                    return Ok((i, l.clone()));
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{} exited ({status}) while waiting for {what}", self.label);
            }
            if Instant::now() > deadline {
                bail!("{} did not log {what} within {timeout:?}", self.label);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Resident memory of the process in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS")
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs an admin command of `grantwire-broker` against the running broker; `--json` output
/// parsed as `T`.
pub fn admin<T: serde::de::DeserializeOwned>(
    bin: &Path,
    data_dir: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<T> {
    let mut child = Command::new(bin)
        .args(args)
        .arg("--json")
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut input = child.stdin.take().context("admin stdin")?;
    if let Some(text) = stdin {
        input.write_all(text.as_bytes())?;
    }
    drop(input);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("grantwire-broker {}: {}", args.join(" "), stderr.trim());
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("output of {args:?}"))
}
