//! The watch mappers: which Canaries a changed object wakes.

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::Service,
};
use kube::{
    api::DynamicObject,
    runtime::{
        reflector::{self, ObjectRef},
        watcher,
    },
};
use serde_json::{Value, json};

use super::fixtures::{from, put};
use crate::{
    analysis::TargetKind,
    api::Canary,
    controller::{
        index::{CanaryIndex, Role},
        watches::{
            PartialStores, config_canaries, config_or_copy_canaries, owners, referring, target_canaries,
        },
    },
    workload::ConfigId,
};

fn canary(ns: &str, name: &str, kind: &str, target: &str) -> Canary {
    crate::fixtures::canary(name, ns)
        .uid(&format!("uid-{ns}-{name}"))
        .target(kind, target)
        .spec(json!({"service": {"port": 9898}}))
        .build()
}

/// A pod template that uses ConfigMap `cm` through a volume and Secret `secret` through envFrom
/// (and, with `env`, ConfigMap `env` through a single variable).
fn template(cm: &str, secret: &str, env: Option<&str>) -> Value {
    let mut container = json!({
        "name": "app", "image": "app:1",
        "envFrom": [{"secretRef": {"name": secret}}]
    });
    if let Some(env) = env {
        container["env"] =
            json!([{"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": env, "key": "color"}}}]);
    }
    json!({
        "metadata": {"labels": {"app": "app"}},
        "spec": {"containers": [container], "volumes": [{"name": "config", "configMap": {"name": cm}}]}
    })
}

fn workload<K: serde::de::DeserializeOwned>(kind: &str, ns: &str, name: &str, template: Value) -> K {
    from(json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "app"}}, "template": template}
    }))
}

/// `(namespace, name)` of a Canary.
type Key = (String, String);
/// The Canaries a case expects woken, as `(namespace, name)`.
type Woken = &'static [(&'static str, &'static str)];

/// `(namespace, name)` of each Canary woken, sorted.
fn woken(refs: Vec<ObjectRef<Canary>>) -> Vec<Key> {
    let mut out: Vec<Key> = refs.into_iter().map(|r| (r.namespace.unwrap_or_default(), r.name)).collect();
    out.sort();
    out
}

fn refs(expected: &[(&str, &str)]) -> Vec<Key> {
    expected.iter().map(|(ns, n)| (ns.to_string(), n.to_string())).collect()
}

/// Canaries: podinfo (Deployment podinfo), podinfo-ds (DaemonSet podinfo), backend (Deployment
/// backend, not cached), legacy (kind empty, name legacy) and service (Service podinfo) in `test`;
/// podinfo (Deployment podinfo) in `other`.
fn stores() -> PartialStores {
    let index = CanaryIndex::default();
    let (deployments, mut dw) = reflector::store::<Deployment>();
    let (daemonsets, mut sw) = reflector::store::<DaemonSet>();
    for c in [
        canary("test", "podinfo", "Deployment", "podinfo"),
        canary("test", "podinfo-ds", "DaemonSet", "podinfo"),
        canary("other", "podinfo", "Deployment", "podinfo"),
        canary("test", "backend", "Deployment", "backend"),
        canary("test", "legacy", "", "legacy"),
        canary("test", "service", "Service", "podinfo"),
    ] {
        index.apply(&watcher::Event::Apply(c));
    }
    put(
        &mut dw,
        workload("Deployment", "test", "podinfo", template("podinfo-config", "podinfo-secret", None)),
    );
    put(
        &mut dw,
        workload("Deployment", "other", "podinfo", template("podinfo-config", "other-secret", None)),
    );
    put(
        &mut sw,
        workload("DaemonSet", "test", "podinfo", template("ds-config", "ds-secret", Some("ds-env"))),
    );
    PartialStores { index: Arc::new(index), deployments, daemonsets }
}

#[test]
fn a_workload_wakes_the_canaries_it_is_the_target_or_primary_of() {
    use TargetKind::{DaemonSet, Deployment};
    let s = stores();
    let cases: &[(&str, TargetKind, &str, Woken)] = &[
        ("test", Deployment, "podinfo", &[("test", "podinfo")]),
        ("test", Deployment, "podinfo-primary", &[("test", "podinfo")]),
        ("other", Deployment, "podinfo", &[("other", "podinfo")]),
        ("test", DaemonSet, "podinfo", &[("test", "podinfo-ds")]),
        ("test", DaemonSet, "podinfo-primary", &[("test", "podinfo-ds")]),
        ("test", Deployment, "backend", &[("test", "backend")]),
        // An empty targetRef.kind is a Deployment, as when resolving.
        ("test", Deployment, "legacy", &[("test", "legacy")]),
        ("test", DaemonSet, "legacy", &[]),
        // Only the target and its primary: not the canary Service's name, not another kind (the
        // Canary targeting the Service podinfo), not another namespace.
        ("test", Deployment, "podinfo-canary", &[]),
        ("nowhere", Deployment, "podinfo", &[]),
        ("test", Deployment, "podinfo-primary-primary", &[]),
    ];
    for (ns, kind, name, expected) in cases {
        assert_eq!(woken(target_canaries(&s.index, ns, *kind, name)), refs(expected), "{kind:?} {name}.{ns}");
    }
}

#[test]
fn a_config_wakes_the_canaries_whose_cached_target_uses_it() {
    let s = stores();
    let (cm, secret) = (ConfigId::config_map, ConfigId::secret);
    // (namespace, config, Canaries woken)
    let cases: Vec<(&str, ConfigId, Woken)> = vec![
        ("test", cm("podinfo-config"), &[("test", "podinfo")]),
        ("test", secret("podinfo-secret"), &[("test", "podinfo")]),
        ("other", cm("podinfo-config"), &[("other", "podinfo")]),
        ("other", secret("other-secret"), &[("other", "podinfo")]),
        ("test", cm("ds-config"), &[("test", "podinfo-ds")]),
        ("test", secret("ds-secret"), &[("test", "podinfo-ds")]),
        ("test", cm("ds-env"), &[("test", "podinfo-ds")]),
        // A Secret is not the ConfigMap of the same name, and the reverse.
        ("test", secret("podinfo-config"), &[]),
        ("test", cm("podinfo-secret"), &[]),
        // Another namespace's config of the same name.
        ("test", secret("other-secret"), &[]),
        ("elsewhere", cm("podinfo-config"), &[]),
        ("test", cm("unused"), &[]),
    ];
    for (ns, id, expected) in &cases {
        assert_eq!(woken(config_canaries(&s, ns, id)), refs(expected), "{id:?} in {ns}");
    }
}

#[test]
fn a_primary_copy_wakes_only_its_owner_and_a_users_config_its_users() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let s = stores();
    let config = |name: &str, owner: Option<Value>| -> ConfigMap {
        let mut meta = json!({"name": name, "namespace": "test"});
        if let Some(owner) = owner {
            meta["ownerReferences"] = json!([owner]);
        }
        from(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}))
    };
    let canary_owner = || Some(owner("flagger.app/v1beta1", "Canary", Some(true)));
    let cases: Vec<(ConfigMap, Woken)> = vec![
        // Veer's copy: its owner, without a pass over the namespace's Canaries.
        (config("podinfo-config-primary", canary_owner()), &[("test", "podinfo")]),
        // Owned by a Canary, even under a name a target uses: only the owner.
        (config("ds-config", canary_owner()), &[("test", "podinfo")]),
        // The user's: the Canaries whose target uses it, whoever else owns it.
        (config("ds-config", None), &[("test", "podinfo-ds")]),
        (config("ds-config", Some(owner("apps/v1", "Deployment", Some(true)))), &[("test", "podinfo-ds")]),
        (config("unused", None), &[]),
    ];
    for (cm, expected) in cases {
        let id = ConfigId::config_map(cm.metadata.name.clone().unwrap_or_default());
        assert_eq!(woken(config_or_copy_canaries(&s, &cm, id)), refs(expected), "{:?}", cm.metadata);
    }
}

#[test]
fn a_config_wakes_no_canary_whose_target_is_not_cached() {
    let index = CanaryIndex::default();
    index.apply(&watcher::Event::Apply(canary("test", "podinfo", "Deployment", "podinfo")));
    let empty = PartialStores {
        index: Arc::new(index),
        deployments: reflector::store::<Deployment>().0,
        daemonsets: reflector::store::<DaemonSet>().0,
    };
    assert!(config_canaries(&empty, "test", &ConfigId::config_map("podinfo-config")).is_empty());
}

fn service(owner: Option<Value>, ns: Option<&str>) -> Service {
    let mut meta = json!({"name": "podinfo-canary"});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns);
    }
    if let Some(owner) = owner {
        meta["ownerReferences"] = json!([owner]);
    }
    from(json!({"apiVersion": "v1", "kind": "Service", "metadata": meta}))
}

fn owner(api_version: &str, kind: &str, controller: Option<bool>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": "podinfo", "uid": "u", "controller": controller})
}

#[test]
fn an_owned_object_wakes_the_canary_that_controls_it() {
    let canary_ref = || Some(("test".to_string(), "podinfo".to_string()));
    let of = |o: Option<ObjectRef<Canary>>| o.map(|r| (r.namespace.unwrap_or_default(), r.name));
    let cases: Vec<(Service, Option<Key>, &str)> = vec![
        (
            service(Some(owner("flagger.app/v1beta1", "Canary", Some(true))), Some("test")),
            canary_ref(),
            "controller",
        ),
        (
            service(Some(owner("flagger.app/v1", "Canary", Some(true))), Some("test")),
            canary_ref(),
            "any version",
        ),
        (
            service(Some(owner("flagger.app/v1beta1", "Canary", Some(false))), Some("test")),
            None,
            "not the controller",
        ),
        (service(Some(owner("flagger.app/v1beta1", "Canary", None)), Some("test")), None, "controller unset"),
        (service(Some(owner("apps/v1", "Deployment", Some(true))), Some("test")), None, "another kind"),
        (service(Some(owner("example.com/v1", "Canary", Some(true))), Some("test")), None, "another group"),
        (service(None, Some("test")), None, "no owner"),
        (service(Some(owner("flagger.app/v1beta1", "Canary", Some(true))), None), None, "no namespace"),
    ];
    for (svc, expected, why) in cases {
        assert_eq!(of(owners(&svc)), expected, "{why}");
    }
    // Istio objects, read as dynamic objects, the same.
    let vs: DynamicObject = from(json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": "test",
                     "ownerReferences": [owner("flagger.app/v1beta1", "Canary", Some(true))]}
    }));
    assert_eq!(of(owners(&vs)), canary_ref());
}

/// The spec fields the autoscaler and Ingress watches look Canaries up by.
#[test]
fn an_autoscaler_or_ingress_wakes_the_canaries_that_name_it_and_its_owner() {
    let index = CanaryIndex::default();
    let with = |ns: &str, name: &str, refs: Value| {
        crate::fixtures::canary(name, ns).uid(&format!("uid-{ns}-{name}")).spec(refs).build()
    };
    let hpa = json!({"autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"}});
    let put = |c: Canary| index.apply(&watcher::Event::Apply(c));
    put(with("test", "podinfo", hpa.clone()));
    put(with("other", "podinfo", hpa));
    put(with(
        "test",
        "web",
        json!({"ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"}}),
    ));
    // Any namespaced object does: the mapper reads only its namespace, name and owners.
    let object = |ns: &str, name: &str, owner: Option<Value>| -> Service {
        let mut meta = json!({"name": name, "namespace": ns});
        if let Some(owner) = owner {
            meta["ownerReferences"] = json!([owner]);
        }
        from(json!({"apiVersion": "v1", "kind": "Service", "metadata": meta}))
    };
    let owned = || Some(owner("flagger.app/v1beta1", "Canary", Some(true)));
    let cases: Vec<(Service, Role, Woken, &str)> = vec![
        (object("test", "podinfo", None), Role::Autoscaler, &[("test", "podinfo")], "the autoscalerRef"),
        (object("other", "podinfo", None), Role::Autoscaler, &[("other", "podinfo")], "its namespace only"),
        (object("test", "podinfo", None), Role::Ingress, &[("test", "web")], "the ingressRef"),
        (object("test", "podinfo-primary", None), Role::Autoscaler, &[], "the primary's, unowned"),
        (
            object("test", "podinfo-primary", owned()),
            Role::Autoscaler,
            &[("test", "podinfo")],
            "through its owner",
        ),
        (object("test", "unnamed", None), Role::Ingress, &[], "named by no Canary"),
    ];
    for (obj, role, expected, why) in cases {
        assert_eq!(woken(referring(&index, &obj, role)), refs(expected), "{why}");
    }
}
