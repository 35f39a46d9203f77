//! The workload layer over Flagger's corpus: for every Deployment-targeted Canary of
//! `../shared/compat/flagger/valid` (or `$VEER_COMPAT_DIR/valid`), with a podinfo-like target (selector `app: podinfo`, a Secret in
//! `envFrom`, a ConfigMap volume), the primary, its configs and its HPA can be built, and the primary
//! is recognised as running the target's template.

#[path = "common/corpus.rs"]
mod corpus;

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        autoscaling::v2::{
            CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
        },
        core::v1::{
            ConfigMap, ConfigMapVolumeSource, Container, EnvFromSource, PodSpec, PodTemplateSpec, Secret,
            SecretEnvSource, Volume,
        },
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use veer::{
    api::Canary,
    workload::{
        ConfigId, PrimaryContext, Workload, WorkloadSettings, config_refs, hpa_ref, primary_config_map,
        primary_deployment, primary_hpa, primary_revision, primary_secret, selector, target_revision,
        track_configs,
    },
};

fn canaries() -> Vec<(String, Canary)> {
    corpus::of_kind("valid", "Canary")
}

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: Some(namespace.into()), ..Default::default() }
}

fn podinfo(name: &str, namespace: &str) -> Deployment {
    let mut m = meta(name, namespace);
    m.labels = labels(&[("app", "podinfo"), ("app.kubernetes.io/name", "podinfo")]);
    Deployment {
        metadata: m,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            min_ready_seconds: Some(5),
            progress_deadline_seconds: Some(60),
            selector: LabelSelector { match_labels: labels(&[("app", "podinfo")]), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: labels(&[("app", "podinfo")]), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "podinfod".into(),
                        image: Some("ghcr.io/stefanprodan/podinfo:6.0.0".into()),
                        env_from: Some(vec![EnvFromSource {
                            secret_ref: Some(SecretEnvSource {
                                name: "podinfo-secret".into(),
                                optional: None,
                            }),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "podinfo-config".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn hpa(name: &str, namespace: &str, target: &str) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: meta(name, namespace),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: target.into(),
            },
            min_replicas: Some(2),
            max_replicas: 4,
            ..Default::default()
        },
        status: None,
    }
}

#[test]
fn every_deployment_canary_of_the_corpus_gets_its_primary() {
    let settings =
        WorkloadSettings { include_label_prefixes: vec!["app.kubernetes.io".into()], ..Default::default() };
    let mut built = 0;
    for (file, mut canary) in canaries().into_iter().filter(|(_, c)| c.spec.target_ref.kind == "Deployment") {
        let namespace = canary.metadata.namespace.get_or_insert_with(|| "test".into()).clone();
        canary.metadata.uid = Some("0b1c2d3e-0000-4000-8000-000000000000".into());
        let name = canary.spec.target_ref.name.clone();
        let target = podinfo(&name, &namespace);
        let config = Arc::new(ConfigMap {
            metadata: meta("podinfo-config", &namespace),
            data: labels(&[("a", "1")]),
            ..Default::default()
        });
        let secret = Arc::new(Secret {
            metadata: meta("podinfo-secret", &namespace),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([("password".into(), ByteString(b"hunter2".to_vec()))])),
            ..Default::default()
        });

        let sel = selector(Workload::Deployment(&target), &settings.selector_labels).unwrap();
        assert_eq!((sel.key.as_str(), sel.value.as_str()), ("app", "podinfo"), "{file}");
        let tracked = track_configs(
            Workload::Deployment(&target),
            settings.config_tracking,
            |n| (n == "podinfo-config").then(|| config.clone()),
            |n| (n == "podinfo-secret").then(|| secret.clone()),
        )
        .unwrap();
        let ids = tracked.ids();
        assert_eq!(ids.len(), 2, "{file}");
        assert_eq!(tracked.checksums().len(), 2, "{file}");

        let ctx = PrimaryContext {
            canary: &canary,
            selector: &sel,
            tracked: &ids,
            settings: &settings,
            flagger_id: "6f1c1e2a-5d0b-4b7e-9a39-000000000001",
        };
        let primary = primary_deployment(&target, None, &ctx);
        assert_eq!(primary.metadata.name, Some(format!("{name}-primary")), "{file}");
        assert_eq!(
            primary.metadata.owner_references.as_ref().unwrap()[0].name,
            canary.metadata.name.clone().unwrap()
        );
        let spec = primary.spec.as_ref().unwrap();
        assert_eq!(spec.selector.match_labels, labels(&[("app", "podinfo-primary")]), "{file}");
        let refs: Vec<ConfigId> =
            config_refs(spec.template.spec.as_ref().unwrap()).into_iter().map(|r| r.id).collect();
        assert_eq!(
            refs,
            [ConfigId::config_map("podinfo-config-primary"), ConfigId::secret("podinfo-secret-primary")]
        );
        assert_eq!(
            primary_revision(Workload::Deployment(&primary), &ctx.mapping(&name)),
            target_revision(Workload::Deployment(&target)),
            "{file}"
        );
        assert_eq!(
            primary_config_map(&config, None, &canary, &settings.include_label_prefixes)
                .metadata
                .name
                .as_deref(),
            Some("podinfo-config-primary")
        );
        assert_eq!(
            primary_secret(&secret, None, &canary, &settings.include_label_prefixes).metadata.name.as_deref(),
            Some("podinfo-secret-primary")
        );

        match canary.spec.autoscaler_ref.as_ref().map(|r| r.kind.as_str()) {
            Some("HorizontalPodAutoscaler") => {
                let r = hpa_ref(&canary).unwrap().unwrap();
                let p = primary_hpa(&hpa(&r.name, &namespace, &name), &canary);
                assert_eq!(p.metadata.name, Some(format!("{}-primary", r.name)), "{file}");
                assert_eq!(p.spec.scale_target_ref.name, format!("{name}-primary"), "{file}");
            }
            Some(kind) => {
                let err = hpa_ref(&canary).unwrap_err().to_string();
                assert!(
                    err.contains(&format!("spec.autoscalerRef.kind {kind:?} is not supported")),
                    "{file}: {err}"
                );
            }
            None => assert_eq!(hpa_ref(&canary), Ok(None)),
        }
        built += 1;
    }
    assert_eq!(built, 54, "the corpus has 54 Deployment-targeted Canaries");
}
