//! Plex's `Preferences.xml`: a single `<Preferences .../>` element whose attributes are the
//! server's settings, with booleans written `"1"`/`"0"`.
//!
//! Attribute names and where they were confirmed (Plex publishes no schema for this file):
//! - `PublishServerOnPlexOnlineKey` (Settings → Remote Access), `allowedNetworks`: a real
//!   Preferences.xml in a public gist (hartzell/3d763df9f0df2db294f4fec23c7d2941), and the
//!   server's `/:/prefs` list as documented by the ioBroker.plex adapter (README-states,
//!   "Publish server on Plex Online"). Plex's support article "Require authentication for local network access"
//!   names `allowedNetworks` and its format: IP or IP/netmask, comma-separated, no spaces.
//! - `ManualPortMappingMode` (Remote Access → "Manually specify public port"), `DlnaEnabled`
//!   ("Enable the DLNA server"), `GdmEnabled` ("Enable local network discovery (GDM)"),
//!   `customConnections` ("Custom server access URLs"): ioBroker.plex's `/:/prefs` list.
//! - `RelayEnabled` (Settings → Network → "Enable Relay"): seen only in a public script's list
//!   of `/:/prefs` ids, among the network settings next to `customConnections`; Plex forum
//!   answers describe the switch ("you can disable relay in the network settings"). Less well
//!   attested than the others.
//!
//! Defaults when an attribute is absent are Plex's as far as its settings pages show them; the
//! DLNA and Relay defaults are not documented, so an absent one is read as on (see
//! [`DLNA_DEFAULT`]), which errs toward reporting.

use std::collections::BTreeMap;

use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// Where the Linux packages (deb, rpm) keep it: `$PLEX_HOME` is `/var/lib/plexmediaserver`.
pub const DEFAULT_PREFS_PATH: &str =
    "/var/lib/plexmediaserver/Library/Application Support/Plex Media Server/Preferences.xml";

/// Settings → Remote Access. On: Plex publishes its public address to plex.tv.
pub const REMOTE_ACCESS: &str = "PublishServerOnPlexOnlineKey";
/// Settings → Remote Access → "Manually specify public port". Off (the default): Plex asks
/// the router through UPnP/NAT-PMP to forward a public port to it.
pub const MANUAL_PORT_MAPPING: &str = "ManualPortMappingMode";
/// Settings → Network → "List of IP addresses and networks that are allowed without auth".
pub const ALLOWED_NETWORKS: &str = "allowedNetworks";
/// Settings → Network → "Custom server access URLs", comma-separated.
pub const CUSTOM_CONNECTIONS: &str = "customConnections";
/// Settings → DLNA → "Enable the DLNA server".
pub const DLNA: &str = "DlnaEnabled";
/// Settings → Network → "Enable local network discovery (GDM)".
pub const GDM: &str = "GdmEnabled";
/// Settings → Network → "Enable Relay".
pub const RELAY: &str = "RelayEnabled";

/// Plex's default for an absent `DlnaEnabled`. Undocumented; Plex's "Plex Home security
/// changes" article says the DLNA server gets switched off when a Home is made, which implies
/// it is on otherwise.
pub const DLNA_DEFAULT: bool = true;
/// GDM is ticked on a fresh install (Settings → Network, a "normal" setting).
pub const GDM_DEFAULT: bool = true;
/// Relay is on unless switched off; undocumented, so read as on like DLNA.
pub const RELAY_DEFAULT: bool = true;

/// Only these attributes are kept. The file also holds `PlexOnlineToken`, the server's
/// credential for the owner's Plex account: never holding it means no `Debug` or error can
/// print it.
const KEPT: [&str; 7] = [
    REMOTE_ACCESS,
    MANUAL_PORT_MAPPING,
    ALLOWED_NETWORKS,
    CUSTOM_CONNECTIONS,
    DLNA,
    GDM,
    RELAY,
];

#[derive(Debug, thiserror::Error)]
pub enum PrefsError {
    #[error("not well-formed XML at byte {position}")]
    Xml {
        position: u64,
        #[source]
        source: quick_xml::Error,
    },
    #[error("a malformed attribute on <Preferences>")]
    Attr(#[from] AttrError),
    #[error("the file ends inside an element (truncated?)")]
    Truncated,
    #[error("no <Preferences> element (an empty or truncated file?)")]
    NoPreferences,
    #[error("the root element is <{0}>, not <Preferences>")]
    WrongRoot(String),
}

/// The settings `doctor` reads, as Plex wrote them (entities decoded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlexPrefs {
    attrs: BTreeMap<&'static str, String>,
}

impl PlexPrefs {
    /// Parses the whole file, so a truncated or corrupt one is an error rather than a partial
    /// read that would look like defaults.
    pub fn parse(xml: &str) -> Result<Self, PrefsError> {
        let mut reader = Reader::from_str(xml);
        let mut version = XmlVersion::Implicit1_0;
        let mut prefs = None;
        // quick-xml reports a mismatched end tag but not a missing one at the end of input.
        let mut open = 0usize;
        loop {
            let event = reader.read_event().map_err(|source| PrefsError::Xml {
                position: reader.error_position(),
                source,
            })?;
            match event {
                Event::Decl(decl) => {
                    version = decl.xml_version().map_err(|source| PrefsError::Xml {
                        position: reader.buffer_position(),
                        source,
                    })?;
                }
                Event::Start(element) => {
                    open += 1;
                    if prefs.is_none() {
                        prefs = Some(Self::from_element(&element, version)?);
                    }
                }
                Event::Empty(element) if prefs.is_none() => {
                    prefs = Some(Self::from_element(&element, version)?);
                }
                Event::End(_) => open = open.saturating_sub(1),
                Event::Eof if open > 0 => return Err(PrefsError::Truncated),
                Event::Eof => break,
                _ => {}
            }
        }
        prefs.ok_or(PrefsError::NoPreferences)
    }

    /// The raw value, `None` when Plex never wrote the setting (its default applies).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    /// A boolean setting. Plex writes `1`/`0`; anything but `0`, `false` or empty reads as on,
    /// since an unknown value is better reported than trusted.
    pub fn flag(&self, name: &str, default: bool) -> bool {
        match self.get(name).map(str::trim) {
            None => default,
            Some(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
        }
    }

    fn from_element(element: &BytesStart<'_>, version: XmlVersion) -> Result<Self, PrefsError> {
        let name = element.name();
        if name.as_ref() != b"Preferences" {
            return Err(PrefsError::WrongRoot(
                String::from_utf8_lossy(name.as_ref()).into_owned(),
            ));
        }
        let mut attrs = BTreeMap::new();
        for attr in element.attributes() {
            let attr = attr?;
            let Some(key) = KEPT.iter().find(|k| k.as_bytes() == attr.key.as_ref()) else {
                continue;
            };
            let value = attr
                .normalized_value(version)
                .map_err(|source| PrefsError::Xml {
                    position: 0,
                    source,
                })?;
            attrs.insert(*key, value.into_owned());
        }
        Ok(Self { attrs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_shaped_file_and_keeps_no_token() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<Preferences OldestPreviousVersion="1.40.0.7998" MachineIdentifier="7cd0df33" PlexOnlineToken="secret-token-abc" allowedNetworks="192.168.42.0/255.255.255.0" PublishServerOnPlexOnlineKey="1" customConnections="http://10.77.0.1:32400,https://a&amp;b.example:443" GdmEnabled="0"/>
"#;
        let prefs = PlexPrefs::parse(xml).unwrap();
        assert_eq!(
            prefs.get(ALLOWED_NETWORKS),
            Some("192.168.42.0/255.255.255.0")
        );
        assert_eq!(
            prefs.get(CUSTOM_CONNECTIONS),
            Some("http://10.77.0.1:32400,https://a&b.example:443")
        );
        assert!(prefs.flag(REMOTE_ACCESS, false));
        assert!(!prefs.flag(GDM, GDM_DEFAULT));
        assert_eq!(prefs.get(DLNA), None);
        assert!(!format!("{prefs:?}").contains("secret-token"));
    }

    #[test]
    fn flags_default_when_absent_and_read_unknown_values_as_on() {
        let prefs = PlexPrefs::parse(
            r#"<Preferences DlnaEnabled="0" GdmEnabled="yes" RelayEnabled="" ManualPortMappingMode="true"/>"#,
        )
        .unwrap();
        assert!(!prefs.flag(DLNA, true));
        assert!(prefs.flag(GDM, false));
        assert!(!prefs.flag(RELAY, true));
        assert!(prefs.flag(MANUAL_PORT_MAPPING, false));
        assert!(prefs.flag(REMOTE_ACCESS, true));
        assert!(!prefs.flag(REMOTE_ACCESS, false));
    }

    #[test]
    fn a_start_tag_with_content_is_read_too() {
        let prefs =
            PlexPrefs::parse("<Preferences GdmEnabled=\"1\">\n  <!-- x -->\n</Preferences>")
                .unwrap();
        assert!(prefs.flag(GDM, false));
    }

    #[test]
    fn malformed_files_are_errors_not_defaults() {
        for (xml, want) in [
            ("", "no <Preferences>"),
            ("<?xml version=\"1.0\"?>\n", "no <Preferences>"),
            ("<Preferences GdmEnabled=\"0\"", "not well-formed"),
            ("<Preferences GdmEnabled=\"0\">", "ends inside an element"),
            (
                "<Preferences>\n  <Server>\n</Preferences>",
                "not well-formed",
            ),
            ("<Preferences GdmEnabled=0/>", "malformed attribute"),
            (
                "<Preferences GdmEnabled=\"0\" GdmEnabled=\"1\"/>",
                "malformed attribute",
            ),
            ("<Preferences></Prefs>", "not well-formed"),
            ("<Settings GdmEnabled=\"0\"/>", "root element is <Settings>"),
            (
                "<Preferences customConnections=\"a&bogus;\"/>",
                "not well-formed",
            ),
        ] {
            let err = PlexPrefs::parse(xml).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{xml:?}: got {err:?}, want {want:?}"
            );
        }
    }
}
