//! The primary workload `<target>-primary` (`flagger-behaviour.md` §2.5), built whole from the
//! target at creation and again at every promotion. The result is the complete desired object, fit
//! for server-side apply.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::apps::v1::{DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec},
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};

use super::{ConfigId, Selector, TemplateMapping, WorkloadSettings, primary_name};
use crate::{
    api::Canary,
    meta::{LAST_APPLIED, filter_by_prefixes, is_flux_key, owner_reference},
};

/// Annotations the workload controllers write on the object itself; copying the target's would
/// make Veer and the controller overwrite each other on every apply.
const CONTROLLER_ANNOTATIONS: [&str; 2] =
    ["deployment.kubernetes.io/revision", "deprecated.daemonset.template.generation"];

/// Everything a primary is built from besides the target itself.
#[derive(Clone, Copy, Debug)]
pub struct PrimaryContext<'a> {
    pub canary: &'a Canary,
    /// The target's selector label.
    pub selector: &'a Selector,
    /// The tracked configs (`TrackedConfigs::ids`); their references get `-primary`.
    pub tracked: &'a BTreeSet<ConfigId>,
    pub settings: &'a WorkloadSettings,
    /// The `flagger-id` of the pod template: UUID-shaped, and new for each primary write (the
    /// controller derives it from the Canary's uid and the initialization or promotion it makes,
    /// so that a write repeated after a restart carries the same id).
    pub flagger_id: &'a str,
}

impl<'a> PrimaryContext<'a> {
    /// The template mapping for a target named `target_name`.
    pub fn mapping(&self, target_name: &'a str) -> TemplateMapping<'a> {
        TemplateMapping {
            target_name,
            selector: self.selector,
            selector_label_keys: &self.settings.selector_labels,
            tracked: self.tracked,
        }
    }

    /// Metadata of the primary: labels filtered by `--include-label-prefix` plus the primary
    /// selector label; all annotations but Flux's, kubectl's last-applied configuration and the
    /// workload controller's own — the same set at creation and at promotion (Flagger filters them
    /// by label prefix at promotion, quirk #16, which drops annotations users set on purpose).
    fn metadata(&self, target: &ObjectMeta) -> ObjectMeta {
        let mut labels = filter_by_prefixes(
            &target.labels.clone().unwrap_or_default(),
            &self.settings.include_label_prefixes,
        );
        labels.insert(self.selector.key.clone(), self.selector.primary_value());
        let annotations: BTreeMap<String, String> = target
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| {
                !is_flux_key(k) && *k != LAST_APPLIED && !CONTROLLER_ANNOTATIONS.contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ObjectMeta {
            name: Some(primary_name(target.name.as_deref().unwrap_or_default())),
            namespace: target.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner_reference(self.canary)]),
            ..Default::default()
        }
    }

    fn primary_selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(BTreeMap::from([(self.selector.key.clone(), self.selector.primary_value())])),
            match_expressions: None,
        }
    }
}

/// The primary Deployment. `existing` is the current primary, if any.
///
/// Replicas: the target's if above zero, else 1 — except that when the Canary has an
/// `autoscalerRef` and the primary exists, its current replicas are kept: the primary's autoscaler
/// owns that number, and overwriting it at each promotion would make the primary jump to the
/// canary's size and back.
pub fn primary_deployment(
    target: &Deployment,
    existing: Option<&Deployment>,
    ctx: &PrimaryContext<'_>,
) -> Deployment {
    let spec = target.spec.clone().unwrap_or_default();
    let name = target.metadata.name.as_deref().unwrap_or_default();
    let autoscaled_replicas =
        existing.filter(|_| ctx.canary.spec.autoscaler_ref.is_some()).and_then(|p| p.spec.as_ref()?.replicas);
    let replicas = autoscaled_replicas.unwrap_or(match spec.replicas {
        Some(n) if n > 0 => n,
        _ => 1,
    });
    Deployment {
        metadata: ctx.metadata(&target.metadata),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: ctx.primary_selector(),
            template: ctx.mapping(name).primary_template(&spec.template, ctx.flagger_id),
            progress_deadline_seconds: spec.progress_deadline_seconds,
            min_ready_seconds: spec.min_ready_seconds,
            revision_history_limit: spec.revision_history_limit,
            strategy: spec.strategy,
            paused: None,
        }),
        status: None,
    }
}

/// The primary DaemonSet (no replicas; update strategy, minReadySeconds and revisionHistoryLimit
/// copied). A scale-to-zero nodeSelector on the target is not copied.
pub fn primary_daemon_set(target: &DaemonSet, ctx: &PrimaryContext<'_>) -> DaemonSet {
    let spec = target.spec.clone().unwrap_or_default();
    let name = target.metadata.name.as_deref().unwrap_or_default();
    DaemonSet {
        metadata: ctx.metadata(&target.metadata),
        spec: Some(DaemonSetSpec {
            selector: ctx.primary_selector(),
            template: ctx.mapping(name).primary_template(&spec.template, ctx.flagger_id),
            update_strategy: spec.update_strategy,
            min_ready_seconds: spec.min_ready_seconds,
            revision_history_limit: spec.revision_history_limit,
        }),
        status: None,
    }
}
