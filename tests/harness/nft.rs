//! nftables for tests: load a ruleset into a namespace, read a named counter back. Counters are
//! the kernel's own and exact at any packet rate, where a capture under a flood can drop
//! packets (and so cannot prove that none of a kind was sent).

use std::time::Duration;

use super::netns::Netns;

/// A named nftables counter's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// `nft -f -` with `ruleset` inside `ns`; panics with nft's message if it is refused.
pub fn load(ns: &Netns, ruleset: &str) {
    ns.exec_with(
        &["nft", "-f", "-"],
        Some(ruleset.as_bytes()),
        Duration::from_secs(10),
    )
    .expect_ok(&format!("nft -f - in {}:\n{ruleset}", ns.name()));
}

/// The counter `name` of the `inet` table `table` in `ns`, from `nft -j`.
pub fn counter(ns: &Netns, table: &str, name: &str) -> Counter {
    let out = ns.exec_ok(&["nft", "-j", "list", "counter", "inet", table, name]);
    let v = out.json();
    let counter = v["nftables"]
        .as_array()
        .and_then(|items| items.iter().find_map(|i| i.get("counter")))
        .unwrap_or_else(|| panic!("no counter in `nft -j list counter`:\n{out}"));
    let field = |f: &str| {
        counter[f]
            .as_u64()
            .unwrap_or_else(|| panic!("counter {name} has no {f}:\n{out}"))
    };
    Counter {
        packets: field("packets"),
        bytes: field("bytes"),
    }
}
