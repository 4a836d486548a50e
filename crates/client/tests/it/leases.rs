//! `grantwire leases`, `grantwire revoke` and the profile's QR images, against a real broker.

// A test crate: its setup helpers should panic on failure just like the tests themselves.
#![allow(clippy::unwrap_used)]

use crate::common::*;

fn json(run: &Run) -> serde_json::Value {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_lists_and_revoke_ends_only_your_own() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, alice_secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let bob_secret = add_user_with_grant(&broker, "bob").await;
    let (alice, bob) = (tmp.path().join("alice"), tmp.path().join("bob"));
    login(&alice, &broker, "alice", &alice_secret).await;
    login(&bob, &broker, "bob", &bob_secret).await;

    let none = json(&grantwire(&alice, &["leases", "--json"], "").await);
    assert_eq!(none, serde_json::json!({"leases": []}));
    let run = grantwire(&alice, &["leases"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.is_empty() && run.stderr.contains("no live leases"),
        "{}",
        run.stderr
    );

    let mine = json(&grantwire(&alice, &["profile", "home", "--json"], "").await);
    let mine = mine["profile"]["lease_id"].as_str().unwrap().to_owned();
    let theirs = json(&grantwire(&bob, &["profile", "home", "--json"], "").await);
    let theirs = theirs["profile"]["lease_id"].as_str().unwrap().to_owned();

    let listed = json(&grantwire(&alice, &["leases", "--json"], "").await);
    let leases = listed["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1, "only alice's own: {listed}");
    let lease = &leases[0];
    assert_eq!(lease["id"], mine.as_str());
    assert_eq!(lease["edge"], "home");
    assert_eq!(lease["tunnel_address"], "10.77.0.2");
    assert_eq!(lease["pin"], "127.0.0.1/32");
    assert!(lease["expires_at"].as_i64().unwrap() > now() as i64);
    assert!(lease["last_handshake_at"].is_null(), "{lease}");
    let run = grantwire(&alice, &["leases"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.starts_with("ID "), "{}", run.stdout);
    assert!(
        run.stdout.contains(&mine) && !run.stdout.contains(&theirs),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("never"), "{}", run.stdout);

    // Someone else's lease: refused, exit 3, and it stays live.
    let run = grantwire(&alice, &["revoke", &theirs], "").await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("not yours"), "{}", run.stderr);
    // An unknown one: exit 1, pointing at `grantwire leases`. A malformed one: exit 2.
    let run = grantwire(&alice, &["revoke", "l-0000000000000000"], "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("grantwire leases"), "{}", run.stderr);
    let run = grantwire(&alice, &["revoke", "../logout"], "").await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(
        broker.admin().leases().list().await.unwrap().leases.len(),
        2
    );

    // Her own: revoked, and gone from the broker and from her list.
    let revoked = json(&grantwire(&alice, &["revoke", &mine, "--json"], "").await);
    assert_eq!(
        revoked,
        serde_json::json!({"revoked": {"id": mine, "edge": "home"}})
    );
    let left = broker.admin().leases().list().await.unwrap().leases;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, theirs);
    let listed = json(&grantwire(&alice, &["leases", "--json"], "").await);
    assert_eq!(listed["leases"].as_array().unwrap().len(), 0);

    // Without a session: exit 1, saying to log in.
    let run = grantwire(&tmp.path().join("nobody"), &["leases"], "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("grantwire login"), "{}", run.stderr);
    broker.shutdown().await.unwrap();
}

/// The PNG read back with a real decoder: exactly the wg-quick text of the file written beside
/// it, less its comment lines, at QR version 13 and error correction M (see the client-core
/// QR tests for why those bounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_writes_private_qr_images_that_decode_to_the_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, secret) = broker_with_alice(&tmp.path().join("broker")).await;
    let config = tmp.path().join("client");
    login(&config, &broker, "alice", &secret).await;
    let (conf, png_path, svg_path) = (
        tmp.path().join("out/home.conf"),
        tmp.path().join("out/home.png"),
        tmp.path().join("out/home.svg"),
    );
    let args = [
        "profile".to_owned(),
        "home".into(),
        "--out".into(),
        conf.display().to_string(),
        "--qr-png".into(),
        png_path.display().to_string(),
        "--qr-svg".into(),
        svg_path.display().to_string(),
    ];
    let run = grantwire(&config, &args, "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("home.png") && run.stderr.contains("home.svg"),
        "{}",
        run.stderr
    );
    #[cfg(unix)]
    for path in [&conf, &png_path, &svg_path] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }

    let wg_quick = std::fs::read_to_string(&conf).unwrap();
    let want: String = wg_quick
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| [l, "\n"])
        .collect();
    let png = std::fs::read(&png_path).unwrap();
    let mut reader = png::Decoder::new(png.as_slice()).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    let (meta, text) = grids[0].decode().unwrap();
    assert_eq!(text, want);
    assert!(text.contains("PrivateKey = ") && text.contains("Endpoint = 192.0.2.1:51820"));
    // rqrr gives the format bits as stored: 0b00 is level M.
    assert_eq!((meta.version.0, meta.ecc_level), (13, 0));

    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    // No profile file unless asked for: the images alone write only themselves.
    let run = grantwire(
        &config,
        &[
            "profile",
            "home",
            "--qr-png",
            &png_path.display().to_string(),
        ],
        "",
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!config.join("profiles/home.conf").exists());
    broker.shutdown().await.unwrap();
}
