//! Reading the daemons' log lines: tracing's default format, `TIMESTAMP  LEVEL target: message
//! key=value ...`, with an RFC 3339 UTC timestamp to the microsecond.

use std::time::SystemTime;

/// The line's timestamp.
pub fn time(line: &str) -> Option<SystemTime> {
    let stamp = line.split_whitespace().next()?;
    humantime::parse_rfc3339_weak(stamp).ok()
}

/// The value of field `key` (`key=value`, up to the next space).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))?;
    let rest = &line[at + key.len() + 2..];
    Some(rest.split_whitespace().next().unwrap_or(""))
}

pub fn field_num(line: &str, key: &str) -> Option<u64> {
    field(line, key)?.parse().ok()
}
