//! The pod template of a primary, derived from the target's, and back again.
//!
//! `primary_template` applies Flagger's transformations (§2.5): the selector label gets `-primary`,
//! tracked config references get `-primary`, pod (anti-)affinity and topology-spread selectors
//! that pick the target's pods pick the primary's, Flux annotations are dropped, `flagger-id` is
//! set. `target_equivalent_template` undoes them, so that
//! `template_revision(target_equivalent(primary(t))) == template_revision(t)`: this is how the
//! controller knows the primary already runs the target's template (when adopting a Canary that
//! Flagger managed, §10, or resuming an interrupted promotion), without trusting stored hashes.
//!
//! Exact under two conditions a valid target meets in practice: its template carries the selector
//! label (the API server requires the selector to match the template), and it does not itself
//! reference `<tracked>-primary` configs or select `<target>-primary` pods in its affinity — if it
//! does, the reverse cannot tell Veer's renames from the user's and the revisions differ, which only
//! costs one extra canary run.

use std::collections::BTreeSet;

use k8s_openapi::{
    api::core::v1::{PodAffinityTerm, PodSpec, PodTemplateSpec},
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use serde_json::Value;

use super::{
    ConfigId, Selector, Workload,
    configs::{original_of, rename_refs},
    primary_name,
};
use crate::{
    meta::{FLAGGER_ID, is_flux_key},
    revision::{SCALE_TO_ZERO_KEY, revision},
};

/// What maps a target's pod template to its primary's and back.
#[derive(Clone, Copy, Debug)]
pub struct TemplateMapping<'a> {
    /// `spec.targetRef.name`: affinity selectors naming it are rewritten.
    pub target_name: &'a str,
    /// The target's selector label.
    pub selector: &'a Selector,
    /// `--selector-labels`: the keys under which affinity selectors are rewritten.
    pub selector_label_keys: &'a [String],
    /// The tracked configs, whose references are renamed `<name>-primary`.
    pub tracked: &'a BTreeSet<ConfigId>,
}

impl TemplateMapping<'_> {
    /// The primary's pod template. `flagger_id` is the fresh `flagger-id` annotation (a UUID, chosen
    /// by the caller at each creation/promotion so that the primary rolls out even when only a
    /// config changed).
    pub fn primary_template(&self, target: &PodTemplateSpec, flagger_id: &str) -> PodTemplateSpec {
        let mut t = target.clone();
        let meta = t.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(self.selector.key.clone(), self.selector.primary_value());
        let annotations = meta.annotations.get_or_insert_with(Default::default);
        annotations.retain(|k, _| !is_flux_key(k));
        annotations.insert(FLAGGER_ID.into(), flagger_id.into());
        if let Some(spec) = &mut t.spec {
            rename_refs(spec, &|kind, name| {
                self.tracked.contains(&ConfigId { kind, name: name.into() }).then(|| primary_name(name))
            });
            let (from, to) = (self.target_name.to_string(), primary_name(self.target_name));
            rewrite_pod_selectors(spec, self.selector_label_keys, &from, &to);
            // A DaemonSet target scaled to zero must not scale its primary to zero.
            if let Some(selector) = &mut spec.node_selector {
                selector.remove(SCALE_TO_ZERO_KEY);
                if selector.is_empty() {
                    spec.node_selector = None;
                }
            }
        }
        t
    }

    /// The target template a primary template was built from (up to what `template_revision`
    /// ignores): the inverse of [`primary_template`](Self::primary_template).
    pub fn target_equivalent_template(&self, primary: &PodTemplateSpec) -> PodTemplateSpec {
        let mut t = primary.clone();
        if let Some(meta) = &mut t.metadata {
            if let Some(labels) = &mut meta.labels
                && labels.get(&self.selector.key) == Some(&self.selector.primary_value())
            {
                labels.insert(self.selector.key.clone(), self.selector.value.clone());
            }
            if let Some(annotations) = &mut meta.annotations {
                annotations.remove(FLAGGER_ID);
            }
        }
        if let Some(spec) = &mut t.spec {
            rename_refs(spec, &|kind, name| {
                if let Some(original) = original_of(self.tracked, kind, name) {
                    return Some(original.to_string());
                }
                // A primary using a tracked config itself, not its copy, was built under other
                // tracking; it must not pass for the target's template. ('#' is in no object name.)
                self.tracked
                    .contains(&ConfigId { kind, name: name.into() })
                    .then(|| format!("{name}#original"))
            });
            let (from, to) = (primary_name(self.target_name), self.target_name.to_string());
            rewrite_pod_selectors(spec, self.selector_label_keys, &from, &to);
        }
        t
    }
}

/// In every label selector of `spec` that picks pods (topology spread, pod affinity and
/// anti-affinity, required and preferred), replaces the value `from` by `to` under `keys`.
/// Flagger rewrites anti-affinity only; Veer also rewrites affinity, because a primary required
/// to sit next to the (scaled-to-zero) target's pods could never be scheduled.
fn rewrite_pod_selectors(spec: &mut PodSpec, keys: &[String], from: &str, to: &str) {
    let mut selectors: Vec<&mut LabelSelector> = Vec::new();
    for c in spec.topology_spread_constraints.iter_mut().flatten() {
        selectors.extend(c.label_selector.as_mut());
    }
    if let Some(affinity) = &mut spec.affinity {
        let mut terms: Vec<&mut PodAffinityTerm> = Vec::new();
        if let Some(a) = &mut affinity.pod_affinity {
            terms.extend(a.required_during_scheduling_ignored_during_execution.iter_mut().flatten());
            let preferred = a.preferred_during_scheduling_ignored_during_execution.iter_mut().flatten();
            terms.extend(preferred.map(|w| &mut w.pod_affinity_term));
        }
        if let Some(a) = &mut affinity.pod_anti_affinity {
            terms.extend(a.required_during_scheduling_ignored_during_execution.iter_mut().flatten());
            let preferred = a.preferred_during_scheduling_ignored_during_execution.iter_mut().flatten();
            terms.extend(preferred.map(|w| &mut w.pod_affinity_term));
        }
        selectors.extend(terms.into_iter().filter_map(|t| t.label_selector.as_mut()));
    }
    for selector in selectors {
        for (k, v) in selector.match_labels.iter_mut().flatten() {
            if v == from && keys.contains(k) {
                *v = to.to_string();
            }
        }
        for expr in selector.match_expressions.iter_mut().flatten().filter(|e| keys.contains(&e.key)) {
            for v in expr.values.iter_mut().flatten().filter(|v| *v == from) {
                *v = to.to_string();
            }
        }
    }
}

/// The revision hash (`status.lastAppliedSpec`) of a pod template: `revision::revision` over the
/// template without what Veer never promotes — Flux annotations and `flagger-id` — and with empty
/// label/annotation maps treated as absent (the API server does not keep them).
pub fn template_revision(template: &PodTemplateSpec) -> String {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(Value::Object(meta)) = value.get_mut("metadata") {
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            annotations.retain(|k, _| k != FLAGGER_ID && !is_flux_key(k));
        }
        for field in ["annotations", "labels"] {
            if meta.get(field).is_some_and(|m| m.as_object().is_some_and(|m| m.is_empty())) {
                meta.remove(field);
            }
        }
        if meta.is_empty() {
            value.as_object_mut().map(|t| t.remove("metadata"));
        }
    }
    revision(&value)
}

/// `Target::revision`: the revision of a target's pod template. (A DaemonSet's scale-to-zero
/// nodeSelector is not part of it; see `revision::revision`.)
pub fn target_revision(target: Workload<'_>) -> String {
    template_revision(target.template().unwrap_or(&PodTemplateSpec::default()))
}

/// `Primary::revision`: the revision of the target template the primary runs, comparable with
/// [`target_revision`].
pub fn primary_revision(primary: Workload<'_>, mapping: &TemplateMapping<'_>) -> String {
    let template = primary.template().cloned().unwrap_or_default();
    template_revision(&mapping.target_equivalent_template(&template))
}
