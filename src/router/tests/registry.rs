//! The router registry ([`Router`]): resolving a Canary's router from the caches, and what each
//! router reads, writes and reverts through [`Live`].

use kube::api::ApiResource;
use serde_json::{Value, json};

use super::{canary, canary_spec, owner, progressive};
use crate::{
    analysis::{Params, Settings},
    api::CanaryStatus,
    router::{Desired, Live, Provider, Router, RouterConfig, RouterError, Routes, istio},
};

/// Cached objects, by kind and name; `istio`: whether the Istio CRDs are installed.
#[derive(Default)]
pub(super) struct Objects {
    objects: Vec<(ApiResource, Value)>,
    istio: bool,
    /// Versions of kinds the API server does not serve, as `group/version`.
    unserved: Vec<String>,
}

impl Objects {
    pub(super) fn istio() -> Objects {
        Objects { istio: true, ..Default::default() }
    }

    /// The same caches with `group/version` not served (its CRD lacks that version).
    pub(super) fn without(mut self, api_version: &str) -> Objects {
        self.unserved.push(api_version.into());
        self
    }

    pub(super) fn with(mut self, kind: ApiResource, object: Value) -> Objects {
        self.objects.push((kind, object));
        self
    }
}

impl Live for Objects {
    fn get(&self, kind: &ApiResource, name: &str) -> Option<Value> {
        self.objects.iter().find(|(k, o)| k == kind && o["metadata"]["name"] == name).map(|(_, o)| o.clone())
    }

    fn serves(&self, kind: &ApiResource) -> bool {
        (kind.group != "networking.istio.io" || self.istio) && !self.unserved.contains(&kind.api_version)
    }
}

fn config() -> RouterConfig {
    RouterConfig { ingress_annotations_prefix: "nginx.ingress.kubernetes.io".into() }
}

fn ingress_kind() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::networking::v1::Ingress>(&())
}

fn nginx_canary() -> crate::api::Canary {
    canary_spec(json!({
        "provider": "nginx",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
        "service": {"port": 80},
        "analysis": progressive(),
    }))
}

fn user_ingress() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}}]}}]},
    })
}

fn params(c: &crate::api::Canary) -> Params {
    Params::new(&c.spec, &Settings::default()).unwrap()
}

#[test]
fn each_provider_resolves_to_its_router_or_says_what_is_missing() {
    let c = canary(json!({"port": 9898}), progressive());
    let resolve = |p: &str, c: &crate::api::Canary, live: &Objects| {
        Router::resolve(&Provider::of(c, p), c, live, &config())
    };
    assert!(matches!(resolve("istio", &c, &Objects::istio()), Ok(Router::Istio)));
    assert_eq!(
        resolve("istio", &c, &Objects::default()).unwrap_err(),
        RouterError::IstioNotInstalled { canary: "podinfo.test".into() }
    );
    assert!(matches!(resolve("kubernetes", &c, &Objects::default()), Ok(Router::Kubernetes)));
    let e = resolve("traefik", &c, &Objects::istio()).unwrap_err();
    assert_eq!(e.reason().as_str(), "UnsupportedProvider");

    let n = nginx_canary();
    let e = resolve("istio", &n, &Objects::default()).unwrap_err();
    assert_eq!(
        e,
        RouterError::IngressNotFound { ingress: "podinfo.test".into(), canary: "podinfo.test".into() }
    );
    assert_eq!(e.reason().as_str(), "IngressNotFound");
    let live = Objects::default().with(ingress_kind(), user_ingress());
    match resolve("istio", &n, &live) {
        Ok(Router::Nginx { user_ingress, annotations_prefix }) => {
            assert_eq!(user_ingress.metadata.name.as_deref(), Some("podinfo"));
            assert_eq!(annotations_prefix, "nginx.ingress.kubernetes.io");
        }
        other => panic!("expected the NGINX router: {other:?}"),
    }
    let mut no_ref = n.clone();
    no_ref.spec.ingress_ref = None;
    assert_eq!(resolve("istio", &no_ref, &live).unwrap_err().reason().as_str(), "IngressRefMissing");
}

#[test]
fn istio_writes_two_destination_rules_then_the_virtual_service() {
    let c = canary(json!({"port": 9898}), progressive());
    let status = CanaryStatus::default();
    let desired =
        Router::Istio.desired(&c, Routes::canary(10), &status, &params(&c), &Objects::istio()).unwrap();
    let names: Vec<(&str, &str)> = desired.iter().map(|d| (d.kind.kind.as_str(), d.name())).collect();
    assert_eq!(
        names,
        [
            ("DestinationRule", "podinfo-primary"),
            ("DestinationRule", "podinfo-canary"),
            ("VirtualService", "podinfo")
        ]
    );
    assert!(desired.iter().all(|d| !d.rewrite), "nothing stale to remove");
    assert_eq!(desired[2].object["metadata"]["ownerReferences"], owner());
}

#[test]
fn a_stale_mirror_forces_the_virtual_service_write() {
    let c = canary(json!({"port": 9898}), progressive());
    let status = CanaryStatus::default();
    let p = params(&c);
    let mirrored = Routes { mirrored: true, ..Routes::canary(10) };
    let vs = |routes| {
        let d = Router::Istio.desired(&c, routes, &status, &p, &Objects::istio()).unwrap();
        d.into_iter().find(|d| d.kind.kind == "VirtualService").unwrap()
    };
    let live = Objects::istio().with(istio::resource(istio::VIRTUAL_SERVICE), vs(mirrored).object);
    let after = Router::Istio.desired(&c, Routes::PRIMARY, &status, &p, &live).unwrap();
    assert!(after.iter().find(|d| d.kind.kind == "VirtualService").unwrap().rewrite);
    assert_eq!(
        Router::Istio.read_routes(&c, &status, &p, &live),
        Ok(mirrored),
        "read back from the live object"
    );
}

#[test]
fn routes_are_read_back_or_said_missing() {
    let c = canary(json!({"port": 9898}), progressive());
    let status = CanaryStatus { canary_weight: 30, ..Default::default() };
    let p = params(&c);
    assert_eq!(
        Router::Istio.read_routes(&c, &status, &p, &Objects::istio()),
        Err("VirtualService podinfo.test not found yet".into())
    );
    assert_eq!(
        Router::Kubernetes.read_routes(&c, &status, &p, &Objects::default()),
        Ok(crate::analysis::intended_routes(&status, &p)),
        "no object: what the status stands for"
    );
    let n = nginx_canary();
    let live = Objects::default().with(ingress_kind(), user_ingress());
    let router = Router::resolve(&Provider::Nginx, &n, &live, &config()).unwrap();
    let e = router.read_routes(&n, &status, &params(&n), &live).unwrap_err();
    assert_eq!(e, "canary Ingress of Canary podinfo.test not found yet");
    let desired = router.desired(&n, Routes::canary(20), &status, &params(&n), &live).unwrap();
    assert_eq!(desired.len(), 1);
    assert_eq!(desired[0].name(), "podinfo-canary");
    let live = live.with(ingress_kind(), desired[0].object.clone());
    assert_eq!(router.read_routes(&n, &status, &params(&n), &live), Ok(Routes::canary(20)));
}

#[test]
fn only_an_adopted_virtual_service_is_reverted() {
    let c = canary(json!({"port": 9898}), progressive());
    let spec = json!({"hosts": ["podinfo"], "http": [{"route": [{"destination": {"host": "podinfo"}}]}]});
    let applied = json!({"spec": spec}).to_string();
    let adopted = json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": "test",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied}},
        "spec": {"hosts": ["podinfo"], "http": []},
    });
    let vs = istio::resource(istio::VIRTUAL_SERVICE);
    let reverted: Vec<Desired> =
        Router::Istio.reverted(&c, &Objects::istio().with(vs.clone(), adopted.clone()));
    assert_eq!(reverted.len(), 1);
    assert!(reverted[0].rewrite, "always written: the cached object has Veer's routes");
    assert_eq!(reverted[0].object["spec"], spec);

    let mut owned = adopted;
    owned["metadata"]["ownerReferences"] = owner();
    assert!(
        Router::Istio.reverted(&c, &Objects::istio().with(vs, owned)).is_empty(),
        "garbage collected instead"
    );
    assert!(Router::Kubernetes.reverted(&c, &Objects::default()).is_empty());
}
