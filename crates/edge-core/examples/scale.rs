//! Load generator behind `scripts/bench/edge-scale.sh`: the edge core with many leases, measured
//! in-process (sans-IO, so no sockets or broker): parsing the set as it arrives on the wire,
//! applying it, applying it again with one lease gone (what a revocation costs the edge),
//! admitting a datagram from an unpinned source, resident memory per lease, and whether memory
//! comes back when the leases go, over repeated add/remove cycles (releasing freed memory the
//! way `grantwire-edge` does; `--no-release` shows the allocator without it). Prints Markdown.
//!
//!   cargo run --release -p grantwire-edge-core --example scale -- 10000 [--no-release]

// A measurement program: it prints its report on stdout, and a panic is its failure report.
// It is the caller of the core, so it reads the clock, as the edge's shell does.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grantwire_edge_core::memory::{self, ShrinkTrim};
use grantwire_edge_core::EdgeCore;
use grantwire_proto::{EdgeConfig, EdgeLease, LeaseSet, PresharedKey, PrivateKey};

const CYCLES: usize = 10;
const JUNK_DATAGRAMS: u32 = 200_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let release = !args.iter().any(|a| a == "--no-release");
    let n: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or(10_000, |a| a.parse().expect("lease count"));
    let subnet_bits = 32 - (n as u32 + 2).next_power_of_two().trailing_zeros().max(8);
    let config = EdgeConfig {
        name: "scale".into(),
        subnet: format!("10.64.0.0/{}", subnet_bits.min(24))
            .parse()
            .unwrap(),
        tunnel_address: Ipv4Addr::new(10, 64, 0, 1),
    };
    let now = SystemTime::now();
    let unix = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let leases: Vec<EdgeLease> = (0..n)
        .map(|i| {
            let key = PrivateKey::from_random_bytes(next_bytes(&mut seed)).public_key();
            let host = u32::from(Ipv4Addr::new(10, 64, 0, 2)) + i as u32;
            // Distinct /32 pins spread over 100.64.0.0/10, as many clients would be.
            let pin = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i as u32);
            EdgeLease {
                id: format!("l-{i:016x}"),
                public_key: key,
                preshared_key: PresharedKey::from_bytes(next_bytes(&mut seed)),
                tunnel_address: Ipv4Addr::from(host),
                pin: format!("{pin}/32").parse().unwrap(),
                ports: vec![32400],
                expires_at: unix + 3600,
            }
        })
        .collect();
    let full = LeaseSet {
        config: config.clone(),
        leases: leases.clone(),
        generated_at: unix,
        broker_time_ms: None,
    };
    let json = serde_json::to_string(&full).unwrap();

    let rss_start = rss_kib();
    let rng = <rand::rngs::StdRng as rand::SeedableRng>::from_seed(next_bytes(&mut seed));
    let mut core = EdgeCore::new(next_bytes(&mut seed), config.clone(), rng);

    let (parsed, parse_time) = timed(|| serde_json::from_str::<LeaseSet>(&json).unwrap());
    let (summary, apply_time) = timed(|| core.apply_lease_set(&parsed, now));
    assert_eq!(summary.installed, n, "every lease installed");
    let rss_full = rss_kib();
    let (_, reapply_time) = timed(|| core.apply_lease_set(&parsed, now));
    let mut one_gone = parsed.clone();
    one_gone.leases.remove(n / 2);
    let (summary, revoke_time) = timed(|| core.apply_lease_set(&one_gone, now));
    assert_eq!(summary.removed, 1);

    // A datagram from outside every pin: the first check every datagram meets.
    let stranger: SocketAddr = "203.0.113.9:40000".parse().unwrap();
    let junk = [1u8; 148];
    let mut buf = [0u8; 148];
    let (_, junk_time) = timed(|| {
        for _ in 0..JUNK_DATAGRAMS {
            let opened = core.handle_datagram(stranger, &junk, now, &mut buf);
            assert_eq!(opened, Ok(None));
        }
    });
    assert_eq!(core.stats().dropped_unpinned, u64::from(JUNK_DATAGRAMS));
    assert!(
        core.poll_output().is_none(),
        "nothing is sent to a stranger"
    );

    let empty = LeaseSet {
        config,
        leases: vec![],
        generated_at: unix,
        broker_time_ms: None,
    };
    // From here on, as the edge does: each set parsed as it arrives and dropped once applied,
    // and after each apply the same release decision as `grantwire-edge`'s (unless told not to,
    // to show what it changes).
    drop((parsed, one_gone));
    let mut trim = ShrinkTrim::default();
    trim.observe(core.lease_count());
    let mut apply = |core: &mut EdgeCore, set: &LeaseSet| {
        core.apply_lease_set(set, now);
        if release && trim.observe(core.lease_count()) {
            memory::release_free_memory();
        }
    };
    apply(&mut core, &empty);
    let mut cycles = vec![(rss_full, rss_kib())];
    for _ in 1..CYCLES {
        let parsed = serde_json::from_str::<LeaseSet>(&json).unwrap();
        apply(&mut core, &parsed);
        drop(parsed);
        let with = rss_kib();
        apply(&mut core, &empty);
        cycles.push((with, rss_kib()));
    }

    println!("## Edge core with {n} leases (in-process, sans-IO)");
    println!();
    println!("- Command: `scripts/bench/edge-scale.sh {n}`");
    println!("- Lease set on the wire: {} KiB of JSON", json.len() / 1024);
    println!();
    println!("| what | measured |");
    println!("| --- | ---: |");
    println!(
        "| parse the set (JSON, keys checked) | {} |",
        ms(parse_time)
    );
    println!(
        "| apply it to an empty edge ({n} installed) | {} |",
        ms(apply_time)
    );
    println!(
        "| apply the same set again (all kept) | {} |",
        ms(reapply_time)
    );
    println!(
        "| apply it with one lease gone (a revocation) | {} |",
        ms(revoke_time)
    );
    println!(
        "| admit-or-drop a datagram from outside every pin | {:.0} ns |",
        junk_time.as_nanos() as f64 / f64::from(JUNK_DATAGRAMS)
    );
    println!(
        "| resident memory per lease (RSS with the set applied, less RSS before, incl. the parsed set) | {:.2} KiB |",
        (rss_full.saturating_sub(rss_start)) as f64 / n as f64
    );
    println!();
    println!();
    println!(
        "Resident memory over {CYCLES} add/remove cycles of the {n} leases, {} (KiB; before the first: {rss_start}):",
        if release {
            "freed memory released as grantwire-edge does (memory::ShrinkTrim)"
        } else {
            "freed memory NOT released (--no-release)"
        }
    );
    println!();
    println!("| cycle | with the leases | after removing them |");
    println!("| ---: | ---: | ---: |");
    for (i, (with, after)) in cycles.iter().enumerate() {
        println!("| {} | {with} | {after} |", i + 1);
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Resident set size of this process, from /proc/self/status.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// SplitMix64: reproducible key material for a benchmark, not for real keys.
fn next_bytes(state: &mut u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}
