//! Test objects: a podinfo-like Deployment and DaemonSet (Flagger's e2e fixtures), their configs and
//! a Canary (from the crate's shared [`crate::fixtures`]), in namespace `test`.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec},
        core::v1::{
            ConfigMap, ConfigMapVolumeSource, Container, EnvFromSource, PodSpec, PodTemplateSpec, Secret,
            SecretEnvSource, Volume,
        },
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};

use crate::{api::Canary, fixtures};

pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: Some("test".into()), ..Default::default() }
}

/// The uid of [`canary`]'s Canary.
pub const CANARY_UID: &str = "c0ffee00-0000-4000-8000-000000000001";

/// A Canary named like its target, in namespace `test` (uid [`CANARY_UID`]).
pub fn canary(target_kind: &str, target: &str) -> Canary {
    fixtures::canary(target, "test").uid(CANARY_UID).target(target_kind, target).build()
}

/// A pod spec using the Secret `podinfo-secret` (envFrom) and the ConfigMap `podinfo-config` (volume).
pub fn pod_spec() -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "podinfod".into(),
            image: Some("ghcr.io/stefanprodan/podinfo:6.0.0".into()),
            env_from: Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: "podinfo-secret".into(), optional: None }),
                ..Default::default()
            }]),
            ..Default::default()
        }],
        volumes: Some(vec![Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource { name: "podinfo-config".into(), ..Default::default() }),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

pub fn template(app: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(map(&[("app", app)])),
            annotations: Some(map(&[("prometheus.io/scrape", "true")])),
            ..Default::default()
        }),
        spec: Some(pod_spec()),
    }
}

pub fn deployment(name: &str) -> Deployment {
    let mut m = meta(name);
    m.labels = Some(map(&[("app", name), ("app.kubernetes.io/name", name), ("team", "a")]));
    m.annotations = Some(map(&[("app.kubernetes.io/owner", "team-a")]));
    Deployment {
        metadata: m,
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            min_ready_seconds: Some(5),
            progress_deadline_seconds: Some(60),
            revision_history_limit: Some(5),
            selector: LabelSelector { match_labels: Some(map(&[("app", name)])), ..Default::default() },
            template: template(name),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn daemon_set(name: &str) -> DaemonSet {
    let mut m = meta(name);
    m.labels = Some(map(&[("app", name)]));
    DaemonSet {
        metadata: m,
        spec: Some(DaemonSetSpec {
            min_ready_seconds: Some(3),
            revision_history_limit: Some(4),
            selector: LabelSelector { match_labels: Some(map(&[("app", name)])), ..Default::default() },
            template: template(name),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn config_map(name: &str, data: &[(&str, &str)]) -> Arc<ConfigMap> {
    Arc::new(ConfigMap { metadata: meta(name), data: Some(map(data)), ..Default::default() })
}

pub fn secret(name: &str, type_: &str, data: &[(&str, &[u8])]) -> Arc<Secret> {
    Arc::new(Secret {
        metadata: meta(name),
        type_: Some(type_.into()),
        data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect()),
        ..Default::default()
    })
}
