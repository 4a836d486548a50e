//! Processes the harness starts: one-shot commands with a timeout ([`Output`]) and long-running
//! ones ([`Proc`]) that are stopped by their own process group on drop.
//!
//! Every child gets its own process group (`process_group(0)`), so stopping it reaches whatever it
//! forked (the pyenv `python3` shim, for one) and nothing else: the harness never signals a
//! process it did not start.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a one-shot command did.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmdline: String,
    /// `None` when the harness killed it at its timeout (or a signal ended it).
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the whole record unless the command exited 0.
    #[track_caller]
    pub fn expect_ok(self, what: &str) -> Self {
        if !self.success() {
            panic!("{what} failed:\n{self}");
        }
        self
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32, what: &str) -> Self {
        if self.code != Some(code) {
            panic!("{what}: expected exit code {code}:\n{self}");
        }
        self
    }

    /// Parses stdout as the one JSON object the `--json` contract promises.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{self}"))
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.cmdline)?;
        match (self.code, self.timed_out) {
            (_, true) => writeln!(f, "  result: killed at the harness timeout")?,
            (Some(c), _) => writeln!(f, "  exit code: {c}")?,
            (None, _) => writeln!(f, "  ended by a signal")?,
        }
        writeln!(f, "  --- stdout ---\n{}", indent(&self.stdout))?;
        write!(f, "  --- stderr ---\n{}", indent(&self.stderr))
    }
}

/// Runs `argv` in the host's own namespace (key generation, `wg-quick strip`).
pub fn host_exec(argv: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    run(cmd, argv.join(" "), stdin, timeout)
}

/// Runs `cmd` to completion or kills its process group at `timeout`.
pub(crate) fn run(
    mut cmd: Command,
    cmdline: String,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Output {
    let mut out = tempfile::tempfile().expect("temp file for stdout");
    let mut err = tempfile::tempfile().expect("temp file for stderr");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(out.try_clone().expect("clone stdout file"))
    .stderr(err.try_clone().expect("clone stderr file"))
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A program that exits without reading its stdin is judged by its exit code, not here.
        let _ = pipe.write_all(data);
    }
    let (status, timed_out) = wait_or_kill(&mut child, timeout);
    Output {
        cmdline,
        code: status.and_then(|s| s.code()),
        timed_out,
        stdout: read_all(&mut out),
        stderr: read_all(&mut err),
    }
}

fn wait_or_kill(child: &mut Child, timeout: Duration) -> (Option<ExitStatus>, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (Some(status), false),
            Ok(None) if Instant::now() >= deadline => {
                signal_group(child.id(), "KILL");
                return (child.wait().ok(), true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
    }
}

fn read_all(f: &mut File) -> String {
    let mut buf = Vec::new();
    let _ = f.rewind();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Signals the process group whose leader is `pgid` (a child spawned with `process_group(0)`).
/// The group id stays reserved while any member lives, so this cannot reach a stranger.
fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A long-running process (a daemon under test, wireguard-go, the stand-in Plex). Its stdout
/// and stderr go to files; on drop it is stopped (SIGTERM to its group, SIGKILL after a grace
/// period), and its logs are printed when the thread is panicking or `GRANTWIRE_E2E_LOGS=1`.
pub struct Proc {
    label: String,
    cmdline: String,
    child: Option<Child>,
    exit: Option<ExitStatus>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    _logs: tempfile::TempDir,
}

impl Proc {
    pub(crate) fn spawn(label: &str, mut cmd: Command, cmdline: String) -> Proc {
        let logs = tempfile::Builder::new()
            .prefix("grantwire-e2e-log")
            .tempdir()
            .expect("log dir");
        let stdout_path = logs.path().join("stdout");
        let stderr_path = logs.path().join("stderr");
        let out = File::create(&stdout_path).expect("stdout log");
        let err = File::create(&stderr_path).expect("stderr log");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} `{cmdline}`: {e}"));
        Proc {
            label: label.to_owned(),
            cmdline,
            child: Some(child),
            exit: None,
            stdout_path,
            stderr_path,
            _logs: logs,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `Some(status)` once the process has exited on its own (or was stopped).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exit = Some(status);
                }
            }
        }
        self.exit
    }

    /// Panics with the logs if the process has already exited: a daemon that died while the
    /// harness waits for it to become ready should fail the test at once, not at a timeout.
    #[track_caller]
    pub fn assert_running(&mut self, waiting_for: &str) {
        if let Some(status) = self.exit_status() {
            panic!(
                "{} exited ({status}) while waiting for {waiting_for}\n{}",
                self.label,
                self.logs()
            );
        }
    }

    /// Stops the process group: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id();
        if self.exit.is_none() {
            signal_group(pgid, "TERM");
            let (status, _) = wait_or_kill(&mut child, grace);
            self.exit = status;
        }
        // Stragglers in the group (children of the leader) go too.
        signal_group(pgid, "KILL");
        let _ = child.wait();
    }

    /// The command line, exit status and both logs, for failure messages.
    pub fn logs(&self) -> String {
        let status = match self.exit {
            Some(s) => s.to_string(),
            None => "running".to_owned(),
        };
        format!(
            "===== {} ({status}) =====\n  command: {}\n  --- stdout ---\n{}\n  --- stderr ---\n{}\n",
            self.label,
            self.cmdline,
            indent(&self.stdout()),
            indent(&self.stderr())
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
        if std::thread::panicking() || std::env::var_os("GRANTWIRE_E2E_LOGS").is_some() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Lines of a `tracing` log at WARN or ERROR that match none of `allowed`. The conventions
/// treat an unexpected WARN in the end-to-end run as a failure: WARN means a human should look.
pub fn unexpected_warnings(log: &str, allowed: &[&str]) -> Vec<String> {
    log.lines()
        .map(strip_ansi)
        .filter(|l| {
            l.split_whitespace()
                .take(3)
                .any(|w| w == "WARN" || w == "ERROR")
        })
        .filter(|l| !allowed.iter().any(|a| l.contains(a)))
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end at the first letter.
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn indent(text: &str) -> String {
    if text.trim().is_empty() {
        return "    (empty)".to_owned();
    }
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_found_through_colour_codes() {
        let log = "2025-01-01T00:00:00Z  INFO grantwire_edge: up\n\
                   2025-01-01T00:00:01Z \u{1b}[33m WARN\u{1b}[0m grantwire_edge: broker gone\n\
                   2025-01-01T00:00:02Z ERROR grantwire_edge: tun failed\n\
                   a message that mentions WARN later on is not a warning";
        let found = unexpected_warnings(log, &["tun failed"]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("broker gone"));
    }

    #[test]
    fn run_times_out_and_reports_it() {
        let out = host_exec(&["sleep", "5"], None, Duration::from_millis(200));
        assert!(out.timed_out);
        assert_eq!(out.code, None);
    }

    #[test]
    fn run_feeds_stdin_and_captures_both_streams() {
        let out = host_exec(
            &["sh", "-c", "read x; echo out:$x; echo err >&2; exit 3"],
            Some(b"hello\n"),
            Duration::from_secs(5),
        );
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout.trim(), "out:hello");
        assert_eq!(out.stderr.trim(), "err");
    }
}

/// A process's open descriptors, threads and resident memory, read from /proc (the test and
/// the process share the pid namespace; network namespaces do not hide /proc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Open descriptors other than SQLite database files (`*.db`, `-wal`, `-shm`): a
    /// connection pool opens those on demand up to its size, which is not a leak; sockets,
    /// pipes, timers and every other file are counted.
    pub fds: usize,
    pub threads: u64,
    pub rss_kib: u64,
}

impl Usage {
    pub fn of(pid: u32) -> Usage {
        let dir = format!("/proc/{pid}/fd");
        let fds = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(Result::ok)
            .filter(|entry| {
                // A descriptor closed between listing and reading is gone: not counted.
                std::fs::read_link(entry.path()).is_ok_and(|target| {
                    let target = target.to_string_lossy();
                    ![".db", ".db-wal", ".db-shm"]
                        .iter()
                        .any(|suffix| target.ends_with(suffix))
                })
            })
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status:\n{status}"))
        };
        Usage {
            fds,
            threads: field("Threads:"),
            rss_kib: field("VmRSS:"),
        }
    }
}
