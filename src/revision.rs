//! Change detection: the revision hash of a pod template and the checksums of tracked configs.
//!
//! Revision hash (`status.lastAppliedSpec`, `lastPromotedSpec`): `v1-` followed by the first 16
//! hex digits of the SHA-256 of the pod template's canonical JSON: object keys sorted, no
//! whitespace, strings escaped as serde_json does. Fields the API server defaults are part of the
//! template as read, so the hash is stable across processes, machines and Veer releases; a new
//! algorithm would get a new prefix. Flagger's hashes (FNV over a Go-specific dump) cannot be
//! reproduced; `is_current` tells them apart so that an adopted Canary is not re-analysed.
//!
//! Config checksums (`status.trackedConfigs`) are Flagger's exactly: the first 8 bytes of the
//! SHA-256 of the `data` map encoded as Go's `encoding/json` does, in hex. So a Canary taken over
//! from Flagger does not see its ConfigMaps as changed.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Prefix of revision hashes computed by this algorithm.
pub const PREFIX: &str = "v1-";

/// nodeSelector key Flagger and Veer use to scale a DaemonSet to zero; not part of the revision.
pub const SCALE_TO_ZERO_KEY: &str = "flagger.app/scale-to-zero";

/// Whether `hash` was computed by the current algorithm.
pub fn is_current(hash: &str) -> bool {
    hash.starts_with(PREFIX)
}

/// The revision hash of a pod template (as JSON).
pub fn revision(template: &Value) -> String {
    let mut normalized = template.clone();
    // Scaling a DaemonSet to zero must not look like a new revision.
    if let Some(Value::Object(selector)) = normalized.pointer_mut("/spec/nodeSelector") {
        selector.remove(SCALE_TO_ZERO_KEY);
        if selector.is_empty()
            && let Some(Value::Object(spec)) = normalized.pointer_mut("/spec")
        {
            spec.remove("nodeSelector");
        }
    }
    let mut canonical = String::new();
    write_canonical(&normalized, &mut canonical);
    format!("{PREFIX}{}", &hex(&Sha256::digest(canonical.as_bytes()))[..16])
}

/// Flagger's checksum of a ConfigMap's or Secret's `data` (values as they appear in JSON:
/// strings for ConfigMaps, base64 for Secrets).
pub fn config_checksum(data: &BTreeMap<String, String>) -> String {
    let mut json = String::from("{");
    for (i, (k, v)) in data.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        go_string(k, &mut json);
        json.push(':');
        go_string(v, &mut json);
    }
    json.push('}');
    hex(&Sha256::digest(json.as_bytes())[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A JSON string as Go's encoding/json writes it (HTML-safe escaping).
fn go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn revision_is_independent_of_key_order_and_versioned() {
        let a = json!({"metadata": {"labels": {"app": "podinfo", "b": "1"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        let b = json!({"spec": {"containers": [{"image": "x:1", "name": "c"}]}, "metadata": {"labels": {"b": "1", "app": "podinfo"}}});
        assert_eq!(revision(&a), revision(&b));
        assert!(is_current(&revision(&a)));
        assert_eq!(revision(&a).len(), PREFIX.len() + 16);
        assert!(!is_current("5f7d8c4b9f"));
    }

    #[test]
    fn revision_changes_with_the_template() {
        let a = json!({"spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        let b = json!({"spec": {"containers": [{"name": "c", "image": "x:2"}]}});
        assert_ne!(revision(&a), revision(&b));
    }

    #[test]
    fn scale_to_zero_selector_is_ignored() {
        let plain = json!({"spec": {"containers": []}});
        let zero = json!({"spec": {"containers": [], "nodeSelector": {SCALE_TO_ZERO_KEY: "true"}}});
        let empty = json!({"spec": {"containers": [], "nodeSelector": {}}});
        assert_eq!(revision(&plain), revision(&zero));
        assert_eq!(revision(&plain), revision(&empty));
        let other =
            json!({"spec": {"containers": [], "nodeSelector": {SCALE_TO_ZERO_KEY: "true", "zone": "a"}}});
        assert_ne!(revision(&plain), revision(&other));
    }

    /// A golden value: the algorithm must never change silently (it is in stored statuses).
    #[test]
    fn revision_golden_value() {
        let t = json!({"metadata": {"labels": {"app": "podinfo"}}, "spec": {"containers": [{"name": "podinfo", "image": "ghcr.io/stefanprodan/podinfo:6.0.1"}]}});
        let canonical = r#"{"metadata":{"labels":{"app":"podinfo"}},"spec":{"containers":[{"image":"ghcr.io/stefanprodan/podinfo:6.0.1","name":"podinfo"}]}}"#;
        let expected = format!("v1-{}", &hex(&Sha256::digest(canonical.as_bytes()))[..16]);
        assert_eq!(revision(&t), expected);
    }

    #[test]
    fn config_checksum_matches_go_json() {
        // Go: json.Marshal(map[string]string{"b": "<x>", "a": "1"}) == {"a":"1","b":"\u003cx\u003e"}
        let data = BTreeMap::from([("b".to_string(), "<x>".to_string()), ("a".to_string(), "1".to_string())]);
        let go = r#"{"a":"1","b":"\u003cx\u003e"}"#;
        assert_eq!(config_checksum(&data), hex(&Sha256::digest(go.as_bytes())[..8]));
        assert_eq!(config_checksum(&data).len(), 16);
    }
}
