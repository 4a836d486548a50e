//! A bad stretch of internet between one WireGuard client and the edge: `wan.py`, a UDP relay
//! in the client's namespace that delays, drops and reorders datagrams both ways (this kernel
//! has no netem). The client's WireGuard is pointed at the relay; the edge still sees the client's own
//! address, so the pin holds.

use std::path::Path;
use std::time::Duration;

use super::netns::Netns;
use super::plex::assert_safe_host;
use super::proc::Proc;

const SCRIPT: &str = include_str!("wan.py");

/// What the line does to every datagram, each way.
#[derive(Debug, Clone, Copy, Default)]
pub struct Line {
    pub delay_ms: u32,
    pub loss_percent: f64,
    /// The share of datagrams held [`Line::hold_ms`] longer than the rest, so later ones
    /// overtake them.
    pub reorder_percent: f64,
    pub hold_ms: u32,
}

/// A running relay; stopped on drop.
pub struct BadLink {
    proc: Proc,
    port: u16,
}

impl BadLink {
    /// Starts the relay in `ns` on 127.0.0.1:`port`, forwarding to `target_host`:`target_port`
    /// over `line`.
    pub fn start(
        ns: &Netns,
        dir: &Path,
        port: u16,
        (target_host, target_port): (&str, u16),
        line: Line,
    ) -> BadLink {
        assert_safe_host(target_host);
        let script = dir.join("wan.py");
        std::fs::write(&script, SCRIPT).expect("write the relay's script");
        let args = [
            port.to_string(),
            target_host.to_owned(),
            target_port.to_string(),
            line.delay_ms.to_string(),
            line.loss_percent.to_string(),
            line.reorder_percent.to_string(),
            line.hold_ms.to_string(),
        ];
        let mut argv = vec!["python3", script.to_str().expect("UTF-8 path")];
        argv.extend(args.iter().map(String::as_str));
        let mut proc = ns.spawn("bad link (wan.py)", &argv);
        let ready = crate::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            proc.assert_running("the relay to listen");
            proc.stdout().contains("ready").then_some(())
        });
        if ready.is_none() {
            panic!("the relay did not start\n{}", proc.logs());
        }
        BadLink { proc, port }
    }

    /// Cuts the line (`true`: every datagram dropped, both ways) or mends it.
    pub fn set_cut(&self, cut: bool) {
        let pid = self.proc.pid().expect("the relay is running");
        let signal = if cut { "USR1" } else { "USR2" };
        crate::host_exec(
            &["kill", "-s", signal, &pid.to_string()],
            None,
            Duration::from_secs(5),
        )
        .expect_ok("signal the relay");
    }

    /// Points WireGuard interface `ifname` in `ns` (one peer, the edge) at this relay.
    pub fn route_wireguard(&self, ns: &Netns, ifname: &str) {
        super::wg::set_peer_endpoint(ns, ifname, &format!("127.0.0.1:{}", self.port));
    }

    /// Stops the relay; what it forwarded, dropped and held back each way (`up`, `up_dropped`,
    /// `up_held`, and the same for `down`).
    pub fn stop(mut self) -> serde_json::Value {
        self.proc.stop(Duration::from_secs(3));
        let out = self.proc.stdout();
        let last = out.lines().last().unwrap_or_default().to_owned();
        serde_json::from_str(&last).unwrap_or_else(|e| {
            panic!(
                "the relay's counts are not JSON ({e}):\n{}",
                self.proc.logs()
            )
        })
    }
}
