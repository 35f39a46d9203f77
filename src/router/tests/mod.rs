//! Router tests, written from `flagger-behaviour.md` §3. Objects are compared as JSON, as the API
//! server would receive them.

mod gatewayapi;
mod istio;
mod nginx;
mod proptests;
mod registry;
mod services;
mod smi;

use serde_json::{Value, json};

use super::*;
use crate::{api::Canary, fixtures};

pub(super) const UID: &str = "0b5a7c52-7d5e-4c3f-9a43-6c2f5e1e7a10";

/// A Canary `podinfo` in namespace `test` targeting Deployment `podinfo`, with this `service` and
/// `analysis`.
pub(super) fn canary(service: Value, analysis: Value) -> Canary {
    canary_spec(json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": service,
        "analysis": analysis,
    }))
}

/// A Canary `podinfo` in namespace `test` (uid [`UID`]) with this spec.
pub(super) fn canary_spec(spec: Value) -> Canary {
    fixtures::canary("podinfo", "test").uid(UID).spec(spec).build()
}

pub(super) fn progressive() -> Value {
    json!({"interval": "15s", "threshold": 5, "stepWeight": 10})
}

/// The owner reference every owned object must carry.
pub(super) fn owner() -> Value {
    json!([{
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "name": "podinfo",
        "uid": UID,
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

pub(super) fn flux() -> Value {
    json!({
        "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
        "helm.toolkit.fluxcd.io/driftDetection": "disabled",
    })
}

#[test]
fn service_names_default_to_the_target() {
    let c = canary(json!({"port": 80}), progressive());
    assert_eq!(
        service_names(&c),
        ServiceNames {
            apex: "podinfo".into(),
            primary: "podinfo-primary".into(),
            canary: "podinfo-canary".into()
        }
    );
    let c = canary(json!({"port": 80, "name": "frontend"}), progressive());
    assert_eq!(
        service_names(&c),
        ServiceNames {
            apex: "frontend".into(),
            primary: "frontend-primary".into(),
            canary: "frontend-canary".into()
        }
    );
}

#[test]
fn provider_comes_from_the_spec_or_the_default() {
    let mut c = canary(json!({"port": 80}), progressive());
    assert_eq!(Provider::of(&c, "istio"), Provider::Istio);
    assert_eq!(Provider::of(&c, "kubernetes"), Provider::Kubernetes);
    c.spec.provider = Some(String::new());
    assert_eq!(Provider::of(&c, "nginx"), Provider::Nginx, "empty means the default");
    c.spec.provider = Some("nginx".into());
    assert_eq!(Provider::of(&c, "istio"), Provider::Nginx);
    c.spec.provider = Some("contour".into());
    let p = Provider::of(&c, "istio");
    assert_eq!(p, Provider::Unsupported("contour".into()));
    let err = p.unsupported(&c).to_string();
    assert_eq!(
        err,
        "Canary podinfo.test: spec.provider: provider contour is not supported by Veer yet; supported: istio, nginx, kubernetes, gatewayapi:v1, gatewayapi:v1beta1, linkerd, osm, smi:v1alpha1, smi:v1alpha2, smi:v1alpha3"
    );
    c.spec.provider = None;
    let err = Provider::of(&c, "contour").unsupported(&c).to_string();
    assert!(
        err.contains(": --mesh-provider (spec.provider is empty): provider contour is not supported"),
        "{err}"
    );
}

#[test]
fn every_other_crd_provider_is_unsupported() {
    for p in
        ["apisix", "appmesh", "appmesh:v1beta2", "contour", "gloo", "knative", "kuma", "skipper", "traefik"]
    {
        assert_eq!(Provider::parse(p), Provider::Unsupported(p.into()), "{p}");
    }
}

#[test]
fn the_kubernetes_provider_reports_the_routes_of_the_status() {
    use crate::{
        analysis::{Params, Settings},
        api::{CanaryStatus, Phase},
    };
    let mut c = canary(json!({"port": 80}), json!({"interval": "1m", "threshold": 5, "iterations": 3}));
    c.spec.provider = Some("kubernetes".into());
    let p = Params::new(&c.spec, &Settings::default()).unwrap();
    let status = |phase, iterations| CanaryStatus { phase, iterations, ..Default::default() };
    assert_eq!(kubernetes::routes(&status(Phase::Progressing, 1), &p), Routes::PRIMARY, "testing the canary");
    assert_eq!(
        kubernetes::routes(&status(Phase::Progressing, 4), &p),
        Routes::canary(100),
        "switched after the iterations"
    );
    assert_eq!(kubernetes::routes(&status(Phase::Succeeded, 0), &p), Routes::PRIMARY);
}
