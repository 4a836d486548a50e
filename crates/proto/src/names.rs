//! The free-text fields of a lease answer, as types that exist only in their valid shape.
//!
//! A client writes these into a wg-quick file that `wg-quick` runs as root, and shows them in a
//! terminal. A broker that could send `"endpoint": "…\nPostUp = …"` would run a command on
//! every client, so each field is parsed on arrival (serde goes through [`FromStr`]) into a type
//! whose text holds no whitespace, no control character and nothing wg-quick reads as syntax.
//! The broker's own input checks use the same rules, so what it accepts it can also send.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that does not have its field's shape. The message shows the value escaped
/// (`{:?}`) and shortened, so it can neither forge terminal lines nor flood one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {shown} is not {rule}")]
pub struct FieldError {
    what: &'static str,
    shown: String,
    rule: &'static str,
}

impl FieldError {
    fn new(what: &'static str, value: &str, rule: &'static str) -> Self {
        const SHOWN_MAX: usize = 80;
        let mut short: String = value.chars().take(SHOWN_MAX).collect();
        if short.len() < value.len() {
            short.push('…');
        }
        Self {
            what,
            shown: format!("{short:?}"),
            rule,
        }
    }

    /// What the rule is, without the value: for answers to the person who typed the value.
    pub fn rule(&self) -> &'static str {
        self.rule
    }
}

/// A user's name: 1-32 characters of `a-z`, `0-9` and `-`. It appears unescaped in URIs, file
/// names, audit lines (`user=NAME`) and the TOTP app's account label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

impl UserName {
    pub const RULE: &'static str = PLAIN_NAME_RULE;
    pub const MAX_LEN: usize = PLAIN_NAME_MAX;
    pub const HTML_PATTERN: &'static str = PLAIN_NAME_PATTERN;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserName {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, FieldError> {
        if is_plain_name(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(FieldError::new("user name", s, Self::RULE))
        }
    }
}

/// An edge's name: 1-32 characters of `a-z`, `0-9` and `-`. Safe as a file name, a word in a
/// terminal line and, when short enough, in a tunnel's name ([`EdgeName::tunnel_name`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeName(String);

impl EdgeName {
    pub const RULE: &'static str = PLAIN_NAME_RULE;
    pub const MAX_LEN: usize = PLAIN_NAME_MAX;
    pub const HTML_PATTERN: &'static str = PLAIN_NAME_PATTERN;
    /// What a tunnel's name starts with, so a person sees which tunnels are grantwire's.
    pub const TUNNEL_PREFIX: &'static str = "gw-";
    /// Linux's limit on an interface name (IFNAMSIZ - 1). wg-quick names the interface after
    /// the profile's file and the WireGuard apps take the tunnel's name from it, both capped
    /// at this length.
    pub const TUNNEL_NAME_MAX: usize = 15;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `gw-EDGE`, the name of this edge's tunnel (and of its profile file, before `.conf`), or
    /// an error when that passes [`Self::TUNNEL_NAME_MAX`]. Never shortened: two edges whose
    /// names share a beginning would get one tunnel name.
    pub fn tunnel_name(&self) -> Result<String, TunnelNameTooLong> {
        let name = format!("{}{}", Self::TUNNEL_PREFIX, self.0);
        if name.len() <= Self::TUNNEL_NAME_MAX {
            Ok(name)
        } else {
            Err(TunnelNameTooLong { tunnel: name })
        }
    }
}

impl FromStr for EdgeName {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, FieldError> {
        if is_plain_name(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(FieldError::new("edge name", s, Self::RULE))
        }
    }
}

/// `gw-EDGE` is longer than a tunnel's name may be. The edge name is valid; only a tunnel
/// named after it cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the tunnel name {tunnel:?} would have {} characters and a tunnel's name has at most {}, so \
     an edge named in it has at most {} characters",
    tunnel.len(),
    EdgeName::TUNNEL_NAME_MAX,
    EdgeName::TUNNEL_NAME_MAX - EdgeName::TUNNEL_PREFIX.len()
)]
pub struct TunnelNameTooLong {
    pub tunnel: String,
}

/// The broker has enforced this for user and edge names since its first release, so every
/// stored name has this shape; DESIGN.md states no other.
const PLAIN_NAME_RULE: &str = "1-32 characters of a-z, 0-9 and '-'";
const PLAIN_NAME_MAX: usize = 32;
/// The rule as an HTML `pattern` (a JavaScript regular expression the browser anchors at both
/// ends), so a form says no before it is sent. The test below generates strings from it.
const PLAIN_NAME_PATTERN: &str = "[a-z0-9\\-]{1,32}";

fn is_plain_name(s: &str) -> bool {
    (1..=PLAIN_NAME_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A lease id as the broker makes them: `l-` and lowercase hex (16 digits today; up to 32
/// letters or digits are taken, so ids in test fixtures and older databases still parse). Safe
/// in a URL path and a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(String);

impl LeaseId {
    pub const RULE: &'static str = "'l-' and 1-32 characters of a-z and 0-9";

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LeaseId {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, FieldError> {
        let ok = s.strip_prefix("l-").is_some_and(|rest| {
            (1..=32).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(FieldError::new("lease id", s, Self::RULE))
        }
    }
}

/// An edge's WireGuard endpoint, `HOST:PORT`: HOST an IP literal (IPv6 in brackets) or a DNS
/// name of letters, digits, `-` and `.` (not starting with `-` or `.`, at most 253 characters),
/// PORT 1-65535.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint(String);

impl Endpoint {
    pub const RULE: &'static str =
        "HOST:PORT (HOST a DNS name or an IP address, IPv6 in brackets; PORT 1-65535)";

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address, when HOST is an IP literal rather than a name.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.0.parse().ok()
    }
}

impl FromStr for Endpoint {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, FieldError> {
        let bad = || FieldError::new("endpoint", s, Self::RULE);
        if let Ok(addr) = s.parse::<SocketAddr>() {
            // `SocketAddr` also reads `[fe80::1%2]`; the scope is digits, so still plain text.
            return if addr.port() == 0 {
                Err(bad())
            } else {
                Ok(Self(s.to_owned()))
            };
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port_ok = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        let host_ok = (1..=253).contains(&host.len())
            && !host.starts_with(['-', '.'])
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if port_ok && host_ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(bad())
        }
    }
}

/// Where Plex answers inside the tunnel: `http://<IPv4>:<port>/web`, the only shape the
/// broker makes. Kept as its parts, so its text is always rendered, never passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlexUrl(SocketAddrV4);

impl PlexUrl {
    pub const RULE: &'static str = "http://<IPv4 address>:<port>/web";

    pub fn new(addr: SocketAddrV4) -> Self {
        Self(addr)
    }

    pub fn addr(&self) -> SocketAddrV4 {
        self.0
    }
}

impl FromStr for PlexUrl {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, FieldError> {
        s.strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix("/web"))
            .and_then(|addr| addr.parse::<SocketAddrV4>().ok())
            .filter(|addr| addr.port() != 0)
            .map(Self)
            .ok_or_else(|| FieldError::new("Plex URL", s, Self::RULE))
    }
}

impl fmt::Display for PlexUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}/web", self.0)
    }
}

/// The string-backed types read as `&str` and print as themselves; they serialize as that
/// string and deserialize only through their parser.
macro_rules! text_type {
    ($t:ty) => {
        impl Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $t {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$t> for String {
            fn eq(&self, other: &$t) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$t> for str {
            fn eq(&self, other: &$t) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$t> for &str {
            fn eq(&self, other: &$t) -> bool {
                **self == other.0
            }
        }

        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
    };
}

text_type!(UserName);
text_type!(EdgeName);
text_type!(LeaseId);
text_type!(Endpoint);

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_str!(UserName);
serde_via_str!(EdgeName);
serde_via_str!(LeaseId);
serde_via_str!(Endpoint);
serde_via_str!(PlexUrl);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Everything a hostile broker might try to slip into a wg-quick file or a terminal.
    const HOSTILE: &[&str] = &[
        "",
        " ",
        "a b",
        "a\nPostUp = touch /tmp/pwned",
        "a\r",
        "a\tb",
        "a\u{1b}[2J",
        "a\u{7f}",
        "a\u{85}",
        "a/b",
        "..",
        "../x",
        "a=b",
        "#",
        "é",
    ];

    #[test]
    fn user_and_edge_names_follow_the_rule() {
        for good in ["home", "a", "edge-2", "0", "-", &"a".repeat(32)] {
            assert_eq!(good.parse::<UserName>().unwrap(), *good);
            assert_eq!(good.parse::<EdgeName>().unwrap(), *good);
        }
        let long = "a".repeat(33);
        for bad in HOSTILE.iter().copied().chain([
            "Home",
            "a_b",
            "a.b",
            " home",
            "home ",
            "ß",
            long.as_str(),
        ]) {
            assert!(bad.parse::<UserName>().is_err(), "{bad:?}");
            assert!(bad.parse::<EdgeName>().is_err(), "{bad:?}");
        }
        let err = "Home".parse::<EdgeName>().unwrap_err();
        assert!(err.to_string().starts_with("edge name \"Home\""), "{err}");
        assert_eq!(err.rule(), EdgeName::RULE);
        let err = "Home".parse::<UserName>().unwrap_err();
        assert!(err.to_string().starts_with("user name \"Home\""), "{err}");
    }

    #[test]
    fn a_tunnel_is_named_after_the_whole_edge_name_or_not_at_all() {
        let name = |s: &str| s.parse::<EdgeName>().unwrap();
        assert_eq!(name("home").tunnel_name().unwrap(), "gw-home");
        assert_eq!(
            name("abcdefghijkl").tunnel_name().unwrap(),
            "gw-abcdefghijkl"
        );
        let err = name("abcdefghijklm").tunnel_name().unwrap_err();
        assert_eq!(err.tunnel, "gw-abcdefghijklm");
        let text = err.to_string();
        assert!(
            text.contains("at most 15") && text.contains("at most 12"),
            "{text}"
        );
    }

    proptest! {
        /// What a page's `pattern` lets through, the parser accepts (and the rule test below
        /// shows the parser accepts nothing more than the rule).
        #[test]
        fn every_name_the_forms_pattern_admits_parses(s in PLAIN_NAME_PATTERN) {
            prop_assert!(s.parse::<UserName>().is_ok(), "{s:?}");
            prop_assert!(s.parse::<EdgeName>().is_ok(), "{s:?}");
        }

        /// One rule for both kinds of name, stated independently of the parser.
        #[test]
        fn a_name_parses_exactly_when_it_has_the_rules_shape(s in "[a-z0-9_.A-Z -]{0,40}|\\PC{0,40}") {
            let shaped = !s.is_empty()
                && s.len() <= 32
                && s.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'));
            prop_assert_eq!(s.parse::<UserName>().is_ok(), shaped);
            prop_assert_eq!(s.parse::<EdgeName>().is_ok(), shaped);
            if let Ok(edge) = s.parse::<EdgeName>() {
                prop_assert_eq!(edge.to_string(), s.clone());
                let back: EdgeName = serde_json::from_str(&serde_json::to_string(&edge).unwrap()).unwrap();
                prop_assert_eq!(&back, &edge);
                match edge.tunnel_name() {
                    Ok(tunnel) => {
                        prop_assert!(s.len() <= 12);
                        prop_assert_eq!(tunnel, format!("gw-{s}"));
                    }
                    Err(_) => prop_assert!(s.len() > 12),
                }
            }
        }
    }

    #[test]
    fn lease_ids_are_what_the_broker_makes() {
        for good in ["l-0123456789abcdef", "l-1", "l-live"] {
            assert_eq!(good.parse::<LeaseId>().unwrap(), *good);
        }
        let long = format!("l-{}", "a".repeat(33));
        for bad in HOSTILE.iter().copied().chain([
            "l-",
            "0123",
            "l-AB",
            "l-1/../../logout",
            "l-1\nPostUp = x",
            long.as_str(),
        ]) {
            assert!(bad.parse::<LeaseId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn endpoints_are_host_and_port() {
        for good in [
            "192.0.2.1:51820",
            "[2001:db8::1]:51820",
            "edge.example.net:1",
            "home:65535",
        ] {
            assert_eq!(good.parse::<Endpoint>().unwrap(), *good);
        }
        for bad in HOSTILE.iter().copied().chain([
            "203.0.113.5:51820\nPostUp = touch /tmp/pwned",
            "203.0.113.5:51820 ",
            "192.0.2.1",
            "192.0.2.1:0",
            "192.0.2.1:65536",
            "192.0.2.1:+1",
            "host:",
            ":51820",
            "-oops:1",
            ".x:1",
            "2001:db8::1:51820x",
            "[2001:db8::1]:0",
            "a b:1",
        ]) {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?}");
        }
        assert!(format!("{}:1", "a".repeat(254))
            .parse::<Endpoint>()
            .is_err());
    }

    #[test]
    fn plex_urls_have_the_brokers_shape_and_print_as_read() {
        let url: PlexUrl = "http://10.77.0.1:32400/web".parse().unwrap();
        assert_eq!(url.to_string(), "http://10.77.0.1:32400/web");
        for bad in HOSTILE.iter().copied().chain([
            "http://10.77.0.1:32400/web\nPostUp = x",
            "http://10.77.0.1:32400/web ",
            "https://10.77.0.1:32400/web",
            "http://10.77.0.1/web",
            "http://10.77.0.1:0/web",
            "http://plex.example:32400/web",
            "http://10.77.0.1:32400/web/../x",
            "http://[::1]:32400/web",
        ]) {
            assert!(bad.parse::<PlexUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_error_shows_the_value_escaped_and_short() {
        let err = "a\nPostUp = x\u{1b}"
            .parse::<EdgeName>()
            .unwrap_err()
            .to_string();
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(err.contains(r"\n"), "{err}");
        let err = "x"
            .repeat(10_000)
            .parse::<Endpoint>()
            .unwrap_err()
            .to_string();
        assert!(err.len() < 300, "{}", err.len());
    }

    #[test]
    fn serde_goes_through_the_parser() {
        let name: EdgeName = serde_json::from_str("\"home\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"home\"");
        assert!(serde_json::from_str::<EdgeName>("\"ho\\nme\"").is_err());
        assert!(serde_json::from_str::<UserName>("\"ali\\nce\"").is_err());
        assert!(serde_json::from_str::<LeaseId>("\"l-1\\n\"").is_err());
        assert!(serde_json::from_str::<Endpoint>("\"h:1\\nPostUp = x\"").is_err());
        let url: PlexUrl = serde_json::from_str("\"http://10.77.0.1:32400/web\"").unwrap();
        assert_eq!(
            serde_json::to_string(&url).unwrap(),
            "\"http://10.77.0.1:32400/web\""
        );
    }
}
