//! Test objects: a podinfo-like Deployment and DaemonSet (Flagger's e2e fixtures), in namespace `test`.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec},
        core::v1::{
            ConfigMapVolumeSource, Container, EnvFromSource, PodSpec, PodTemplateSpec, SecretEnvSource,
            Volume,
        },
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};

pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: Some("test".into()), ..Default::default() }
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
