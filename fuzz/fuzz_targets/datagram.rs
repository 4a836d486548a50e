//! The edge's datagram entry (admission, then boringtun's decapsulation) with arbitrary
//! datagrams from pinned and unpinned sources, several per input so state carries over.
//!
//! Input: repeated `[source selector, length, datagram...]` (length 0 takes the rest).
//! Oracles, for input that cannot be authenticated (the fuzzer holds no client key):
//! - nothing is ever sent to an address outside every pin, and nothing at all in answer to a
//!   datagram from one;
//! - nothing reaches the TUN;
//! - bytes sent never exceed bytes received (no amplification).
#![no_main]

use grantwire_edge_core::Output;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut core = common::edge();
    let (mut bytes_in, mut bytes_out) = (0usize, 0usize);
    // As the shell does: a buffer at least as long as the datagram, reused.
    let mut buf = vec![0u8; 65_536];
    let mut rest = data;
    while let [selector, len, tail @ ..] = rest {
        let n = if *len == 0 {
            tail.len()
        } else {
            usize::from(*len).min(tail.len())
        };
        let (datagram, next) = tail.split_at(n);
        rest = next;
        let src = common::source(*selector);
        let opened = core.handle_datagram(src, datagram, common::now(), &mut buf[..datagram.len()]);
        if let Some(packet) = opened.expect("a buffer as long as the datagram") {
            panic!(
                "unauthenticated input reached the TUN: {:02x?}",
                &buf[..packet.len]
            );
        }
        bytes_in += datagram.len();
        while let Some(Output::Transmit { dst, payload }) = core.poll_output() {
            assert!(common::pinned(src), "answered {src}, outside every pin");
            assert!(common::pinned(dst), "sent to {dst}, outside every pin");
            bytes_out += payload.len();
        }
    }
    assert!(
        bytes_out <= bytes_in,
        "amplification: {bytes_out} bytes out for {bytes_in} in"
    );
    assert_eq!(core.stats().bytes_sent_unpinned, 0);
});
