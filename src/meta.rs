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
/// with it.
pub fn owner_reference(canary: &Canary) -> OwnerReference {
    canary.controller_owner_ref(&()).expect("a Canary read from the API server has a name and uid")
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

#[cfg(test)]
mod tests {
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
