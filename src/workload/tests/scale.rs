use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use crate::{
    revision::SCALE_TO_ZERO_KEY,
    workload::{fixtures::*, *},
};

fn with_replicas(name: &str, n: Option<i32>) -> Deployment {
    let mut d = deployment(name);
    d.spec.as_mut().unwrap().replicas = n;
    d
}

#[test]
fn scale_from_zero_table() {
    // (target, primary, autoscaler minimum) → replicas, per §2.8.
    // (target replicas, primary (its replicas), autoscaler minimum, expected)
    type Case = (Option<i32>, Option<Option<i32>>, Option<i32>, i32);
    let cases: [Case; 12] = [
        (Some(3), Some(Some(5)), None, 3),    // the target's own replicas win
        (Some(3), None, Some(4), 3),          // …even with an autoscaler
        (Some(0), Some(Some(5)), None, 5),    // no autoscaler: the primary's
        (None, Some(Some(5)), None, 5),       // unset counts as zero here (never read back unset)
        (Some(0), Some(Some(0)), None, 1),    // primary at zero too: 1
        (Some(0), None, None, 1),             // no primary: 1
        (Some(0), Some(None), None, 1),       // primary without replicas: 1
        (Some(0), Some(Some(5)), Some(4), 4), // autoscaler: its minimum, not the primary's
        (Some(0), Some(Some(5)), Some(2), 2), //
        (Some(0), Some(Some(5)), Some(1), 1), // a minimum of 1 is 1
        (Some(0), Some(Some(5)), Some(0), 1), // KEDA-style 0: still 1
        (Some(-1), None, None, 1),            // nonsense counts as zero
    ];
    for (target, primary, min, expected) in cases {
        let t = with_replicas("podinfo", target);
        let p = primary.map(|n| with_replicas("podinfo-primary", n));
        assert_eq!(
            scale_up_replicas(&t, p.as_ref(), min),
            expected,
            "target {target:?} primary {primary:?} min {min:?}"
        );
    }
}

#[test]
fn hpa_minimum_defaults_to_one() {
    let mut hpa = k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler::default();
    assert_eq!(hpa_min_replicas(&hpa), 1);
    hpa.spec.min_replicas = Some(3);
    assert_eq!(hpa_min_replicas(&hpa), 3);
}

#[test]
fn deployment_patches() {
    let t = with_replicas("podinfo", Some(0));
    let p = with_replicas("podinfo-primary", Some(4));
    assert_eq!(scale_to_zero_patch(Workload::Deployment(&t)), json!({"spec": {"replicas": 0}}));
    assert_eq!(scale_up_patch(Workload::Deployment(&t), Some(&p), None), json!({"spec": {"replicas": 4}}));
    assert_eq!(scale_up_patch(Workload::Deployment(&t), Some(&p), Some(2)), json!({"spec": {"replicas": 2}}));
    // Revert on deletion: the primary's size, or a scale-up from zero without a serving primary.
    assert_eq!(revert_patch(Workload::Deployment(&t), Some(&p), Some(2)), json!({"spec": {"replicas": 4}}));
    assert_eq!(revert_patch(Workload::Deployment(&t), None, None), json!({"spec": {"replicas": 1}}));
    let zero = with_replicas("podinfo-primary", Some(0));
    assert_eq!(
        revert_patch(Workload::Deployment(&t), Some(&zero), Some(3)),
        json!({"spec": {"replicas": 3}})
    );
}

#[test]
fn daemon_set_patches_touch_only_the_scale_to_zero_key() {
    let ds = daemon_set("podinfo-ds");
    let node_selector = |v| json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_KEY: v}}}}});
    assert_eq!(scale_to_zero_patch(Workload::DaemonSet(&ds)), node_selector(json!("true")));
    assert_eq!(scale_up_patch(Workload::DaemonSet(&ds), None, None), node_selector(json!(null)));
    assert_eq!(revert_patch(Workload::DaemonSet(&ds), None, None), node_selector(json!(null)));
}

#[test]
fn scaled_up() {
    assert!(is_scaled_up(Workload::Deployment(&with_replicas("podinfo", Some(2)))));
    assert!(is_scaled_up(Workload::Deployment(&with_replicas("podinfo", None))), "unset means 1");
    assert!(!is_scaled_up(Workload::Deployment(&with_replicas("podinfo", Some(0)))));
    let mut ds = daemon_set("podinfo-ds");
    assert!(is_scaled_up(Workload::DaemonSet(&ds)));
    let pod = ds.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    pod.node_selector = Some(map(&[("disk", "ssd")]));
    assert!(is_scaled_up(Workload::DaemonSet(&ds)));
    let pod = ds.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    pod.node_selector = Some(map(&[("disk", "ssd"), (SCALE_TO_ZERO_KEY, "true")]));
    assert!(!is_scaled_up(Workload::DaemonSet(&ds)));
}
