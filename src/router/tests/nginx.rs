//! §3.3 NGINX Ingress.

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};

use super::{canary_spec, owner};
use crate::{
    api::Canary,
    router::{
        RouterError, Routes,
        nginx::{
            DEFAULT_ANNOTATIONS_PREFIX, canary_ingress_name, desired_canary_ingress,
            has_stale_canary_annotations, read_routes,
        },
    },
};

const P: &str = DEFAULT_ANNOTATIONS_PREFIX;

fn nginx_canary(analysis: Value) -> Canary {
    canary_spec(json!({
        "provider": "nginx",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
        "service": {"port": 80, "targetPort": 9898},
        "analysis": analysis,
    }))
}

fn progressive() -> Value {
    json!({"interval": "10s", "threshold": 10, "maxWeight": 50, "stepWeight": 5})
}

fn ab(headers: Value) -> Value {
    json!({"interval": "10s", "threshold": 10, "iterations": 10, "match": [{"headers": headers}]})
}

fn user_ingress() -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "labels": {"app": "podinfo", "kustomize.toolkit.fluxcd.io/name": "apps"},
            "annotations": {
                "kubernetes.io/ingress.class": "nginx",
                "nginx.ingress.kubernetes.io/rewrite-target": "/",
                "note": "points at nginx.ingress.kubernetes.io/canary",
                "nginx.ingress.kubernetes.io/canary": "false",
                "nginx.ingress.kubernetes.io/canary-by-header": "stale",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Thing", "name": "t", "uid": "9"}],
        },
        "spec": {
            "ingressClassName": "nginx",
            "defaultBackend": {"service": {"name": "podinfo", "port": {"number": 80}}},
            "tls": [{"hosts": ["app.example.com"], "secretName": "tls"}],
            "rules": [{
                "host": "app.example.com",
                "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}},
                    {"path": "/static", "pathType": "Prefix", "backend": {"service": {"name": "cdn", "port": {"name": "http"}}}},
                ]},
            }],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}},
    }))
    .unwrap()
}

fn build(c: &Canary, routes: Routes) -> Value {
    serde_json::to_value(desired_canary_ingress(c, &user_ingress(), routes, P).unwrap()).unwrap()
}

#[test]
fn canary_ingress_copies_the_user_ingress_towards_the_canary_service() {
    let c = nginx_canary(progressive());
    assert_eq!(canary_ingress_name(&c).unwrap(), "podinfo-canary");
    let ing = build(&c, Routes::canary(15));
    assert_eq!(
        ing,
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "podinfo-canary",
                "namespace": "test",
                "labels": {"app": "podinfo"},
                "annotations": {
                    "kubernetes.io/ingress.class": "nginx",
                    "nginx.ingress.kubernetes.io/rewrite-target": "/",
                    "note": "points at nginx.ingress.kubernetes.io/canary",
                    "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
                    "helm.toolkit.fluxcd.io/driftDetection": "disabled",
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": "15",
                },
                "ownerReferences": owner(),
            },
            "spec": {
                "ingressClassName": "nginx",
                "defaultBackend": {"service": {"name": "podinfo-canary", "port": {"number": 80}}},
                "tls": [{"hosts": ["app.example.com"], "secretName": "tls"}],
                "rules": [{
                    "host": "app.example.com",
                    "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo-canary", "port": {"number": 80}}}},
                        {"path": "/static", "pathType": "Prefix", "backend": {"service": {"name": "cdn", "port": {"name": "http"}}}},
                    ]},
                }],
            },
        }),
        "stale canary annotations are dropped by key, others kept whatever their value (quirk #6)"
    );
    assert_eq!(build(&c, Routes::PRIMARY)["metadata"]["annotations"][format!("{P}/canary-weight")], "0");
}

#[test]
fn a_custom_annotations_prefix() {
    let c = nginx_canary(progressive());
    let ing = desired_canary_ingress(&c, &user_ingress(), Routes::canary(5), "custom.nginx.org").unwrap();
    let annotations = ing.metadata.annotations.unwrap();
    assert_eq!(annotations["custom.nginx.org/canary"], "true");
    assert_eq!(annotations["custom.nginx.org/canary-weight"], "5");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary"], "false",
        "not Veer's prefix: the user's own"
    );
    let back = read_routes(&c, &ing_with(annotations), "custom.nginx.org").unwrap();
    assert_eq!(back, Routes::canary(5));
}

fn ing_with(annotations: std::collections::BTreeMap<String, String>) -> Ingress {
    let mut ing = user_ingress();
    ing.metadata.name = Some("podinfo-canary".into());
    ing.metadata.annotations = Some(annotations);
    ing
}

fn annotations_of(c: &Canary, routes: Routes) -> Value {
    build(c, routes)["metadata"]["annotations"].clone()
}

#[test]
fn ab_testing_by_header_value() {
    let c = nginx_canary(ab(json!({"x-canary": {"exact": "insider"}})));
    let a = annotations_of(&c, Routes::canary(100));
    assert_eq!(a[format!("{P}/canary")], "true");
    assert_eq!(a[format!("{P}/canary-by-header")], "x-canary");
    assert_eq!(a[format!("{P}/canary-by-header-value")], "insider");
    assert_eq!(a.get(format!("{P}/canary-by-header-pattern")), None);
    assert_eq!(a[format!("{P}/canary-weight")], "0", "requests without the header stay on the primary");
}

#[test]
fn ab_testing_by_header_pattern() {
    let c = nginx_canary(ab(json!({"x-canary": {"regex": "^insider-.*"}})));
    let a = annotations_of(&c, Routes::canary(100));
    assert_eq!(a[format!("{P}/canary-by-header")], "x-canary");
    assert_eq!(a[format!("{P}/canary-by-header-pattern")], "^insider-.*");
    assert_eq!(a.get(format!("{P}/canary-by-header-value")), None);
    let c = nginx_canary(ab(json!({"x-canary": {"prefix": "in.sider"}})));
    assert_eq!(
        annotations_of(&c, Routes::canary(100))[format!("{P}/canary-by-header-pattern")],
        "^in\\.sider.*"
    );
}

#[test]
fn ab_testing_by_cookie() {
    let c = nginx_canary(ab(json!({"cookie": {"exact": "canary"}})));
    let a = annotations_of(&c, Routes::canary(100));
    assert_eq!(a[format!("{P}/canary-by-cookie")], "canary");
    assert_eq!(a.get(format!("{P}/canary-by-header")), None);
}

#[test]
fn ab_annotations_are_stripped_at_weight_zero() {
    let c = nginx_canary(ab(json!({"x-canary": {"exact": "insider"}, "cookie": {"exact": "canary"}})));
    let a = annotations_of(&c, Routes::PRIMARY);
    let canary_keys: Vec<&String> =
        a.as_object().unwrap().keys().filter(|k| k.starts_with(&format!("{P}/canary"))).collect();
    assert_eq!(canary_keys, [&format!("{P}/canary"), &format!("{P}/canary-weight")]);
    assert_eq!(a[format!("{P}/canary-weight")], "0");
}

#[test]
fn ab_annotations_left_on_the_live_ingress_are_stale() {
    let c = nginx_canary(ab(json!({"x-canary": {"exact": "insider"}})));
    let during = desired_canary_ingress(&c, &user_ingress(), Routes::canary(100), P).unwrap();
    let after = desired_canary_ingress(&c, &user_ingress(), Routes::PRIMARY, P).unwrap();
    assert!(has_stale_canary_annotations(&after, &during, P), "the header conditions must be removed");
    assert!(!has_stale_canary_annotations(&during, &during, P));
    assert!(!has_stale_canary_annotations(&during, &after, P), "adding keys is not removing them");
    let mut other = during.clone();
    other.metadata.annotations.as_mut().unwrap().insert("team".into(), "web".into());
    assert!(!has_stale_canary_annotations(&during, &other, P), "only canary keys count");
}

#[test]
fn ab_testing_needs_a_header() {
    let c = nginx_canary(
        json!({"interval": "10s", "threshold": 10, "iterations": 10, "match": [{"queryParams": {"a": {"exact": "1"}}}]}),
    );
    let err = desired_canary_ingress(&c, &user_ingress(), Routes::canary(100), P).unwrap_err();
    assert!(matches!(err, RouterError::NoNginxMatch { .. }));
    assert!(err.to_string().starts_with("Canary podinfo.test: spec.analysis.match"), "{err}");
}

#[test]
fn the_user_ingress_must_route_to_the_apex_service() {
    let c = nginx_canary(progressive());
    let mut ing = user_ingress();
    ing.spec.as_mut().unwrap().rules.as_mut().unwrap()[0].http.as_mut().unwrap().paths.remove(0);
    let err = desired_canary_ingress(&c, &ing, Routes::PRIMARY, P).unwrap_err();
    assert!(err.to_string().starts_with("backend podinfo not found in ingress podinfo.test"), "{err}");
}

#[test]
fn ingress_ref_is_required() {
    let mut c = nginx_canary(progressive());
    c.spec.ingress_ref = None;
    let err = desired_canary_ingress(&c, &user_ingress(), Routes::PRIMARY, P).unwrap_err();
    assert!(
        err.to_string().starts_with("Canary podinfo.test: spec.ingressRef is required by provider nginx"),
        "{err}"
    );
    assert!(canary_ingress_name(&c).is_err());
}

fn annotated(pairs: &[(&str, &str)]) -> Ingress {
    ing_with(pairs.iter().map(|(k, v)| (format!("{P}/{k}"), v.to_string())).collect())
}

#[test]
fn read_routes_from_the_weight() {
    let c = nginx_canary(progressive());
    assert_eq!(
        read_routes(&c, &annotated(&[("canary", "true"), ("canary-weight", "35")]), P).unwrap(),
        Routes::canary(35)
    );
    assert_eq!(
        read_routes(&c, &annotated(&[("canary", "true")]), P).unwrap(),
        Routes::PRIMARY,
        "no weight is 0"
    );
    // A header annotation means nothing without A/B testing.
    let header = annotated(&[("canary-by-header", "x"), ("canary-weight", "10")]);
    assert_eq!(read_routes(&c, &header, P).unwrap(), Routes::canary(10));
    let err = read_routes(&c, &annotated(&[("canary-weight", "ten")]), P).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Ingress podinfo-canary.test: annotation nginx.ingress.kubernetes.io/canary-weight is \"ten\", not a whole number from 0 to 100; remove it and Veer sets it again on the next reconcile"
    );
    assert!(read_routes(&c, &annotated(&[("canary-weight", "101")]), P).is_err());
}

#[test]
fn read_routes_with_ab_testing() {
    let c = nginx_canary(ab(json!({"x-canary": {"exact": "insider"}})));
    for key in ["canary-by-header", "canary-by-cookie"] {
        let ing = annotated(&[(key, "x"), ("canary-weight", "0")]);
        assert_eq!(read_routes(&c, &ing, P).unwrap(), Routes::canary(100), "{key}");
    }
    assert_eq!(read_routes(&c, &annotated(&[("canary-weight", "0")]), P).unwrap(), Routes::PRIMARY);
}
