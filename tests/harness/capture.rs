//! Packet captures: `tcpdump` on one interface of a namespace, written to a pcap file and read
//! back as one line per packet, so a scenario can assert on what actually left a host (the
//! silence scenarios count zero packets; a userspace counter could not see a kernel's ICMP).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::netns::Netns;
use super::proc::{host_exec, Proc};

/// Which packets of the interface to keep, as tcpdump's `-Q` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Packets the namespace sends out of the interface.
    Out,
    /// Packets arriving on it.
    In,
}

/// A running capture; [`Capture::packets`] stops it and reads it back.
pub struct Capture {
    proc: Proc,
    file: PathBuf,
    what: String,
}

/// A pcap filter for every IP packet that could answer someone: all of IPv4 and IPv6 but a
/// host's own bookkeeping on a link, which answers nobody: multicast (neighbour solicitations,
/// MLD reports) and neighbour discovery (ICMPv6 types 133 to 137; `ip6[40]` is the ICMPv6 type
/// when no extension header comes first, as for all of these).
pub const ANSWERS: &str =
    "(ip or ip6) and not ip6 multicast and not (icmp6 and ip6[40] >= 133 and ip6[40] <= 137)";

impl Capture {
    /// Starts `tcpdump -i IFNAME -Q DIR --immediate-mode -U -w FILE FILTER` inside `ns` and waits until it is
    /// capturing. `dir` holds the pcap file, kept there for a failing test's reader.
    pub fn start(ns: &Netns, ifname: &str, direction: Direction, filter: &str, dir: &Path) -> Self {
        let q = match direction {
            Direction::Out => "out",
            Direction::In => "in",
        };
        let file = dir.join(format!(
            "{}-{ifname}-{q}.pcap",
            super::netns::unique_base("cap")
        ));
        let file_str = file.to_str().expect("UTF-8 capture path");
        let what = format!("{q} of {ifname} in {} matching `{filter}`", ns.name());
        let mut proc = ns.spawn(
            &format!("tcpdump {what}"),
            &[
                "tcpdump",
                "-i",
                ifname,
                "-Q",
                q,
                "-n",
                // Each packet written as it arrives: libpcap otherwise holds packets in
                // blocks for up to a second, and a capture stopped sooner loses them.
                "--immediate-mode",
                "-U",
                "-w",
                file_str,
                filter,
            ],
        );
        let ready = crate::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            proc.assert_running("tcpdump to start capturing");
            proc.stderr().contains("listening on").then_some(())
        });
        if ready.is_none() {
            panic!("tcpdump did not start capturing {what}\n{}", proc.logs());
        }
        Capture { proc, file, what }
    }

    /// Stops the capture and returns one line per packet it kept (`tcpdump -r`'s text).
    pub fn packets(mut self) -> Vec<String> {
        self.proc.stop(Duration::from_secs(3));
        let file = self.file.to_str().expect("UTF-8 capture path");
        let read = host_exec(
            &["tcpdump", "-r", file, "-n", "-tt"],
            None,
            Duration::from_secs(30),
        );
        assert!(
            read.success(),
            "could not read the capture {what}:\n{read}\n{}",
            self.proc.logs(),
            what = self.what
        );
        read.stdout.lines().map(str::to_owned).collect()
    }

    /// Where the pcap file is, for failure messages.
    pub fn file(&self) -> &Path {
        &self.file
    }
}
