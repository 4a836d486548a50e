//! `--metrics-listen`: Prometheus text of the core's counters over a deliberately tiny HTTP
//! responder (one request per connection, `GET /metrics` only), so the edge needs no HTTP
//! server stack for it.

use std::fmt::Write as _;
use std::time::Duration;

use grantwire_edge_core::Stats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

/// What the data plane publishes after every event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub stats: Stats,
    pub leases: usize,
    /// Whether the broker sync stream is open (filled in by [`serve`] from the sync task).
    pub broker_connected: bool,
    /// Tokio tasks alive in the edge's runtime (filled in by [`serve`]): a task leaked per
    /// lease or per connection shows as growth.
    pub tasks: usize,
}

/// A slow or idle client must not hold a connection open; scrapes take milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST: usize = 8 * 1024;

pub async fn serve(
    listener: TcpListener,
    snapshots: watch::Receiver<Snapshot>,
    broker_link: watch::Receiver<bool>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let snapshot = Snapshot {
            broker_connected: *broker_link.borrow(),
            // Counted before this request's own task is spawned.
            tasks: tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            ..*snapshots.borrow()
        };
        tokio::spawn(async move {
            if let Err(e) = respond(stream, snapshot).await {
                debug!(%peer, error = %e, "metrics request failed");
            }
        });
    }
}

async fn respond(mut stream: TcpStream, snapshot: Snapshot) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read_head)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let (status, body) = if request.starts_with(b"GET /metrics ") {
        ("200 OK", render(&snapshot))
    } else {
        ("404 Not Found", "not found\n".to_owned())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Prometheus exposition text. Names are a contract with the end-to-end tests.
pub fn render(snapshot: &Snapshot) -> String {
    let s = &snapshot.stats;
    let counters: [(&str, u64, &str); 19] = [
        (
            "dropped_unpinned_total",
            s.dropped_unpinned,
            "Datagrams from sources outside every pin, dropped before any cryptography.",
        ),
        (
            "dropped_pin_mismatch_total",
            s.dropped_pin_mismatch,
            "Datagrams for a peer whose pin does not cover the source.",
        ),
        (
            "off_pin_checked_total",
            s.off_pin_checked,
            "Data datagrams from outside their lease's pin checked against its session keys.",
        ),
        (
            "off_pin_authenticated_total",
            s.off_pin_authenticated,
            "Of those, datagrams sent with the lease's keys from outside its pin.",
        ),
        (
            "dropped_unknown_peer_total",
            s.dropped_unknown_peer,
            "Datagrams from a pinned source for no known peer.",
        ),
        (
            "dropped_invalid_total",
            s.dropped_invalid,
            "Datagrams failing WireGuard parsing, MACs or decryption.",
        ),
        (
            "dropped_inner_filter_total",
            s.dropped_inner_filter,
            "Decrypted packets refused by the inner filter.",
        ),
        (
            "dropped_tun_total",
            s.dropped_tun,
            "Packets from the TUN refused by the outbound filter.",
        ),
        (
            "cookies_sent_total",
            s.cookies_sent,
            "Cookie replies sent to handshake initiations under load.",
        ),
        (
            "handshake_dh_total",
            s.handshake_dh,
            "Handshake messages that cost Diffie-Hellman work (never from outside every pin).",
        ),
        (
            "handshakes_total",
            s.handshakes_completed,
            "WireGuard handshakes completed.",
        ),
        (
            "packets_to_tun_total",
            s.packets_to_tun,
            "Packets written to the TUN.",
        ),
        (
            "bytes_to_tun_total",
            s.bytes_to_tun,
            "Bytes of the packets written to the TUN (client to Plex).",
        ),
        (
            "packets_from_tun_total",
            s.packets_from_tun,
            "Packets from the TUN sent to peers.",
        ),
        (
            "bytes_from_tun_total",
            s.bytes_from_tun,
            "Bytes of the packets from the TUN sent to peers (Plex to client), before encryption.",
        ),
        (
            "leases_installed_total",
            s.leases_installed,
            "Leases installed.",
        ),
        (
            "leases_expired_total",
            s.leases_expired,
            "Leases removed at expiry by the edge's clock.",
        ),
        (
            "leases_removed_total",
            s.leases_removed,
            "Leases removed because the broker's set no longer held them.",
        ),
        (
            "bytes_sent_unpinned_total",
            s.bytes_sent_unpinned,
            "Bytes sent to a destination outside every pin (always 0).",
        ),
    ];
    let mut out = String::new();
    for (name, value, help) in counters {
        let _ = write!(
            out,
            "# HELP grantwire_edge_{name} {help}\n# TYPE grantwire_edge_{name} counter\ngrantwire_edge_{name} {value}\n"
        );
    }
    let inner = &s.dropped_inner;
    let _ = writeln!(
        out,
        "# HELP grantwire_edge_dropped_inner_total Decrypted packets refused by the inner filter, by reason.\n# TYPE grantwire_edge_dropped_inner_total counter"
    );
    for (reason, value) in [
        ("malformed", inner.malformed),
        ("source", inner.source),
        ("destination", inner.destination),
        ("port", inner.port),
    ] {
        let _ = writeln!(
            out,
            "grantwire_edge_dropped_inner_total{{reason=\"{reason}\"}} {value}"
        );
    }
    let _ = write!(
        out,
        "# HELP grantwire_edge_leases Leases currently installed.\n# TYPE grantwire_edge_leases gauge\ngrantwire_edge_leases {}\n",
        snapshot.leases
    );
    let _ = write!(
        out,
        "# HELP grantwire_edge_broker_connected Whether the broker sync stream is open (1) or not (0).\n# TYPE grantwire_edge_broker_connected gauge\ngrantwire_edge_broker_connected {}\n",
        u8::from(snapshot.broker_connected)
    );
    let _ = write!(
        out,
        "# HELP grantwire_edge_tasks Tokio tasks alive in the edge (growth that does not come back is a leak).\n# TYPE grantwire_edge_tasks gauge\ngrantwire_edge_tasks {}\n",
        snapshot.tasks
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_contract_names() {
        let mut snapshot = Snapshot::default();
        snapshot.stats.dropped_unpinned = 7;
        snapshot.stats.cookies_sent = 3;
        snapshot.leases = 2;
        snapshot.broker_connected = true;
        snapshot.tasks = 9;
        snapshot.stats.handshake_dh = 4;
        snapshot.stats.bytes_from_tun = 1500;
        snapshot.stats.dropped_inner.source = 2;
        let text = render(&snapshot);
        for line in [
            "grantwire_edge_dropped_unpinned_total 7",
            "grantwire_edge_dropped_pin_mismatch_total 0",
            "grantwire_edge_dropped_inner_filter_total 0",
            "grantwire_edge_bytes_sent_unpinned_total 0",
            "grantwire_edge_handshakes_total 0",
            "grantwire_edge_cookies_sent_total 3",
            "grantwire_edge_leases 2",
            "grantwire_edge_broker_connected 1",
            "grantwire_edge_tasks 9",
            "grantwire_edge_handshake_dh_total 4",
            "grantwire_edge_bytes_from_tun_total 1500",
            "grantwire_edge_bytes_to_tun_total 0",
            "grantwire_edge_dropped_inner_total{reason=\"source\"} 2",
            "grantwire_edge_dropped_inner_total{reason=\"port\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[tokio::test]
    async fn serves_get_metrics_and_404s_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(Snapshot::default());
        tx.send_replace(Snapshot {
            leases: 3,
            ..Snapshot::default()
        });
        let (link_tx, link_rx) = watch::channel(false);
        link_tx.send_replace(true);
        tokio::spawn(serve(listener, rx, link_rx));
        for (path, want) in [
            ("/metrics", "grantwire_edge_leases 3"),
            // The link state comes from the sync task, not from the data plane's snapshot.
            ("/metrics", "grantwire_edge_broker_connected 1"),
            ("/", "404 Not Found"),
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut response = String::new();
            s.read_to_string(&mut response).await.unwrap();
            assert!(response.contains(want), "{response}");
        }
    }
}
