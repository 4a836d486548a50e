//! The TUN boundary: Plex's side of the tunnel. A trait so the data plane runs in tests
//! without privileges.
//!
//! Packets cross it in batches. With offload on (the default), the device is opened with
//! `IFF_VNET_HDR` and TSO: one read can carry a 64 KiB TCP segment from Plex, which tun-rs splits
//! into MTU-sized packets, and one write can carry many of the client's packets coalesced back
//! into one (GRO). That turns about 45 system calls into one on a bulk stream, in each direction.

use std::future::Future;
use std::io;
use std::net::Ipv4Addr;

use bytes::BytesMut;
use tun_rs::{GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// 1280 (the smallest MTU IPv6 allows a path, and what carriers' tunnels and mobile networks
/// often come down to) less 80 bytes of IPv6 + UDP + WireGuard overhead: every outer datagram
/// fits any path without fragments. The tunnel carries only TCP, whose segment size follows
/// this MTU both ways (Plex's side reads it from the route; its SYN-ACK tells the client), so no
/// packet is ever too big for the path and nothing depends on ICMP "too big" messages, which
/// many networks drop (a black hole). WireGuard's usual 1420 assumes a 1500-byte path.
pub const TUN_MTU: u16 = 1200;

/// Room for one read: the virtio header and a 64 KiB segment.
const READ_LEN: usize = VIRTIO_NET_HDR_LEN + 65_536;
/// Room for one split packet (at most the MTU).
const PACKET_LEN: usize = 2048;

/// What one read from the device carried: one packet, or the packets one TSO segment splits into.
pub struct TunRx {
    raw: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    count: usize,
}

impl Default for TunRx {
    fn default() -> Self {
        Self {
            raw: vec![0; READ_LEN],
            bufs: vec![vec![0; PACKET_LEN]; IDEAL_BATCH_SIZE],
            sizes: vec![0; IDEAL_BATCH_SIZE],
            count: 0,
        }
    }
}

impl TunRx {
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs
            .iter()
            .zip(&self.sizes)
            .take(self.count)
            .map(|(buf, &n)| &buf[..n])
    }

    /// Puts `packet` in as the read's only packet (for devices without offload).
    #[cfg(test)]
    pub fn set_single(&mut self, packet: &[u8]) {
        self.bufs[0][..packet.len()].copy_from_slice(packet);
        self.sizes[0] = packet.len();
        self.count = 1;
    }
}

/// Packets waiting to be written to the device, with the headroom the virtio header needs.
pub struct TunTx {
    bufs: Vec<BytesMut>,
    len: usize,
    gro: GROTable,
}

impl Default for TunTx {
    fn default() -> Self {
        Self {
            bufs: Vec::with_capacity(IDEAL_BATCH_SIZE),
            len: 0,
            gro: GROTable::new(),
        }
    }
}

impl TunTx {
    /// Most packets queued before they are written (tun-rs's batch size).
    pub const MAX: usize = IDEAL_BATCH_SIZE;

    /// Room for the next packet, of `room` bytes, after the virtio header's; the core opens a
    /// packet straight into it, and [`TunTx::commit`] adds it to the batch. The header itself
    /// is written by tun-rs when the batch is sent.
    pub fn spare(&mut self, room: usize) -> &mut [u8] {
        if self.len == self.bufs.len() {
            self.bufs.push(BytesMut::with_capacity(PACKET_LEN));
        }
        let buf = &mut self.bufs[self.len];
        let end = VIRTIO_NET_HDR_LEN + room;
        // Grown only, never cleared first: a slot keeps its last packet's length, so only the
        // bytes past it are zeroed, not the whole packet every time.
        if buf.len() < end {
            buf.resize(end, 0);
        }
        &mut buf[VIRTIO_NET_HDR_LEN..end]
    }

    /// Adds the first `len` bytes of the last [`TunTx::spare`] to the batch.
    pub fn commit(&mut self, len: usize) {
        self.bufs[self.len].truncate(VIRTIO_NET_HDR_LEN + len);
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[cfg(test)]
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs[..self.len]
            .iter()
            .map(|b| &b[VIRTIO_NET_HDR_LEN..])
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

pub trait TunDevice: Send + Sync + 'static {
    /// Waits for the next read and puts what it carried in `rx`. A segment the device handed
    /// over but that could not be split is dropped and reported as zero packets, not an error.
    fn recv(&self, rx: &mut TunRx) -> impl Future<Output = io::Result<()>> + Send;
    /// The same without waiting: `WouldBlock` when nothing is queued.
    fn try_recv(&self, rx: &mut TunRx) -> io::Result<()>;
    /// Writes every queued packet, coalesced where the device can, and empties `tx`.
    fn send(&self, tx: &mut TunTx) -> impl Future<Output = io::Result<()>> + Send;
}

/// A Linux TUN device made with tun-rs, up, with the edge's tunnel address, not yet tied to an
/// async runtime: it is made where the privileges are, and driven by the data plane's own
/// runtime (see [`crate::dataplane::run_dedicated`]).
pub struct TunSetup(tun_rs::SyncDevice);

impl TunSetup {
    /// With `offload`, asks for TSO/GRO offload and falls back to plain reads and writes (with
    /// a WARN) when the kernel refuses it.
    pub fn create(name: &str, address: Ipv4Addr, prefix: u8, offload: bool) -> io::Result<Self> {
        let build = |offload: bool| {
            tun_rs::DeviceBuilder::new()
                .name(name)
                .ipv4(address, prefix, None)
                .mtu(TUN_MTU)
                .offload(offload)
                .build_sync()
        };
        let device = match build(offload) {
            Ok(device) => device,
            Err(e) if offload => {
                tracing::warn!(error = %e, "TUN offload unavailable; reading one packet at a time");
                build(false)?
            }
            Err(e) => return Err(e),
        };
        disable_ipv6(name);
        Ok(Self(device))
    }

    /// Whether reads and writes carry the virtio header (offload on).
    pub fn offload(&self) -> bool {
        self.0.tcp_gso()
    }

    /// Registers the device with the current tokio runtime.
    pub fn into_async(self) -> io::Result<TunRs> {
        tun_rs::AsyncDevice::new(self.0).map(TunRs)
    }
}

/// The TUN device, driven by the data plane's runtime.
pub struct TunRs(tun_rs::AsyncDevice);

impl TunDevice for TunRs {
    async fn recv(&self, rx: &mut TunRx) -> io::Result<()> {
        let read = self
            .0
            .recv_multiple(&mut rx.raw, &mut rx.bufs, &mut rx.sizes, 0)
            .await;
        settle(rx, read)
    }

    fn try_recv(&self, rx: &mut TunRx) -> io::Result<()> {
        let read = self
            .0
            .try_recv_multiple(&mut rx.raw, &mut rx.bufs, &mut rx.sizes, 0);
        settle(rx, read)
    }

    async fn send(&self, tx: &mut TunTx) -> io::Result<()> {
        let len = tx.len;
        tx.clear();
        if len == 0 {
            return Ok(());
        }
        self.0
            .send_multiple(&mut tx.gro, &mut tx.bufs[..len], VIRTIO_NET_HDR_LEN)
            .await
            .map(drop)
    }
}

/// An error from the read itself (it carries an OS error number) ends the data plane; one from
/// splitting what was read (a malformed segment) drops that segment only.
fn settle(rx: &mut TunRx, read: io::Result<usize>) -> io::Result<()> {
    rx.count = 0;
    match read {
        Ok(n) => {
            rx.count = n;
            Ok(())
        }
        Err(e) if e.raw_os_error().is_some() || e.kind() == io::ErrorKind::WouldBlock => Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "dropped a TUN segment that could not be split");
            Ok(())
        }
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
