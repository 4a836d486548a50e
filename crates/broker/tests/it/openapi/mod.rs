//! `openapi.json` against the broker it describes: the same routes, references that resolve,
//! schemas the real wire types conform to (checked by a small validator written out below),
//! and a live broker that serves the document and answers every route as documented.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod document;
mod live;
mod wire;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use grantwire_broker::clock::ManualClock;
use grantwire_broker::routes::{Route, BODY_LIMIT, OPENAPI_JSON};
use grantwire_broker::throttle::RateLimit;
use grantwire_proto::*;
use ipnet::{IpNet, Ipv4Net};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is not valid JSON")
}

/// Every operation of the document: (METHOD, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let paths = doc["paths"].as_object().expect("no paths object");
    let mut ops = Vec::new();
    for (path, item) in paths {
        for (key, op) in item.as_object().expect("path item is not an object") {
            if METHODS.contains(&key.as_str()) {
                ops.push((key.to_ascii_uppercase(), path.clone(), op));
            } else {
                let allowed = ["summary", "description", "servers", "parameters"];
                assert!(
                    allowed.contains(&key.as_str()),
                    "{path}: unknown key {key:?}"
                );
            }
        }
    }
    ops
}

/// The documented operation of a route.
fn op(doc: &Value, route: Route) -> &Value {
    let method = route.method().as_str().to_ascii_lowercase();
    doc["paths"][route.path()]
        .get(&method)
        .unwrap_or_else(|| panic!("{route:?} is not documented"))
}

/// Follows a `$ref` (one level, as response references are used here).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("unresolved {r}")),
        None => v,
    }
}

// ---- a small JSON Schema validator ----
//
// The subset the document uses: `$ref`, `type` (one or a list, "null" included), `enum`, `anyOf`,
// `properties`/`required`/`additionalProperties: false`, `items`, `minItems`/`maxItems`,
// `minLength`/`maxLength`, `minimum`/`maximum`, the formats `ipv4`, `ipv6` and `int64`, and
// `contentEncoding: base64`. Stricter than JSON Schema on one point: an object property the
// schema does not list is an error even without `additionalProperties: false`, so a field added
// to a wire type must be documented.

fn errors(doc: &Value, schema: &Value, v: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    validate(doc, schema, v, "$", &mut errs);
    errs
}

fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        match r.strip_prefix('#').and_then(|p| doc.pointer(p)) {
            Some(target) => validate(doc, target, v, at, errs),
            None => errs.push(format!("{at}: unresolved $ref {r}")),
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            other => other.as_str().into_iter().collect(),
        };
        if !types.iter().any(|t| is_type(t, v)) {
            errs.push(format!("{at}: {v} is not of type {types:?}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            errs.push(format!("{at}: {v} is not one of {allowed:?}"));
        }
    }
    if let Some(alternatives) = schema.get("anyOf").and_then(Value::as_array) {
        if !alternatives.iter().any(|s| errors(doc, s, v).is_empty()) {
            errs.push(format!("{at}: {v} matches no alternative of anyOf"));
        }
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_i64);
    match v {
        Value::String(s) => {
            let len = i64::try_from(s.chars().count()).unwrap();
            if num("minLength").is_some_and(|m| len < m)
                || num("maxLength").is_some_and(|m| len > m)
            {
                errs.push(format!("{at}: {v} has a length of {len}, out of bounds"));
            }
            let ok = match schema.get("format").and_then(Value::as_str) {
                Some("ipv4") => s.parse::<Ipv4Addr>().is_ok(),
                Some("ipv6") => s.parse::<Ipv6Addr>().is_ok(),
                _ => true,
            };
            let base64 = schema.get("contentEncoding") == Some(&json!("base64"));
            if !ok || (base64 && STANDARD.decode(s).is_err()) {
                errs.push(format!(
                    "{at}: {v} is not in the schema's format or encoding"
                ));
            }
        }
        Value::Number(n) => {
            let x = n
                .as_i64()
                .map(i128::from)
                .or(n.as_u64().map(i128::from))
                .unwrap_or(i128::MAX);
            let low = num("minimum").is_some_and(|m| x < i128::from(m));
            let high = num("maximum").is_some_and(|m| x > i128::from(m));
            let int64 = schema.get("format") == Some(&json!("int64"));
            if low || high || (int64 && n.as_i64().is_none()) {
                errs.push(format!("{at}: {v} is out of range"));
            }
        }
        Value::Array(items) => {
            let len = i64::try_from(items.len()).unwrap();
            if num("minItems").is_some_and(|m| len < m) || num("maxItems").is_some_and(|m| len > m)
            {
                errs.push(format!("{at}: {len} items, out of bounds"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(doc, item_schema, item, &format!("{at}[{i}]"), errs);
                }
            }
        }
        Value::Object(map) => {
            for key in schema["required"].as_array().into_iter().flatten() {
                let key = key.as_str().unwrap();
                if !map.contains_key(key) {
                    errs.push(format!("{at}: required property {key:?} is missing"));
                }
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, value) in map {
                    match props.get(key) {
                        Some(s) => validate(doc, s, value, &format!("{at}.{key}"), errs),
                        None => errs.push(format!("{at}: property {key:?} is not in the schema")),
                    }
                }
            } else if schema.get("additionalProperties") == Some(&json!(false)) && !map.is_empty() {
                errs.push(format!("{at}: no properties are allowed"));
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

fn is_type(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => false,
    }
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Whether `text` is laid out as a pretty printer with 2-space indentation lays out JSON: each
/// line indented by two spaces per enclosing bracket, at most one bracket opened or closed on a
/// line (or an empty `{}`/`[]`), and one final newline.
fn layout_errors(text: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let mut depth = 0usize;
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        let indent = line.len() - body.len();
        let closes_first = body.starts_with(['}', ']']);
        let expected = 2 * depth.saturating_sub(usize::from(closes_first));
        if indent != expected || body.is_empty() || body.trim() != body {
            errs.push(format!(
                "line {}: indented {indent}, expected {expected}",
                n + 1
            ));
        }
        // What is outside strings, and how many brackets of it.
        let (mut in_string, mut escaped, mut outside, mut brackets) =
            (false, false, String::new(), 0);
        for c in body.chars() {
            match (in_string, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (true, false, '"') | (false, _, '"') => in_string = !in_string,
                (true, false, _) => {}
                (false, _, '{' | '[') => {
                    (depth, brackets) = (depth + 1, brackets + 1);
                    outside.push(c);
                }
                (false, _, '}' | ']') => {
                    (depth, brackets) = (depth.saturating_sub(1), brackets + 1);
                    outside.push(c);
                }
                (false, _, _) => outside.push(c),
            }
        }
        let empty = brackets == 2 && (outside.contains("{}") || outside.contains("[]"));
        if brackets > 1 && !empty {
            errs.push(format!("line {}: more than one bracket: {body}", n + 1));
        }
    }
    if depth != 0 || !text.ends_with("}\n") || text.ends_with("\n\n") {
        errs.push("the text does not end with its closing brace and one newline".into());
    }
    errs
}
