//! `grantwire leases` and `grantwire revoke LEASE`: the user's own leases on the broker.

use std::fmt::Write as _;
use std::path::Path;

use grantwire_client_core::time::format_unix_time;
use grantwire_client_core::{BrokerClient, LeaseInfo, SessionStore};

use crate::cli::{LeasesArgs, RevokeArgs};
use crate::{print_json, write_stdout};

/// Lists the user's live leases: a table on stdout, or one JSON object with `--json`.
pub async fn leases(config_dir: &Path, args: LeasesArgs) -> anyhow::Result<()> {
    let session = SessionStore::new(config_dir).load()?;
    let list = BrokerClient::for_session(&session)?
        .leases(&session)
        .await?
        .leases;
    if args.json {
        let leases: Vec<serde_json::Value> = list.iter().map(lease_json).collect();
        return print_json(&serde_json::json!({ "leases": leases }));
    }
    if list.is_empty() {
        eprintln!("no live leases: `grantwire profile EDGE` makes one");
        return Ok(());
    }
    write_stdout(&table(&list))
}

/// Revokes one of the user's leases; the edge drops its peer at once.
pub async fn revoke(config_dir: &Path, args: RevokeArgs) -> anyhow::Result<()> {
    let session = SessionStore::new(config_dir).load()?;
    let revoked = BrokerClient::for_session(&session)?
        .revoke(&session, &args.lease)
        .await?;
    if args.json {
        print_json(&serde_json::json!({
            "revoked": { "id": revoked.id, "edge": revoked.edge },
        }))
    } else {
        eprintln!(
            "revoked lease {} on {}: its profile no longer works",
            revoked.id, revoked.edge
        );
        Ok(())
    }
}

fn lease_json(l: &LeaseInfo) -> serde_json::Value {
    serde_json::json!({
        "id": l.id,
        "edge": l.edge,
        "tunnel_address": l.tunnel_address,
        "pin": l.pin,
        "created_at": l.created_at,
        "expires_at": l.expires_at,
        "last_handshake_at": l.usage.and_then(|u| u.last_handshake_at),
    })
}

/// One line per lease under a header, columns padded to their widest cell.
fn table(leases: &[LeaseInfo]) -> String {
    let header = [
        "ID",
        "EDGE",
        "TUNNEL ADDRESS",
        "PIN",
        "EXPIRES",
        "LAST HANDSHAKE",
    ]
    .map(String::from);
    let rows: Vec<[String; 6]> = leases
        .iter()
        .map(|l| {
            let handshake = l.usage.and_then(|u| u.last_handshake_at);
            [
                l.id.clone(),
                l.edge.clone(),
                l.tunnel_address.to_string(),
                l.pin.to_string(),
                format_unix_time(l.expires_at),
                handshake.map_or_else(|| "never".into(), format_unix_time),
            ]
        })
        .collect();
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (w, cell) in widths.iter().zip(row) {
            // Writing to a String cannot fail.
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use grantwire_client_core::PrivateKey;
    use grantwire_proto::LeaseUsageInfo;

    fn info(id: &str, handshake: Option<i64>) -> LeaseInfo {
        LeaseInfo {
            id: id.into(),
            user: "alice".into(),
            edge: "home".into(),
            tunnel_address: "10.77.0.2".parse().unwrap(),
            pin: "198.51.100.7/32".parse().unwrap(),
            public_key: PrivateKey::from_random_bytes([1; 32]).public_key(),
            created_at: 0,
            expires_at: 1_700_000_000,
            ports: vec![32400],
            usage: handshake.map(|at| LeaseUsageInfo {
                last_handshake_at: Some(at),
                rx_bytes: 0,
                tx_bytes: 0,
                reported_at: at,
            }),
        }
    }

    #[test]
    fn table_lines_up_and_says_never_without_a_handshake() {
        let text = table(&[
            info("l-1", None),
            info("l-0123456789abcdef", Some(1_700_000_000)),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID  "), "{text}");
        let col = lines[0].find("EDGE").unwrap();
        assert!(
            lines.iter().skip(1).all(|l| &l[col..col + 4] == "home"),
            "{text}"
        );
        assert!(lines[1].ends_with("never"), "{text}");
        assert!(
            lines[2].ends_with(&format_unix_time(1_700_000_000)),
            "{text}"
        );
        assert!(text.contains("198.51.100.7/32") && text.contains("10.77.0.2"));
    }

    #[test]
    fn json_names_the_last_handshake_or_null() {
        let v = lease_json(&info("l-1", None));
        assert!(v["last_handshake_at"].is_null());
        assert_eq!(v["tunnel_address"], "10.77.0.2");
        let v = lease_json(&info("l-1", Some(5)));
        assert_eq!(v["last_handshake_at"], 5);
    }
}
