//! `grantwire-edge doctor`: reads Plex's Preferences.xml and the host, and reports each setting
//! that would let Plex be reached other than through a lease (or keep the tunnel from working),
//! with the exact fix.
//!
//! Exit codes: 0 no error-severity finding, 1 at least one, 2 the check could not run (the
//! preferences, the edge's state or the socket tables unreadable). DESIGN.md's 2 is "usage
//! error": each of those is fixed by a path or a flag (`--plex-prefs`, `--tunnel-subnet`,
//! `--proc-net`) or by running as root.

mod checks;
mod host;
mod output;
mod prefs;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use ipnet::Ipv4Net;
use serde::Serialize;

pub use checks::{check, Finding, Severity, Tunnel};
pub use host::{Host, SystemHost};
pub use prefs::{PlexPrefs, DEFAULT_PREFS_PATH};

use crate::cli::DoctorArgs;
use crate::state;

/// DESIGN.md's default tunnel, assumed when the edge has not enrolled yet (the broker's
/// `edge add --subnet` default).
pub const DEFAULT_TUNNEL_SUBNET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 77, 0, 0), 24);

/// Where the tunnel the checks used came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelSource {
    /// `--tunnel-subnet`.
    Flag,
    /// The edge config stored at enrolment.
    State,
    /// [`DEFAULT_TUNNEL_SUBNET`]: no flag and no enrolled edge in the state directory.
    Default,
}

/// What one run found, and against what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub prefs_path: PathBuf,
    pub state_dir: PathBuf,
    pub tunnel: Tunnel,
    pub tunnel_source: TunnelSource,
    pub findings: Vec<Finding>,
}

impl Report {
    /// No error-severity finding; warnings alone still pass.
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.severity != Severity::Error)
    }
}

/// Runs the doctor on this host and prints the report.
pub fn main(args: &DoctorArgs) -> ExitCode {
    let host = SystemHost {
        proc_net: args.proc_net.clone(),
    };
    let report = match diagnose(args, &host) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("grantwire-edge doctor: {err:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = output::print(&report, args.json) {
        eprintln!("grantwire-edge doctor: writing the report: {err:#}");
        return ExitCode::from(2);
    }
    ExitCode::from(if report.ok() { 0 } else { 1 })
}

/// Reads everything, then checks: any read failure is an error, never a finding, so a file
/// the doctor could not read never passes as a clean one.
fn diagnose(args: &DoctorArgs, host: &impl Host) -> Result<Report> {
    let path = &args.plex_prefs;
    let text = std::fs::read_to_string(path).with_context(|| {
        let hint = if path.as_os_str() == DEFAULT_PREFS_PATH {
            "where the Linux package keeps it; for another install (a container keeps it \
             under its config volume) give the file with --plex-prefs PATH"
                .to_owned()
        } else {
            format!(
                "give the right file with --plex-prefs PATH; the Linux package keeps it at \
                 {DEFAULT_PREFS_PATH}"
            )
        };
        format!(
            "cannot read Plex's preferences at {} ({hint})",
            path.display()
        )
    })?;
    let prefs = PlexPrefs::parse(&text)
        .with_context(|| format!("{} is not a Plex Preferences.xml", path.display()))?;
    let (tunnel, tunnel_source) = tunnel(args)?;
    let facts = host::facts(host).context("reading the host's listening sockets")?;
    Ok(Report {
        prefs_path: path.clone(),
        state_dir: args.state_dir.clone(),
        tunnel,
        tunnel_source,
        findings: check(&prefs, &facts, &tunnel),
    })
}

/// The flag wins over the stored config; the edge holds the subnet's first host address.
fn tunnel(args: &DoctorArgs) -> Result<(Tunnel, TunnelSource)> {
    if let Some(subnet) = args.tunnel_subnet {
        return Ok((first_host(subnet)?, TunnelSource::Flag));
    }
    let stored = state::read_config(&args.state_dir).with_context(|| {
        format!(
            "cannot read the edge's config in {} (run as the edge's user or root, or give \
             --tunnel-subnet CIDR)",
            args.state_dir.display()
        )
    })?;
    match stored {
        Some(config) => Ok((
            Tunnel {
                subnet: config.subnet,
                address: config.tunnel_address,
            },
            TunnelSource::State,
        )),
        None => Ok((first_host(DEFAULT_TUNNEL_SUBNET)?, TunnelSource::Default)),
    }
}

fn first_host(subnet: Ipv4Net) -> Result<Tunnel> {
    let subnet = subnet.trunc();
    let address = subnet
        .hosts()
        .next()
        .ok_or_else(|| anyhow!("the tunnel subnet {subnet} has no host address"))?;
    Ok(Tunnel { subnet, address })
}

#[cfg(test)]
mod tests {
    use super::host::fake::FakeHost;
    use super::host::{HostFacts, Listener, Proto};
    use super::*;
    use crate::guard::TableState;
    use crate::state::{Credential, StateDir};
    use grantwire_proto::EdgeConfig;

    fn args(dir: &std::path::Path) -> DoctorArgs {
        DoctorArgs {
            plex_prefs: dir.join("Preferences.xml"),
            state_dir: dir.join("state"),
            tunnel_subnet: None,
            proc_net: dir.join("net"),
            json: false,
        }
    }

    fn quiet() -> FakeHost {
        FakeHost(HostFacts {
            listeners: vec![],
            guard: TableState::Absent,
        })
    }

    const CLEAN: &str = r#"<Preferences PublishServerOnPlexOnlineKey="0" DlnaEnabled="0" GdmEnabled="0" RelayEnabled="0" customConnections="http://10.77.0.1:32400"/>"#;

    #[test]
    fn a_clean_file_on_a_quiet_host_is_ok_with_the_default_tunnel() {
        let tmp = tempfile::tempdir().unwrap();
        let args = args(tmp.path());
        std::fs::write(&args.plex_prefs, CLEAN).unwrap();
        let report = diagnose(&args, &quiet()).unwrap();
        assert_eq!(report.findings, []);
        assert!(report.ok());
        assert_eq!(report.tunnel_source, TunnelSource::Default);
        assert_eq!(report.tunnel.address, Ipv4Addr::new(10, 77, 0, 1));
        assert!(!args.state_dir.exists(), "the doctor must not create state");
    }

    #[test]
    fn the_tunnel_comes_from_the_state_unless_the_flag_says_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let mut args = args(tmp.path());
        std::fs::write(&args.plex_prefs, CLEAN).unwrap();
        let config = EdgeConfig {
            name: "home".into(),
            subnet: "10.9.0.0/24".parse().unwrap(),
            tunnel_address: "10.9.0.1".parse().unwrap(),
        };
        StateDir::open(&args.state_dir)
            .unwrap()
            .store_enrolment(&Credential::new("c".into()), &config)
            .unwrap();
        let report = diagnose(&args, &quiet()).unwrap();
        assert_eq!(report.tunnel_source, TunnelSource::State);
        assert_eq!(report.tunnel.address, Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].id.as_str(), "custom_url_missing");
        assert!(report.ok(), "a missing custom URL is a warning");

        args.tunnel_subnet = Some("10.77.0.99/24".parse().unwrap());
        let report = diagnose(&args, &quiet()).unwrap();
        assert_eq!(report.tunnel_source, TunnelSource::Flag);
        assert_eq!(report.tunnel.subnet.to_string(), "10.77.0.0/24");
        assert_eq!(report.findings, []);
    }

    #[test]
    fn host_facts_reach_the_checks() {
        let tmp = tempfile::tempdir().unwrap();
        let args = args(tmp.path());
        std::fs::write(&args.plex_prefs, CLEAN).unwrap();
        let host = FakeHost(HostFacts {
            listeners: vec![Listener {
                proto: Proto::Tcp,
                addr: "0.0.0.0:32400".parse().unwrap(),
                uid: 998,
            }],
            guard: TableState::Absent,
        });
        let report = diagnose(&args, &host).unwrap();
        assert_eq!(report.findings[0].id.as_str(), "plex_port_exposed");
        assert!(!report.ok());
    }

    #[test]
    fn unreadable_or_malformed_prefs_are_errors_naming_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let args = args(tmp.path());
        let err = format!("{:#}", diagnose(&args, &quiet()).unwrap_err());
        assert!(
            err.contains(&args.plex_prefs.display().to_string()),
            "{err}"
        );
        assert!(err.contains("--plex-prefs"), "{err}");
        assert!(err.contains("No such file"), "{err}");

        std::fs::write(&args.plex_prefs, "<Preferences GdmEnabled=\"0\"").unwrap();
        let err = format!("{:#}", diagnose(&args, &quiet()).unwrap_err());
        assert!(err.contains("is not a Plex Preferences.xml"), "{err}");
        assert!(err.contains("not well-formed"), "{err}");
    }

    #[test]
    fn a_corrupt_edge_config_is_an_error_not_the_default() {
        let tmp = tempfile::tempdir().unwrap();
        let args = args(tmp.path());
        std::fs::write(&args.plex_prefs, CLEAN).unwrap();
        std::fs::create_dir(&args.state_dir).unwrap();
        std::fs::write(args.state_dir.join("config.json"), "{").unwrap();
        let err = format!("{:#}", diagnose(&args, &quiet()).unwrap_err());
        assert!(err.contains("--tunnel-subnet"), "{err}");
    }

    #[test]
    fn a_host_subnet_still_has_an_address() {
        let t = first_host("10.77.0.7/32".parse().unwrap()).unwrap();
        assert_eq!(t.address, Ipv4Addr::new(10, 77, 0, 7));
    }
}
