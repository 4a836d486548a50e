//! The list of common passwords the broker refuses (ASVS 2.1.7): the 10,000 most frequent of
//! zxcvbn's list, compiled in so the check needs no file at run time.

use std::collections::HashSet;
use std::sync::OnceLock;

const LIST: &str = include_str!("../data/common-passwords.txt");

/// Whether `password` (compared case-insensitively) is on the list.
pub fn is_common(password: &str) -> bool {
    static SET: OnceLock<HashSet<String>> = OnceLock::new();
    let set = SET.get_or_init(|| {
        LIST.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_lowercase)
            .collect()
    });
    set.contains(&password.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_ten_thousand_entries() {
        let n = LIST
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert!(n >= 10_000, "{n}");
        assert!(is_common("password"));
        assert!(is_common("PassWord"));
        assert!(!is_common("a passphrase nobody would pick 7"));
    }
}
