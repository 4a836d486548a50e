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
        core.handle_datagram(src, datagram, common::now());
        bytes_in += datagram.len();
        while let Some(output) = core.poll_output() {
            match output {
                Output::Transmit { dst, payload } => {
                    assert!(common::pinned(src), "answered {src}, outside every pin");
                    assert!(common::pinned(dst), "sent to {dst}, outside every pin");
                    bytes_out += payload.len();
                }
                Output::ToTun(packet) => {
                    panic!("unauthenticated input reached the TUN: {packet:02x?}")
                }
            }
        }
    }
    assert!(
        bytes_out <= bytes_in,
        "amplification: {bytes_out} bytes out for {bytes_in} in"
    );
    assert_eq!(core.stats().bytes_sent_unpinned, 0);
});
