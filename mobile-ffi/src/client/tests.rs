//! The object without a broker: keys, rendering, input checks, and calls polled from outside
//! any tokio runtime. Against a real broker it is tested through Python
//! (`tests/it/python_ffi.rs`).

use std::net::TcpListener;

use grantwire_client_core::{PrivateKey, PublicKey};
use grantwire_proto::PresharedKey;

use super::*;

/// Polls `fut` on a runtime with neither I/O nor timer driver, standing in for a foreign
/// executor: a call that needed the caller's tokio context would panic here.
fn poll_from_outside<T>(fut: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("bare runtime")
        .block_on(fut)
}

fn sample_profile() -> core::Profile {
    core::Profile {
        lease_id: "l-0123456789abcdef".parse().unwrap(),
        edge: "home".parse().unwrap(),
        address: "10.77.0.2".parse().expect("address"),
        edge_public_key: PrivateKey::from_random_bytes([1; 32]).public_key(),
        endpoint: "192.0.2.1:51820".parse().unwrap(),
        allowed_ips: vec!["10.77.0.1/32".parse().expect("net")],
        preshared_key: PresharedKey::from_bytes([2; 32]),
        persistent_keepalive: 25,
        plex_url: "http://10.77.0.1:32400/web".parse().unwrap(),
        pin: "198.51.100.7/32".parse().expect("pin"),
        expires_at: 1_700_000_000,
    }
}

fn session(expires_at: i64) -> Session {
    Session {
        broker_url: "https://127.0.0.1:1/".into(),
        fingerprint: Some("ab".repeat(32)),
        user: "alice".into(),
        token: "secret-token".into(),
        expires_at,
    }
}

#[test]
fn keypair_halves_belong_together() {
    let client = GrantwireClient::new().expect("client");
    let pair = client.generate_keypair();
    let private: PrivateKey = pair.private_key.parse().expect("private key");
    let public: PublicKey = pair.public_key.parse().expect("public key");
    assert_eq!(private.public_key(), public);
    assert_ne!(client.generate_keypair().public_key, pair.public_key);
    assert!(!format!("{pair:?}").contains(&pair.private_key));
}

#[test]
fn wg_quick_from_the_record_is_client_cores() {
    let client = GrantwireClient::new().expect("client");
    let core_profile = sample_profile();
    let key = PrivateKey::from_random_bytes([3; 32]);
    let want = core_profile.to_wg_quick(&key);
    let record = Profile::from(core_profile);
    assert!(!format!("{record:?}").contains(&record.preshared_key));
    let text = client
        .render_wg_quick(record, key.to_base64())
        .expect("render");
    assert_eq!(text, want);
    let svg = client.render_qr_svg(text).expect("qr");
    assert!(
        svg.starts_with("<?xml") || svg.starts_with("<svg"),
        "{svg:.40}"
    );
}

#[test]
fn bad_input_is_usage_and_never_echoes_a_key() {
    let client = GrantwireClient::new().expect("client");
    let bad_key = "c2VjcmV0LWJ1dC10b28tc2hvcnQ=".to_owned();
    let err = client
        .render_wg_quick(Profile::from(sample_profile()), bad_key.clone())
        .expect_err("short key");
    assert!(matches!(err, GrantwireError::Usage { .. }), "{err:?}");
    assert!(!err.to_string().contains(&bad_key), "{err}");

    let mut profile = Profile::from(sample_profile());
    profile.preshared_key = bad_key.clone();
    let good_key = PrivateKey::from_random_bytes([4; 32]).to_base64();
    let err = client
        .render_wg_quick(profile, good_key)
        .expect_err("bad psk");
    assert!(matches!(err, GrantwireError::Usage { .. }), "{err:?}");
    assert!(err.to_string().contains("preshared_key"), "{err}");
    assert!(!err.to_string().contains(&bad_key), "{err}");

    let err = poll_from_outside(client.login(
        "https://127.0.0.1:1".into(),
        Some("not-hex".into()),
        "alice".into(),
        "pw".into(),
        "123456".into(),
    ))
    .expect_err("bad fingerprint");
    assert!(matches!(err, GrantwireError::Usage { .. }), "{err:?}");
}

/// The app passes the edge as a string: one the broker never names an edge is refused by
/// client-core's `EdgeName` before anything is sent (the session points where nothing
/// listens, so a request would fail as `Network`).
#[test]
fn an_edge_name_no_edge_can_have_is_usage_before_any_request() {
    let client = GrantwireClient::new().expect("client");
    let public = client.generate_keypair().public_key;
    for bad in ["Home", "home.lan", "a/b", "", &"a".repeat(33)] {
        let err = poll_from_outside(client.request_lease(
            session(i64::MAX),
            bad.to_owned(),
            public.clone(),
        ))
        .expect_err("bad edge name");
        assert!(
            matches!(err, GrantwireError::Usage { .. }),
            "{bad:?}: {err:?}"
        );
        assert!(err.to_string().contains("edge name"), "{err}");
    }
}

/// client-core's renewal decision, with the lease as `whoami` gave it to the app.
#[test]
fn renewal_is_client_cores_decision_on_the_listed_lease() {
    let client = GrantwireClient::new().expect("client");
    let now = 1_700_000_000;
    let lease = |expires_at: i64, pinned_here: bool| LeaseStatus {
        id: "l-0123456789abcdef".into(),
        edge: "home".into(),
        pin: "198.51.100.7/32".into(),
        pinned_here,
        expires_at,
    };
    let kept = client
        .renewal(Some(lease(now + 3600, true)), now, None)
        .unwrap();
    // Due ten minutes before the end: renewed once fewer than 600 s are left.
    let want = Renewal {
        renew: false,
        reason: None,
        due_in_secs: 3001,
    };
    assert_eq!(kept, want);

    let gone = client.renewal(None, now, None).unwrap();
    assert!(
        gone.renew && gone.reason.is_some() && gone.due_in_secs == 0,
        "{gone:?}"
    );
    let moved = client
        .renewal(Some(lease(now + 3600, false)), now, None)
        .unwrap();
    assert!(moved.renew, "{moved:?}");
    assert!(moved.reason.unwrap().contains("198.51.100.7/32"));
    let soon = client
        .renewal(Some(lease(now + 599, true)), now, None)
        .unwrap();
    assert!(soon.renew, "{soon:?}");
    // A 15-minute lease is due a third before its end, not at every check.
    let short = client
        .renewal(Some(lease(now + 600, true)), now, Some(900))
        .unwrap();
    assert_eq!((short.renew, short.due_in_secs), (false, 301));

    let mut bad = lease(now + 3600, true);
    bad.pin = "not a pin".into();
    let err = client.renewal(Some(bad), now, None).expect_err("bad pin");
    assert!(matches!(err, GrantwireError::Usage { .. }), "{err:?}");
}

#[test]
fn unreachable_broker_is_network_when_polled_outside_tokio() {
    // A port just freed: nothing listens there, so the connection is refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let client = GrantwireClient::new().expect("client");
    let err = poll_from_outside(client.probe(format!("https://127.0.0.1:{port}")))
        .expect_err("nothing listens");
    assert!(matches!(err, GrantwireError::Network { .. }), "{err:?}");
}

#[test]
fn expired_session_is_expired_before_any_request() {
    let client = GrantwireClient::new().expect("client");
    let err = poll_from_outside(client.whoami(session(1))).expect_err("expired");
    assert!(matches!(err, GrantwireError::Expired { .. }), "{err:?}");
    assert!(!err.to_string().contains("secret-token"), "{err}");
    assert!(!format!("{:?}", session(1)).contains("secret-token"));
}

#[test]
fn dropping_the_client_inside_a_runtime_does_not_panic() {
    let client = GrantwireClient::new().expect("client");
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(async move { drop(client) });
}
