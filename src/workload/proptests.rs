//! Property test of the template mapping: for any pod template, the target-equivalent of its
//! primary has the target's revision — the equality the controller relies on to know that a primary
//! runs the target's template (adoption of Flagger's Canaries, resumed promotions).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::core::v1::{
        Affinity, ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapProjection, ConfigMapVolumeSource,
        Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, PodAffinity, PodAffinityTerm,
        PodAntiAffinity, PodSpec, PodTemplateSpec, ProjectedVolumeSource, SecretEnvSource, SecretKeySelector,
        SecretProjection, SecretVolumeSource, TopologySpreadConstraint, Volume, VolumeProjection,
        WeightedPodAffinityTerm,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta},
};
use proptest::{
    collection::{btree_map, btree_set, vec},
    option,
    prelude::{
        Just, ProptestConfig, Strategy as Gen, any, prop_assert, prop_assert_eq, prop_assert_ne, prop_oneof,
        proptest,
    },
    sample::select,
};

use super::{ConfigId, ConfigKind, Selector, TemplateMapping, config_refs, template_revision};
use crate::{meta::FLAGGER_ID, revision::SCALE_TO_ZERO_KEY};

const TARGET: &str = "podinfo";
const SELECTOR_KEYS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];
/// Config names; none ends in `-primary` (see the exactness conditions in `template.rs`).
const CONFIGS: [&str; 5] = ["cfg", "shared", "podinfo", "db-creds", "x"];
/// Label values, including the target's name and a label value that differs from it.
const VALUES: [&str; 4] = ["podinfo", "pi", "other", "podinfo-canary"];

fn kind() -> impl Gen<Value = ConfigKind> {
    prop_oneof![Just(ConfigKind::ConfigMap), Just(ConfigKind::Secret)]
}

fn config_ref() -> impl Gen<Value = (ConfigKind, String, Option<bool>)> {
    (kind(), select(&CONFIGS[..]), option::of(any::<bool>())).prop_map(|(k, n, o)| (k, n.to_string(), o))
}

fn volume() -> impl Gen<Value = Volume> {
    let single = config_ref().prop_map(|(kind, name, optional)| match kind {
        ConfigKind::ConfigMap => Volume {
            config_map: Some(ConfigMapVolumeSource { name, optional, ..Default::default() }),
            ..Default::default()
        },
        ConfigKind::Secret => Volume {
            secret: Some(SecretVolumeSource { secret_name: Some(name), optional, ..Default::default() }),
            ..Default::default()
        },
    });
    let projected = vec(config_ref(), 0..4).prop_map(|refs| Volume {
        projected: Some(ProjectedVolumeSource {
            sources: Some(
                refs.into_iter()
                    .map(|(kind, name, optional)| match kind {
                        ConfigKind::ConfigMap => VolumeProjection {
                            config_map: Some(ConfigMapProjection { name, optional, ..Default::default() }),
                            ..Default::default()
                        },
                        ConfigKind::Secret => VolumeProjection {
                            secret: Some(SecretProjection { name, optional, ..Default::default() }),
                            ..Default::default()
                        },
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    });
    let empty = Just(Volume { empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() });
    (prop_oneof![2 => single, 1 => projected, 1 => empty], 0..100u8).prop_map(|(mut v, i)| {
        v.name = format!("v{i}");
        v
    })
}

fn env_var() -> impl Gen<Value = EnvVar> {
    let plain = select(&VALUES[..]).prop_map(|v| EnvVar {
        name: "PLAIN".into(),
        value: Some(v.into()),
        value_from: None,
    });
    let from = config_ref().prop_map(|(kind, name, optional)| {
        let source = match kind {
            ConfigKind::ConfigMap => EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector { name, key: "k".into(), optional }),
                ..Default::default()
            },
            ConfigKind::Secret => EnvVarSource {
                secret_key_ref: Some(SecretKeySelector { name, key: "k".into(), optional }),
                ..Default::default()
            },
        };
        EnvVar { name: "REF".into(), value: None, value_from: Some(source) }
    });
    prop_oneof![plain, from]
}

fn env_from() -> impl Gen<Value = EnvFromSource> {
    config_ref().prop_map(|(kind, name, optional)| match kind {
        ConfigKind::ConfigMap => EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name, optional }),
            ..Default::default()
        },
        ConfigKind::Secret => {
            EnvFromSource { secret_ref: Some(SecretEnvSource { name, optional }), ..Default::default() }
        }
    })
}

fn container() -> impl Gen<Value = Container> {
    (option::of(vec(env_var(), 0..4)), option::of(vec(env_from(), 0..3)), select(&VALUES[..])).prop_map(
        |(env, env_from, image)| Container {
            name: "c".into(),
            image: Some(format!("{image}:1")),
            env,
            env_from,
            ..Default::default()
        },
    )
}

/// A pod label selector over selector keys and others, with values that may name the target.
fn pod_selector() -> impl Gen<Value = LabelSelector> {
    let keys = [SELECTOR_KEYS.as_slice(), &["tier"]].concat();
    let expression = (select(keys.clone()), vec(select(&VALUES[..]), 0..3)).prop_map(|(key, values)| {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator: "In".into(),
            values: Some(values.into_iter().map(str::to_string).collect()),
        }
    });
    (option::of(btree_map(select(keys), select(&VALUES[..]), 0..3)), option::of(vec(expression, 0..3)))
        .prop_map(|(labels, expressions)| LabelSelector {
            match_labels: labels
                .map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            match_expressions: expressions,
        })
}

fn term() -> impl Gen<Value = PodAffinityTerm> {
    option::of(pod_selector()).prop_map(|label_selector| PodAffinityTerm {
        label_selector,
        topology_key: "kubernetes.io/hostname".into(),
        ..Default::default()
    })
}

fn weighted() -> impl Gen<Value = WeightedPodAffinityTerm> {
    term().prop_map(|pod_affinity_term| WeightedPodAffinityTerm { pod_affinity_term, weight: 10 })
}

fn affinity() -> impl Gen<Value = Affinity> {
    let terms = || (option::of(vec(term(), 0..3)), option::of(vec(weighted(), 0..3)));
    (option::of(terms()), option::of(terms())).prop_map(|(co, anti)| Affinity {
        pod_affinity: co.map(|(required, preferred)| PodAffinity {
            required_during_scheduling_ignored_during_execution: required,
            preferred_during_scheduling_ignored_during_execution: preferred,
        }),
        pod_anti_affinity: anti.map(|(required, preferred)| PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: required,
            preferred_during_scheduling_ignored_during_execution: preferred,
        }),
        node_affinity: None,
    })
}

fn spread() -> impl Gen<Value = TopologySpreadConstraint> {
    option::of(pod_selector()).prop_map(|label_selector| TopologySpreadConstraint {
        label_selector,
        max_skew: 1,
        topology_key: "topology.kubernetes.io/zone".into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        ..Default::default()
    })
}

fn node_selector() -> impl Gen<Value = BTreeMap<String, String>> {
    btree_map(select(vec![SCALE_TO_ZERO_KEY, "disk"]), select(vec!["true", "ssd"]), 0..3)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn pod_spec() -> impl Gen<Value = PodSpec> {
    (
        vec(container(), 1..3),
        option::of(vec(container(), 0..2)),
        option::of(vec(volume(), 0..4)),
        option::of(affinity()),
        option::of(vec(spread(), 0..3)),
        option::of(node_selector()),
    )
        .prop_map(|(containers, init_containers, volumes, affinity, spread, node_selector)| PodSpec {
            containers,
            init_containers,
            volumes,
            affinity,
            topology_spread_constraints: spread,
            node_selector,
            ..Default::default()
        })
}

/// A selector label (key and value) and a pod template carrying it.
fn target() -> impl Gen<Value = (Selector, PodTemplateSpec)> {
    let annotation_keys =
        vec![FLAGGER_ID, "kustomize.toolkit.fluxcd.io/checksum", "prometheus.io/scrape", "note"];
    (
        select(&SELECTOR_KEYS[..]),
        select(vec!["podinfo", "pi"]),
        btree_map(select(vec!["version", "tier", "name", "app"]), select(&VALUES[..]), 0..3),
        option::of(btree_map(select(annotation_keys), select(&VALUES[..]), 0..4)),
        pod_spec(),
    )
        .prop_map(|(key, value, extra, annotations, spec)| {
            let mut labels: BTreeMap<String, String> =
                extra.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            labels.insert(key.to_string(), value.to_string());
            let annotations =
                annotations.map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
            let template = PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), annotations, ..Default::default() }),
                spec: Some(spec),
            };
            (Selector { key: key.to_string(), value: value.to_string() }, template)
        })
}

fn tracked() -> impl Gen<Value = BTreeSet<ConfigId>> {
    btree_set(
        (kind(), select(&CONFIGS[..])).prop_map(|(kind, name)| ConfigId { kind, name: name.into() }),
        0..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_target_equivalent_of_a_primary_has_the_targets_revision(
        (selector, target) in target(),
        tracked in tracked(),
        id in "[0-9a-f]{8}",
    ) {
        let keys: Vec<String> = SELECTOR_KEYS.iter().map(|k| k.to_string()).collect();
        let mapping = TemplateMapping { target_name: TARGET, selector: &selector, selector_label_keys: &keys, tracked: &tracked };
        let primary = mapping.primary_template(&target, &id);
        let back = mapping.target_equivalent_template(&primary);
        prop_assert_eq!(
            template_revision(&back),
            template_revision(&target),
            "target {}\nprimary {}\nback {}",
            serde_json::to_string(&target).unwrap(),
            serde_json::to_string(&primary).unwrap(),
            serde_json::to_string(&back).unwrap()
        );

        // The primary really differs: its pods carry the primary label and use only config copies.
        let labels = primary.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        prop_assert_eq!(labels.get(&selector.key), Some(&selector.primary_value()));
        prop_assert_ne!(template_revision(&primary), template_revision(&target));
        let target_refs = config_refs(target.spec.as_ref().unwrap());
        let primary_refs = config_refs(primary.spec.as_ref().unwrap());
        prop_assert_eq!(target_refs.len(), primary_refs.len());
        for r in &primary_refs {
            prop_assert!(!tracked.contains(&r.id), "{} still used by the primary", r.id);
        }
        let copies = primary_refs.iter().filter(|r| r.id.name.ends_with("-primary")).count();
        prop_assert_eq!(copies, target_refs.iter().filter(|r| tracked.contains(&r.id)).count());

        // And the equality is not vacuous: another image is another revision.
        let mut changed = target.clone();
        changed.spec.as_mut().unwrap().containers[0].image = Some("changed:2".into());
        prop_assert_ne!(template_revision(&back), template_revision(&changed));
    }
}
