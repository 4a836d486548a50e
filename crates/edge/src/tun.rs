//! The TUN boundary: Plex's side of the tunnel. A trait so the data plane runs in tests
//! without privileges.

use std::future::Future;
use std::io;
use std::net::Ipv4Addr;

/// WireGuard's usual MTU: 1500 minus 80 bytes of IPv6 + UDP + WireGuard overhead, so a full
/// inner packet still fits one outer datagram over IPv6.
pub const TUN_MTU: u16 = 1420;

pub trait TunDevice: Send + Sync + 'static {
    /// Reads one IP packet.
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
    /// Writes one IP packet.
    fn send(&self, packet: &[u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// A Linux TUN device made with tun-rs, up, with the edge's tunnel address.
pub struct TunRs(tun_rs::AsyncDevice);

impl TunRs {
    pub fn create(name: &str, address: Ipv4Addr, prefix: u8) -> io::Result<Self> {
        let device = tun_rs::DeviceBuilder::new()
            .name(name)
            .ipv4(address, prefix, None)
            .mtu(TUN_MTU)
            .build_async()?;
        disable_ipv6(name);
        Ok(Self(device))
    }
}

impl TunDevice for TunRs {
    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf).await
    }

    async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.0.send(packet).await
    }
}

/// The tunnel is IPv4-only. Without this the kernel gives the TUN a link-local IPv6 address and
/// sends router solicitations and MLD reports into it, which the core can only drop and count.
/// Best effort: a host without IPv6 has no such file, and that is fine.
fn disable_ipv6(name: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    if let Err(e) = std::fs::write(&path, b"1") {
        tracing::debug!(path, error = %e, "could not disable IPv6 on the TUN");
    }
}
