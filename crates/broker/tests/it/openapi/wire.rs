//! (c) the schemas match the wire types, checked with real values and with serde itself.

use super::*;

// ---- (c) the schemas match the wire types ----

/// Every error code. The match has no wildcard arm, so a new code stops this compiling until
/// it is listed.
pub(crate) fn all_error_codes() -> Vec<ErrorCode> {
    use ErrorCode::*;
    let all = vec![
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        LeaseCap,
        PayloadTooLarge,
        RateLimited,
        Internal,
        Unavailable,
    ];
    for code in &all {
        match code {
            BadRequest | Unauthorized | Forbidden | NotFound | Conflict | LeaseCap
            | PayloadTooLarge | RateLimited | Internal | Unavailable => {}
        }
    }
    all
}

fn all_event_kinds() -> Vec<EdgeEventKind> {
    let all = vec![EdgeEventKind::KeyUsedOffPin];
    for kind in &all {
        match kind {
            EdgeEventKind::KeyUsedOffPin => {}
        }
    }
    all
}

struct Checker {
    doc: Value,
    checked: BTreeSet<String>,
}

impl Checker {
    /// Checks real values of `T` against the schema `name`: each serialized value validates;
    /// together they use every documented property; a property is `required` exactly when
    /// serde refuses the value without it; `additionalProperties: false` exactly when serde
    /// refuses an unknown field; and every documented example parses as a `T`.
    fn check<T: Serialize + DeserializeOwned>(&mut self, name: &str, values: &[T]) {
        let doc = &self.doc;
        let target = doc
            .pointer(&format!("/components/schemas/{name}"))
            .unwrap_or_else(|| panic!("no schema {name}"));
        let required: BTreeSet<&str> = target["required"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| k.as_str().unwrap())
            .collect();
        let mut seen = BTreeSet::new();
        for value in values {
            let v = serde_json::to_value(value).unwrap();
            let errs = errors(doc, &schema(name), &v);
            assert!(
                errs.is_empty(),
                "a real {name} does not match its schema: {errs:#?}\n{v:#}"
            );
            let Value::Object(map) = &v else { continue };
            for key in map.keys() {
                seen.insert(key.clone());
                let mut without = map.clone();
                without.remove(key);
                let accepted = serde_json::from_value::<T>(Value::Object(without)).is_ok();
                assert_eq!(
                    accepted,
                    !required.contains(key.as_str()),
                    "{name}.{key}: serde {} the body without it, but the schema {} it",
                    if accepted { "accepts" } else { "refuses" },
                    if required.contains(key.as_str()) {
                        "requires"
                    } else {
                        "does not require"
                    },
                );
            }
            let mut extra = map.clone();
            extra.insert("not_a_field".into(), json!(1));
            let refused = serde_json::from_value::<T>(Value::Object(extra)).is_err();
            assert_eq!(
                refused,
                target["additionalProperties"] == json!(false),
                "{name}: serde {} unknown fields; additionalProperties says otherwise",
                if refused { "refuses" } else { "ignores" },
            );
        }
        if let Some(props) = target["properties"].as_object() {
            let documented: BTreeSet<String> = props.keys().cloned().collect();
            assert_eq!(
                documented, seen,
                "{name}: documented vs. serialized properties"
            );
        }
        for example in target["examples"].as_array().into_iter().flatten() {
            let errs = errors(doc, &schema(name), example);
            assert!(errs.is_empty(), "{name} example {example}: {errs:?}");
            let parsed = serde_json::from_value::<T>(example.clone());
            assert!(
                parsed.is_ok(),
                "{name} example {example} does not parse as the wire type"
            );
        }
        self.checked.insert(name.to_owned());
    }
}

pub(crate) fn public_key(n: u8) -> PublicKey {
    PrivateKey::from_random_bytes([n; 32]).public_key()
}

pub(crate) fn edge_config() -> EdgeConfig {
    EdgeConfig {
        name: "home".into(),
        subnet: "10.77.0.0/24".parse().unwrap(),
        tunnel_address: Ipv4Addr::new(10, 77, 0, 1),
    }
}

fn profile(pin: &str) -> Profile {
    Profile {
        lease_id: "l-0123456789abcdef".parse().unwrap(),
        edge: "home".parse().unwrap(),
        address: Ipv4Addr::new(10, 77, 0, 2),
        edge_public_key: public_key(1),
        endpoint: "192.0.2.1:51820".parse().unwrap(),
        allowed_ips: vec!["10.77.0.1/32".parse().unwrap()],
        preshared_key: PresharedKey::from_bytes([2; 32]),
        persistent_keepalive: DEFAULT_KEEPALIVE_SECS,
        plex_url: "http://10.77.0.1:32400/web".parse().unwrap(),
        pin: pin.parse().unwrap(),
        expires_at: 1_700_000_000,
    }
}

fn edge_lease() -> EdgeLease {
    EdgeLease {
        id: "l-1".into(),
        public_key: public_key(3),
        preshared_key: PresharedKey::from_bytes([4; 32]),
        tunnel_address: Ipv4Addr::new(10, 77, 0, 2),
        pin: "2001:db8:1:2::/64".parse().unwrap(),
        ports: vec![PLEX_PORT, 0, u16::MAX],
        expires_at: 1_700_000_000,
    }
}

pub(crate) fn edge_report() -> EdgeReport {
    EdgeReport {
        leases: vec![
            LeaseUsage {
                lease_id: "l-1".into(),
                last_handshake_at: Some(1_700_000_000),
                rx_bytes: u64::MAX,
                tx_bytes: 0,
            },
            LeaseUsage {
                lease_id: "l-2".into(),
                last_handshake_at: None,
                rx_bytes: 1,
                tx_bytes: 2,
            },
        ],
        events: vec![EdgeEvent {
            kind: EdgeEventKind::KeyUsedOffPin,
            lease_id: "l-1".into(),
            source_ip: "2001:db8::7".parse().unwrap(),
            count: 3,
            first_at: 1_700_000_000,
        }],
    }
}

/// A listed lease: not yet reported (`None`), reported without a handshake, or with one.
fn lease_info(usage: Option<Option<i64>>) -> LeaseInfo {
    LeaseInfo {
        id: "l-0123456789abcdef".into(),
        user: "alice".into(),
        edge: "home".into(),
        tunnel_address: Ipv4Addr::new(10, 77, 0, 2),
        pin: "198.51.100.7/32".parse().unwrap(),
        public_key: public_key(9),
        created_at: 1_700_000_000,
        expires_at: 1_700_028_800,
        ports: vec![32400],
        usage: usage.map(|last_handshake_at| LeaseUsageInfo {
            last_handshake_at,
            rx_bytes: 1,
            tx_bytes: u64::MAX,
            reported_at: 1_700_000_100,
        }),
    }
}

fn whoami() -> WhoamiResponse {
    WhoamiResponse {
        user: "alice".into(),
        source_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        leases: vec![WhoamiLease {
            id: "l-1".parse().unwrap(),
            edge: "home".parse().unwrap(),
            pin: "198.51.100.7/32".parse().unwrap(),
            pinned_here: true,
            expires_at: 1_700_000_000,
            last_handshake_at: Some(1_699_999_000),
        }],
        now: Some(1_699_999_100),
    }
}

#[test]
fn schemas_match_the_wire_types() {
    let mut c = Checker {
        doc: doc(),
        checked: BTreeSet::new(),
    };
    let codes = all_error_codes();
    let bodies: Vec<ErrorBody> = codes
        .iter()
        .map(|&code| ErrorBody {
            error: ErrorDetail {
                code,
                message: "m".into(),
            },
        })
        .collect();
    c.check("ErrorBody", &bodies);
    let details: Vec<ErrorDetail> = bodies.into_iter().map(|b| b.error).collect();
    c.check("ErrorDetail", &details);
    c.check("ErrorCode", &codes);
    c.check("EdgeEventKind", &all_event_kinds());
    for (name, serialized) in [
        ("ErrorCode", serde_json::to_value(&codes).unwrap()),
        (
            "EdgeEventKind",
            serde_json::to_value(all_event_kinds()).unwrap(),
        ),
    ] {
        let documented: BTreeSet<String> = c.doc["components"]["schemas"][name]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        let real: BTreeSet<String> = serialized
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        assert_eq!(documented, real, "{name}: documented vs. real values");
    }

    c.check(
        "LoginRequest",
        &[LoginRequest {
            user: "alice".into(),
            password: PASSWORD.into(),
            code: "123456".into(),
        }],
    );
    c.check(
        "LoginResponse",
        &[LoginResponse {
            token: "t".into(),
            expires_at: i64::MAX,
        }],
    );
    c.check(
        "LeaseRequest",
        &[LeaseRequest {
            edge: "home".into(),
            public_key: public_key(5),
        }],
    );
    let profiles = [profile("198.51.100.7/32"), profile("2001:db8:1:2::/64")];
    c.check(
        "LeaseResponse",
        &[LeaseResponse {
            profile: profiles[0].clone(),
        }],
    );
    c.check("Profile", &profiles);
    let mut v6_whoami = whoami();
    v6_whoami.source_ip = "2001:db8:1:2::9".parse().unwrap();
    v6_whoami.leases.clear();
    c.check("WhoamiResponse", &[whoami(), v6_whoami]);
    c.check("WhoamiLease", &whoami().leases);
    let infos = [
        lease_info(None),
        lease_info(Some(None)),
        lease_info(Some(Some(5))),
    ];
    c.check(
        "LeaseListResponse",
        &[
            LeaseListResponse {
                leases: infos.to_vec(),
            },
            LeaseListResponse { leases: vec![] },
        ],
    );
    c.check("LeaseInfo", &infos);
    let usage: Vec<LeaseUsageInfo> = infos.iter().filter_map(|i| i.usage).collect();
    c.check("LeaseUsageInfo", &usage);
    c.check(
        "LeaseRevokeResponse",
        &[LeaseRevokeResponse {
            id: "l-1".into(),
            user: "alice".into(),
            edge: "home".into(),
        }],
    );
    c.check(
        "EnrolRequest",
        &[EnrolRequest {
            token: "one-time".into(),
            public_key: public_key(6),
        }],
    );
    c.check(
        "EnrolResponse",
        &[EnrolResponse {
            credential: "cred".into(),
            config: edge_config(),
        }],
    );
    c.check("EdgeConfig", &[edge_config()]);
    let set = LeaseSet {
        config: edge_config(),
        leases: vec![edge_lease()],
        generated_at: 1_700_000_000,
        broker_time_ms: Some(1_700_000_000_250),
    };
    let without_time = LeaseSet {
        broker_time_ms: None,
        ..set.clone()
    };
    c.check("LeaseSet", &[set, without_time]);
    c.check("EdgeLease", &[edge_lease()]);
    c.check("EdgeReport", &[edge_report(), EdgeReport::default()]);
    c.check("LeaseUsage", &edge_report().leases);
    c.check("EdgeEvent", &edge_report().events);

    c.check("PublicKey", &[public_key(7), public_key(8)]);
    c.check(
        "PresharedKey",
        &[
            PresharedKey::from_bytes([0; 32]),
            PresharedKey::from_bytes([255; 32]),
        ],
    );
    let pins: Vec<Pin> = [
        "192.0.2.0/24",
        "192.0.2.7/32",
        "2001:db8::/32",
        "2001:db8::1/128",
    ]
    .iter()
    .map(|p| p.parse().unwrap())
    .collect();
    c.check("Pin", &pins);
    let ips: [IpAddr; 3] = [
        "192.0.2.7".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        "::ffff:192.0.2.7".parse().unwrap(),
    ];
    c.check("IpAddress", &ips);
    c.check("Ipv4Address", &[Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST]);
    let nets: [Ipv4Net; 2] = [
        "10.77.0.0/24".parse().unwrap(),
        "0.0.0.0/0".parse().unwrap(),
    ];
    c.check("Ipv4Network", &nets);
    let nets: [IpNet; 2] = [
        "10.77.0.1/32".parse().unwrap(),
        "fd00::1/128".parse().unwrap(),
    ];
    c.check("IpNetwork", &nets);
    c.check("UnixSeconds", &[i64::MIN, 0, i64::MAX]);
    c.check("Port", &[0u16, u16::MAX]);

    let all: BTreeSet<String> = c.doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let unchecked: Vec<_> = all.difference(&c.checked).collect();
    assert!(
        unchecked.is_empty(),
        "schemas no wire value was checked against: {unchecked:?}"
    );
}

/// The validator is only as good as what it refuses: each of these is one thing wrong.
#[test]
fn the_validator_refuses_what_it_should() {
    let doc = doc();
    let ok = |name: &str, v: &Value| errors(&doc, &schema(name), v).is_empty();
    let report = serde_json::to_value(edge_report()).unwrap();
    assert!(ok("EdgeReport", &report));
    let with = |path: &str, value: Value| {
        let mut v = report.clone();
        *v.pointer_mut(path).unwrap() = value;
        v
    };
    assert!(ok(
        "EdgeReport",
        &with("/leases/0/last_handshake_at", Value::Null)
    ));
    assert!(!ok(
        "EdgeReport",
        &with("/leases/0/last_handshake_at", json!("x"))
    ));
    assert!(!ok("EdgeReport", &with("/leases/0/rx_bytes", json!("1"))));
    assert!(!ok("EdgeReport", &with("/leases/0/rx_bytes", json!(-1))));
    assert!(!ok("EdgeReport", &with("/leases/0/rx_bytes", json!(1.5))));
    assert!(!ok(
        "EdgeReport",
        &with("/events/0/kind", json!("key_used"))
    ));
    assert!(!ok(
        "EdgeReport",
        &with("/events/0/source_ip", json!("nope"))
    ));
    assert!(!ok(
        "EdgeReport",
        &with("/events/0/first_at", json!(u64::MAX))
    ));
    assert!(!ok("EdgeReport", &with("/events", json!([1]))));
    assert!(!ok(
        "EdgeReport",
        &with("/leases", json!(vec![report["leases"][0].clone(); 257]))
    ));
    let mut unknown = report.clone();
    unknown["extra"] = json!(1);
    assert!(!ok("EdgeReport", &unknown));

    let login = json!({"token": "t", "expires_at": 1});
    assert!(ok("LoginResponse", &login));
    assert!(!ok("LoginResponse", &json!({"token": "t"})));
    assert!(!ok(
        "LoginResponse",
        &json!({"token": "t", "expires_at": 1, "x": 0})
    ));
    assert!(!ok("LoginResponse", &json!([login])));
    assert!(!ok(
        "ErrorBody",
        &json!({"error": {"code": "teapot", "message": "m"}})
    ));
    assert!(!ok(
        "EdgeConfig",
        &json!({"name": "h", "subnet": "10.77.0.0/24", "tunnel_address": "::1"})
    ));
    let key = public_key(9).to_base64();
    assert!(ok("PublicKey", &json!(key)));
    assert!(!ok("PublicKey", &json!(&key[1..])));
    assert!(!ok("PublicKey", &json!(format!("!{}", &key[1..]))));
    assert!(!ok("Port", &json!(65536)));
    assert!(!ok("Nope", &json!(1)));
    assert!(ok("IpAddress", &json!("::1")));
    assert!(!ok("IpAddress", &json!(null)));

    assert!(layout_errors("{\n  \"a\": [\n    1\n  ]\n}\n").is_empty());
    assert!(!layout_errors("{\n   \"a\": 1\n}\n").is_empty());
    assert!(!layout_errors("{\n  \"a\": {\"b\": 1}\n}\n").is_empty());
    assert!(!layout_errors("{\n  \"a\": 1\n}").is_empty());
}
