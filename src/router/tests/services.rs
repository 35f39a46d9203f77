//! §3.1 Kubernetes Services.

use k8s_openapi::api::core::v1::{PodSpec, Service};
use serde_json::{Value, json};

use super::{canary, flux, owner, progressive};
use crate::router::{RouterError, services::desired_services};

fn build(service: Value, pod: Option<Value>, existing: [Option<&Service>; 3]) -> Vec<Value> {
    let c = canary(service, progressive());
    let pod: Option<PodSpec> = pod.map(|p| serde_json::from_value(p).unwrap());
    desired_services(&c, "app", "podinfo", pod.as_ref(), existing)
        .unwrap()
        .iter()
        .map(|s| serde_json::to_value(s).unwrap())
        .collect()
}

#[test]
fn three_cluster_ip_services_select_primary_and_canary_pods() {
    let svcs = build(json!({"port": 9898}), None, [None, None, None]);
    let port = json!([{"name": "http", "protocol": "TCP", "port": 9898, "targetPort": 9898}]);
    let expected = |name: &str, selector: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": "test",
                "labels": {"app": name},
                "annotations": flux(),
                "ownerReferences": owner(),
            },
            "spec": {"type": "ClusterIP", "selector": {"app": selector}, "ports": port},
        })
    };
    assert_eq!(svcs[0], expected("podinfo", "podinfo-primary"));
    assert_eq!(svcs[1], expected("podinfo-primary", "podinfo-primary"));
    assert_eq!(svcs[2], expected("podinfo-canary", "podinfo"));
}

#[test]
fn port_fields_follow_the_service_spec() {
    let svcs = build(
        json!({
            "name": "frontend",
            "port": 80,
            "portName": "http-web",
            "targetPort": "web",
            "appProtocol": "http2",
            "trafficDistribution": "PreferClose",
            "headless": true,
        }),
        None,
        [None, None, None],
    );
    for (svc, name) in svcs.iter().zip(["frontend", "frontend-primary", "frontend-canary"]) {
        assert_eq!(svc["metadata"]["name"], name);
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "http-web", "protocol": "TCP", "port": 80, "targetPort": "web", "appProtocol": "http2"}])
        );
        assert_eq!(svc["spec"]["clusterIP"], "None");
        assert_eq!(svc["spec"]["trafficDistribution"], "PreferClose");
    }
}

#[test]
fn custom_metadata_is_merged_per_service() {
    let svcs = build(
        json!({
            "port": 9898,
            "apex": {"labels": {"tier": "edge"}, "annotations": {"note": "apex"}},
            "primary": {"labels": {"app": "overridden"}, "annotations": {"note": "primary"}},
            "canary": {"annotations": {"kustomize.toolkit.fluxcd.io/prune": "disabled"}},
        }),
        None,
        [None, None, None],
    );
    assert_eq!(svcs[0]["metadata"]["labels"], json!({"app": "podinfo", "tier": "edge"}));
    assert_eq!(svcs[0]["metadata"]["annotations"]["note"], "apex");
    assert_eq!(svcs[1]["metadata"]["labels"], json!({"app": "podinfo-primary"}), "the service label wins");
    assert_eq!(svcs[1]["metadata"]["annotations"]["note"], "primary");
    assert_eq!(svcs[2]["metadata"]["annotations"], flux(), "Flux keys of custom metadata are not copied");
}

#[test]
fn unmanaged_metadata_keys_are_never_set() {
    let svcs = build(
        json!({
            "port": 9898,
            "apex": {"labels": {"team": "a"}, "annotations": {"owner": "x", "keep": "y"}},
            "unmanagedMetadata": {"labels": ["team"], "annotations": ["owner", "helm.toolkit.fluxcd.io/driftDetection"]},
        }),
        None,
        [None, None, None],
    );
    assert_eq!(svcs[0]["metadata"]["labels"], json!({"app": "podinfo"}));
    assert_eq!(
        svcs[0]["metadata"]["annotations"],
        json!({"keep": "y", "kustomize.toolkit.fluxcd.io/reconcile": "disabled"})
    );
}

fn pod() -> Value {
    json!({
        "containers": [
            {"name": "podinfo", "image": "podinfo", "ports": [
                {"name": "http", "containerPort": 9898},
                {"name": "grpc", "containerPort": 9999},
                {"containerPort": 8080},
            ]},
            {"name": "istio-proxy", "image": "proxy", "ports": [{"name": "http-envoy-prom", "containerPort": 15090}]},
            {"name": "envoy", "image": "envoy", "ports": [{"containerPort": 9901}]},
            {"name": "logger", "image": "logger", "ports": [{"containerPort": 5000, "protocol": "UDP"}]},
        ]
    })
}

fn port_names(svc: &Value) -> Vec<(String, i64)> {
    svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["port"].as_i64().unwrap()))
        .collect()
}

#[test]
fn port_discovery_adds_the_other_container_ports() {
    let svcs = build(json!({"port": 9898, "portDiscovery": true}), Some(pod()), [None, None, None]);
    let expected: Vec<(String, i64)> = vec![
        ("http".into(), 9898),
        ("grpc".into(), 9999),
        ("tcp-podinfo-2".into(), 8080),
        ("tcp-logger-0".into(), 5000),
    ];
    for svc in &svcs {
        assert_eq!(port_names(svc), expected);
    }
    let ports = &svcs[0]["spec"]["ports"];
    assert_eq!(ports[1], json!({"name": "grpc", "protocol": "TCP", "port": 9999, "targetPort": 9999}));
    assert_eq!(ports[3]["protocol"], "UDP");
}

#[test]
fn port_discovery_excludes_the_target_port() {
    // A numeric targetPort excludes that container port (and not the service port).
    let svcs = build(
        json!({"port": 80, "targetPort": 9999, "portDiscovery": true}),
        Some(pod()),
        [None, None, None],
    );
    let names: Vec<String> = port_names(&svcs[0]).into_iter().map(|p| p.0).collect();
    assert_eq!(
        names,
        ["http", "tcp-podinfo-2", "tcp-logger-0"],
        "container port http (9898) would repeat the service port's name: skipped"
    );
    // A named targetPort excludes the container port of that name.
    let svcs = build(
        json!({"port": 80, "targetPort": "grpc", "portName": "web", "portDiscovery": true}),
        Some(pod()),
        [None, None, None],
    );
    assert_eq!(
        port_names(&svcs[0]),
        vec![
            ("web".into(), 80),
            ("http".into(), 9898),
            ("tcp-podinfo-2".into(), 8080),
            ("tcp-logger-0".into(), 5000)
        ]
    );
}

#[test]
fn without_port_discovery_only_the_service_port() {
    let svcs = build(json!({"port": 9898}), Some(pod()), [None, None, None]);
    assert_eq!(port_names(&svcs[0]), vec![("http".into(), 9898)]);
}

#[test]
fn an_adopted_apex_service_gets_only_selector_and_ports() {
    let user: Service = serde_json::from_value(json!({
        "metadata": {"name": "podinfo", "namespace": "test", "labels": {"app": "podinfo"}},
        "spec": {"type": "NodePort", "selector": {"app": "podinfo"},
                 "ports": [{"name": "http", "port": 9898, "nodePort": 30080}]},
    }))
    .unwrap();
    let svcs = build(
        json!({"port": 9898, "headless": true, "apex": {"labels": {"x": "y"}}}),
        None,
        [Some(&user), None, None],
    );
    assert_eq!(
        svcs[0],
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "selector": {"app": "podinfo-primary"},
                "ports": [{"name": "http", "protocol": "TCP", "port": 9898, "targetPort": 9898, "nodePort": 30080}],
            },
        })
    );
    assert_eq!(svcs[1]["metadata"]["ownerReferences"], owner(), "the others are still generated");
}

#[test]
fn a_service_controlled_by_this_canary_is_fully_managed() {
    let ours: Service = serde_json::from_value(json!({
        "metadata": {"name": "podinfo", "namespace": "test", "ownerReferences": owner()},
        "spec": {"type": "ClusterIP", "selector": {"app": "podinfo-primary"}},
    }))
    .unwrap();
    let svcs = build(json!({"port": 9898}), None, [Some(&ours), None, None]);
    assert_eq!(svcs[0]["metadata"]["ownerReferences"], owner());
    assert_eq!(svcs[0]["metadata"]["labels"], json!({"app": "podinfo"}));
    assert_eq!(svcs[0]["spec"]["type"], "ClusterIP");
}

#[test]
fn a_service_of_another_canary_is_an_error() {
    let theirs: Service = serde_json::from_value(json!({
        "metadata": {"name": "podinfo-canary", "namespace": "test", "ownerReferences": [{
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "other", "uid": "1", "controller": true,
        }]},
    }))
    .unwrap();
    let c = canary(json!({"port": 9898}), progressive());
    let err = desired_services(&c, "app", "podinfo", None, [None, None, Some(&theirs)]).unwrap_err();
    assert!(matches!(&err, RouterError::OwnedByAnotherCanary { owner, .. } if owner == "other"));
    assert!(
        err.to_string().starts_with("Service podinfo-canary.test is controlled by another Canary (other)"),
        "{err}"
    );
}

#[test]
fn a_canary_without_service_is_an_error() {
    let mut c = canary(json!({"port": 9898}), progressive());
    c.spec.service = None;
    let err = desired_services(&c, "app", "podinfo", None, [None, None, None]).unwrap_err();
    assert!(err.to_string().contains("Canary podinfo.test: spec.service is missing"), "{err}");
}
