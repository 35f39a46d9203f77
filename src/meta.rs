//! Names, labels and annotations shared by everything Veer generates. They are Flagger's, so that
//! tools, dashboards and habits built around Flagger keep working.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use crate::api::Canary;

/// Server-side apply field manager of every write Veer makes.
pub const FIELD_MANAGER: &str = "veer";
/// Finalizer added when `revertOnDeletion` is set.
pub const FINALIZER: &str = "finalizer.flagger.app";
/// Pod template annotation on primaries; a new value at each promotion forces a primary rollout.
pub const FLAGGER_ID: &str = "flagger-id";
/// ConfigMap/Secret annotation: a value starting with `disable` opts the object out of tracking.
pub const CONFIG_TRACKING: &str = "flagger.app/config-tracking";
/// Knative: the primary revision.
pub const PRIMARY_REVISION: &str = "flagger.app/primary-revision";
/// Istio: the spec of an adopted VirtualService before Veer changed it.
pub const ORIGINAL_CONFIGURATION: &str = "flagger.kubernetes.io/original-configuration";
/// kubectl's record of the last applied configuration.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Annotations that stop Flux's kustomize- and helm-controllers from reverting what Veer manages.
pub fn flux_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kustomize.toolkit.fluxcd.io/reconcile".to_string(), "disabled".to_string()),
        ("helm.toolkit.fluxcd.io/driftDetection".to_string(), "disabled".to_string()),
    ])
}

/// Whether a label or annotation key belongs to Flux (never copied to generated objects).
pub fn is_flux_key(key: &str) -> bool {
    key.contains("toolkit.fluxcd.io")
}

/// The controller owner reference to a Canary, so that generated objects are garbage collected
/// with it. As Flagger's (Kubernetes' `NewControllerRef`), it blocks the owner's deletion: a
/// foreground deletion of the Canary waits for its generated objects.
pub fn owner_reference(canary: &Canary) -> OwnerReference {
    let reference =
        canary.controller_owner_ref(&()).expect("a Canary read from the API server has a name and uid");
    OwnerReference { block_owner_deletion: Some(true), ..reference }
}

/// Filters labels by `--include-label-prefix` (comma-separated prefixes; `*` means all; empty means
/// none). Flux keys are always dropped.
pub fn filter_by_prefixes(
    labels: &BTreeMap<String, String>,
    prefixes: &[String],
) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| !is_flux_key(k))
        .filter(|(k, _)| prefixes.iter().any(|p| p == "*" || k.starts_with(p.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What a generated name must fit in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// A Service name (DNS-1035 label): at most 63 characters.
    Service,
    /// The name of a Deployment, ConfigMap, HPA, Ingress... (DNS-1123 subdomain): at most 253.
    Object,
    /// A label value: at most 63 characters.
    LabelValue,
}

impl NameRule {
    fn max(self) -> usize {
        match self {
            NameRule::Service | NameRule::LabelValue => 63,
            NameRule::Object => 253,
        }
    }
}

/// Why a generated name will not be accepted by the API server, if it will not: checked when a
/// Canary is resolved, so that the Canary says so instead of every write failing.
pub fn name_problem(rule: NameRule, what: &str, name: &str) -> Option<String> {
    let max = rule.max();
    (name.len() > max).then(|| {
        format!(
            "the generated {what} {name:?} has {} characters, more than the {max} Kubernetes allows",
            name.len()
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_names_are_checked_against_kubernetes_limits() {
        use super::{NameRule, name_problem};
        assert_eq!(name_problem(NameRule::Service, "Service", &"a".repeat(63)), None);
        let long = format!("{}-primary", "a".repeat(56));
        let p = name_problem(NameRule::Service, "Service", &long).unwrap();
        assert!(p.contains("64 characters, more than the 63"), "{p}");
        assert_eq!(name_problem(NameRule::Object, "Deployment", &long), None);
        assert!(name_problem(NameRule::LabelValue, "label value", &long).is_some());
    }

    use super::*;

    #[test]
    fn label_prefixes() {
        let labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "podinfo".to_string()),
            ("team".to_string(), "a".to_string()),
            ("kustomize.toolkit.fluxcd.io/name".to_string(), "apps".to_string()),
        ]);
        assert!(filter_by_prefixes(&labels, &[]).is_empty());
        assert_eq!(filter_by_prefixes(&labels, &["app.kubernetes.io".into()]).len(), 1);
        assert_eq!(filter_by_prefixes(&labels, &["*".into()]).len(), 2, "Flux keys are dropped even with *");
    }
}
