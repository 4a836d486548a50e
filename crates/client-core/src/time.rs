//! Wall-clock helpers. Times on the wire are Unix seconds; people see RFC 3339 in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch by this device's clock. A clock set before 1970 reads as 0,
/// which makes every session look expired rather than valid forever.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2024-05-01T18:00:00Z`. Times before the epoch print as the epoch.
pub fn format_unix_time(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_seconds() {
        assert_eq!(format_unix_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_unix_time(-5), "1970-01-01T00:00:00Z");
        assert!(unix_now() > 1_700_000_000);
    }
}
