//! The stand-in Plex (an HTTP server on 0.0.0.0:32400 serving a unique marker) and the HTTP
//! probe the scenarios use, with the address safety rule.

use std::net::IpAddr;
use std::time::Duration;

use super::netns::{unique_base, Netns};
use super::proc::Proc;

pub const PLEX_PORT: u16 = 32400;

/// `stand_in_plex.py` on 0.0.0.0:32400 in a namespace: a page holding a marker no other test
/// uses, so a page that loads is proven to come from this server, plus a long poll and a film to
/// stream (see the script).
pub struct StandInPlex {
    marker: String,
    proc: Proc,
    _dir: tempfile::TempDir,
}

/// The stand-in's source, written next to it at start.
const SCRIPT: &str = include_str!("stand_in_plex.py");

impl StandInPlex {
    pub fn start(ns: &Netns) -> StandInPlex {
        let dir = tempfile::Builder::new()
            .prefix("grantwire-e2e-plex")
            .tempdir()
            .expect("plex dir");
        let marker = format!("stand-in-plex-{}", unique_base("p"));
        let script = dir.path().join("stand_in_plex.py");
        std::fs::write(&script, SCRIPT).expect("write the stand-in's script");
        let script = script.to_str().expect("UTF-8 temp path").to_owned();
        let port = PLEX_PORT.to_string();
        let mut proc = ns.spawn("stand-in Plex", &["python3", &script, &port, &marker]);
        let url = format!("http://127.0.0.1:{PLEX_PORT}/");
        let ready = crate::wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
            proc.assert_running("the stand-in Plex to answer");
            http_get(ns, &url, Duration::from_secs(1))
                .has(&marker)
                .then_some(())
        });
        if ready.is_none() {
            panic!("stand-in Plex did not answer on {url}\n{}", proc.logs());
        }
        StandInPlex {
            marker,
            proc,
            _dir: dir,
        }
    }

    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// The SHA-256 (hex) of `/film?bytes=BYTES&seed=SEED`, asked on loopback in `home` (the
    /// stand-in's namespace), not through any tunnel.
    pub fn film_sha256(&self, home: &Netns, bytes: u64, seed: u32) -> String {
        let url = format!("http://127.0.0.1:{PLEX_PORT}/film.sha256?bytes={bytes}&seed={seed}");
        let got = http_get(home, &url, Duration::from_secs(120));
        assert!(got.ok(), "the stand-in's film checksum: {got:?}");
        got.body.trim().to_owned()
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }
}

/// What [`play`] saw of one film.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Played {
    pub bytes: u64,
    pub expected: u64,
    pub seconds: f64,
    /// The longest single wait for data, in seconds.
    pub longest_wait: f64,
    pub waits_over_1s: u64,
    pub sha256: String,
}

/// The stand-in player's source (see the script for what it measures).
pub const PLAYER: &str = include_str!("player.py");

/// Plays `/film?bytes=BYTES&seed=SEED` from the stand-in at `host` (a tunnel address) inside
/// `ns`, at `rate_bps` bits a second (0: as fast as it comes). `dir` holds the player's script.
pub fn play(
    ns: &Netns,
    dir: &std::path::Path,
    host: &str,
    bytes: u64,
    seed: u32,
    rate_bps: u64,
) -> Played {
    assert_safe_host(host);
    let script = dir.join("player.py");
    std::fs::write(&script, PLAYER).expect("write the player's script");
    let path = format!("/film?bytes={bytes}&seed={seed}");
    let (port, rate) = (PLEX_PORT.to_string(), rate_bps.to_string());
    // Generous: the film's own length at its rate, or minutes for one taken as fast as it comes.
    let budget = match rate_bps {
        0 => Duration::from_secs(600),
        r => Duration::from_secs(bytes * 8 / r) * 3 / 2 + Duration::from_secs(30),
    };
    let out = ns.exec_with(
        &[
            "python3",
            script.to_str().expect("UTF-8 path"),
            host,
            &port,
            &path,
            &rate,
        ],
        None,
        budget,
    );
    assert!(out.success(), "the stand-in player failed:\n{out}");
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("the player's report is not JSON ({e}):\n{out}"))
}

/// What one `curl` did.
#[derive(Debug, Clone)]
pub struct HttpResult {
    pub url: String,
    /// curl's exit code: 0 a response, 7 connection refused, 28 timed out.
    pub curl_exit: Option<i32>,
    pub body: String,
    pub stderr: String,
}

impl HttpResult {
    pub fn ok(&self) -> bool {
        self.curl_exit == Some(0)
    }
    /// A response arrived and holds `marker`.
    pub fn has(&self, marker: &str) -> bool {
        self.ok() && self.body.contains(marker)
    }
    pub fn timed_out(&self) -> bool {
        self.curl_exit == Some(28)
    }
    pub fn refused(&self) -> bool {
        self.curl_exit == Some(7)
    }
}

/// `curl -sS --max-time T URL` inside `ns`. Panics before sending anything if the URL's host is
/// outside the ranges these tests may reach.
pub fn http_get(ns: &Netns, url: &str, timeout: Duration) -> HttpResult {
    assert_safe_host(url_host(url));
    let max_time = format!("{:.3}", timeout.as_secs_f64());
    let out = ns.exec_with(
        &[
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            &max_time,
            url,
        ],
        None,
        timeout + Duration::from_secs(5),
    );
    HttpResult {
        url: url.to_owned(),
        curl_exit: out.code,
        body: out.stdout,
        stderr: out.stderr,
    }
}

/// The host of `url`, without the brackets of an IPv6 literal.
pub(crate) fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or(bracketed);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// Panics unless `host` is loopback, a documentation range (used only on veths the tests make:
/// 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) or the tunnel range
/// 10.77.0.0/24. Everything the harness sends goes through here or through a profile endpoint
/// checked the same way.
#[track_caller]
pub fn assert_safe_host(host: &str) {
    let ip: IpAddr = host
        .parse()
        .unwrap_or_else(|_| panic!("refusing to send to {host:?}: only IP literals are used"));
    let safe = match ip {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            ip.is_loopback()
                || o[..3] == [192, 0, 2]
                || o[..3] == [198, 51, 100]
                || o[..3] == [203, 0, 113]
                || o[..3] == [10, 77, 0]
        }
        IpAddr::V6(ip) => ip.is_loopback() || ip.segments()[..2] == [0x2001, 0x0db8],
    };
    assert!(
        safe,
        "refusing to send to {ip}: tests reach only loopback, 192.0.2.0/24, 198.51.100.0/24, \
         203.0.113.0/24, 2001:db8::/32 and 10.77.0.0/24"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_host_and_safety() {
        assert_eq!(url_host("http://10.77.0.1:32400/web"), "10.77.0.1");
        assert_eq!(url_host("https://192.0.2.1:8443"), "192.0.2.1");
        assert_safe_host("10.77.0.1");
        assert_safe_host("127.0.0.1");
        assert!(std::panic::catch_unwind(|| assert_safe_host("8.8.8.8")).is_err());
        assert!(std::panic::catch_unwind(|| assert_safe_host("10.77.1.1")).is_err());
        assert!(std::panic::catch_unwind(|| assert_safe_host("example.com")).is_err());
        assert_eq!(url_host("https://[2001:db8:1::1]:8443/x"), "2001:db8:1::1");
        assert_safe_host("2001:db8:1::1");
        assert_safe_host("::1");
        assert!(std::panic::catch_unwind(|| assert_safe_host("2001:db9::1")).is_err());
        assert!(std::panic::catch_unwind(|| assert_safe_host("2606:4700::1")).is_err());
    }
}
