//! Giving memory back to the system after the lease set shrinks.
//!
//! glibc's allocator keeps the pages it freed for the next allocation: after 10,000 leases come
//! and go, the edge's resident memory stays where it was with them (18 MB instead of 9 MB in
//! `scripts/bench/edge-scale.sh`). [`ShrinkTrim`] decides when enough leases have gone for that
//! to matter, and [`release_free_memory`] asks the allocator to return its free pages. The shell
//! calls them after applying a lease set (off the data plane's task, since the call walks the
//! whole heap); the scale benchmark calls the same two, so it measures what the edge does.
//!
//! Not sans-IO in the strict sense (it touches the process's allocator), but it reads no clock
//! and does no I/O, so it lives here where both the shell and the benchmark can reach it.

/// Leases that must have gone, counted from the most the edge held since it last released
/// memory, before it releases again. A lease costs about 0.65 KiB idle and 10 KiB more with a
/// live tunnel, so this is one to ten MiB; fewer is not worth walking the heap for.
pub const TRIM_AFTER_DROP: usize = 1024;

/// Decides, from the lease count after each applied set, when to release freed memory: once the
/// count has fallen [`TRIM_AFTER_DROP`] below the most it was since the last release, whether in
/// one set (a grant with many leases revoked) or over many (leases expiring one by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShrinkTrim {
    peak: usize,
    min_drop: usize,
}

impl Default for ShrinkTrim {
    fn default() -> Self {
        Self::new(TRIM_AFTER_DROP)
    }
}

impl ShrinkTrim {
    pub const fn new(min_drop: usize) -> Self {
        Self { peak: 0, min_drop }
    }

    /// Records the lease count after an applied set; true when memory should be released now.
    /// Saying true resets the reference point to `leases`, so a shrinking edge releases once
    /// per [`TRIM_AFTER_DROP`] leases gone, not after every set.
    pub fn observe(&mut self, leases: usize) -> bool {
        self.peak = self.peak.max(leases);
        if self.peak - leases >= self.min_drop.max(1) {
            self.peak = leases;
            true
        } else {
            false
        }
    }
}

/// Blocks at least this large get mappings of their own, returned to the system when freed.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD`]. By default glibc raises the threshold to
/// the size of the largest mapped block freed so far, so after the first 2.4 MB lease set every
/// later one (and its copies) comes from the heaps, where fragments of it outlive the set. Call
/// once, first thing in `main`. True when the allocator took the setting.
pub fn map_large_blocks() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(MMAP_THRESHOLD).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes no pointers; it changes one tunable of glibc's allocator under
        // the allocator's own lock and is documented as callable at any time.
        #[allow(unsafe_code)]
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) };
        set == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Returns the allocator's free pages to the system (glibc `malloc_trim(0)`, which walks every
/// arena, not only the main heap's top). True when memory was released; always false where the
/// allocator is not glibc's.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and only rearranges glibc's own free lists
        // under the allocator's locks; it is safe to call from any thread at any time, and
        // this crate allocates only through the system allocator (no other allocator holds
        // pointers into memory glibc could give back).
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_fixed_mmap_threshold() {
        assert!(map_large_blocks());
    }

    #[test]
    fn releases_once_enough_leases_have_gone_in_one_set() {
        let mut t = ShrinkTrim::new(1000);
        assert!(!t.observe(0));
        assert!(!t.observe(10_000), "growing never releases");
        assert!(!t.observe(9_001), "999 gone is not enough");
        assert!(t.observe(0), "all gone");
        assert!(!t.observe(0), "nothing more to release");
    }

    #[test]
    fn releases_after_leases_go_one_by_one_and_then_counts_afresh() {
        let mut t = ShrinkTrim::new(1000);
        t.observe(5_000);
        let released: Vec<usize> = (0..5_000).rev().filter(|&n| t.observe(n)).collect();
        assert_eq!(released, vec![4_000, 3_000, 2_000, 1_000, 0]);
        // After a release the reference point is the count then, and growth raises it again.
        t.observe(3_000);
        assert!(!t.observe(2_500));
        assert!(t.observe(2_000));
    }

    #[test]
    fn a_small_edge_never_releases_and_zero_threshold_means_any_drop() {
        let mut t = ShrinkTrim::default();
        for n in [0, 10, 500, 3, 1_000, 0] {
            assert!(!t.observe(n), "{n}");
        }
        let mut any = ShrinkTrim::new(0);
        any.observe(2);
        assert!(!any.observe(2));
        assert!(any.observe(1));
    }

    #[test]
    fn releasing_is_harmless_at_any_time() {
        let keep: Vec<Box<[u8; 4096]>> = (0..64).map(|_| Box::new([7u8; 4096])).collect();
        let _ = release_free_memory();
        assert!(keep.iter().all(|b| b.iter().all(|&x| x == 7)));
    }
}
