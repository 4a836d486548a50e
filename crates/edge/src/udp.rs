//! The WireGuard socket, read and written in batches through quinn-udp: `recvmmsg` takes up to
//! 32 datagrams (or, with UDP GRO, 32 runs of coalesced datagrams) per call, and datagrams bound
//! for one client leave as a single `sendmsg` with `UDP_SEGMENT` (GSO), which the kernel cuts
//! into datagrams after the socket layer, once per run instead of once per datagram.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Room for one receive slot: a coalesced run, or the largest datagram.
const SLOT: usize = 65_536;
/// The most bytes one GSO send may carry (the kernel's limit for one UDP payload, rounded down).
const MAX_GSO_BYTES: usize = 65_000;
/// Socket buffers asked for; the kernel caps them at net.core.{r,w}mem_max.
const SOCKET_BUFFER: usize = 4 << 20;

pub struct Udp {
    socket: UdpSocket,
    state: UdpSocketState,
    slots: Box<[u8]>,
    meta: [RecvMeta; BATCH_SIZE],
    filled: usize,
    max_segments: usize,
}

impl Udp {
    /// Takes over `socket`. `gso` off sends one datagram per call (for the benchmark's
    /// step-by-step comparison, and as the fallback where the kernel has no UDP_SEGMENT).
    pub fn new(socket: UdpSocket, gso: bool) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        for (what, result) in [
            (
                "receive",
                state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER),
            ),
            (
                "send",
                state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER),
            ),
        ] {
            if let Err(e) = result {
                tracing::debug!(error = %e, "could not enlarge the UDP {what} buffer");
            }
        }
        let max_segments = if gso { state.max_gso_segments() } else { 1 };
        Ok(Self {
            socket,
            state,
            slots: vec![0; SLOT * BATCH_SIZE].into_boxed_slice(),
            meta: [RecvMeta::default(); BATCH_SIZE],
            filled: 0,
            max_segments,
        })
    }

    #[cfg(test)]
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Datagrams per GSO send (1 without GSO).
    pub fn max_segments(&self) -> usize {
        self.max_segments
    }

    /// Waits for datagrams and receives a batch; [`Udp::datagrams`] then lists them.
    pub async fn recv(&mut self) -> io::Result<()> {
        loop {
            self.socket.readable().await?;
            match self.try_recv() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// Receives a batch without waiting: `WouldBlock` when nothing is queued.
    pub fn try_recv(&mut self) -> io::Result<()> {
        self.filled = 0;
        let mut chunks = self.slots.chunks_mut(SLOT);
        let mut iovs: [IoSliceMut<'_>; BATCH_SIZE] = std::array::from_fn(|_| {
            IoSliceMut::new(chunks.next().expect("BATCH_SIZE slots of SLOT bytes"))
        });
        let (state, meta) = (&self.state, &mut self.meta);
        let n = self.socket.try_io(Interest::READABLE, || {
            state.recv((&self.socket).into(), &mut iovs, meta)
        })?;
        self.filled = n;
        Ok(())
    }

    /// Each datagram of the last batch with its source, coalesced runs cut at their stride.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.meta[..self.filled]
            .iter()
            .zip(self.slots.chunks(SLOT))
            .flat_map(|(meta, slot)| {
                let stride = meta.stride.max(1);
                slot[..meta.len.min(SLOT)]
                    .chunks(stride)
                    .map(move |d| (meta.addr, d))
            })
    }

    /// Sends everything in `tx`, one system call per run, and empties it. Errors other than a
    /// full socket buffer are per datagram (ICMP-induced and the like) and only logged, by
    /// quinn-udp, at most once a minute.
    pub async fn send(&self, tx: &mut UdpTx) {
        for run in &tx.runs {
            let transmit = Transmit {
                destination: run.dst,
                ecn: None,
                contents: &tx.buf[run.start..run.end],
                segment_size: (run.count > 1).then_some(run.segment),
                src_ip: None,
            };
            let sent = self
                .socket
                .async_io(Interest::WRITABLE, || {
                    self.state.send((&self.socket).into(), &transmit)
                })
                .await;
            if let Err(e) = sent {
                tracing::debug!(dst = %run.dst, error = %e, "udp send failed");
            }
        }
        tx.clear();
    }
}

/// Datagrams waiting to be sent, gathered into runs that one GSO send can carry: same
/// destination, same size, except that the last of a run may be shorter.
///
/// The core seals packets straight into it ([`UdpTx::spare`], then [`UdpTx::commit`]), so a
/// datagram is written once, where the send reads it.
pub struct UdpTx {
    /// `buf[..filled]` holds the batch. Beyond it, bytes zeroed once and kept: `buf` only grows
    /// (to the largest batch seen), so handing out room never clears memory again.
    buf: Vec<u8>,
    filled: usize,
    runs: Vec<Run>,
    max_segments: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    dst: SocketAddr,
    start: usize,
    end: usize,
    segment: usize,
    count: usize,
    /// A shorter datagram ended the run; nothing more may join it.
    closed: bool,
}

impl UdpTx {
    pub fn new(max_segments: usize) -> Self {
        Self {
            buf: Vec::with_capacity(MAX_GSO_BYTES),
            filled: 0,
            runs: Vec::new(),
            max_segments: max_segments.max(1),
        }
    }

    /// Copies `datagram` in; for datagrams the core queued rather than wrote here.
    pub fn push(&mut self, dst: SocketAddr, datagram: &[u8]) {
        self.spare(datagram.len()).copy_from_slice(datagram);
        self.commit(dst, datagram.len());
    }

    /// `room` bytes after the batch, for the next datagram to be written into.
    pub fn spare(&mut self, room: usize) -> &mut [u8] {
        let end = self.filled + room;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        &mut self.buf[self.filled..end]
    }

    /// Adds the first `len` bytes of the last [`UdpTx::spare`] to the batch, for `dst`.
    pub fn commit(&mut self, dst: SocketAddr, len: usize) {
        let start = self.filled;
        let end = start + len;
        assert!(end <= self.buf.len(), "commit beyond the room handed out");
        self.filled = end;
        let max_segments = self.max_segments;
        if let Some(run) = self.runs.last_mut() {
            let joins = run.dst == dst
                && !run.closed
                && len <= run.segment
                && run.count < max_segments
                && end - run.start <= MAX_GSO_BYTES;
            if joins {
                run.end = end;
                run.count += 1;
                run.closed = len < run.segment;
                return;
            }
        }
        self.runs.push(Run {
            dst,
            start,
            end,
            segment: len,
            count: 1,
            closed: false,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    fn clear(&mut self) {
        self.filled = 0;
        self.runs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// (destination, datagrams in the run, segment size) for each run.
    fn shape(tx: &UdpTx) -> Vec<(SocketAddr, usize, usize)> {
        tx.runs
            .iter()
            .map(|r| (r.dst, r.count, r.segment))
            .collect()
    }

    #[test]
    fn equal_datagrams_to_one_client_make_one_run_ended_by_a_shorter_one() {
        let a = addr("192.0.2.1:1000");
        let mut tx = UdpTx::new(64);
        for _ in 0..3 {
            tx.push(a, &[1; 100]);
        }
        tx.push(a, &[2; 60]);
        // After a shorter one the run is closed: GSO cuts at the segment size, so a longer or
        // equal datagram after it would be cut wrongly.
        tx.push(a, &[3; 60]);
        assert_eq!(shape(&tx), vec![(a, 4, 100), (a, 1, 60)]);
        assert_eq!(tx.filled, 3 * 100 + 60 + 60);
        let first = tx.runs[0];
        assert_eq!(&tx.buf[first.start..first.end][300..], &[2; 60][..]);
    }

    #[test]
    fn a_longer_datagram_or_another_destination_starts_a_new_run() {
        let (a, b) = (addr("192.0.2.1:1000"), addr("192.0.2.2:1000"));
        let mut tx = UdpTx::new(64);
        tx.push(a, &[0; 100]);
        tx.push(a, &[0; 120]);
        tx.push(b, &[0; 120]);
        tx.push(a, &[0; 120]);
        assert_eq!(
            shape(&tx),
            vec![(a, 1, 100), (a, 1, 120), (b, 1, 120), (a, 1, 120)]
        );
    }

    #[test]
    fn runs_stop_at_the_segment_limit_and_at_64_kb() {
        let a = addr("[2001:db8::1]:1000");
        let mut tx = UdpTx::new(3);
        for _ in 0..7 {
            tx.push(a, &[0; 10]);
        }
        assert_eq!(shape(&tx), vec![(a, 3, 10), (a, 3, 10), (a, 1, 10)]);

        let mut tx = UdpTx::new(64);
        for _ in 0..50 {
            tx.push(a, &[0; 1452]);
        }
        let counts: Vec<usize> = tx.runs.iter().map(|r| r.count).collect();
        assert_eq!(counts, vec![44, 6]);
        assert!(tx.runs.iter().all(|r| r.end - r.start <= MAX_GSO_BYTES));
    }

    /// A datagram written into the room handed out joins runs like a pushed one, and only the
    /// committed bytes count; room handed out and not committed is reused by the next.
    #[test]
    fn written_in_place_datagrams_join_runs_like_pushed_ones() {
        let a = addr("192.0.2.1:1000");
        let mut tx = UdpTx::new(64);
        tx.push(a, &[1; 100]);
        let room = tx.spare(148);
        room[..100].fill(2);
        tx.commit(a, 100);
        tx.spare(200).fill(9);
        tx.spare(148)[..60].fill(3);
        tx.commit(a, 60);
        assert_eq!(shape(&tx), vec![(a, 3, 100)]);
        assert_eq!(tx.filled, 260);
        let mut expected = vec![1; 100];
        expected.extend([2; 100]);
        expected.extend([3; 60]);
        assert_eq!(&tx.buf[..tx.filled], &expected[..]);
        tx.clear();
        tx.push(a, &[4; 10]);
        assert_eq!(
            (shape(&tx), &tx.buf[..tx.filled]),
            (vec![(a, 1, 10)], &[4; 10][..])
        );
    }

    #[test]
    fn without_gso_every_datagram_is_its_own_send() {
        let a = addr("192.0.2.1:1000");
        let mut tx = UdpTx::new(1);
        tx.push(a, &[0; 100]);
        tx.push(a, &[0; 100]);
        assert_eq!(shape(&tx), vec![(a, 1, 100), (a, 1, 100)]);
    }

    /// Over loopback, for real: a GSO run arrives as separate datagrams of the right sizes and
    /// contents, and the receive side lists each with its source.
    #[tokio::test]
    async fn a_run_sent_with_gso_arrives_as_its_datagrams() {
        let sender = Udp::new(UdpSocket::bind("127.0.0.1:0").await.unwrap(), true).unwrap();
        let plain = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dst = plain.local_addr().unwrap();
        assert!(sender.max_segments() > 1, "this kernel has no UDP_SEGMENT");
        let mut tx = UdpTx::new(sender.max_segments());
        for i in 0..5u8 {
            tx.push(dst, &[i; 200]);
        }
        tx.push(dst, &[9; 50]);
        sender.send(&mut tx).await;
        assert!(tx.is_empty());
        let mut buf = [0u8; 2048];
        for i in 0..5u8 {
            let n = plain.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &[i; 200][..]);
        }
        let n = plain.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &[9; 50][..]);

        let mut receiver = Udp::new(plain, true).unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..3u8 {
            back.send_to(&[i; 30], dst).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 3 {
            receiver.recv().await.unwrap();
            got.extend(receiver.datagrams().map(|(src, d)| (src, d.to_vec())));
        }
        let src = back.local_addr().unwrap();
        assert_eq!(
            got,
            (0..3u8).map(|i| (src, vec![i; 30])).collect::<Vec<_>>()
        );
    }
}
