//! Checks an object against a CRD's structural OpenAPI schema the way the API server does with
//! strict field validation: types, required fields, enums, patterns, bounds, `oneOf`/`anyOf`/`not`,
//! unknown fields, int-or-string and preserved fields. CEL rules are checked with kube-cel.

use regex::Regex;
use serde_json::Value;

/// Every violation of `schema` by `value`, as `path: message`.
pub fn violations(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, value, "", &mut out);
    if let Err(errors) = kube_cel::Validator::new().validate(schema, value, None) {
        out.push(format!("CEL: {errors}"));
    }
    out
}

fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let s = |key: &str| schema.get(key);
    if value.is_null() {
        if s("nullable") != Some(&Value::Bool(true)) {
            out.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    if s("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            out.push(format!("{path}: must be an integer or a string"));
        }
        return;
    }
    if let Some(Value::String(t)) = s("type") {
        let ok = match t.as_str() {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            out.push(format!("{path}: expected {t}, got {value}"));
            return;
        }
    }
    if let Some(Value::Array(options)) = s("enum")
        && !options.contains(value)
    {
        out.push(format!("{path}: {value} is not one of {options:?}"));
    }
    if let (Some(Value::String(p)), Some(v)) = (s("pattern"), value.as_str())
        && !Regex::new(p).expect("schema pattern compiles").is_match(v)
    {
        out.push(format!("{path}: {v:?} does not match {p}"));
    }
    if let Some(n) = value.as_f64() {
        if s("minimum").and_then(Value::as_f64).is_some_and(|m| n < m) {
            out.push(format!("{path}: {n} is below the minimum"));
        }
        if s("maximum").and_then(Value::as_f64).is_some_and(|m| n > m) {
            out.push(format!("{path}: {n} is above the maximum"));
        }
    }
    if let Some(v) = value.as_str() {
        let len = v.chars().count() as u64;
        if s("minLength").and_then(Value::as_u64).is_some_and(|m| len < m) {
            out.push(format!("{path}: shorter than minLength"));
        }
        if s("maxLength").and_then(Value::as_u64).is_some_and(|m| len > m) {
            out.push(format!("{path}: longer than maxLength"));
        }
    }
    for (key, want_one) in [("oneOf", true), ("anyOf", false)] {
        if let Some(Value::Array(subs)) = s(key) {
            let matching = subs.iter().filter(|sub| valid(sub, value, path)).count();
            if (want_one && matching != 1) || (!want_one && matching == 0) {
                out.push(format!("{path}: {matching} of the {key} alternatives match"));
            }
        }
    }
    if let Some(not) = s("not")
        && valid(not, value, path)
    {
        out.push(format!("{path}: matches a forbidden schema"));
    }
    if let Some(Value::Array(required)) = s("required") {
        for r in required.iter().filter_map(Value::as_str) {
            if value.get(r).is_none() {
                out.push(format!("{path}: required field {r} is missing"));
            }
        }
    }
    match value {
        Value::Object(map) => {
            let preserve = s("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            let props = s("properties").and_then(Value::as_object);
            let additional = s("additionalProperties");
            for (k, v) in map {
                let child = format!("{path}.{k}");
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(sub), _) => check(sub, v, &child, out),
                    (None, Some(sub)) if sub.is_object() => check(sub, v, &child, out),
                    // The API server handles these itself, whatever the CRD schema says.
                    (None, _)
                        if path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&k.as_str()) => {}
                    // Value-validation subschemas (oneOf alternatives) declare no properties.
                    (None, _) if preserve || props.is_none() => {}
                    (None, _) => out.push(format!("{child}: unknown field")),
                }
            }
        }
        Value::Array(items) => {
            if s("maxItems").and_then(Value::as_u64).is_some_and(|m| items.len() as u64 > m) {
                out.push(format!("{path}: more than maxItems items"));
            }
            if let Some(sub) = s("items") {
                for (i, item) in items.iter().enumerate() {
                    check(sub, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn valid(schema: &Value, value: &Value, path: &str) -> bool {
    let mut errors = Vec::new();
    check(schema, value, path, &mut errors);
    errors.is_empty()
}
