use k8s_openapi::{
    api::apps::v1::{DaemonSetStatus, Deployment, DeploymentCondition, DeploymentStatus},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};

use crate::{
    analysis::Readiness,
    api::{Canary, CanaryAnalysis, CanaryStatus},
    workload::{fixtures::*, *},
};

fn now() -> Timestamp {
    "2026-07-01T12:00:00Z".parse().unwrap()
}

fn ago(secs: i64) -> Time {
    Time(now() - SignedDuration::from_secs(secs))
}

/// A Deployment named `name` with `spec.replicas` and status (replicas, updated, available).
fn dep(name: &str, desired: i32, status: (i32, i32, i32)) -> Deployment {
    let mut d = deployment(name);
    d.metadata.generation = Some(3);
    d.spec.as_mut().unwrap().replicas = Some(desired);
    d.status = Some(DeploymentStatus {
        observed_generation: Some(3),
        replicas: Some(status.0),
        updated_replicas: Some(status.1),
        available_replicas: Some(status.2),
        ..Default::default()
    });
    d
}

fn cond(type_: &str, status: &str, reason: &str, updated: Option<Time>) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        last_update_time: updated,
        ..Default::default()
    }
}

fn with_conditions(mut d: Deployment, conditions: Vec<DeploymentCondition>) -> Deployment {
    d.status.as_mut().unwrap().conditions = Some(conditions);
    d
}

fn canary_with(primary_threshold: Option<i32>, canary_threshold: Option<i32>) -> Canary {
    crate::fixtures::canary("podinfo", "test")
        .uid(CANARY_UID)
        .spec(serde_json::json!({"analysis": {
            "primaryReadyThreshold": primary_threshold,
            "canaryReadyThreshold": canary_threshold,
        }}))
        .build()
}

fn check(c: &Canary, role: Role, d: &Deployment) -> Readiness {
    deployment_readiness(c, role, d, now())
}

#[test]
fn flaggers_texts() {
    let c = canary("Deployment", "podinfo");
    let waiting = |d: Deployment| check(&c, Role::Canary, &d);
    assert_eq!(
        waiting(dep("podinfo", 1, (1, 1, 0))),
        Readiness::Waiting(
            "canary deployment podinfo.test not ready: waiting for rollout to finish: 0 of 1 (readyThreshold 100%) \
             updated replicas are available"
                .into()
        )
    );
    assert_eq!(
        waiting(dep("podinfo", 3, (3, 1, 1))),
        Readiness::Waiting(
            "canary deployment podinfo.test not ready: waiting for rollout to finish: 1 out of 3 new replicas have \
             been updated"
                .into()
        )
    );
    assert_eq!(
        waiting(dep("podinfo", 2, (3, 2, 2))),
        Readiness::Waiting(
            "canary deployment podinfo.test not ready: waiting for rollout to finish: 1 old replicas are pending \
             termination"
                .into()
        )
    );
    let mut unobserved = dep("podinfo", 1, (1, 1, 1));
    unobserved.metadata.generation = Some(4);
    assert_eq!(
        waiting(unobserved),
        Readiness::Waiting(
            "canary deployment podinfo.test not ready: waiting for rollout to finish: observed deployment generation \
             less than desired generation"
                .into()
        )
    );
    assert_eq!(
        check(&c, Role::Primary, &dep("podinfo-primary", 1, (1, 1, 0))),
        Readiness::Waiting(
            "primary deployment podinfo-primary.test not ready: waiting for rollout to finish: 0 of 1 \
             (readyThreshold 100%) updated replicas are available"
                .into()
        )
    );
    assert_eq!(waiting(dep("podinfo", 2, (2, 2, 2))), Readiness::Ready);
}

#[test]
fn a_deployment_without_status_is_waiting() {
    let c = canary("Deployment", "podinfo");
    let mut d = deployment("podinfo");
    d.metadata.generation = Some(1);
    assert!(matches!(check(&c, Role::Canary, &d), Readiness::Waiting(m) if m.contains("generation")));
}

#[test]
fn progress_deadline_exceeded_fails_at_once() {
    let c = canary("Deployment", "podinfo");
    let d = with_conditions(
        dep("podinfo", 1, (1, 1, 0)),
        vec![cond("Progressing", "False", "ProgressDeadlineExceeded", Some(ago(1)))],
    );
    assert_eq!(
        check(&c, Role::Canary, &d),
        Readiness::Failed(
            "canary deployment podinfo.test not ready: deployment \"podinfo\" exceeded its progress deadline"
                .into()
        )
    );
}

#[test]
fn stuck_below_minimum_fails_after_the_canarys_progress_deadline() {
    let mut c = canary("Deployment", "podinfo");
    let stuck = |secs: Option<i64>, reason: &str| {
        with_conditions(
            dep("podinfo", 1, (1, 1, 0)),
            vec![
                cond("Progressing", "True", "ReplicaSetUpdated", Some(ago(1))),
                cond("Available", "False", reason, secs.map(ago)),
            ],
        )
    };
    let is_failed = |c: &Canary, d: &Deployment| matches!(check(c, Role::Canary, d), Readiness::Failed(_));
    // Default deadline 600s (the Deployment's own progressDeadlineSeconds, 60, does not count).
    assert!(!is_failed(&c, &stuck(Some(599), "MinimumReplicasUnavailable")));
    assert!(
        !is_failed(&c, &stuck(Some(600), "MinimumReplicasUnavailable")),
        "not before the deadline has passed"
    );
    assert!(is_failed(&c, &stuck(Some(601), "MinimumReplicasUnavailable")));
    assert_eq!(
        check(&c, Role::Canary, &stuck(Some(601), "MinimumReplicasUnavailable")),
        Readiness::Failed(
            "canary deployment podinfo.test not ready: waiting for rollout to finish: 0 of 1 (readyThreshold 100%) \
             updated replicas are available"
                .into()
        ),
        "same text as the retriable state"
    );
    // Another reason, or no recorded time: keep waiting.
    assert!(!is_failed(&c, &stuck(Some(10_000), "SomethingElse")));
    assert!(!is_failed(&c, &stuck(None, "MinimumReplicasUnavailable")));
    c.spec.progress_deadline_seconds = Some(60);
    assert!(is_failed(&c, &stuck(Some(61), "MinimumReplicasUnavailable")));
    assert!(!is_failed(&c, &stuck(Some(59), "MinimumReplicasUnavailable")));
    // The primary uses the Canary's deadline too.
    let primary = with_conditions(
        dep("podinfo-primary", 1, (1, 1, 0)),
        vec![cond("Available", "False", "MinimumReplicasUnavailable", Some(ago(61)))],
    );
    assert!(
        matches!(check(&c, Role::Primary, &primary), Readiness::Failed(m) if m.starts_with("primary deployment"))
    );
    // Ready wins over an old condition.
    let ready = with_conditions(
        dep("podinfo", 1, (1, 1, 1)),
        vec![cond("Available", "False", "MinimumReplicasUnavailable", Some(ago(10_000)))],
    );
    assert_eq!(check(&c, Role::Canary, &ready), Readiness::Ready);
}

#[test]
fn thresholds_per_role() {
    // 4 updated, 2 available: ready at 50%, not at the default 100%.
    let d = dep("podinfo", 4, (4, 4, 2));
    let c = canary_with(Some(100), Some(50));
    assert_eq!(check(&c, Role::Canary, &d), Readiness::Ready);
    assert_eq!(
        check(&c, Role::Primary, &d),
        Readiness::Waiting(
            "primary deployment podinfo.test not ready: waiting for rollout to finish: 2 of 4 (readyThreshold 100%) \
             updated replicas are available"
                .into()
        )
    );
    let c = canary_with(Some(50), None);
    assert_eq!(check(&c, Role::Primary, &d), Readiness::Ready);
    assert!(matches!(check(&c, Role::Canary, &d), Readiness::Waiting(_)));
    // Single precision like Flagger: 100 × 53% is 52.
    let c = canary_with(None, Some(53));
    assert_eq!(check(&c, Role::Canary, &dep("podinfo", 100, (100, 100, 52))), Readiness::Ready);
    assert!(matches!(
        check(&c, Role::Canary, &dep("podinfo", 100, (100, 100, 51))),
        Readiness::Waiting(m) if m.ends_with("51 of 52 (readyThreshold 53%) updated replicas are available")
    ));
}

#[test]
fn a_primary_scaled_to_zero_is_not_ready_but_a_canary_is() {
    let c = canary("Deployment", "podinfo");
    let zero = |name: &str| dep(name, 0, (0, 0, 0));
    assert_eq!(
        check(&c, Role::Primary, &zero("podinfo-primary")),
        Readiness::Waiting(
            "primary deployment podinfo-primary.test not ready: spec.replicas is 0 (scaled to zero); scale \
             podinfo-primary up, or let its autoscaler do so, to continue"
                .into()
        )
    );
    assert_eq!(check(&c, Role::Canary, &zero("podinfo")), Readiness::Ready);
}

fn ds(desired: i32, updated: i32, available: i32) -> k8s_openapi::api::apps::v1::DaemonSet {
    let mut d = daemon_set("podinfo-ds");
    d.metadata.generation = Some(2);
    d.status = Some(DaemonSetStatus {
        observed_generation: Some(2),
        desired_number_scheduled: desired,
        updated_number_scheduled: Some(updated),
        number_available: Some(available),
        ..Default::default()
    });
    d
}

fn ds_canary(last_transition: Option<i64>) -> Canary {
    let mut c = canary("DaemonSet", "podinfo-ds");
    c.status = Some(CanaryStatus { last_transition_time: last_transition.map(ago), ..Default::default() });
    c
}

#[test]
fn daemon_set_readiness_and_deadline() {
    let c = ds_canary(Some(10));
    let check = |c: &Canary, d| daemon_set_readiness(c, Role::Canary, &d, now());
    assert_eq!(check(&c, ds(3, 3, 3)), Readiness::Ready);
    assert_eq!(
        check(&c, ds(3, 1, 1)),
        Readiness::Waiting(
            "canary daemonset podinfo-ds.test not ready: waiting for rollout to finish: 1 out of 3 new pods have been \
             updated"
                .into()
        )
    );
    assert_eq!(
        check(&c, ds(3, 3, 2)),
        Readiness::Waiting(
            "canary daemonset podinfo-ds.test not ready: waiting for rollout to finish: 2 of 3 (readyThreshold 100%) \
             updated pods are available"
                .into()
        )
    );
    let mut unobserved = ds(3, 3, 3);
    unobserved.metadata.generation = Some(3);
    assert!(
        matches!(check(&c, unobserved), Readiness::Waiting(m) if m.contains("observed daemonset generation"))
    );
    // Deadline from the Canary's lastTransitionTime (default 600s).
    assert!(matches!(check(&ds_canary(Some(600)), ds(3, 1, 1)), Readiness::Waiting(_)));
    assert_eq!(
        check(&ds_canary(Some(601)), ds(3, 1, 1)),
        Readiness::Failed(
            "canary daemonset podinfo-ds.test not ready: exceeded its progressDeadlineSeconds: 600 (waiting for \
             rollout to finish: 1 out of 3 new pods have been updated)"
                .into()
        )
    );
    assert!(matches!(check(&ds_canary(None), ds(3, 1, 1)), Readiness::Waiting(_)));
    assert_eq!(check(&ds_canary(Some(100_000)), ds(3, 3, 3)), Readiness::Ready);
    // Threshold: 2 of 3 available is enough at 60% (int(3 × 0.6) = 1).
    let mut c = ds_canary(Some(10));
    c.spec.analysis = Some(CanaryAnalysis { primary_ready_threshold: Some(60), ..Default::default() });
    assert_eq!(daemon_set_readiness(&c, Role::Primary, &ds(3, 3, 2), now()), Readiness::Ready);
    assert!(matches!(
        daemon_set_readiness(&c, Role::Primary, &ds(3, 3, 0), now()),
        Readiness::Waiting(m) if m.starts_with("primary daemonset podinfo-ds.test not ready: ")
    ));
}
