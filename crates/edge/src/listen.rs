//! The WireGuard socket and which datagrams it takes.
//!
//! The default, `[::]:51820`, is one dual-stack socket: friends on IPv6-only networks (DS-Lite,
//! most mobile networks) and on IPv4 reach the same port, and IPv4 sources arrive as
//! IPv4-mapped addresses that [`crate::udp::Udp`] turns back into IPv4. On a host whose kernel
//! has no IPv6 the edge falls back to `0.0.0.0`.
//!
//! A narrower `--listen` (one family, or one address) leaves datagrams to the port that no
//! socket takes; the kernel would answer those with ICMP port-unreachable, telling a scanner
//! that something is there. [`Served`] says which they are, so the guard drops them unanswered.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// The addresses a bound WireGuard socket receives on, for the guard's silence rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Every local address, IPv4 and IPv6.
    DualStack,
    /// IPv4 only: every local address if unspecified, else this one.
    V4(Ipv4Addr),
    /// IPv6 only, on this one address.
    V6(std::net::Ipv6Addr),
}

impl Served {
    pub fn port_rules(self, port: u16) -> String {
        let mut rules = String::new();
        match self {
            Served::DualStack => {}
            Served::V4(addr) => {
                rules.push_str(&format!(
                    "        meta nfproto ipv6 udp dport {port} drop\n"
                ));
                if !addr.is_unspecified() {
                    rules.push_str(&format!(
                        "        udp dport {port} ip daddr != {addr} drop\n"
                    ));
                }
            }
            Served::V6(addr) => {
                rules.push_str(&format!(
                    "        meta nfproto ipv4 udp dport {port} drop\n"
                ));
                rules.push_str(&format!(
                    "        udp dport {port} ip6 daddr != {addr} drop\n"
                ));
            }
        }
        rules
    }
}

/// Binds the WireGuard socket at `listen` (non-blocking). `[::]` binds dual-stack, falling
/// back to `0.0.0.0` when this host cannot open IPv6 sockets at all.
pub fn bind(listen: SocketAddr) -> io::Result<(std::net::UdpSocket, Served)> {
    let ip = listen.ip().to_canonical();
    let (socket, served) = match ip {
        IpAddr::V6(v6) if v6.is_unspecified() => match bind_dual_stack(listen) {
            Ok(socket) => (socket, Served::DualStack),
            Err(e) if no_ipv6(&e) => {
                tracing::info!(error = %e, "this host has no IPv6; WireGuard listens on IPv4 only");
                let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, listen.port()));
                (bind_one(v4)?, Served::V4(Ipv4Addr::UNSPECIFIED))
            }
            Err(e) => return Err(e),
        },
        IpAddr::V6(v6) => (bind_one(listen)?, Served::V6(v6)),
        IpAddr::V4(v4) => (
            bind_one(SocketAddr::from((v4, listen.port())))?,
            Served::V4(v4),
        ),
    };
    socket.set_nonblocking(true)?;
    Ok((socket, served))
}

fn bind_dual_stack(listen: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    // Explicit, so `net.ipv6.bindv6only=1` on the host does not turn it into IPv6 only.
    socket.set_only_v6(false)?;
    socket.bind(&listen.into())?;
    Ok(socket.into())
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    std::net::UdpSocket::bind(addr)
}

/// The errors of a kernel without IPv6 (`ipv6.disable=1`) or a socket family it refuses.
fn no_ipv6(e: &io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().map(Errno::from_raw).is_some_and(|errno| {
        matches!(
            errno,
            Errno::EAFNOSUPPORT | Errno::EADDRNOTAVAIL | Errno::EPROTONOSUPPORT
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unspecified_ipv6_address_takes_ipv4_too() {
        let (socket, served) = bind("[::]:0".parse().unwrap()).unwrap();
        assert_eq!(served, Served::DualStack);
        let port = socket.local_addr().unwrap().port();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"v4", ("127.0.0.1", port)).unwrap();
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0; 8];
        let (n, from) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"v4");
        assert_eq!(from.ip().to_canonical(), sender.local_addr().unwrap().ip());
    }

    #[test]
    fn a_narrower_listen_says_what_it_leaves_out() {
        let (_, served) = bind("0.0.0.0:0".parse().unwrap()).unwrap();
        assert_eq!(served, Served::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(
            served.port_rules(51820),
            "        meta nfproto ipv6 udp dport 51820 drop\n"
        );
        let (_, served) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(served, Served::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            served.port_rules(51820),
            "        meta nfproto ipv6 udp dport 51820 drop\n\
             \x20       udp dport 51820 ip daddr != 127.0.0.1 drop\n"
        );
        let (_, served) = bind("[::1]:0".parse().unwrap()).unwrap();
        assert_eq!(served, Served::V6(std::net::Ipv6Addr::LOCALHOST));
        assert_eq!(
            served.port_rules(51820),
            "        meta nfproto ipv4 udp dport 51820 drop\n\
             \x20       udp dport 51820 ip6 daddr != ::1 drop\n"
        );
        assert_eq!(Served::DualStack.port_rules(51820), "");
    }

    #[test]
    fn an_ipv4_mapped_listen_is_ipv4() {
        let (socket, served) = bind("[::ffff:127.0.0.1]:0".parse().unwrap()).unwrap();
        assert_eq!(served, Served::V4(Ipv4Addr::LOCALHOST));
        assert!(socket.local_addr().unwrap().is_ipv4());
    }
}
