//! An authentication-bypass sweep from outside, over the broker's real HTTPS listener (scenario
//! H3). From the client namespace, with a live user, edge and lease in the broker:
//!
//! - every route of the broker's OpenAPI document (`crates/broker/openapi.json`, which the
//!   broker's tests hold equal to what it serves) but signing in and enrolling an edge, asked without one, with a made-up bearer token and with a made-up session
//!   cookie, answers 401 with one and the same short body;
//! - every page and form behind sign-in (the admin pages, a friend's access and devices pages,
//!   their forms) answers 303 to /login with an empty body, and changes nothing: the users,
//!   grants and leases are the same afterwards.

use std::time::Duration;

use grantwire_e2e::{require_env, Lab};

/// Asks each `METHOD PATH [HEADER]` line of stdin of the broker at 192.0.2.1:8443 over HTTPS
/// (HTTP/1.1, certificate unchecked: the test's own broker), a POST with an empty form body;
/// prints one JSON line per request: method, path, header, status, Location, body.
const SWEEP_PY: &str = r#"import http.client, json, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for line in sys.stdin.read().splitlines():
    method, path, *header = line.split(" ", 2)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if header:
        name, value = header[0].split(": ", 1)
        headers[name] = value
    c = http.client.HTTPSConnection("192.0.2.1", 8443, context=ctx, timeout=10)
    c.request(method, path, body=b"" if method == "POST" else None, headers=headers)
    r = c.getresponse()
    body = r.read().decode(errors="replace")
    print(json.dumps([method, path, header[0] if header else "", r.status, r.getheader("Location") or "", body]))
    c.close()
"#;

/// Routes that take no bearer credential by design: signing in, and an edge's enrolment (its
/// one-time token is in the body).
const PUBLIC_API: [&str; 2] = ["/v1/login", "/v1/edge/enrol"];
const OPENAPI: &str = include_str!("../../crates/broker/openapi.json");

/// Pages and forms behind sign-in (`crates/broker/src/web/mod.rs`), with placeholders filled.
const SIGNED_IN_PAGES: [(&str, &str); 23] = [
    ("GET", "/access"),
    ("POST", "/access/leases/l-0000000000000000/renew"),
    ("POST", "/access/leases/l-0000000000000000/revoke"),
    ("GET", "/admin"),
    ("GET", "/admin/alerts"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/edges"),
    ("POST", "/admin/edges"),
    ("POST", "/admin/edges/home/remove"),
    ("GET", "/admin/grants"),
    ("POST", "/admin/grants"),
    ("POST", "/admin/grants/alice/home/revoke"),
    ("GET", "/admin/leases"),
    ("POST", "/admin/leases/l-0000000000000000/revoke"),
    ("GET", "/admin/users"),
    ("POST", "/admin/users/invite"),
    ("POST", "/admin/users/alice/disable"),
    ("POST", "/admin/users/alice/enable"),
    ("POST", "/admin/users/alice/reset-totp"),
    ("POST", "/admin/users/alice/reset-password"),
    ("POST", "/admin/users/alice/remove"),
    ("GET", "/devices/new"),
    ("POST", "/devices/server-keys"),
];

/// The page's own fetch endpoint (a key made in the browser), which answers like the API.
const PAGE_FETCH: (&str, &str) = ("POST", "/devices");

fn state(lab: &Lab) -> Vec<String> {
    ["user", "grant", "lease"]
        .iter()
        .map(|what| {
            let mut out = lab
                .broker
                .admin(&lab.home, &[what, "list", "--json"], None)
                .expect_ok(&format!("{what} list"))
                .json();
            // What changes by itself (last seen, the edge's figures) is not state here.
            for list in ["users", "leases"] {
                if let Some(items) = out[list].as_array_mut() {
                    for item in items {
                        item.as_object_mut().map(|o| {
                            o.remove("usage");
                            o.remove("last_seen");
                            o.remove("last_login_at")
                        });
                    }
                }
            }
            out.to_string()
        })
        .collect()
}

#[test]
fn without_a_real_credential_every_route_answers_401_or_sends_to_sign_in_and_changes_nothing() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("swp", false);
    let edge = lab.enrol_edge();
    let (wg, _) = lab.tunnel_up(&edge, "alice");
    let before = state(&lab);

    // The API routes, from the broker's document.
    let script = lab.dir.path().join("sweep.py");
    std::fs::write(&script, SWEEP_PY).expect("write sweep.py");
    let run = |requests: &str| -> Vec<serde_json::Value> {
        let out = lab.client.exec_with(
            &["python3", script.to_str().expect("UTF-8 path")],
            Some(requests.as_bytes()),
            Duration::from_secs(120),
        );
        assert!(out.success(), "the sweep failed:\n{out}");
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    };
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json");
    let mut requests = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if PUBLIC_API.contains(&path.as_str()) {
            continue;
        }
        let path = path.replace("{id}", "l-0000000000000000");
        let methods: Vec<String> = item
            .as_object()
            .expect("a path item")
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        for method in methods {
            for header in [
                "",
                " Authorization: Bearer made-up-token",
                " Cookie: __Host-gw_session=made-up-session",
            ] {
                requests.push(format!("{method} {path}{header}"));
            }
        }
    }
    for header in ["", " Cookie: __Host-gw_session=made-up-session"] {
        requests.push(format!("{} {}{header}", PAGE_FETCH.0, PAGE_FETCH.1));
    }
    assert!(
        requests.len() >= 20,
        "too few API routes found: {requests:?}"
    );
    let answers = run(&requests.join("\n"));
    let mut bodies: Vec<&str> = Vec::new();
    for a in &answers {
        assert_eq!(
            a[3], 401,
            "an API route answered without a real credential: {a}"
        );
        bodies.push(a[5].as_str().unwrap_or_default());
    }
    bodies.sort_unstable();
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "the 401 bodies differ: {bodies:?}");
    assert!(bodies[0].len() < 200, "a long 401 body: {}", bodies[0]);

    // The pages and forms behind sign-in.
    let pages: Vec<String> = SIGNED_IN_PAGES
        .iter()
        .flat_map(|(method, path)| {
            [
                format!("{method} {path}"),
                format!("{method} {path} Cookie: __Host-gw_session=made-up-session"),
            ]
        })
        .collect();
    let answers = run(&pages.join("\n"));
    for a in &answers {
        assert_eq!(a[3], 303, "a signed-in page answered a stranger: {a}");
        assert!(
            a[4].as_str().is_some_and(|l| l.ends_with("/login")),
            "not sent to sign in: {a}"
        );
        assert_eq!(a[5], "", "a body came with the redirect: {a}");
    }
    eprintln!(
        "{} API requests answered 401 with one body ({:?}); {} page requests sent to /login",
        requests.len(),
        bodies[0],
        pages.len()
    );
    assert_eq!(
        state(&lab),
        before,
        "the refused requests changed something"
    );
    lab.wait_page(&lab.client, &lab.plex_url(&edge), Duration::from_secs(5))
        .unwrap_or_else(|last| panic!("alice's tunnel stopped working: {last:?}"));
    drop(wg);
}
