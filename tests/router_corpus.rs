//! The routers build every Canary of Flagger's corpus that names a provider Veer supports (or none,
//! which means the controller's default, istio): Services, Istio objects, and, for Canaries with an
//! `ingressRef`, the NGINX canary Ingress from a synthetic user Ingress. What they build reads back
//! as the routes it was built for.

#[path = "common/corpus.rs"]
mod corpus;

use std::time::Duration;

use k8s_openapi::api::{core::v1::PodSpec, networking::v1::Ingress};
use serde_json::{Value, json};
use veer::{
    analysis::Routes,
    api::{Canary, CanaryStatus},
    router::{Provider, istio, nginx, service_names, services::desired_services},
};

fn canaries() -> Vec<(String, Canary)> {
    let mut out: Vec<(String, Canary)> = corpus::of_kind("valid", "Canary");
    for (_, canary) in &mut out {
        // Objects read from the API server have a uid (owner references need it).
        canary.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
    }
    out
}

fn pod_spec() -> PodSpec {
    serde_json::from_value(json!({"containers": [{"name": "app", "ports": [
        {"name": "http", "containerPort": 9898}, {"name": "grpc", "containerPort": 9999}, {"containerPort": 8080},
    ]}]}))
    .unwrap()
}

/// A user Ingress named like `ingressRef`, routing to the apex Service.
fn user_ingress(canary: &Canary) -> Ingress {
    let svc = canary.spec.service.as_ref().unwrap();
    serde_json::from_value(json!({
        "metadata": {"name": canary.spec.ingress_ref.as_ref().unwrap().name, "namespace": "test",
                     "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": service_names(canary).apex, "port": {"number": svc.port}}},
        }]}}]},
    }))
    .unwrap()
}

fn has_ab(canary: &Canary) -> bool {
    canary.spec.analysis.as_ref().and_then(|a| a.match_.as_ref()).is_some_and(|m| !m.is_empty())
}

fn build(canary: &Canary) -> Result<usize, String> {
    let provider = Provider::of(canary, "istio");
    if let Provider::Unsupported(p) = &provider {
        return Err(format!("provider {p} has no router"));
    }
    let pod = pod_spec();
    let svcs = desired_services(canary, "app", "podinfo", Some(&pod), [None, None, None])
        .map_err(|e| e.to_string())?;
    assert!(svcs.iter().all(|s| s.metadata.owner_references.is_some()));
    let routes = if has_ab(canary) { Routes::canary(100) } else { Routes::canary(10) };
    let mut objects = 3;
    if provider == Provider::Istio {
        objects += istio::desired_destination_rules(canary).len();
        let status = CanaryStatus {
            session_affinity_cookie: "c=abcdefghij".into(),
            primary_session_affinity_cookie: "p=abcdefghij".into(),
            ..Default::default()
        };
        let vs = istio::desired_virtual_service(canary, routes, &status, None, Duration::from_secs(60))
            .map_err(|e| e.to_string())?;
        assert_eq!(istio::read_routes(canary, &vs).map_err(|e| e.to_string())?, routes);
        objects += 1;
    }
    if canary.spec.ingress_ref.is_some() {
        let prefix = nginx::DEFAULT_ANNOTATIONS_PREFIX;
        let ing = nginx::desired_canary_ingress(canary, &user_ingress(canary), routes, prefix)
            .map_err(|e| e.to_string())?;
        assert_eq!(nginx::read_routes(canary, &ing, prefix).map_err(|e| e.to_string())?, routes);
        objects += 1;
    }
    Ok(objects)
}

#[test]
fn routers_build_every_supported_corpus_canary() {
    let mut failures = Vec::new();
    let mut built = Vec::new();
    for (name, canary) in canaries() {
        let provider = canary.spec.provider.clone().unwrap_or_default();
        if !["", "istio", "nginx", "kubernetes"].contains(&provider.as_str()) {
            continue;
        }
        match build(&canary) {
            Ok(n) => built.push((name, provider, n)),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let count = |p: &str| built.iter().filter(|(_, provider, _)| provider == p).count();
    // Guards against a corpus path or filter that silently selects nothing.
    assert!(built.len() >= 40, "built {built:?}");
    assert!(count("istio") >= 1 && count("nginx") >= 2 && count("kubernetes") >= 8, "built {built:?}");
}

#[test]
fn nginx_corpus_canaries_produce_a_canary_ingress() {
    let nginx: Vec<(String, Canary)> =
        canaries().into_iter().filter(|(_, c)| c.spec.provider.as_deref() == Some("nginx")).collect();
    assert!(!nginx.is_empty());
    for (name, canary) in nginx {
        let ing = nginx::desired_canary_ingress(
            &canary,
            &user_ingress(&canary),
            Routes::PRIMARY,
            "nginx.ingress.kubernetes.io",
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let value: Value = serde_json::to_value(&ing).unwrap();
        let apex = service_names(&canary).apex;
        assert_eq!(
            value["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            format!("{apex}-canary"),
            "{name}"
        );
        assert_eq!(
            value["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"], "0",
            "{name}"
        );
    }
}
