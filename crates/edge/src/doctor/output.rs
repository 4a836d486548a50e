//! What `doctor` prints: one JSON object on stdout with `--json`, human text without.
// Printing the report on stdout is this module's job.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;

use serde::Serialize;

use super::checks::{Finding, Severity};
use super::{Report, TunnelSource};

#[derive(Serialize)]
struct Json<'a> {
    ok: bool,
    findings: &'a [Finding],
    tunnel: JsonTunnel<'a>,
    plex_prefs: String,
}

#[derive(Serialize)]
struct JsonTunnel<'a> {
    subnet: String,
    address: String,
    source: &'a TunnelSource,
}

pub fn print(report: &Report, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string(&json(report))?);
    } else {
        print!("{}", human(report));
    }
    Ok(())
}

fn json(report: &Report) -> Json<'_> {
    Json {
        ok: report.ok(),
        findings: &report.findings,
        tunnel: JsonTunnel {
            subnet: report.tunnel.subnet.to_string(),
            address: report.tunnel.address.to_string(),
            source: &report.tunnel_source,
        },
        plex_prefs: report.prefs_path.display().to_string(),
    }
}

/// One block per finding: severity and id, then the problem and the fix.
fn human(report: &Report) -> String {
    let mut out = String::new();
    let tunnel = &report.tunnel;
    let source = match report.tunnel_source {
        TunnelSource::Flag => "from --tunnel-subnet".to_owned(),
        TunnelSource::State => format!("from the edge's config in {}", report.state_dir.display()),
        TunnelSource::Default => format!(
            "assumed: {} holds no enrolled edge; give --state-dir or --tunnel-subnet",
            report.state_dir.display()
        ),
    };
    let _ = writeln!(out, "Plex preferences: {}", report.prefs_path.display());
    let _ = writeln!(
        out,
        "Tunnel: edge {} in {} ({source})",
        tunnel.address, tunnel.subnet
    );
    for finding in &report.findings {
        let severity = match finding.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "\n{severity} [{}]", finding.id.as_str());
        let _ = writeln!(out, "  problem: {}", finding.problem);
        let _ = writeln!(out, "  fix:     {}", finding.fix);
    }
    let errors = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = report.findings.len() - errors;
    if report.findings.is_empty() {
        let _ = writeln!(out, "\nNo problems found.");
    } else {
        let _ = writeln!(out, "\n{errors} error(s), {warnings} warning(s).");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::checks::{FindingId, Tunnel};

    fn report(findings: Vec<Finding>, source: TunnelSource) -> Report {
        Report {
            prefs_path: "/p/Preferences.xml".into(),
            state_dir: "/s".into(),
            tunnel: Tunnel {
                subnet: "10.77.0.0/24".parse().unwrap(),
                address: "10.77.0.1".parse().unwrap(),
            },
            tunnel_source: source,
            findings,
        }
    }

    fn finding(id: FindingId, severity: Severity) -> Finding {
        Finding {
            id,
            severity,
            problem: "the problem".into(),
            fix: "the fix".into(),
        }
    }

    #[test]
    fn json_has_ok_findings_and_the_tunnel() {
        let r = report(
            vec![finding(FindingId::GdmOn, Severity::Warning)],
            TunnelSource::State,
        );
        let value = serde_json::to_value(json(&r)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "ok": true,
                "findings": [{"id": "gdm_on", "severity": "warning",
                              "problem": "the problem", "fix": "the fix"}],
                "tunnel": {"subnet": "10.77.0.0/24", "address": "10.77.0.1", "source": "state"},
                "plex_prefs": "/p/Preferences.xml",
            })
        );
        let r = report(
            vec![finding(FindingId::RemoteAccessOn, Severity::Error)],
            TunnelSource::Default,
        );
        let value = serde_json::to_value(json(&r)).unwrap();
        assert_eq!(value["ok"], false);
        assert_eq!(value["tunnel"]["source"], "default");
    }

    #[test]
    fn human_text_has_a_block_per_finding_and_a_count() {
        let r = report(
            vec![
                finding(FindingId::RemoteAccessOn, Severity::Error),
                finding(FindingId::DlnaOn, Severity::Warning),
            ],
            TunnelSource::Default,
        );
        let text = human(&r);
        assert!(text
            .contains("\nerror [remote_access_on]\n  problem: the problem\n  fix:     the fix\n"));
        assert!(text.contains("\nwarning [dlna_on]\n"));
        assert!(text.contains("assumed: /s holds no enrolled edge"));
        assert!(text.ends_with("1 error(s), 1 warning(s).\n"));
        assert!(human(&report(vec![], TunnelSource::Flag)).ends_with("No problems found.\n"));
    }
}
