//! Reading the parts of Argo Rollouts objects the conversion needs from `serde_json::Value`s, and
//! the durations of both APIs. Argo objects are never decoded into full types: only what is read
//! here is looked at, and anything unexpected reads as absent.

use std::time::Duration;

use serde_json::Value;

/// The value at `path` (object keys), if every step exists.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(key)).filter(|v| !v.is_null())
}

/// The string at `path`, if it is a non-empty string.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The array at `path`, or an empty slice.
pub fn array_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// An integer written as a number or as a string of digits (Argo's int-or-string fields).
pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A scalar as the string Argo would substitute: strings as they are, numbers and booleans
/// printed. Objects, arrays and null have no string form.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether `v` is absent, null, or an empty object, array or string: a field that says nothing.
pub fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.values().all(|v| is_empty(Some(v))),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Bool(b)) => !b,
        Some(Value::Number(_)) => false,
    }
}

/// An Argo duration: an integer number of seconds (`30`, `"30"`) or a Go duration (`"10m"`).
pub fn argo_duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(secs) => Ok(Duration::from_secs(secs)),
            None => Err(format!("{n} is not a whole, non-negative number of seconds")),
        },
        Value::String(s) => match s.trim().parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs)),
            Err(_) => crate::duration::parse(s.trim()).map_err(|e| e.to_string()),
        },
        other => Err(format!("{other} is not a duration")),
    }
}

/// A duration as the Canary writes it: whole hours (`1h`), minutes (`10m`) or seconds (`45s`);
/// a fraction of a second is rounded up.
pub fn flagger_duration(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs > 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// The paths (dotted, with `[i]` for array items) of the non-null values of `input` that `output`
/// does not have: what decoding `input` into a typed struct and encoding it again lost.
pub fn dropped_paths(input: &Value, output: &Value, prefix: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match b.get(k) {
                    _ if v.is_null() => {}
                    None | Some(Value::Null) => out.push(path),
                    Some(w) => dropped_paths(v, w, &path, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, v) in a.iter().enumerate() {
                let path = format!("{prefix}[{i}]");
                match b.get(i) {
                    _ if v.is_null() => {}
                    None => out.push(path),
                    Some(w) => dropped_paths(v, w, &path, out),
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn argo_durations_are_seconds_or_go_durations() {
        for (v, secs) in [
            (json!(30), 30),
            (json!("40"), 40),
            (json!("40s"), 40),
            (json!("10m"), 600),
            (json!("1h30m"), 5400),
            (json!("0"), 0),
        ] {
            assert_eq!(argo_duration(&v), Ok(Duration::from_secs(secs)), "{v}");
        }
        for v in [json!(-1), json!("ten"), json!("10x"), json!(1.5), json!(null), json!({})] {
            assert!(argo_duration(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn flagger_durations_use_the_largest_whole_unit() {
        for (secs, want) in [(0, "0s"), (45, "45s"), (60, "1m"), (90, "90s"), (600, "10m"), (7200, "2h")] {
            assert_eq!(flagger_duration(Duration::from_secs(secs)), want);
        }
        assert_eq!(flagger_duration(Duration::from_millis(1500)), "2s");
        // Every output parses back to at least the input.
        for ms in [1, 999, 1000, 59_999, 3_600_001] {
            let d = Duration::from_millis(ms);
            assert!(crate::duration::parse(&flagger_duration(d)).unwrap() >= d);
        }
    }

    #[test]
    fn dropped_paths_lists_what_the_output_lacks() {
        let input = json!({"a": 1, "b": {"c": 2, "d": null, "e": [1, {"f": 3}]}, "g": null});
        let output = json!({"a": 1, "b": {"e": [1, {}]}});
        let mut out = Vec::new();
        dropped_paths(&input, &output, "", &mut out);
        assert_eq!(out, ["b.c", "b.e[1].f"]);
    }

    #[test]
    fn ints_come_as_numbers_or_strings() {
        assert_eq!(int(&json!(3)), Some(3));
        assert_eq!(int(&json!("3")), Some(3));
        assert_eq!(int(&json!(3.0)), Some(3));
        assert_eq!(int(&json!("x")), None);
        assert_eq!(int(&json!(3.5)), None);
    }
}
