//! Unit tests of the workload layer, written from `flagger-behaviour.md` §2.4–2.8, §2.14–2.16.

mod configs;
mod hpa;
mod primary;
mod readiness;
mod scale;

use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapProjection, ConfigMapVolumeSource, Container,
    EnvFromSource, EnvVar, EnvVarSource, PodSpec, ProjectedVolumeSource, SecretEnvSource, SecretKeySelector,
    SecretProjection, SecretVolumeSource, Volume, VolumeProjection,
};

/// A container using ConfigMap `<p>-env-cm` and Secret `<p>-env-secret` through `env[].valueFrom`,
/// and ConfigMap `<p>-from-cm` and Secret `<p>-from-secret` through `envFrom`.
pub(super) fn container(p: &str) -> Container {
    let env = |name: &str, source: EnvVarSource| EnvVar {
        name: name.into(),
        value_from: Some(source),
        value: None,
    };
    Container {
        name: p.into(),
        env: Some(vec![
            EnvVar { name: "PLAIN".into(), value: Some("x".into()), value_from: None },
            env(
                "FROM_CM",
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: format!("{p}-env-cm"),
                        key: "k".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            ),
            env(
                "FROM_SECRET",
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: format!("{p}-env-secret"),
                        key: "k".into(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                },
            ),
        ]),
        env_from: Some(vec![
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource { name: format!("{p}-from-cm"), optional: None }),
                ..Default::default()
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: format!("{p}-from-secret"), optional: None }),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// A pod spec with a config reference in every place one can be: volumes `vol-cm`, `vol-secret`,
/// projected `proj-cm`, `proj-secret` (optional), and the references of [`container`] for the
/// container `app` and the init container `init`.
pub(super) fn full_pod_spec() -> PodSpec {
    PodSpec {
        init_containers: Some(vec![container("init")]),
        containers: vec![container("app")],
        volumes: Some(vec![
            Volume {
                name: "a".into(),
                config_map: Some(ConfigMapVolumeSource { name: "vol-cm".into(), ..Default::default() }),
                ..Default::default()
            },
            Volume {
                name: "b".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some("vol-secret".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "c".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![
                        VolumeProjection {
                            config_map: Some(ConfigMapProjection {
                                name: "proj-cm".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        VolumeProjection {
                            secret: Some(SecretProjection {
                                name: "proj-secret".into(),
                                optional: Some(true),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// Every config name in [`full_pod_spec`], by kind.
pub(super) const FULL_CONFIG_MAPS: [&str; 6] =
    ["app-env-cm", "app-from-cm", "init-env-cm", "init-from-cm", "proj-cm", "vol-cm"];
pub(super) const FULL_SECRETS: [&str; 6] =
    ["app-env-secret", "app-from-secret", "init-env-secret", "init-from-secret", "proj-secret", "vol-secret"];
