//! What the admin commands print: one JSON object on stdout with `--json`, human text without.
// Printing results on stdout is this module's job.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use grantwire_broker::tls::FINGERPRINT_FILE;
use grantwire_proto::{
    AuditEntry, AuditResponse, BackupResponse, EdgeAddResponse, EdgeListResponse,
    EdgeRemoveResponse, GrantInfo, GrantListResponse, GrantRevokeResponse, LeaseListResponse,
    LeaseRevokeResponse, UserAddResponse, UserInviteResponse,
};
use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;
use serde::Serialize;

fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

pub fn user_added(resp: &UserAddResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    let role = if resp.admin { " (admin)" } else { "" };
    println!("Added user {}{role}.", resp.name);
    print_totp(resp)
}

/// `user invite`: the temporary password, shown once, and what the user does with it.
pub fn user_invited(resp: &UserInviteResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    let role = if resp.admin { " (admin)" } else { "" };
    println!("Invited user {}{role}.", resp.name);
    println!(
        "Temporary password (shown once): {}",
        resp.temporary_password
    );
    println!(
        "Good until {} for signing in once on the broker's web pages, at /welcome, where {} \
         chooses a password and sets up an authenticator app.",
        unix_time(resp.expires_at),
        resp.name
    );
    Ok(())
}

/// `user reset-totp`: the new secret, shown like `user add` shows the first.
pub fn totp_reset(resp: &UserAddResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    println!(
        "New TOTP secret for {}; their sessions have ended.",
        resp.name
    );
    print_totp(resp)
}

fn print_totp(resp: &UserAddResponse) -> anyhow::Result<()> {
    println!("TOTP secret (shown once): {}", resp.totp_secret);
    println!("otpauth URI: {}", resp.otpauth_uri);
    println!();
    println!("Scan with an authenticator app:");
    let qr = QrCode::new(resp.otpauth_uri.as_bytes())?;
    let art = qr
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    println!("{art}");
    Ok(())
}

pub fn edge_added(resp: &EdgeAddResponse, data_dir: &Path, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    let fingerprint = std::fs::read_to_string(data_dir.join(FINGERPRINT_FILE))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "FINGERPRINT".into());
    println!(
        "Added edge {} (subnet {}, edge address {}, endpoints {}).",
        resp.name,
        resp.subnet,
        resp.tunnel_address,
        resp.endpoints.join(" ")
    );
    println!("One-time enrolment token: {}", resp.enrolment_token);
    println!(
        "It works until {} UTC (edge add --expires).",
        unix_time(resp.enrolment_expires_at)
    );
    println!();
    println!("Save the token to a file (mode 0600) on the edge host, then run:");
    println!(
        "  grantwire-edge run --broker https://BROKER:8443 --token-file FILE --broker-fingerprint {fingerprint}"
    );
    Ok(())
}

pub fn edge_list(resp: &EdgeListResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    if resp.edges.is_empty() {
        println!("No edges.");
        return Ok(());
    }
    println!(
        "{:<16} {:<18} {:<9} {:<10} {:<21} {:<21} ENDPOINTS",
        "NAME", "SUBNET", "ENROLLED", "CONNECTED", "LAST SEEN (UTC)", "TOKEN UNTIL (UTC)"
    );
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for e in &resp.edges {
        let seen = e.last_seen.map_or_else(|| "never".into(), unix_time);
        let yes = |b: bool| if b { "yes" } else { "no" };
        let token = match e.enrolment_expires_at {
            Some(at) if at <= now => "expired".into(),
            Some(at) => unix_time(at),
            None => "-".into(),
        };
        println!(
            "{:<16} {:<18} {:<9} {:<10} {:<21} {:<21} {}",
            e.name,
            e.subnet.to_string(),
            yes(e.enrolled),
            yes(e.connected),
            seen,
            token,
            e.endpoints.join(" ")
        );
    }
    Ok(())
}

pub fn edge_removed(resp: &EdgeRemoveResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    println!(
        "Removed edge {}; {} live lease(s) revoked, its credential no longer works.",
        resp.name, resp.revoked_leases
    );
    Ok(())
}

pub fn grant_added(resp: &GrantInfo, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    let ttl = humantime::format_duration(Duration::from_secs(resp.lease_ttl_secs));
    println!(
        "Granted {} access to edge {} (ports {:?}, leases last {ttl}, at most {} live at once).",
        resp.user, resp.edge, resp.ports, resp.max_leases
    );
    Ok(())
}

pub fn grant_list(resp: &GrantListResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    if resp.grants.is_empty() {
        println!("No live grants.");
        return Ok(());
    }
    println!(
        "{:<16} {:<16} {:<10} {:<16} {:<8} {:<10} UNTIL (UTC)",
        "USER", "EDGE", "LEASE TTL", "PORTS", "PIN /4 /6", "MAX LEASES"
    );
    for g in &resp.grants {
        let ttl = humantime::format_duration(Duration::from_secs(g.lease_ttl_secs)).to_string();
        let ports = g
            .ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let until = g.expires_at.map_or_else(|| "-".into(), unix_time);
        println!(
            "{:<16} {:<16} {:<10} {:<16} /{}/{:<5} {:<10} {until}",
            g.user, g.edge, ttl, ports, g.pin_prefix4, g.pin_prefix6, g.max_leases
        );
    }
    Ok(())
}

/// Unix seconds as RFC 3339 UTC (or the number, if out of range).
pub fn unix_time(secs: i64) -> String {
    u64::try_from(secs)
        .map(|s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string())
        .unwrap_or_else(|_| secs.to_string())
}

pub fn grant_revoked(resp: &GrantRevokeResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    println!(
        "Revoked {}'s grant on edge {}; {} live lease(s) revoked.",
        resp.user, resp.edge, resp.revoked_leases
    );
    Ok(())
}

pub fn backup(resp: &BackupResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    println!(
        "Wrote {} ({} bytes, integrity checked).",
        resp.path, resp.bytes
    );
    Ok(())
}

pub fn audit(resp: &AuditResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    for e in &resp.entries {
        println!("{}", audit_line(e));
    }
    Ok(())
}

/// One audit row on one line. Actor and detail can hold what a stranger typed (a failed
/// login's user name), so every field is escaped: a name holding a newline or an ESC sequence
/// cannot forge a row or drive the admin's terminal.
fn audit_line(e: &AuditEntry) -> String {
    format!(
        "{} {:<18} {:<16} {:<40} {}",
        unix_time(e.at),
        terminal_safe(&e.kind),
        terminal_safe(e.actor.as_deref().unwrap_or("-")),
        terminal_safe(e.source_ip.as_deref().unwrap_or("-")),
        terminal_safe(e.detail.as_deref().unwrap_or(""))
    )
}

/// `text` with control characters (C0, DEL, C1), line and paragraph separators and bidi
/// overrides written as escapes (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`), and `\` as `\\`
/// so an escape in the output always means an escaped character.
fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            '\u{2028}'
            | '\u{2029}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

pub fn lease_revoked(resp: &LeaseRevokeResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    println!(
        "Revoked lease {} ({} on edge {}).",
        resp.id, resp.user, resp.edge
    );
    Ok(())
}

pub fn lease_list(resp: &LeaseListResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    if resp.leases.is_empty() {
        println!("No live leases.");
        return Ok(());
    }
    println!(
        "{:<20} {:<16} {:<16} {:<15} {:<22} {:<20} {:<20} {:>12} {:>12}",
        "ID",
        "USER",
        "EDGE",
        "ADDRESS",
        "PIN",
        "EXPIRES (UTC)",
        "HANDSHAKE (UTC)",
        "RX BYTES",
        "TX BYTES"
    );
    for l in &resp.leases {
        let (handshake, rx, tx) = match &l.usage {
            Some(u) => (
                u.last_handshake_at
                    .map_or_else(|| "none yet".to_owned(), utc),
                u.rx_bytes.to_string(),
                u.tx_bytes.to_string(),
            ),
            None => ("not reported".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:<20} {:<16} {:<16} {:<15} {:<22} {:<20} {:<20} {rx:>12} {tx:>12}",
            l.id,
            l.user,
            l.edge,
            l.tunnel_address.to_string(),
            l.pin.to_string(),
            utc(l.expires_at),
            handshake,
        );
    }
    Ok(())
}

/// Unix seconds as RFC 3339 UTC, or the number itself when out of range.
fn utc(secs: i64) -> String {
    u64::try_from(secs)
        .map(|s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string())
        .unwrap_or_else(|_| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_row_is_one_line_whatever_its_fields_hold() {
        let forged = "x\n2026-12-07 04:00:00 login_ok alice 127.0.0.1\r\u{1b}[2J\u{7f}\u{9b}\\";
        let entry = AuditEntry {
            id: 1,
            at: 1_700_000_000,
            kind: "login_failed".into(),
            actor: Some(forged.into()),
            source_ip: Some("127.0.0.1".into()),
            detail: Some("a\u{202e}b\u{2028}c".into()),
        };
        let line = audit_line(&entry);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(!line.contains(['\u{202e}', '\u{2028}']), "{line:?}");
        assert!(
            line.contains(r"x\n2026-12-07 04:00:00 login_ok alice 127.0.0.1\r\x1b[2J\x7f\x9b\\"),
            "{line}"
        );
        assert!(line.ends_with(r"a\u{202e}b\u{2028}c"), "{line}");
    }

    #[test]
    fn plain_text_is_left_as_it_is() {
        assert_eq!(
            terminal_safe("alice l-0123 édge 2001:db8::1"),
            "alice l-0123 édge 2001:db8::1"
        );
    }
}
