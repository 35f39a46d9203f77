use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Secret},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};

use super::*;
use crate::{
    meta::CONFIG_TRACKING,
    revision::config_checksum,
    workload::{fixtures::*, *},
};

fn lookup<T: Clone>(objects: &[Arc<T>], name_of: fn(&T) -> &str) -> impl Fn(&str) -> Option<Arc<T>> {
    let by_name: HashMap<String, Arc<T>> =
        objects.iter().map(|o| (name_of(o).to_string(), o.clone())).collect();
    move |name| by_name.get(name).cloned()
}

fn cm_name(c: &ConfigMap) -> &str {
    c.metadata.name.as_deref().unwrap()
}

fn secret_name(s: &Secret) -> &str {
    s.metadata.name.as_deref().unwrap()
}

fn with_full_spec() -> k8s_openapi::api::apps::v1::Deployment {
    let mut d = deployment("podinfo");
    d.spec.as_mut().unwrap().template.spec = Some(full_pod_spec());
    d
}

fn all_configs() -> (Vec<Arc<ConfigMap>>, Vec<Arc<Secret>>) {
    let cms = FULL_CONFIG_MAPS.iter().map(|n| config_map(n, &[("k", n)])).collect();
    let secrets = FULL_SECRETS.iter().map(|n| secret(n, "Opaque", &[("k", n.as_bytes())])).collect();
    (cms, secrets)
}

#[test]
fn references_are_found_everywhere_a_pod_spec_holds_them() {
    let refs = config_refs(&full_pod_spec());
    let names =
        |kind| refs.iter().filter(|r| r.id.kind == kind).map(|r| r.id.name.as_str()).collect::<Vec<_>>();
    assert_eq!(names(ConfigKind::ConfigMap), FULL_CONFIG_MAPS);
    assert_eq!(names(ConfigKind::Secret), FULL_SECRETS);
    let optional: Vec<&str> = refs.iter().filter(|r| r.optional).map(|r| r.id.name.as_str()).collect();
    assert_eq!(optional, ["proj-secret"]);
}

#[test]
fn one_mandatory_reference_makes_a_config_mandatory() {
    let mut spec = full_pod_spec();
    // `vol-cm` becomes optional in its volume, but the init container also needs it.
    spec.volumes.as_mut().unwrap()[0].config_map.as_mut().unwrap().optional = Some(true);
    spec.init_containers.as_mut().unwrap()[0].env_from.as_mut().unwrap()[0]
        .config_map_ref
        .as_mut()
        .unwrap()
        .name = "vol-cm".into();
    let r = config_refs(&spec).into_iter().find(|r| r.id == ConfigId::config_map("vol-cm")).unwrap();
    assert!(!r.optional);
}

#[test]
fn everything_referenced_and_eligible_is_tracked() {
    let d = with_full_spec();
    let (cms, secrets) = all_configs();
    let tracked =
        track_configs(Workload::Deployment(&d), true, lookup(&cms, cm_name), lookup(&secrets, secret_name))
            .unwrap();
    assert_eq!(tracked.config_maps.keys().map(String::as_str).collect::<Vec<_>>(), FULL_CONFIG_MAPS);
    assert_eq!(tracked.secrets.keys().map(String::as_str).collect::<Vec<_>>(), FULL_SECRETS);
    assert_eq!(tracked.ids().len(), 12);
}

#[test]
fn opted_out_configs_are_not_tracked() {
    let d = deployment("podinfo");
    let annotate = |value: &str| {
        let mut cm = (*config_map("podinfo-config", &[("a", "1")])).clone();
        cm.metadata.annotations = Some(map(&[(CONFIG_TRACKING, value)]));
        Arc::new(cm)
    };
    let secrets = [secret("podinfo-secret", "Opaque", &[])];
    for (value, tracked) in [("disabled", false), ("disable", false), ("enabled", true), ("off", true)] {
        let cms = [annotate(value)];
        let t = track_configs(
            Workload::Deployment(&d),
            true,
            lookup(&cms, cm_name),
            lookup(&secrets, secret_name),
        )
        .unwrap();
        assert_eq!(t.config_maps.contains_key("podinfo-config"), tracked, "annotation {value:?}");
        assert!(t.secrets.contains_key("podinfo-secret"));
    }
}

#[test]
fn only_release_secret_types_are_tracked() {
    for (type_, tracked) in [
        (Some("Opaque"), true),
        (Some("kubernetes.io/basic-auth"), true),
        (Some("kubernetes.io/ssh-auth"), true),
        (Some("kubernetes.io/tls"), true),
        (None, true),
        (Some("kubernetes.io/dockerconfigjson"), false),
        (Some("kubernetes.io/service-account-token"), false),
        (Some("bootstrap.kubernetes.io/token"), false),
    ] {
        assert_eq!(is_tracked_secret_type(type_), tracked, "{type_:?}");
    }
    let d = deployment("podinfo");
    let cms = [config_map("podinfo-config", &[])];
    let secrets = [secret("podinfo-secret", "kubernetes.io/dockerconfigjson", &[])];
    let t =
        track_configs(Workload::Deployment(&d), true, lookup(&cms, cm_name), lookup(&secrets, secret_name))
            .unwrap();
    assert!(t.secrets.is_empty());
    assert_eq!(t.config_maps.len(), 1);
}

#[test]
fn missing_optional_configs_are_skipped_and_mandatory_ones_are_an_error() {
    let d = with_full_spec();
    let (cms, secrets) = all_configs();
    // proj-secret is optional: missing is fine.
    let without = |name: &str| secrets.iter().filter(|s| secret_name(s) != name).cloned().collect::<Vec<_>>();
    let secrets_left = without("proj-secret");
    let t = track_configs(
        Workload::Deployment(&d),
        true,
        lookup(&cms, cm_name),
        lookup(&secrets_left, secret_name),
    )
    .unwrap();
    assert!(!t.secrets.contains_key("proj-secret"));
    assert_eq!(t.secrets.len(), 5);

    let cms_left: Vec<_> = cms.iter().filter(|c| cm_name(c) != "vol-cm").cloned().collect();
    let secrets_left = without("init-env-secret");
    let err = track_configs(
        Workload::Deployment(&d),
        true,
        lookup(&cms_left, cm_name),
        lookup(&secrets_left, secret_name),
    )
    .unwrap_err();
    assert_eq!(
        err,
        WorkloadError::MissingConfigs {
            kind: "Deployment".into(),
            name: "podinfo".into(),
            namespace: "test".into(),
            missing: vec![ConfigId::config_map("vol-cm"), ConfigId::secret("init-env-secret")],
        }
    );
    assert_eq!(
        err.to_string(),
        "Deployment podinfo.test spec.template.spec references ConfigMap \"vol-cm\", Secret \"init-env-secret\" \
         that do not exist; create them, or mark the references `optional: true`"
    );
}

#[test]
fn disabled_tracking_tracks_nothing_and_looks_nothing_up() {
    let d = with_full_spec();
    let t = track_configs(
        Workload::Deployment(&d),
        false,
        |_: &str| -> Option<Arc<ConfigMap>> { panic!("no lookup when tracking is disabled") },
        |_: &str| -> Option<Arc<Secret>> { panic!("no lookup when tracking is disabled") },
    )
    .unwrap();
    assert!(t.is_empty());
}

#[test]
fn checksums_are_flaggers() {
    let tracked = TrackedConfigs {
        config_maps: BTreeMap::from([
            ("podinfo-config".to_string(), config_map("podinfo-config", &[("b", "<x>"), ("a", "1")])),
            ("empty".to_string(), Arc::new(ConfigMap { metadata: meta("empty"), ..Default::default() })),
        ]),
        secrets: BTreeMap::from([(
            "podinfo-secret".to_string(),
            secret("podinfo-secret", "Opaque", &[("password", b"hello")]),
        )]),
    };
    let sums = tracked.checksums();
    assert_eq!(
        sums.keys().collect::<Vec<_>>(),
        ["configmap/empty", "configmap/podinfo-config", "secret/podinfo-secret"]
    );
    assert_eq!(sums["configmap/podinfo-config"], config_checksum(&map(&[("a", "1"), ("b", "<x>")])));
    // sha256(`{"password":"aGVsbG8="}`): Secret data is hashed as base64, as it appears in JSON.
    assert_eq!(sums["secret/podinfo-secret"], "aa9c0cfdedb2edd9");
    // Go's json.Marshal of a nil map is `null`.
    assert_eq!(sums["configmap/empty"], "74234e98afe7498f");
}

#[test]
fn binary_data_is_covered_without_changing_plain_checksums() {
    let plain = config_map("c", &[("a", "1")]);
    let mut binary = (*plain).clone();
    binary.binary_data = Some(BTreeMap::from([("blob".to_string(), ByteString(vec![0, 1, 2]))]));
    let mut binary2 = binary.clone();
    binary2.binary_data = Some(BTreeMap::from([("blob".to_string(), ByteString(vec![0, 1, 3]))]));
    let sum = |cm: ConfigMap| {
        TrackedConfigs {
            config_maps: BTreeMap::from([("c".to_string(), Arc::new(cm))]),
            ..Default::default()
        }
        .checksums()["configmap/c"]
            .clone()
    };
    assert_eq!(sum((*plain).clone()), config_checksum(&map(&[("a", "1")])));
    assert_ne!(sum(binary.clone()), sum((*plain).clone()));
    assert_ne!(sum(binary), sum(binary2));
}

#[test]
fn config_ids_and_status_keys() {
    assert_eq!(ConfigId::config_map("x").key(), "configmap/x");
    assert_eq!(ConfigId::secret("y").key(), "secret/y");
    assert_eq!(ConfigId::from_key("configmap/x"), Some(ConfigId::config_map("x")));
    assert_eq!(ConfigId::from_key("secret/y"), Some(ConfigId::secret("y")));
    assert_eq!(ConfigId::from_key("service/y"), None);
    assert_eq!(ConfigId::from_key("secret/"), None);
    assert_eq!(ConfigId::from_key("secret"), None);
}

fn foreign_ref(name: &str, uid: &str, controller: bool) -> OwnerReference {
    OwnerReference {
        api_version: "flagger.app/v1beta1".into(),
        kind: "Canary".into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(controller),
        block_owner_deletion: Some(true),
    }
}

#[test]
fn primary_config_map_copy() {
    let c = canary("Deployment", "podinfo");
    let mut source = (*config_map("podinfo-config", &[("a", "1")])).clone();
    source.binary_data = Some(BTreeMap::from([("blob".to_string(), ByteString(vec![7]))]));
    source.immutable = Some(true);
    source.metadata.labels = Some(map(&[
        ("app.kubernetes.io/name", "podinfo"),
        ("team", "a"),
        ("kustomize.toolkit.fluxcd.io/name", "apps"),
    ]));
    source.metadata.annotations = Some(map(&[("note", "x")]));
    let prefixes = vec!["app.kubernetes.io".to_string()];
    let copy = primary_config_map(&source, None, &c, &prefixes);
    assert_eq!(copy.metadata.name.as_deref(), Some("podinfo-config-primary"));
    assert_eq!(copy.metadata.namespace.as_deref(), Some("test"));
    assert_eq!(copy.metadata.labels, Some(map(&[("app.kubernetes.io/name", "podinfo")])));
    assert_eq!(copy.metadata.annotations, None);
    assert_eq!(copy.data, source.data);
    assert_eq!(copy.binary_data, source.binary_data, "Veer copies binaryData (quirk #17)");
    assert_eq!(copy.immutable, None);
    assert_eq!(copy.metadata.owner_references, Some(vec![crate::meta::owner_reference(&c)]));
    let all = vec!["*".to_string()];
    let copy = primary_config_map(&source, None, &c, &all);
    assert_eq!(copy.metadata.labels, Some(map(&[("app.kubernetes.io/name", "podinfo"), ("team", "a")])));
    let copy = primary_config_map(&source, None, &c, &[]);
    assert_eq!(copy.metadata.labels, None);
}

#[test]
fn primary_secret_copy_keeps_the_type() {
    let c = canary("Deployment", "podinfo");
    let source = secret("podinfo-tls", "kubernetes.io/tls", &[("tls.crt", b"c"), ("tls.key", b"k")]);
    let copy = primary_secret(&source, None, &c, &[]);
    assert_eq!(copy.metadata.name.as_deref(), Some("podinfo-tls-primary"));
    assert_eq!(copy.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(copy.data, source.data);
    assert_eq!(copy.string_data, None);
}

#[test]
fn other_owners_of_a_shared_copy_are_kept_as_non_controllers() {
    let c = canary("Deployment", "podinfo");
    let ours = crate::meta::owner_reference(&c);
    let mut existing = (*config_map("shared-primary", &[])).clone();
    existing.metadata.owner_references = Some(vec![
        foreign_ref("other", "uid-other", true),
        // This Canary, recreated (old uid): replaced by the current reference, not duplicated.
        foreign_ref("podinfo", "uid-old", false),
        OwnerReference {
            kind: "Deployment".into(),
            name: "x".into(),
            uid: "uid-x".into(),
            ..Default::default()
        },
    ]);
    let source = config_map("shared", &[("a", "1")]);
    let copy = primary_config_map(&source, Some(&existing), &c, &[]);
    let refs = copy.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 3, "{refs:?}");
    assert_eq!(refs[0], ours);
    assert_eq!(refs[0].controller, Some(true));
    assert_eq!((refs[1].name.as_str(), refs[1].controller), ("other", Some(false)));
    assert_eq!(refs[1].block_owner_deletion, Some(true), "only the controller flag changes");
    assert_eq!((refs[2].name.as_str(), refs[2].controller), ("x", Some(false)));
    assert_eq!(refs.iter().filter(|r| r.controller == Some(true)).count(), 1);
}
