//! The primary HorizontalPodAutoscaler `<hpa>-primary` (`flagger-behaviour.md` §2.14): a copy of the
//! target's HPA scaling `<target>-primary`. Created at initialization, re-synced at promotion.
//! KEDA ScaledObjects are not supported yet.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::autoscaling::v2::{
        CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::{WorkloadError, primary_name};
use crate::{
    api::{AutoscalerReference, Canary},
    meta::{LAST_APPLIED, is_flux_key, owner_reference},
};

/// The Canary's HPA reference: `None` without `autoscalerRef`; an error for kinds Veer does not
/// handle (KEDA `ScaledObject`, for now). Any `autoscaling/*` apiVersion is read as
/// `autoscaling/v2`: they are one resource, and v2 is the only version served since Kubernetes 1.26.
pub fn hpa_ref(canary: &Canary) -> Result<Option<&AutoscalerReference>, WorkloadError> {
    match &canary.spec.autoscaler_ref {
        None => Ok(None),
        Some(r) if r.kind == "HorizontalPodAutoscaler" => Ok(Some(r)),
        Some(r) => Err(WorkloadError::UnsupportedAutoscaler {
            canary: canary.metadata.name.clone().unwrap_or_default(),
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
            kind: r.kind.clone(),
        }),
    }
}

fn without_flux(map: &Option<BTreeMap<String, String>>, drop: &[&str]) -> Option<BTreeMap<String, String>> {
    let kept: BTreeMap<String, String> = map
        .iter()
        .flatten()
        .filter(|(k, _)| !is_flux_key(k) && !drop.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(kept).filter(|m| !m.is_empty())
}

/// The primary copy of the target's HPA: same metrics, behavior and bounds (`autoscalerRef.
/// primaryScalerReplicas` overriding min/max), scaling `<targetRef.name>-primary` of the same
/// kind and apiVersion; labels and annotations without Flux's keys.
pub fn primary_hpa(target_hpa: &HorizontalPodAutoscaler, canary: &Canary) -> HorizontalPodAutoscaler {
    let spec = target_hpa.spec.clone();
    let overrides = canary.spec.autoscaler_ref.as_ref().and_then(|r| r.primary_scaler_replicas.clone());
    let overrides = overrides.unwrap_or_default();
    HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(primary_name(target_hpa.metadata.name.as_deref().unwrap_or_default())),
            namespace: target_hpa.metadata.namespace.clone(),
            labels: without_flux(&target_hpa.metadata.labels, &[]),
            annotations: without_flux(&target_hpa.metadata.annotations, &[LAST_APPLIED]),
            owner_references: Some(vec![owner_reference(canary)]),
            ..Default::default()
        },
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: spec.scale_target_ref.api_version,
                kind: spec.scale_target_ref.kind,
                name: primary_name(&canary.spec.target_ref.name),
            },
            min_replicas: overrides.min_replicas.or(spec.min_replicas),
            max_replicas: overrides.max_replicas.unwrap_or(spec.max_replicas),
            metrics: spec.metrics,
            behavior: spec.behavior,
        },
        status: None,
    }
}
