//! §3.4 SMI: the TrafficSplit `<svc>` (`linkerd`, `osm`, `smi:<version>[:<mesh>]`).

use serde_json::{Value, json};

use super::{canary, canary_spec, owner, progressive, registry::Objects};
use crate::{
    analysis::{Reason, SmiVersion},
    router::{
        Provider, Router, RouterConfig, RouterError, Routes,
        smi::{Version, desired_traffic_split, read_routes, resource},
    },
};

fn split(version: Version, istio: bool, service: Value, routes: Routes) -> Value {
    desired_traffic_split(&canary(service, progressive()), version, istio, routes, None).unwrap()
}

#[test]
fn linkerd_writes_a_v1alpha1_split_with_quantities_canary_first() {
    assert_eq!(
        split(Version::V1alpha1, false, json!({"port": 9898}), Routes::canary(10)),
        json!({
            "apiVersion": "split.smi-spec.io/v1alpha1",
            "kind": "TrafficSplit",
            "metadata": {
                "name": "podinfo", "namespace": "test",
                "ownerReferences": owner(),
            },
            "spec": {
                "service": "podinfo",
                "backends": [
                    {"service": "podinfo-canary", "weight": "10"},
                    {"service": "podinfo-primary", "weight": "90"},
                ],
            },
        })
    );
}

#[test]
fn later_versions_write_integer_weights() {
    for version in [Version::V1alpha2, Version::V1alpha3] {
        let s = split(version, false, json!({"port": 9898}), Routes::PRIMARY);
        assert_eq!(s["apiVersion"], format!("split.smi-spec.io/{}", version.as_str()));
        assert_eq!(
            s["spec"]["backends"],
            json!([{"service": "podinfo-canary", "weight": 0}, {"service": "podinfo-primary", "weight": 100}])
        );
    }
}

#[test]
fn the_split_service_is_the_first_host_and_the_apex_name_is_spec_service_name() {
    let s = split(
        Version::V1alpha2,
        false,
        json!({"name": "web", "port": 80, "hosts": ["web.example.com", "other"]}),
        Routes::PRIMARY,
    );
    assert_eq!(s["metadata"]["name"], "web");
    assert_eq!(s["spec"]["service"], "web.example.com");
    assert_eq!(s["spec"]["backends"][0]["service"], "web-canary");
    assert_eq!(s["spec"]["backends"][1]["service"], "web-primary");
}

#[test]
fn the_istio_mesh_gets_the_gateways_annotation() {
    let service = json!({"port": 80, "gateways": ["public-gateway.istio-system.svc.cluster.local", "mesh"]});
    let s = split(Version::V1alpha3, true, service.clone(), Routes::PRIMARY);
    assert_eq!(
        s["metadata"]["annotations"]["VirtualService.v1alpha3.networking.istio.io/spec.gateways"],
        r#"["public-gateway.istio-system.svc.cluster.local","mesh"]"#
    );
    let s = split(Version::V1alpha3, false, service, Routes::PRIMARY);
    assert!(s["metadata"].get("annotations").is_none(), "only for the Istio mesh");
}

#[test]
fn a_users_split_is_adopted_and_another_canarys_refused() {
    let c = canary(json!({"port": 80}), progressive());
    let users = json!({"metadata": {"name": "podinfo"}});
    let s = desired_traffic_split(&c, Version::V1alpha2, false, Routes::PRIMARY, Some(&users)).unwrap();
    assert!(s["metadata"].get("ownerReferences").is_none());
    let others = json!({"metadata": {"name": "podinfo", "ownerReferences": [{
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "other", "uid": "1", "controller": true,
    }]}});
    let e = desired_traffic_split(&c, Version::V1alpha2, false, Routes::PRIMARY, Some(&others)).unwrap_err();
    assert!(matches!(e, RouterError::OwnedByAnotherCanary { ref kind, .. } if kind == "TrafficSplit"), "{e}");
}

#[test]
fn routes_read_back_from_either_weight_shape() {
    let c = canary(json!({"port": 80}), progressive());
    for version in [Version::V1alpha1, Version::V1alpha2] {
        let s = split(version, false, json!({"port": 80}), Routes::canary(30));
        assert_eq!(read_routes(&c, &s), Ok(Routes::canary(30)), "{version:?}");
    }
    let odd = json!({"spec": {"backends": [
        {"service": "podinfo-primary", "weight": "500m"},
        {"service": "podinfo-canary", "weight": 250},
        {"service": "elsewhere", "weight": 50},
    ]}});
    let e = read_routes(&c, &odd).unwrap_err();
    assert_eq!(
        e.to_string(),
        "TrafficSplit podinfo.test does not contain routes for podinfo-primary and podinfo-canary; Veer rewrites it on the next reconcile, check that no other tool manages its spec.backends"
    );
}

fn resolve(provider: &str, analysis: Value, live: &Objects) -> Result<Router, RouterError> {
    let c = canary_spec(json!({
        "provider": provider,
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 80},
        "analysis": analysis,
    }));
    let config = RouterConfig { ingress_annotations_prefix: "nginx.ingress.kubernetes.io".into() };
    Router::resolve(&Provider::of(&c, "istio"), &c, live, &config)
}

#[test]
fn each_smi_provider_resolves_to_its_version() {
    let live = Objects::istio();
    for (provider, version, istio) in [
        ("linkerd", SmiVersion::V1alpha1, false),
        ("osm", SmiVersion::V1alpha2, false),
        ("smi:v1alpha1", SmiVersion::V1alpha1, false),
        ("smi:v1alpha2:linkerd", SmiVersion::V1alpha2, false),
        ("smi:v1alpha3:istio", SmiVersion::V1alpha3, true),
    ] {
        match resolve(provider, progressive(), &live) {
            Ok(Router::Smi { version: v, istio: i }) => assert_eq!((v, i), (version, istio), "{provider}"),
            other => panic!("{provider}: {other:?}"),
        }
    }
}

#[test]
fn a_missing_crd_version_and_ab_testing_stall_with_the_field() {
    let e = resolve("linkerd", progressive(), &Objects::istio().without("split.smi-spec.io/v1alpha1"))
        .unwrap_err();
    assert_eq!(e.reason(), Reason::SmiNotInstalled);
    assert_eq!(
        e.to_string(),
        "Canary podinfo.test uses provider linkerd but the SMI TrafficSplit CRD does not serve v1alpha1 (split.smi-spec.io); install the mesh's SMI extension (for Linkerd: linkerd-smi) and restart Veer (it looks for the CRDs at start), or set spec.provider"
    );
    let ab = json!({"interval": "15s", "threshold": 5, "iterations": 10,
        "match": [{"headers": {"x-canary": {"exact": "insider"}}}]});
    let e = resolve("osm", ab, &Objects::istio()).unwrap_err();
    assert_eq!(e.reason(), Reason::InvalidRouting);
    assert!(
        e.to_string().starts_with(
            "Canary podinfo.test: spec.analysis.match: provider osm splits traffic by weight only"
        ),
        "{e}"
    );
}

#[test]
fn the_registry_reads_and_writes_through_the_cache() {
    let c = canary_spec(json!({
        "provider": "linkerd",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 80},
        "analysis": progressive(),
    }));
    let live = Objects::istio();
    let router = resolve("linkerd", progressive(), &live).unwrap();
    let params = crate::analysis::Params::new(&c.spec, &crate::analysis::Settings::default()).unwrap();
    let status = crate::api::CanaryStatus::default();
    let e = router.read_routes(&c, &status, &params, &live).unwrap_err();
    assert_eq!(e, "TrafficSplit podinfo.test not found yet");
    let desired = router.desired(&c, Routes::canary(20), &status, &params, &live).unwrap();
    assert_eq!(desired.len(), 1);
    assert_eq!(desired[0].kind, resource(Version::V1alpha1));
    let live = live.with(resource(Version::V1alpha1), desired[0].object.clone());
    assert_eq!(router.read_routes(&c, &status, &params, &live), Ok(Routes::canary(20)));
}
