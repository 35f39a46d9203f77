//! Read-back round trips: what a router writes for some routes reads back as those routes.

use std::time::Duration;

use k8s_openapi::api::networking::v1::Ingress;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::canary_spec;
use crate::{
    api::CanaryStatus,
    router::{Routes, istio, nginx},
};

fn routes(mirror: bool) -> impl Strategy<Value = Routes> {
    (0..=100i32, any::<bool>()).prop_map(move |(c, m)| Routes {
        primary: 100 - c,
        canary: c,
        mirrored: m && mirror,
    })
}

/// Istio Canaries: progressive, A/B, session affinity, TCP, gateways with port discovery.
fn istio_spec() -> impl Strategy<Value = (Value, bool)> {
    let service = prop_oneof![
        Just(json!({"port": 9898})),
        Just(json!({"port": 80, "portDiscovery": true, "gateways": ["public/gw"], "hosts": ["a.example"]})),
        Just(
            json!({"port": 80, "delegation": true, "match": [{"uri": {"prefix": "/"}}, {"uri": {"prefix": "/b"}}]})
        ),
        Just(json!({"port": 6379, "appProtocol": "tcp", "match": [{"port": 6379}]})),
    ];
    let analysis = prop_oneof![
        Just(
            json!({"interval": "15s", "threshold": 5, "stepWeight": 10, "mirror": true, "mirrorWeight": 30})
        ),
        Just(
            json!({"interval": "1m", "threshold": 5, "iterations": 5, "match": [{"headers": {"x": {"exact": "1"}}}]})
        ),
        Just(json!({"interval": "15s", "threshold": 5, "stepWeight": 10,
                    "sessionAffinity": {"cookieName": "c", "primaryCookieName": "p"}})),
    ];
    (service, analysis).prop_map(|(service, analysis)| {
        let tcp = service["appProtocol"] == "tcp";
        (
            json!({
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": service,
                "analysis": analysis,
            }),
            tcp,
        )
    })
}

fn status() -> impl Strategy<Value = CanaryStatus> {
    (any::<bool>(), any::<bool>()).prop_map(|(current, previous)| CanaryStatus {
        session_affinity_cookie: if current { "c=abcdefghij".into() } else { String::new() },
        primary_session_affinity_cookie: if current { "p=klmnopqrst".into() } else { String::new() },
        previous_session_affinity_cookie: if previous { "c=zyxwvutsrq".into() } else { String::new() },
        ..Default::default()
    })
}

proptest! {
    #[test]
    fn istio_routes_read_back((spec, tcp) in istio_spec(), r in routes(true), status in status()) {
        // TCP routes cannot mirror.
        let r = Routes { mirrored: r.mirrored && !tcp, ..r };
        let c = canary_spec(spec);
        let vs = istio::desired_virtual_service(&c, r, &status, None, Duration::from_secs(15)).unwrap();
        prop_assert_eq!(istio::read_routes(&c, &vs).unwrap(), r);
    }

    #[test]
    fn nginx_progressive_routes_read_back(r in routes(false)) {
        let c = nginx_canary(json!({"interval": "1m", "threshold": 5, "stepWeight": 10}));
        let ing = nginx::desired_canary_ingress(&c, &user_ingress(), r, nginx::DEFAULT_ANNOTATIONS_PREFIX).unwrap();
        prop_assert_eq!(nginx::read_routes(&c, &ing, nginx::DEFAULT_ANNOTATIONS_PREFIX).unwrap(), r);
    }

    #[test]
    fn nginx_ab_routes_read_back(to_canary in any::<bool>(), cookie in any::<bool>()) {
        let header = if cookie { json!({"cookie": {"exact": "c"}}) } else { json!({"x-user": {"regex": "a.*"}}) };
        let c = nginx_canary(json!({"interval": "1m", "threshold": 5, "iterations": 3, "match": [{"headers": header}]}));
        // A/B testing routes all or nothing.
        let r = if to_canary { Routes::canary(100) } else { Routes::PRIMARY };
        let ing = nginx::desired_canary_ingress(&c, &user_ingress(), r, "example.org").unwrap();
        prop_assert_eq!(nginx::read_routes(&c, &ing, "example.org").unwrap(), r);
    }
}

fn nginx_canary(analysis: Value) -> crate::api::Canary {
    canary_spec(json!({
        "provider": "nginx",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"},
        "service": {"port": 80},
        "analysis": analysis,
    }))
}

fn user_ingress() -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "test"},
        "spec": {"rules": [{"http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}},
        ]}}]},
    }))
    .unwrap()
}
