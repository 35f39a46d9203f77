//! Scaling the target (the canary) to zero and back (`flagger-behaviour.md` §2.3 step 12, §2.8,
//! §2.15, §2.16).
//!
//! Changes are JSON merge patches (`Patch::Merge`), not server-side apply: the target belongs to the
//! user's GitOps tool, and an apply would make Veer a co-owner of `spec.replicas` /
//! `nodeSelector`, turning every later change of them by that tool into a conflict.

use k8s_openapi::api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler};
use serde_json::{Value, json};

use super::Workload;
use crate::revision::SCALE_TO_ZERO_KEY;

/// The lower bound of an HPA (`minReplicas`, which the API server defaults to 1).
pub fn hpa_min_replicas(hpa: &HorizontalPodAutoscaler) -> i32 {
    hpa.spec.min_replicas.unwrap_or(1)
}

/// Replicas for scaling a canary Deployment up from zero (§2.8): the target's `spec.replicas` if
/// above zero; else, without an autoscaler, the primary's if above zero; else the autoscaler's
/// minimum if above one; else 1. `autoscaler_min` is `None` when the Canary has no
/// `autoscalerRef`, otherwise the autoscaler's minimum (e.g. [`hpa_min_replicas`]; 1 if unknown).
pub fn scale_up_replicas(
    target: &Deployment,
    primary: Option<&Deployment>,
    autoscaler_min: Option<i32>,
) -> i32 {
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas).filter(|n| *n > 0);
    if let Some(n) = replicas(target) {
        return n;
    }
    match autoscaler_min {
        None => primary.and_then(replicas).unwrap_or(1),
        Some(min) if min > 1 => min,
        Some(_) => 1,
    }
}

/// Whether the target runs pods: a Deployment with replicas above zero (unset means 1), a DaemonSet
/// without the scale-to-zero nodeSelector.
pub fn is_scaled_up(target: Workload<'_>) -> bool {
    match target {
        Workload::Deployment(d) => d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) > 0,
        Workload::DaemonSet(_) => {
            let selector =
                target.template().and_then(|t| t.spec.as_ref()).and_then(|s| s.node_selector.as_ref());
            !selector.is_some_and(|s| s.contains_key(SCALE_TO_ZERO_KEY))
        }
    }
}

/// Merge patch scaling the target to zero: `spec.replicas: 0`, or for a DaemonSet the nodeSelector
/// `flagger.app/scale-to-zero: "true"`, which no node carries.
pub fn scale_to_zero_patch(target: Workload<'_>) -> Value {
    match target {
        Workload::Deployment(_) => replicas_patch(0),
        Workload::DaemonSet(_) => node_selector_patch(json!("true")),
    }
}

/// Merge patch scaling the target up from zero (§2.8); a DaemonSet loses the scale-to-zero
/// nodeSelector. `primary` and `autoscaler_min` as for [`scale_up_replicas`].
pub fn scale_up_patch(
    target: Workload<'_>,
    primary: Option<&Deployment>,
    autoscaler_min: Option<i32>,
) -> Value {
    match target {
        Workload::Deployment(d) => replicas_patch(scale_up_replicas(d, primary, autoscaler_min)),
        Workload::DaemonSet(_) => node_selector_patch(Value::Null),
    }
}

/// Merge patch restoring the target when its Canary is deleted with `revertOnDeletion` (§2.16): the
/// primary's replicas (the size that was serving), or a scale-up from zero when the primary is gone
/// or scaled to zero.
pub fn revert_patch(
    target: Workload<'_>,
    primary: Option<&Deployment>,
    autoscaler_min: Option<i32>,
) -> Value {
    let serving = primary.and_then(|p| p.spec.as_ref()?.replicas).filter(|n| *n > 0);
    match (target, serving) {
        (Workload::Deployment(_), Some(n)) => replicas_patch(n),
        _ => scale_up_patch(target, primary, autoscaler_min),
    }
}

fn replicas_patch(replicas: i32) -> Value {
    json!({"spec": {"replicas": replicas}})
}

/// Sets (or with `null`, removes) the scale-to-zero key, leaving the other nodeSelector keys alone.
fn node_selector_patch(value: Value) -> Value {
    json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_KEY: value}}}}})
}
