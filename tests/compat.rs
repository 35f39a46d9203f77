//! Flagger compatibility, offline: every manifest of Flagger's corpus that Flagger's CRD accepts
//! decodes into Veer's types and passes Veer's generated schema; every one it rejects fails it.
//! (`e2e_compat.rs` checks the same against a real API server.)

#[path = "common/corpus.rs"]
mod corpus;
mod schema_check;

use serde_json::{Value, json};
use veer::api::{AlertProvider, Canary, MetricTemplate, schema::crds};

fn schema_of(kind: &str) -> Value {
    let crd =
        crds().into_iter().find(|c| c.spec.names.kind == kind).unwrap_or_else(|| panic!("no CRD for {kind}"));
    serde_json::to_value(crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap())
        .unwrap()
}

fn violations(doc: &Value) -> Vec<String> {
    let kind = doc["kind"].as_str().expect("a kind");
    schema_check::violations(&schema_of(kind), doc)
}

fn decodes(doc: &Value) -> Result<(), String> {
    let r = match doc["kind"].as_str() {
        Some("Canary") => serde_json::from_value::<Canary>(doc.clone()).map(|_| ()),
        Some("MetricTemplate") => serde_json::from_value::<MetricTemplate>(doc.clone()).map(|_| ()),
        Some("AlertProvider") => serde_json::from_value::<AlertProvider>(doc.clone()).map(|_| ()),
        other => panic!("unexpected kind {other:?}"),
    };
    r.map_err(|e| e.to_string())
}

#[test]
fn every_valid_flagger_manifest_is_accepted() {
    let docs = corpus::documents("valid");
    assert_eq!(docs.len(), 93, "the corpus has 93 valid manifests");
    let mut failures = Vec::new();
    for (name, doc) in &docs {
        if let Err(e) = decodes(doc) {
            failures.push(format!("{name}: does not decode: {e}"));
        }
        let v = violations(doc);
        if !v.is_empty() {
            failures.push(format!("{name}: {v:?}"));
        }
    }
    assert!(failures.is_empty(), "rejected valid manifests:\n{}", failures.join("\n"));
}

#[test]
fn every_invalid_flagger_manifest_is_rejected() {
    let docs = corpus::documents("invalid");
    assert_eq!(docs.len(), 19, "the corpus has 19 invalid manifests");
    let accepted: Vec<&String> =
        docs.iter().filter(|(_, doc)| violations(doc).is_empty()).map(|(name, _)| name).collect();
    assert!(accepted.is_empty(), "accepted invalid manifests: {accepted:?}");
}

fn valid_canary() -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "30s", "threshold": 5, "maxWeight": 50, "stepWeight": 10,
                "sessionAffinity": {"cookieName": "canary", "primaryCookieName": "primary"}
            }
        }
    })
}

fn with(pointer: &str, value: Value) -> Value {
    let mut doc = valid_canary();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    doc.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(key.into(), value);
    doc
}

#[test]
fn certainly_wrong_values_are_rejected() {
    assert_eq!(violations(&valid_canary()), Vec::<String>::new());
    let cases = [
        ("/spec/analysis/stepWeight", json!(101)),
        ("/spec/analysis/maxWeight", json!(-1)),
        ("/spec/analysis/threshold", json!(-1)),
        ("/spec/analysis/interval", json!("often")),
        ("/spec/analysis/interval", json!("10")),
        ("/spec/analysis/iterations", json!(5)),
        ("/spec/analysis/sessionAffinity", json!({"cookieName": "same", "primaryCookieName": "same"})),
        ("/spec/analysis/primaryReadyThreshold", json!(150)),
        ("/spec/service/port", json!(0)),
        ("/spec/service/port", json!(70000)),
        ("/spec/provider", json!("nginix")),
        ("/spec/analysis/stepWeight", json!(2.5)),
        ("/spec/analysis/colour", json!("blue")),
    ];
    for (pointer, value) in cases {
        let doc = with(pointer, value.clone());
        assert!(!violations(&doc).is_empty(), "{pointer} = {value} was accepted");
    }
    // The CEL rules, each alone.
    let mut ladder = with("/spec/analysis/stepWeights", json!([10, 5, 20]));
    ladder["spec"]["analysis"].as_object_mut().unwrap().remove("stepWeight");
    assert!(violations(&ladder).iter().any(|v| v.contains("stepWeights must be in ascending order")));
    let cookies =
        with("/spec/analysis/sessionAffinity", json!({"cookieName": "same", "primaryCookieName": "same"}));
    assert!(violations(&cookies).iter().any(|v| v.contains("must differ from sessionAffinity.cookieName")));
    let mut no_analysis = valid_canary();
    no_analysis["spec"].as_object_mut().unwrap().remove("analysis");
    assert!(!violations(&no_analysis).is_empty(), "analysis is required");
    let mut metric = valid_canary();
    metric["spec"]["analysis"]["metrics"] = json!([{"name": "m", "thresholdRange": {"min": 10, "max": 1}}]);
    assert!(!violations(&metric).is_empty(), "min above max");
}

/// The bounds of `veer::api::limits`: values that would tie up the controller are refused at the door.
#[test]
fn values_above_the_limits_are_rejected() {
    let cases = [
        ("/spec/analysis/interval", json!("25h"), "analysis.interval must be a duration of at most 24h0m0s"),
        ("/spec/analysis/interval", json!("99999999999999999999h"), ""),
        ("/spec/analysis/interval", json!("1".repeat(40) + "s"), ""),
        ("/spec/analysis/threshold", json!(10_001), ""),
        (
            "/spec/analysis/webhooks",
            json!([{"name": "h", "url": "http://h/", "timeout": "2h"}]),
            "at most 1h0m0s",
        ),
        ("/spec/analysis/webhooks", json!([{"name": "h", "url": "http://h/", "retries": 11}]), ""),
        ("/spec/analysis/webhooks", json!(vec![json!({"name": "h", "url": "http://h/"}); 65]), ""),
        ("/spec/analysis/metrics", json!([{"name": "m", "interval": "721h"}]), "at most 720h0m0s"),
        ("/spec/analysis/metrics", json!([{"name": "m", "query": "x".repeat(70_000)}]), ""),
        ("/spec/progressDeadlineSeconds", json!(604_801), ""),
    ];
    for (pointer, value, message) in cases {
        let v = violations(&with(pointer, value.clone()));
        assert!(!v.is_empty(), "{pointer} = {value} was accepted");
        assert!(v.iter().any(|v| v.contains(message)), "{pointer}: {v:?} lacks {message:?}");
    }
    for (pointer, value) in [
        ("/spec/analysis/interval", json!("24h")),
        ("/spec/analysis/interval", json!("1.5h")),
        (
            "/spec/analysis/webhooks",
            json!([{"name": "h", "url": "http://h/", "timeout": "1h", "retries": 10}]),
        ),
        ("/spec/analysis/metrics", json!([{"name": "m", "interval": "720h"}])),
        ("/spec/progressDeadlineSeconds", json!(604_800)),
    ] {
        assert_eq!(violations(&with(pointer, value.clone())), Vec::<String>::new(), "{pointer} = {value}");
    }
}

#[test]
fn reasonable_values_stay_accepted() {
    for (pointer, value) in [
        ("/spec/analysis/interval", json!("1m30s")),
        ("/spec/analysis/interval", json!("2h")),
        ("/spec/analysis/stepWeight", json!(100)),
        ("/spec/analysis/threshold", json!(0)),
        ("/spec/service/targetPort", json!("http")),
        ("/spec/service/targetPort", json!(8080)),
        ("/spec/service/trafficPolicy", json!({"tls": {"mode": "ISTIO_MUTUAL"}, "newIstioField": {"x": 1}})),
    ] {
        let doc = with(pointer, value.clone());
        assert_eq!(violations(&doc), Vec::<String>::new(), "{pointer} = {value}");
    }
}
