//! (d) a live broker answers as documented.

use super::wire::edge_report;
use super::*;

// ---- (d) the live broker ----

async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = h.http.request(method, h.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.unwrap()
}

/// Sends `body` to `route` after checking it against the documented request body.
async fn call(
    h: &Harness,
    doc: &Value,
    route: Route,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let documented = &op(doc, route)["requestBody"]["content"]["application/json"]["schema"];
    if let Some(b) = body {
        let errs = errors(doc, documented, b);
        assert!(
            errs.is_empty(),
            "{route:?}: a body the broker takes is not the documented one: {errs:#?}"
        );
    }
    send(h, route.method().as_str(), path, token, body).await
}

/// Asserts that the answer is one `route` documents (status, required headers, content type,
/// body schema) and returns its status and JSON body (null when it has none).
async fn documented(doc: &Value, route: Route, resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let Some(response) = op(doc, route)["responses"].get(status.to_string()) else {
        panic!("{route:?} answered {status}, which it does not document: {text}");
    };
    let response = resolve(doc, response);
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        if header["required"] == true {
            let value = headers.get(name.as_str()).map(|v| v.to_str().unwrap());
            let parses = value.is_some_and(|v| v.parse::<u64>().is_ok());
            assert!(parses, "{route:?} {status}: header {name} is {value:?}");
        }
    }
    let Some(content) = response["content"].as_object() else {
        assert!(
            text.is_empty(),
            "{route:?} {status}: undocumented body {text}"
        );
        return (status, Value::Null);
    };
    let ct = headers.get("content-type").map(|v| v.to_str().unwrap());
    let media = ct.and_then(|ct| content.get(ct.split(';').next().unwrap().trim()));
    let Some(media) = media else {
        panic!("{route:?} {status}: content type {ct:?} is not documented");
    };
    let v: Value = serde_json::from_str(&text).unwrap();
    let errs = errors(doc, &media["schema"], &v);
    assert!(
        errs.is_empty(),
        "{route:?} {status}: the body is not the documented one: {errs:#?}\n{text}"
    );
    (status, v)
}

async fn error_message(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: ErrorBody = resp.json().await.unwrap();
    (status, body.error.message)
}

#[tokio::test]
async fn the_broker_serves_the_document_to_callers_only() {
    let h = Harness::start().await;
    let get = |path: &'static str, token: Option<String>| {
        let h = &h;
        async move { send(h, "GET", path, token.as_deref(), None).await }
    };
    let anonymous = get("/v1/openapi.json", None).await;
    assert_eq!(anonymous.status(), 401);
    let anonymous = anonymous.text().await.unwrap();
    let whoami = get("/v1/whoami", None).await;
    assert_eq!(whoami.status(), 401);
    assert_eq!(anonymous, whoami.text().await.unwrap());
    let body: ErrorBody = serde_json::from_str(&anonymous).unwrap();
    assert_eq!(body.error.code, ErrorCode::Unauthorized);

    let session = h.session("alice").await;
    let (credential, _) = h.enrolled_edge("home").await;
    for token in [session, credential] {
        let resp = get("/v1/openapi.json", Some(token)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert!(
            resp.text().await.unwrap() == OPENAPI_JSON,
            "served text differs from the file"
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn every_route_answers_its_documented_credential_and_not_the_fallback() {
    let doc = doc();
    let h = Harness::start().await;
    let session = h.session("alice").await;
    let logout_session = h.session("bob").await;
    let (credential, _) = h.enrolled_edge("home").await;
    let token_of = |scheme: &str| match scheme {
        "userSession" => session.clone(),
        "edgeCredential" => credential.clone(),
        other => panic!("no credential for scheme {other}"),
    };

    // The fallback, for an authenticated caller of either kind, and for a stranger.
    for token in [&session, &credential] {
        let resp = send(&h, "GET", "/v1/nope", Some(token.as_str()), None).await;
        assert_eq!(error_message(resp).await, (404, "not found".to_owned()));
    }
    assert_eq!(send(&h, "POST", "/v1/nope", None, None).await.status(), 401);

    let huge = json!({ "pad": "x".repeat(BODY_LIMIT + 1024) });
    for route in Route::ALL {
        let operation = op(&doc, route);
        // Wrong on purpose, where there is anything to get wrong.
        let (path, body) = match route {
            Route::Login => (route.path().to_owned(), Some(json!({"user": 1}))),
            Route::Leases => (
                route.path().to_owned(),
                Some(json!({"edge": "home", "public_key": "AAAA"})),
            ),
            Route::Renew | Route::Revoke => (route.path().replace("{id}", "l-nope"), None),
            Route::Enrol => (route.path().to_owned(), Some(json!({"token": 5}))),
            Route::Report => (route.path().to_owned(), Some(json!({"bogus": true}))),
            Route::Logout | Route::MyLeases | Route::Whoami | Route::Sync | Route::OpenApi => {
                (route.path().to_owned(), None)
            }
        };
        let method = route.method();
        let method = method.as_str();
        let schemes: Vec<String> = operation["security"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_object().unwrap().keys().cloned())
            .collect();
        let mut tokens: Vec<Option<String>> = schemes.iter().map(|s| Some(token_of(s))).collect();
        if route == Route::Logout {
            tokens = vec![Some(logout_session.clone())];
        }
        if schemes.is_empty() {
            tokens = vec![None];
        }

        for token in &tokens {
            let resp = send(&h, method, &path, token.as_deref(), body.as_ref()).await;
            let status = resp.status().as_u16();
            if route == Route::Sync {
                assert_eq!(status, 200, "{route:?}");
                let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
                let content = &operation["responses"]["200"]["content"];
                assert!(
                    content.get(&ct).is_some(),
                    "{route:?}: {ct} is not documented"
                );
                assert_eq!(ct, "text/event-stream");
                drop(resp);
                continue;
            }
            let (status, v) = documented(&doc, route, resp).await;
            if token.is_some() {
                assert_ne!(
                    status, 401,
                    "{route:?}: the documented credential was refused"
                );
                let fallback = status == 404 && v["error"]["message"] == "not found";
                assert!(
                    !fallback,
                    "{route:?}: {method} {path} got the fallback answer"
                );
            }
        }

        // A credential of a kind the operation does not name is refused.
        for scheme in ["userSession", "edgeCredential"] {
            if !schemes.iter().any(|s| s == scheme) {
                let token = token_of(scheme);
                let resp = send(&h, method, &path, Some(&token), body.as_ref()).await;
                assert_eq!(
                    resp.status(),
                    401,
                    "{route:?} with an undocumented {scheme}"
                );
            }
        }

        // Any other method on the path is the fallback, unless another route has it.
        let other = if method == "GET" { "POST" } else { "GET" };
        let routed = Route::ALL
            .iter()
            .any(|r| r.path() == route.path() && r.method().as_str() == other);
        if !routed {
            let token = token_of(schemes.first().map_or("userSession", String::as_str));
            let resp = send(&h, other, &path, Some(&token), None).await;
            assert_eq!(
                error_message(resp).await,
                (404, "not found".to_owned()),
                "{route:?}: {other} {path}"
            );
        }

        // Every body-taking route refuses an oversized body with a documented 413.
        if !operation["requestBody"].is_null() {
            let token = tokens[0].as_deref();
            let resp = send(&h, method, &path, token, Some(&huge)).await;
            let (status, _) = documented(&doc, route, resp).await;
            assert_eq!(status, 413, "{route:?}: oversized body");
        }
    }
    h.shutdown().await;
}

#[tokio::test]
async fn live_answers_match_the_documented_schemas() {
    let doc = doc();
    let h = Harness::start().await;

    let secret = h.add_user("alice").await;
    let login = LoginRequest {
        user: "alice".into(),
        password: PASSWORD.into(),
        code: code_now(&secret),
    };
    let body = serde_json::to_value(&login).unwrap();
    let resp = call(&h, &doc, Route::Login, "/v1/login", None, Some(&body)).await;
    let (status, session) = documented(&doc, Route::Login, resp).await;
    assert_eq!(status, 200);
    let token = session["token"].as_str().unwrap().to_owned();
    let token = Some(token.as_str());

    let enrol = EnrolRequest {
        token: h.add_edge("home").await,
        public_key: keypair().public_key(),
    };
    let body = serde_json::to_value(&enrol).unwrap();
    let resp = call(&h, &doc, Route::Enrol, "/v1/edge/enrol", None, Some(&body)).await;
    let (status, enrolled) = documented(&doc, Route::Enrol, resp).await;
    assert_eq!(status, 200);
    let credential = enrolled["credential"].as_str().unwrap().to_owned();
    let credential = Some(credential.as_str());
    h.enrolled_edge("away").await;
    h.grant("alice", "home").await;

    let lease = |edge: &str| {
        serde_json::to_value(LeaseRequest {
            edge: edge.into(),
            public_key: keypair().public_key(),
        })
        .unwrap()
    };
    for (edge, want) in [("home", 200), ("away", 403), ("nowhere", 404)] {
        let resp = call(
            &h,
            &doc,
            Route::Leases,
            "/v1/leases",
            token,
            Some(&lease(edge)),
        )
        .await;
        assert_eq!(
            documented(&doc, Route::Leases, resp).await.0,
            want,
            "lease on {edge}"
        );
    }
    let resp = call(
        &h,
        &doc,
        Route::Leases,
        "/v1/leases",
        token,
        Some(&lease("home")),
    )
    .await;
    let (_, issued) = documented(&doc, Route::Leases, resp).await;
    let id = issued["profile"]["lease_id"].as_str().unwrap();
    let renew = Route::Renew.path().replace("{id}", id);
    let resp = call(&h, &doc, Route::Renew, &renew, token, None).await;
    assert_eq!(documented(&doc, Route::Renew, resp).await.0, 200);
    let resp = call(&h, &doc, Route::Whoami, "/v1/whoami", token, None).await;
    let (status, me) = documented(&doc, Route::Whoami, resp).await;
    assert_eq!((status, me["leases"].as_array().unwrap().len()), (200, 2));
    let resp = call(&h, &doc, Route::MyLeases, "/v1/leases", token, None).await;
    let (status, mine) = documented(&doc, Route::MyLeases, resp).await;
    assert_eq!((status, mine["leases"].as_array().unwrap().len()), (200, 2));

    let mut report = serde_json::to_value(edge_report()).unwrap();
    report["leases"][0]["lease_id"] = json!(id);
    report["events"][0]["lease_id"] = json!(id);
    let resp = call(
        &h,
        &doc,
        Route::Report,
        "/v1/edge/report",
        credential,
        Some(&report),
    )
    .await;
    assert_eq!(documented(&doc, Route::Report, resp).await.0, 204);
    // The report's figures are documented in the list, and revoking answers each documented way.
    let resp = call(&h, &doc, Route::MyLeases, "/v1/leases", token, None).await;
    let (_, mine) = documented(&doc, Route::MyLeases, resp).await;
    let reported = mine["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id);
    assert!(reported.unwrap()["usage"]["rx_bytes"].is_u64(), "{mine}");
    let revoke = Route::Revoke.path().replace("{id}", id);
    for want in [200, 404] {
        let resp = call(&h, &doc, Route::Revoke, &revoke, token, None).await;
        assert_eq!(documented(&doc, Route::Revoke, resp).await.0, want);
    }

    let resp = call(
        &h,
        &doc,
        Route::OpenApi,
        "/v1/openapi.json",
        credential,
        None,
    )
    .await;
    let (status, served) = documented(&doc, Route::OpenApi, resp).await;
    assert_eq!((status, &served), (200, &doc));

    let resp = call(&h, &doc, Route::Logout, "/v1/logout", token, None).await;
    assert_eq!(documented(&doc, Route::Logout, resp).await.0, 204);
    let resp = call(&h, &doc, Route::Whoami, "/v1/whoami", token, None).await;
    assert_eq!(documented(&doc, Route::Whoami, resp).await.0, 401);
    h.shutdown().await;
}

#[tokio::test]
async fn rate_limited_answers_are_documented() {
    let doc = doc();
    let one = RateLimit {
        burst: 1,
        per_sec: 1,
    };
    // A clock that stands still: no token comes back while the test runs.
    let h = Harness::with_config(|c| {
        c.clock = std::sync::Arc::new(ManualClock::new());
        c.login_rate = one;
        c.lease_rate = one;
    })
    .await;
    let token = h.session("alice").await;
    let wrong = json!({"user": "alice", "password": "wrong", "code": "000000"});
    let resp = call(&h, &doc, Route::Login, "/v1/login", None, Some(&wrong)).await;
    assert_eq!(documented(&doc, Route::Login, resp).await.0, 429);

    let lease = serde_json::to_value(LeaseRequest {
        edge: "home".into(),
        public_key: keypair().public_key(),
    })
    .unwrap();
    for want in [404, 429] {
        let resp = call(
            &h,
            &doc,
            Route::Leases,
            "/v1/leases",
            Some(&token),
            Some(&lease),
        )
        .await;
        assert_eq!(documented(&doc, Route::Leases, resp).await.0, want);
    }
    let renew = Route::Renew.path().replace("{id}", "l-nope");
    let resp = call(&h, &doc, Route::Renew, &renew, Some(&token), None).await;
    assert_eq!(documented(&doc, Route::Renew, resp).await.0, 429);
    // A stranger is told nothing more by a spent budget: still the plain 401.
    let resp = call(&h, &doc, Route::Leases, "/v1/leases", None, Some(&lease)).await;
    assert_eq!(documented(&doc, Route::Leases, resp).await.0, 401);
    // Enrolment shares the anonymous budget that the wrong login spent.
    let junk = json!({"token": "junk", "public_key": keypair().public_key()});
    let resp = call(&h, &doc, Route::Enrol, "/v1/edge/enrol", None, Some(&junk)).await;
    assert_eq!(documented(&doc, Route::Enrol, resp).await.0, 429);
    h.shutdown().await;
}
