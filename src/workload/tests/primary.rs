use std::collections::BTreeSet;

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSetUpdateStrategy, DeploymentStrategy},
        core::v1::{
            Affinity, PodAffinity, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec,
            TopologySpreadConstraint, WeightedPodAffinityTerm,
        },
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement},
};

use super::*;
use crate::{
    api::AutoscalerReference,
    meta::{FLAGGER_ID, LAST_APPLIED, owner_reference},
    revision::SCALE_TO_ZERO_KEY,
    workload::{fixtures::*, *},
};

const ID: &str = "6f1c1e2a-5d0b-4b7e-9a39-000000000001";

struct Setup {
    canary: crate::api::Canary,
    selector: Selector,
    tracked: BTreeSet<ConfigId>,
    settings: WorkloadSettings,
}

impl Setup {
    fn new(tracked: &[ConfigId]) -> Setup {
        Setup {
            canary: canary("Deployment", "podinfo"),
            selector: Selector { key: "app".into(), value: "podinfo".into() },
            tracked: tracked.iter().cloned().collect(),
            settings: WorkloadSettings {
                include_label_prefixes: vec!["app.kubernetes.io".into()],
                ..Default::default()
            },
        }
    }

    fn ctx(&self) -> PrimaryContext<'_> {
        PrimaryContext {
            canary: &self.canary,
            selector: &self.selector,
            tracked: &self.tracked,
            settings: &self.settings,
            flagger_id: ID,
        }
    }
}

fn podinfo_setup() -> Setup {
    Setup::new(&[ConfigId::secret("podinfo-secret"), ConfigId::config_map("podinfo-config")])
}

#[test]
fn primary_deployment_metadata() {
    let s = podinfo_setup();
    let mut target = deployment("podinfo");
    let annotations = target.metadata.annotations.as_mut().unwrap();
    annotations.insert(LAST_APPLIED.into(), "{}".into());
    annotations.insert("kustomize.toolkit.fluxcd.io/checksum".into(), "abc".into());
    annotations.insert("deployment.kubernetes.io/revision".into(), "7".into());
    annotations.insert("team/contact".into(), "a@example.com".into());
    target.metadata.labels.as_mut().unwrap().insert("kustomize.toolkit.fluxcd.io/name".into(), "apps".into());
    let p = primary_deployment(&target, None, &s.ctx());
    assert_eq!(p.metadata.name.as_deref(), Some("podinfo-primary"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("test"));
    // Labels by include prefix (`app.kubernetes.io`), plus the primary selector label.
    assert_eq!(
        p.metadata.labels,
        Some(map(&[("app", "podinfo-primary"), ("app.kubernetes.io/name", "podinfo")]))
    );
    // All annotations but Flux's, kubectl's and the deployment controller's.
    assert_eq!(
        p.metadata.annotations,
        Some(map(&[("app.kubernetes.io/owner", "team-a"), ("team/contact", "a@example.com")]))
    );
    assert_eq!(p.metadata.owner_references, Some(vec![owner_reference(&s.canary)]));
    assert_eq!(p.metadata.owner_references.as_ref().unwrap()[0].controller, Some(true));
}

#[test]
fn primary_deployment_spec() {
    let s = podinfo_setup();
    let mut target = deployment("podinfo");
    let strategy = DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None };
    target.spec.as_mut().unwrap().strategy = Some(strategy.clone());
    target.spec.as_mut().unwrap().paused = Some(true);
    let p = primary_deployment(&target, None, &s.ctx());
    let spec = p.spec.unwrap();
    assert_eq!(
        spec.selector,
        LabelSelector { match_labels: Some(map(&[("app", "podinfo-primary")])), ..Default::default() }
    );
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.min_ready_seconds, Some(5));
    assert_eq!(spec.progress_deadline_seconds, Some(60));
    assert_eq!(spec.revision_history_limit, Some(5));
    assert_eq!(spec.strategy, Some(strategy));
    assert_eq!(spec.paused, None);
    let meta = spec.template.metadata.unwrap();
    assert_eq!(meta.labels, Some(map(&[("app", "podinfo-primary")])));
    assert_eq!(meta.annotations, Some(map(&[(FLAGGER_ID, ID), ("prometheus.io/scrape", "true")])));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.volumes.unwrap()[0].config_map.as_ref().unwrap().name, "podinfo-config-primary");
    assert_eq!(
        pod.containers[0].env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap().name,
        "podinfo-secret-primary"
    );
}

#[test]
fn template_labels_keep_other_labels_and_annotations_lose_flux_keys() {
    let s = podinfo_setup();
    let mut target = deployment("podinfo");
    let meta = target.spec.as_mut().unwrap().template.metadata.as_mut().unwrap();
    meta.labels.as_mut().unwrap().insert("version".into(), "6.0.0".into());
    meta.annotations.as_mut().unwrap().insert("kustomize.toolkit.fluxcd.io/x".into(), "y".into());
    meta.annotations.as_mut().unwrap().insert(FLAGGER_ID.into(), "stale".into());
    let p = primary_deployment(&target, None, &s.ctx());
    let meta = p.spec.unwrap().template.metadata.unwrap();
    assert_eq!(meta.labels, Some(map(&[("app", "podinfo-primary"), ("version", "6.0.0")])));
    assert_eq!(meta.annotations, Some(map(&[(FLAGGER_ID, ID), ("prometheus.io/scrape", "true")])));
}

#[test]
fn replicas() {
    let s = podinfo_setup();
    let with = |target: Option<i32>| {
        let mut d = deployment("podinfo");
        d.spec.as_mut().unwrap().replicas = target;
        d
    };
    let replicas = |s: &Setup, target: Option<i32>, existing: Option<i32>| {
        let existing = existing.map(|n| {
            let mut p = deployment("podinfo-primary");
            p.spec.as_mut().unwrap().replicas = Some(n);
            p
        });
        primary_deployment(&with(target), existing.as_ref(), &s.ctx()).spec.unwrap().replicas
    };
    // Without an autoscaler: the target's replicas if > 0, else 1; the primary follows the target.
    assert_eq!(replicas(&s, Some(3), None), Some(3));
    assert_eq!(replicas(&s, Some(0), None), Some(1));
    assert_eq!(replicas(&s, None, None), Some(1));
    assert_eq!(replicas(&s, Some(3), Some(7)), Some(3));
    // With an autoscaler: an existing primary keeps what its autoscaler chose.
    let mut hpa = podinfo_setup();
    hpa.canary.spec.autoscaler_ref = Some(AutoscalerReference {
        api_version: "autoscaling/v2".into(),
        kind: "HorizontalPodAutoscaler".into(),
        name: "podinfo".into(),
        ..Default::default()
    });
    assert_eq!(replicas(&hpa, Some(3), Some(7)), Some(7));
    assert_eq!(replicas(&hpa, Some(0), None), Some(1));
    assert_eq!(replicas(&hpa, Some(3), None), Some(3));
}

#[test]
fn tracked_references_are_renamed_in_every_location() {
    let tracked: Vec<ConfigId> = FULL_CONFIG_MAPS
        .iter()
        .map(|n| ConfigId::config_map(*n))
        .chain(FULL_SECRETS.iter().map(|n| ConfigId::secret(*n)))
        .collect();
    let s = Setup::new(&tracked);
    let mut target = deployment("podinfo");
    target.spec.as_mut().unwrap().template.spec = Some(full_pod_spec());
    let pod = primary_deployment(&target, None, &s.ctx()).spec.unwrap().template.spec.unwrap();
    let refs = config_refs(&pod);
    assert_eq!(refs.len(), 12);
    for r in &refs {
        assert!(r.id.name.ends_with("-primary"), "{} was not renamed", r.id);
        let original = ConfigId { kind: r.id.kind, name: r.id.name.trim_end_matches("-primary").into() };
        assert!(s.tracked.contains(&original), "{} is not a tracked config's copy", r.id);
    }
    // Only the names change: optional flags, keys and everything else stay.
    let optional: Vec<&str> = refs.iter().filter(|r| r.optional).map(|r| r.id.name.as_str()).collect();
    assert_eq!(optional, ["proj-secret-primary"]);
    let env = pod.containers[0].env.as_ref().unwrap();
    assert_eq!(env[0].value.as_deref(), Some("x"));
    assert_eq!(env[1].value_from.as_ref().unwrap().config_map_key_ref.as_ref().unwrap().key, "k");
}

#[test]
fn untracked_references_are_left_alone() {
    // Only vol-cm and init-from-secret are tracked (the others opted out, are of other Secret types…).
    let s = Setup::new(&[ConfigId::config_map("vol-cm"), ConfigId::secret("init-from-secret")]);
    let mut target = deployment("podinfo");
    target.spec.as_mut().unwrap().template.spec = Some(full_pod_spec());
    let pod = primary_deployment(&target, None, &s.ctx()).spec.unwrap().template.spec.unwrap();
    let renamed: Vec<String> = config_refs(&pod)
        .into_iter()
        .filter(|r| r.id.name.ends_with("-primary"))
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(renamed, ["ConfigMap \"vol-cm-primary\"", "Secret \"init-from-secret-primary\""]);
    // A Secret named like a tracked ConfigMap is a different object.
    let s = Setup::new(&[ConfigId::config_map("vol-secret")]);
    let pod = primary_deployment(&target, None, &s.ctx()).spec.unwrap().template.spec.unwrap();
    assert!(config_refs(&pod).iter().all(|r| !r.id.name.ends_with("-primary")));
}

fn selector_on(pairs: &[(&str, &str)], expr: Option<(&str, &[&str])>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(map(pairs)),
        match_expressions: expr.map(|(key, values)| {
            vec![LabelSelectorRequirement {
                key: key.into(),
                operator: "In".into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]
        }),
    }
}

fn term(selector: LabelSelector) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(selector),
        topology_key: "kubernetes.io/hostname".into(),
        ..Default::default()
    }
}

/// A template whose pod-selecting label selectors all pick `podinfo` pods in one way or another.
fn affinity_template() -> PodTemplateSpec {
    let mut t = template("podinfo");
    let spec = t.spec.as_mut().unwrap();
    spec.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
        label_selector: Some(selector_on(&[("app", "podinfo"), ("tier", "podinfo")], None)),
        max_skew: 1,
        topology_key: "topology.kubernetes.io/zone".into(),
        when_unsatisfiable: "DoNotSchedule".into(),
        ..Default::default()
    }]);
    spec.affinity = Some(Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term(selector_on(
                &[("app.kubernetes.io/name", "podinfo")],
                Some(("app", &["podinfo", "other"])),
            ))]),
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: term(selector_on(&[("name", "podinfo")], Some(("tier", &["podinfo"])))),
            }]),
        }),
        pod_affinity: Some(PodAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term(selector_on(
                &[("app", "podinfo")],
                None,
            ))]),
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 1,
                pod_affinity_term: term(selector_on(&[("app", "cache")], None)),
            }]),
        }),
        node_affinity: None,
    });
    t
}

#[test]
fn pod_selectors_picking_the_target_pick_the_primary() {
    let s = podinfo_setup();
    let mut target = deployment("podinfo");
    target.spec.as_mut().unwrap().template = affinity_template();
    let pod = primary_deployment(&target, None, &s.ctx()).spec.unwrap().template.spec.unwrap();
    let spread = pod.topology_spread_constraints.unwrap()[0].label_selector.clone().unwrap();
    // `tier` is not a selector label: left alone.
    assert_eq!(spread, selector_on(&[("app", "podinfo-primary"), ("tier", "podinfo")], None));
    let affinity = pod.affinity.unwrap();
    let anti = affinity.pod_anti_affinity.unwrap();
    let required =
        anti.required_during_scheduling_ignored_during_execution.unwrap()[0].label_selector.clone();
    assert_eq!(
        required.unwrap(),
        selector_on(
            &[("app.kubernetes.io/name", "podinfo-primary")],
            Some(("app", &["podinfo-primary", "other"]))
        )
    );
    let preferred =
        anti.preferred_during_scheduling_ignored_during_execution.unwrap()[0].pod_affinity_term.clone();
    assert_eq!(
        preferred.label_selector.unwrap(),
        selector_on(&[("name", "podinfo-primary")], Some(("tier", &["podinfo"])))
    );
    let co = affinity.pod_affinity.unwrap();
    let required = co.required_during_scheduling_ignored_during_execution.unwrap()[0].label_selector.clone();
    assert_eq!(required.unwrap(), selector_on(&[("app", "podinfo-primary")], None));
    let preferred =
        co.preferred_during_scheduling_ignored_during_execution.unwrap()[0].pod_affinity_term.clone();
    assert_eq!(preferred.label_selector.unwrap(), selector_on(&[("app", "cache")], None));
}

#[test]
fn primary_daemon_set() {
    let mut s = podinfo_setup();
    s.canary = canary("DaemonSet", "podinfo-ds");
    s.selector = Selector { key: "app".into(), value: "podinfo-ds".into() };
    let mut target = daemon_set("podinfo-ds");
    let strategy = DaemonSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None };
    target.spec.as_mut().unwrap().update_strategy = Some(strategy.clone());
    // Scaled to zero: the primary must not inherit that.
    target.spec.as_mut().unwrap().template.spec.as_mut().unwrap().node_selector =
        Some(map(&[(SCALE_TO_ZERO_KEY, "true")]));
    let p = super::super::primary_daemon_set(&target, &s.ctx());
    assert_eq!(p.metadata.name.as_deref(), Some("podinfo-ds-primary"));
    assert_eq!(p.metadata.labels, Some(map(&[("app", "podinfo-ds-primary")])));
    assert_eq!(p.metadata.owner_references, Some(vec![owner_reference(&s.canary)]));
    let spec = p.spec.unwrap();
    assert_eq!(spec.selector.match_labels, Some(map(&[("app", "podinfo-ds-primary")])));
    assert_eq!(spec.update_strategy, Some(strategy));
    assert_eq!((spec.min_ready_seconds, spec.revision_history_limit), (Some(3), Some(4)));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.node_selector, None);
    assert_eq!(pod.volumes.unwrap()[0].config_map.as_ref().unwrap().name, "podinfo-config-primary");
    // Other nodeSelector keys stay.
    target.spec.as_mut().unwrap().template.spec.as_mut().unwrap().node_selector =
        Some(map(&[(SCALE_TO_ZERO_KEY, "true"), ("disk", "ssd")]));
    let p = super::super::primary_daemon_set(&target, &s.ctx());
    assert_eq!(p.spec.unwrap().template.spec.unwrap().node_selector, Some(map(&[("disk", "ssd")])));
}

#[test]
fn the_primary_runs_the_targets_template_exactly_when_revisions_match() {
    let s = podinfo_setup();
    let mut target = deployment("podinfo");
    target.spec.as_mut().unwrap().template = affinity_template();
    let primary = primary_deployment(&target, None, &s.ctx());
    let mapping = s.ctx().mapping("podinfo");
    assert_eq!(
        primary_revision(Workload::Deployment(&primary), &mapping),
        target_revision(Workload::Deployment(&target))
    );
    // The raw primary template differs (labels, flagger-id, renames): only the mapping makes them equal.
    assert_ne!(
        template_revision(&primary.spec.as_ref().unwrap().template),
        target_revision(Workload::Deployment(&target))
    );
    // A new flagger-id (another promotion of the same template) changes nothing.
    let again = primary_deployment(&target, None, &PrimaryContext { flagger_id: "another", ..s.ctx() });
    assert_eq!(
        primary_revision(Workload::Deployment(&again), &mapping),
        target_revision(Workload::Deployment(&target))
    );
    // A new image on the target is a new revision the primary does not run.
    let mut newer = target.clone();
    newer.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image =
        Some("podinfo:6.0.1".into());
    assert_ne!(
        primary_revision(Workload::Deployment(&primary), &mapping),
        target_revision(Workload::Deployment(&newer))
    );
    // A config that became tracked since the promotion: the primary uses the original, not a copy.
    let more = Setup::new(&[
        ConfigId::secret("podinfo-secret"),
        ConfigId::config_map("podinfo-config"),
        ConfigId::config_map("x"),
    ]);
    let old = Setup::new(&[ConfigId::secret("podinfo-secret")]);
    let primary = primary_deployment(&target, None, &old.ctx());
    assert_ne!(
        primary_revision(Workload::Deployment(&primary), &more.ctx().mapping("podinfo")),
        target_revision(Workload::Deployment(&target))
    );
}

#[test]
fn target_revision_ignores_what_is_never_promoted() {
    let d = deployment("podinfo");
    let base = target_revision(Workload::Deployment(&d));
    let mut flux = d.clone();
    let meta = flux.spec.as_mut().unwrap().template.metadata.as_mut().unwrap();
    meta.annotations.as_mut().unwrap().insert("kustomize.toolkit.fluxcd.io/x".into(), "1".into());
    assert_eq!(target_revision(Workload::Deployment(&flux)), base);
    let mut restarted = d.clone();
    let meta = restarted.spec.as_mut().unwrap().template.metadata.as_mut().unwrap();
    meta.annotations.as_mut().unwrap().insert("kubectl.kubernetes.io/restartedAt".into(), "now".into());
    assert_ne!(target_revision(Workload::Deployment(&restarted)), base, "a restart is a new revision");
    // DaemonSet scaled to zero: same revision.
    let ds = daemon_set("podinfo-ds");
    let mut zero = ds.clone();
    zero.spec.as_mut().unwrap().template.spec.as_mut().unwrap().node_selector =
        Some(map(&[(SCALE_TO_ZERO_KEY, "true")]));
    assert_eq!(target_revision(Workload::DaemonSet(&zero)), target_revision(Workload::DaemonSet(&ds)));
    // Empty annotations are no annotations (the API server drops empty maps).
    let mut empty = d.clone();
    empty.spec.as_mut().unwrap().template.metadata.as_mut().unwrap().annotations = Some(Default::default());
    let mut none = d.clone();
    none.spec.as_mut().unwrap().template.metadata.as_mut().unwrap().annotations = None;
    assert_eq!(target_revision(Workload::Deployment(&empty)), target_revision(Workload::Deployment(&none)));
}
