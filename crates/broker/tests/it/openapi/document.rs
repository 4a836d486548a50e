//! (a) the document names exactly the routes the broker has; (b) it is well formed.

use super::wire::all_error_codes;
use super::*;

// ---- (a) the same routes ----

#[test]
fn documented_paths_are_exactly_the_routes() {
    let doc = doc();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let routed: BTreeSet<(String, String)> = Route::ALL
        .iter()
        .map(|r| (r.method().as_str().to_owned(), r.path().to_owned()))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from openapi.json: {undocumented:?}; \
         documented routes the broker does not have: {unrouted:?}"
    );
}

#[test]
fn path_parameters_are_declared() {
    let doc = doc();
    for (method, path, op) in operations(&doc) {
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{method} {path}: {p}");
                assert_eq!(p["schema"]["type"], "string", "{method} {path}: {p}");
                p["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(in_path, declared, "{method} {path}: path parameters");
    }
}

// ---- (b) a well-formed document ----

#[test]
fn the_file_is_pretty_printed_openapi_3_1() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let layout = layout_errors(OPENAPI_JSON);
    assert!(layout.is_empty(), "openapi.json layout: {layout:#?}");
}

#[test]
fn every_reference_resolves_and_every_component_is_used() {
    fn walk<'a>(v: &'a Value, refs: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref") {
                    refs.push(r.as_str().expect("$ref is not a string"));
                }
                map.values().for_each(|v| walk(v, refs));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
            _ => {}
        }
    }
    let doc = doc();
    let mut refs = Vec::new();
    walk(&doc, &mut refs);
    assert!(refs.len() > 20, "suspiciously few references: {refs:?}");
    let unresolved: Vec<_> = refs
        .iter()
        .filter(|r| {
            !r.starts_with("#/components/") || doc.pointer(r.trim_start_matches('#')).is_none()
        })
        .collect();
    assert!(
        unresolved.is_empty(),
        "unresolved references: {unresolved:?}"
    );
    for kind in ["schemas", "responses"] {
        let unused: Vec<_> = doc["components"][kind]
            .as_object()
            .unwrap()
            .keys()
            .filter(|name| !refs.contains(&format!("#/components/{kind}/{name}").as_str()))
            .collect();
        assert!(
            unused.is_empty(),
            "components.{kind} nothing refers to: {unused:?}"
        );
    }
}

#[test]
fn operations_have_ids_success_answers_and_documented_errors() {
    let doc = doc();
    let statuses: Vec<String> = all_error_codes()
        .iter()
        .map(|c| c.http_status().to_string())
        .collect();
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str();
        assert!(
            id.is_some_and(|id| !id.is_empty()),
            "{method} {path}: no operationId"
        );
        assert!(
            ids.insert(id.unwrap()),
            "{method} {path}: operationId {id:?} is used twice"
        );
        assert!(op["summary"].is_string(), "{method} {path}: no summary");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no 2xx response"
        );
        // Every route can fail authentication (login and enrol refuse anything with 401) and
        // can meet a database error.
        for must in ["401", "500"] {
            assert!(responses.contains_key(must), "{method} {path}: no {must}");
        }
        for (status, response) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
            assert!(
                statuses.contains(status),
                "{method} {path}: {status} is not the status of any ErrorCode"
            );
            let response = resolve(&doc, response);
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{method} {path} {status}: an error answer is an ErrorBody"
            );
            let retry_after = &response["headers"]["Retry-After"];
            assert_eq!(
                status == "429" || status == "503",
                retry_after["schema"]["type"] == "integer",
                "{method} {path} {status}: Retry-After is documented exactly on 429 and 503"
            );
        }
        let body = &op["requestBody"];
        if !body.is_null() {
            assert_eq!(body["required"], true, "{method} {path}");
            let schema = &body["content"]["application/json"]["schema"]["$ref"];
            assert!(
                schema.is_string(),
                "{method} {path}: request body is not JSON"
            );
            assert!(responses.contains_key("413"), "{method} {path}: no 413");
        }
    }
    let sync = &op(&doc, Route::Sync)["responses"]["200"]["content"]["text/event-stream"];
    assert_eq!(
        sync["x-event-data"]["leases"]["$ref"], "#/components/schemas/LeaseSet",
        "the sync stream's events carry LeaseSets"
    );
}

#[test]
fn only_login_and_enrol_need_no_credential() {
    let doc = doc();
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for (name, scheme) in schemes {
        assert_eq!(
            (&scheme["type"], &scheme["scheme"]),
            (&json!("http"), &json!("bearer")),
            "{name}"
        );
    }
    let mut open = Vec::new();
    for route in Route::ALL {
        let security = op(&doc, route)["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{route:?}: no security array"));
        if security.is_empty() {
            open.push(route);
        }
        for requirement in security {
            let names: Vec<&String> = requirement.as_object().unwrap().keys().collect();
            assert_eq!(names.len(), 1, "{route:?}: one scheme per requirement");
            assert!(
                schemes.contains_key(names[0]),
                "{route:?}: unknown scheme {names:?}"
            );
        }
    }
    assert_eq!(open, [Route::Login, Route::Enrol]);
}
