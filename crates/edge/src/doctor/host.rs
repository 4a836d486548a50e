//! What `doctor` reads from the host: the sockets that accept traffic (the kernel's
//! `/proc/net/{tcp,tcp6,udp,udp6}` tables) and whether the guard's nftables table is loaded.
//! Behind [`Host`], so the checks and the shell are tested on samples.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use crate::guard::{self, TableState};

/// The kernel's socket tables, by protocol.
const TABLES: [(&str, Proto); 4] = [
    ("tcp", Proto::Tcp),
    ("tcp6", Proto::Tcp),
    ("udp", Proto::Udp),
    ("udp6", Proto::Udp),
];
/// `st` of a TCP socket in LISTEN (include/net/tcp_states.h).
const TCP_LISTEN: u8 = 0x0A;
/// `st` of a UDP socket that is bound but not connected, so takes datagrams from anyone.
const TCP_CLOSE: u8 = 0x07;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        })
    }
}

/// A socket that accepts connections or datagrams from any peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// Owner of the socket: another program may hold a port Plex also uses (avahi on 5353).
    pub uid: u32,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (uid {})", self.proto, self.addr, self.uid)
    }
}

/// Everything the checks need from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub listeners: Vec<Listener>,
    pub guard: TableState,
}

/// The OS boundary.
pub trait Host {
    fn listeners(&self) -> Result<Vec<Listener>, HostError>;
    fn guard(&self) -> TableState;
}

/// Gathers [`HostFacts`] from a [`Host`].
pub fn facts(host: &impl Host) -> Result<HostFacts, HostError> {
    Ok(HostFacts {
        listeners: host.listeners()?,
        guard: host.guard(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("none of tcp, tcp6, udp, udp6 is in {0}; is it a /proc/net directory?")]
    NoTables(PathBuf),
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ProcNetError,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line} is not a socket entry: {text:?}")]
pub struct ProcNetError {
    pub line: usize,
    pub text: String,
}

/// The host's own tables and nftables.
#[derive(Debug)]
pub struct SystemHost {
    /// `/proc/net`, or `/proc/PID/net` for another network namespace (a Plex container's).
    pub proc_net: PathBuf,
}

impl Host for SystemHost {
    fn listeners(&self) -> Result<Vec<Listener>, HostError> {
        let mut all = Vec::new();
        let mut found = 0;
        for (name, proto) in TABLES {
            let path = self.proc_net.join(name);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                // No tcp6/udp6 on a kernel booted with IPv6 off.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(HostError::Io { path, source }),
            };
            found += 1;
            let parsed = parse_proc_net(&text, proto, ByteOrder::NATIVE)
                .map_err(|source| HostError::Parse { path, source })?;
            all.extend(parsed);
        }
        if found == 0 {
            return Err(HostError::NoTables(self.proc_net.clone()));
        }
        Ok(all)
    }

    fn guard(&self) -> TableState {
        guard::probe_table()
    }
}

/// How the kernel printed the address words: each 32-bit word of the address (held in network
/// order) is printed as the CPU reads it, so `127.0.0.1` is `0100007F` on a little-endian host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    pub const NATIVE: Self = if cfg!(target_endian = "little") {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };
}

/// The sockets of one `/proc/net/{tcp,tcp6,udp,udp6}` table that take traffic from any peer:
/// TCP in LISTEN, UDP bound and unconnected. Connected sockets hear only their peer.
pub fn parse_proc_net(
    text: &str,
    proto: Proto,
    order: ByteOrder,
) -> Result<Vec<Listener>, ProcNetError> {
    let mut listeners = Vec::new();
    // The first line is the column header.
    for (index, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || ProcNetError {
            line: index + 1,
            text: line.trim().to_owned(),
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(state), Some(uid)) =
            (fields.get(1), fields.get(2), fields.get(3), fields.get(7))
        else {
            return Err(bad());
        };
        let local = parse_socket_addr(local, order).ok_or_else(bad)?;
        let remote = parse_socket_addr(remote, order).ok_or_else(bad)?;
        let state = u8::from_str_radix(state, 16).map_err(|_| bad())?;
        let uid = uid.parse().map_err(|_| bad())?;
        let open = match proto {
            Proto::Tcp => state == TCP_LISTEN,
            Proto::Udp => state == TCP_CLOSE && remote.port() == 0,
        };
        if open {
            listeners.push(Listener {
                proto,
                addr: local,
                uid,
            });
        }
    }
    Ok(listeners)
}

/// `0100007F:7D00` (IPv4) or 32 hex digits and a port (IPv6); the port is printed in host
/// order already.
fn parse_socket_addr(text: &str, order: ByteOrder) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr, order)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?, order)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn word(hex: &str, order: ByteOrder) -> Option<[u8; 4]> {
    let value = u32::from_str_radix(hex, 16).ok()?;
    Some(match order {
        ByteOrder::Little => value.to_le_bytes(),
        ByteOrder::Big => value.to_be_bytes(),
    })
}

#[cfg(test)]
pub mod fake {
    use super::*;

    /// Fixed answers, for the shell's tests.
    #[derive(Debug, Clone)]
    pub struct FakeHost(pub HostFacts);

    impl Host for FakeHost {
        fn listeners(&self) -> Result<Vec<Listener>, HostError> {
            Ok(self.0.listeners.clone())
        }

        fn guard(&self) -> TableState {
            self.0.guard.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Taken from an x86_64 host (so little-endian) with sockets bound for the purpose: a
    // listener and both ends of a connection, and a connected UDP socket beside a bound one.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:7E90 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 355455 2 000000003afef1a2 100 0 0 10 0
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 650 1 000000005b927f1d 100 0 0 10 0
   2: 0100007F:7E90 0100007F:9572 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000024ce1e74 20 0 0 10 -1
   3: 0100007F:9572 0100007F:7E90 01 00000000:00000000 00:00000000 00000000     0        0 355460 2 000000003493adfb 20 0 0 10 -1
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 5050: 0100007F:E8FF 0100007F:14E9 01 00000000:00000000 00:00000000 00000000     0        0 355459 2 000000009454f317 0
10585: 0A01A8C0:7E9E 00000000:0000 07 00000000:00000000 00:00000000 00000000   998        0 355457 2 00000000fc2e3f4f 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:7ED5 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 355456 1 0000000006a04042 100 0 0 10 0
   1: 00000000000000000000000000000000:7E90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 355490 1 0000000006a04043 100 0 0 10 0
   2: 0000000000000000FFFF00000A01A8C0:7E90 0000000000000000FFFF00000501A8C0:D431 01 00000000:00000000 00:00000000 00000000   998        0 355491 1 0000000006a04044 100 0 0 10 0
";
    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
12839: 00000000000000000000000001000000:076C 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 355458 2 000000003bb7f022 0
12840: B80D0120000000000000000001000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   107        0 355459 2 000000003bb7f023 0
";

    fn addrs(listeners: &[Listener]) -> Vec<String> {
        listeners.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn ipv4_tcp_keeps_listeners_only() {
        let got = parse_proc_net(TCP, Proto::Tcp, ByteOrder::Little).unwrap();
        assert_eq!(
            addrs(&got),
            ["TCP 127.0.0.1:32400 (uid 0)", "TCP 0.0.0.0:2024 (uid 998)"]
        );
    }

    #[test]
    fn ipv4_udp_keeps_unconnected_sockets_only() {
        let got = parse_proc_net(UDP, Proto::Udp, ByteOrder::Little).unwrap();
        assert_eq!(addrs(&got), ["UDP 192.168.1.10:32414 (uid 998)"]);
    }

    #[test]
    fn ipv6_tables_decode_each_word() {
        let tcp = parse_proc_net(TCP6, Proto::Tcp, ByteOrder::Little).unwrap();
        assert_eq!(
            addrs(&tcp),
            ["TCP [::1]:32469 (uid 0)", "TCP [::]:32400 (uid 998)"]
        );
        let udp = parse_proc_net(UDP6, Proto::Udp, ByteOrder::Little).unwrap();
        assert_eq!(
            addrs(&udp),
            ["UDP [::1]:1900 (uid 0)", "UDP [2001:db8::1]:5353 (uid 107)"]
        );
    }

    #[test]
    fn big_endian_hosts_print_words_in_network_order() {
        let text = "header\n 0: 7F000001:7D00 00000000:0000 0A 0:0 0:0 0 5 0 1\n";
        let got = parse_proc_net(text, Proto::Tcp, ByteOrder::Big).unwrap();
        assert_eq!(addrs(&got), ["TCP 127.0.0.1:32000 (uid 5)"]);
    }

    #[test]
    fn a_header_alone_is_no_sockets() {
        let header = TCP.lines().next().unwrap();
        assert_eq!(
            parse_proc_net(header, Proto::Tcp, ByteOrder::Little).unwrap(),
            []
        );
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        for line in [
            "   0: 0100007F:7E90",
            "   0: 0100007F7E90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "   0: 0100007G:7E90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "   0: 0100007F:7E90 00000000:0000 ZZ 0:0 0:0 0 0 0 1",
            "   0: 0100007F:7E90 00000000:0000 0A 0:0 0:0 0 x 0 1",
            "   0: 01007F:7E90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "   0: 0100007F:17E90 00000000:0000 0A 0:0 0:0 0 0 0 1",
        ] {
            let text = format!("header\n{line}\n");
            let err = parse_proc_net(&text, Proto::Tcp, ByteOrder::Little).unwrap_err();
            assert_eq!(err.line, 2, "{line}");
            assert_eq!(err.text, line.trim());
        }
    }

    #[test]
    fn system_host_reads_a_directory_of_tables() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("tcp"), TCP).unwrap();
        std::fs::write(tmp.path().join("udp6"), UDP6).unwrap();
        let host = SystemHost {
            proc_net: tmp.path().to_owned(),
        };
        assert_eq!(host.listeners().unwrap().len(), 4);

        let empty = tempfile::tempdir().unwrap();
        let host = SystemHost {
            proc_net: empty.path().to_owned(),
        };
        assert!(matches!(host.listeners(), Err(HostError::NoTables(_))));

        std::fs::write(empty.path().join("udp"), "header\ngarbage\n").unwrap();
        let err = host.listeners().unwrap_err();
        assert!(matches!(err, HostError::Parse { .. }), "{err:?}");
    }
}
