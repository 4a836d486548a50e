//! What the admin commands print: one JSON object on stdout with `--json`, human text without.
// Printing results on stdout is this module's job.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use grantwire_broker::tls::FINGERPRINT_FILE;
use grantwire_proto::{
    EdgeAddResponse, GrantInfo, GrantRevokeResponse, LeaseListResponse, UserAddResponse,
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
        "Added edge {} (subnet {}, edge address {}, endpoint {}).",
        resp.name, resp.subnet, resp.tunnel_address, resp.endpoint
    );
    println!("One-time enrolment token: {}", resp.enrolment_token);
    println!();
    println!("Save the token to a file (mode 0600) on the edge host, then run:");
    println!(
        "  grantwire-edge run --broker https://BROKER:8443 --token-file FILE --broker-fingerprint {fingerprint}"
    );
    Ok(())
}

pub fn grant_added(resp: &GrantInfo, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    let ttl = humantime::format_duration(Duration::from_secs(resp.lease_ttl_secs));
    println!(
        "Granted {} access to edge {} (ports {:?}, leases last {ttl}).",
        resp.user, resp.edge, resp.ports
    );
    Ok(())
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

pub fn lease_list(resp: &LeaseListResponse, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(resp);
    }
    if resp.leases.is_empty() {
        println!("No live leases.");
        return Ok(());
    }
    println!(
        "{:<20} {:<16} {:<16} {:<15} {:<22} EXPIRES (UTC)",
        "ID", "USER", "EDGE", "ADDRESS", "PIN"
    );
    for l in &resp.leases {
        let expires = u64::try_from(l.expires_at)
            .map(|s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)))
            .map(|t| t.to_string())
            .unwrap_or_else(|_| l.expires_at.to_string());
        println!(
            "{:<20} {:<16} {:<16} {:<15} {:<22} {expires}",
            l.id,
            l.user,
            l.edge,
            l.tunnel_address.to_string(),
            l.pin.to_string()
        );
    }
    Ok(())
}
