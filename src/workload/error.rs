//! Errors of the workload layer. Each names the object and the field at fault and says what to do,
//! because the controller shows them to users as Events and status conditions.

use super::ConfigId;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// The target's selector has none of the `--selector-labels` keys (Flagger's text, then the fix).
    #[error(
        "{kind} {name}.{namespace} spec.selector.matchLabels must contain one of [{keys}]; add one of \
         these labels to the selector and the pod template, or change the controller's --selector-labels",
        keys = keys.join(" ")
    )]
    NoSelectorLabel { kind: String, name: String, namespace: String, keys: Vec<String> },

    /// The pod template needs ConfigMaps or Secrets (without `optional: true`) that do not exist.
    #[error(
        "{kind} {name}.{namespace} spec.template.spec references {missing} that do not exist; create them, \
         or mark the references `optional: true`",
        missing = missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    MissingConfigs { kind: String, name: String, namespace: String, missing: Vec<ConfigId> },

    /// `autoscalerRef` names a kind Veer cannot handle (yet).
    #[error(
        "Canary {canary}.{namespace} spec.autoscalerRef.kind {kind:?} is not supported{hint}",
        hint = if kind == "ScaledObject" {
            " by Veer yet (KEDA); reference a HorizontalPodAutoscaler (autoscaling/v2) instead, or remove \
             spec.autoscalerRef"
        } else {
            "; use HorizontalPodAutoscaler (autoscaling/v2)"
        }
    )]
    UnsupportedAutoscaler { canary: String, namespace: String, kind: String },
}
