use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior,
    HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget, ResourceMetricSource,
};

use crate::{
    api::{AutoscalerReference, ScalerReplicas},
    meta::{LAST_APPLIED, owner_reference},
    workload::{fixtures::*, *},
};

fn target_hpa() -> HorizontalPodAutoscaler {
    let mut m = meta("podinfo");
    m.labels = Some(map(&[("app", "podinfo"), ("kustomize.toolkit.fluxcd.io/name", "apps")]));
    m.annotations = Some(map(&[(LAST_APPLIED, "{}"), ("note", "x")]));
    HorizontalPodAutoscaler {
        metadata: m,
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: "podinfo".into(),
            },
            min_replicas: Some(2),
            max_replicas: 4,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(99),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            behavior: Some(HorizontalPodAutoscalerBehavior::default()),
        },
        status: None,
    }
}

fn hpa_canary(replicas: Option<ScalerReplicas>) -> crate::api::Canary {
    let mut c = canary("Deployment", "podinfo");
    c.spec.autoscaler_ref = Some(AutoscalerReference {
        api_version: "autoscaling/v2".into(),
        kind: "HorizontalPodAutoscaler".into(),
        name: "podinfo".into(),
        primary_scaler_replicas: replicas,
        ..Default::default()
    });
    c
}

#[test]
fn primary_hpa_copies_the_targets() {
    let c = hpa_canary(None);
    let target = target_hpa();
    let p = primary_hpa(&target, &c);
    assert_eq!(p.metadata.name.as_deref(), Some("podinfo-primary"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("test"));
    assert_eq!(p.metadata.labels, Some(map(&[("app", "podinfo")])));
    assert_eq!(p.metadata.annotations, Some(map(&[("note", "x")])));
    assert_eq!(p.metadata.owner_references, Some(vec![owner_reference(&c)]));
    assert_eq!(
        p.spec.scale_target_ref,
        CrossVersionObjectReference {
            api_version: Some("apps/v1".into()),
            kind: "Deployment".into(),
            name: "podinfo-primary".into()
        }
    );
    assert_eq!((p.spec.min_replicas, p.spec.max_replicas), (Some(2), 4));
    assert_eq!(p.spec.metrics, target.spec.metrics);
    assert_eq!(p.spec.behavior, target.spec.behavior);
    assert_eq!(p.status, None);
}

#[test]
fn primary_scaler_replicas_override_the_bounds() {
    let target = target_hpa();
    let both = hpa_canary(Some(ScalerReplicas { min_replicas: Some(3), max_replicas: Some(9) }));
    let p = primary_hpa(&target, &both);
    assert_eq!((p.spec.min_replicas, p.spec.max_replicas), (Some(3), 9));
    let max_only = hpa_canary(Some(ScalerReplicas { min_replicas: None, max_replicas: Some(6) }));
    let p = primary_hpa(&target, &max_only);
    assert_eq!((p.spec.min_replicas, p.spec.max_replicas), (Some(2), 6));
}

#[test]
fn autoscaler_references() {
    assert_eq!(hpa_ref(&canary("Deployment", "podinfo")), Ok(None));
    let c = hpa_canary(None);
    assert_eq!(hpa_ref(&c).unwrap().map(|r| r.name.as_str()), Some("podinfo"));
    let mut keda = hpa_canary(None);
    keda.spec.autoscaler_ref.as_mut().unwrap().kind = "ScaledObject".into();
    let err = hpa_ref(&keda).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Canary podinfo.test spec.autoscalerRef.kind \"ScaledObject\" is not supported by Veer yet (KEDA); reference \
         a HorizontalPodAutoscaler (autoscaling/v2) instead, or remove spec.autoscalerRef"
    );
    let mut odd = hpa_canary(None);
    odd.spec.autoscaler_ref.as_mut().unwrap().kind = "VerticalPodAutoscaler".into();
    assert!(hpa_ref(&odd).unwrap_err().to_string().contains("use HorizontalPodAutoscaler (autoscaling/v2)"));
}
