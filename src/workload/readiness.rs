//! Readiness of the primary and canary workloads (`flagger-behaviour.md` §2.6), with Flagger's
//! message texts, which users grep for in Events and CI logs.

use k8s_openapi::{
    api::apps::v1::{DaemonSet, Deployment, DeploymentCondition},
    jiff::{SignedDuration, Timestamp},
};

use crate::{
    analysis::Readiness,
    api::{Canary, ConditionStatus},
};

/// Which copy of the workload is checked: selects the threshold and the message prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `<target>-primary`, checked against `analysis.primaryReadyThreshold`.
    Primary,
    /// The target, checked against `analysis.canaryReadyThreshold`.
    Canary,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Canary => "canary",
        }
    }

    /// Percent of the updated replicas that must be available (default 100).
    fn threshold(self, canary: &Canary) -> i32 {
        let analysis = canary.spec.analysis.as_ref();
        let t = match self {
            Role::Primary => analysis.and_then(|a| a.primary_ready_threshold),
            Role::Canary => analysis.and_then(|a| a.canary_ready_threshold),
        };
        t.unwrap_or(100)
    }
}

/// `spec.progressDeadlineSeconds` of the Canary (default 600); it bounds both copies.
fn deadline(canary: &Canary) -> SignedDuration {
    SignedDuration::from_secs(canary.spec.progress_deadline_seconds.unwrap_or(600).into())
}

/// `int(n × threshold%)` computed in single precision, as Flagger does, so that the same replica
/// counts give the same verdict (e.g. 100 × 53% is 52 there).
fn ready_minimum(n: i32, threshold: i32) -> i32 {
    (n as f32 * (threshold as f32 / 100.0)) as i32
}

fn condition<'a>(conditions: &'a [DeploymentCondition], type_: &str) -> Option<&'a DeploymentCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Readiness of a Deployment. Not ready is retriable (`Waiting`) unless the Deployment reports
/// `ProgressDeadlineExceeded`, or has been short of its minimum replicas (`Available=False`,
/// `MinimumReplicasUnavailable`) for longer than the Canary's progress deadline at `now` (`Failed`).
///
/// A primary scaled to zero (`spec.replicas: 0`) is not ready: Flagger meant to check this and
/// never does (quirk #4); analysing a canary against a primary that serves nothing is pointless.
pub fn deployment_readiness(
    canary: &Canary,
    role: Role,
    deployment: &Deployment,
    now: Timestamp,
) -> Readiness {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let namespace = deployment.metadata.namespace.as_deref().unwrap_or_default();
    let prefix = format!("{} deployment {name}.{namespace} not ready: ", role.as_str());
    let status = deployment.status.clone().unwrap_or_default();
    if deployment.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return Readiness::Waiting(format!(
            "{prefix}waiting for rollout to finish: observed deployment generation less than desired generation"
        ));
    }
    let conditions = status.conditions.unwrap_or_default();
    if condition(&conditions, "Progressing").and_then(|c| c.reason.as_deref())
        == Some("ProgressDeadlineExceeded")
    {
        return Readiness::Failed(format!("{prefix}deployment {name:?} exceeded its progress deadline"));
    }
    let desired = deployment.spec.as_ref().and_then(|s| s.replicas);
    let (replicas, updated, available) = (
        status.replicas.unwrap_or(0),
        status.updated_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
    );
    let threshold = role.threshold(canary);
    let minimum = ready_minimum(updated, threshold);
    let waiting = if let Some(desired) = desired.filter(|d| updated < *d) {
        format!("waiting for rollout to finish: {updated} out of {desired} new replicas have been updated")
    } else if replicas > updated {
        format!("waiting for rollout to finish: {} old replicas are pending termination", replicas - updated)
    } else if available < minimum {
        format!(
            "waiting for rollout to finish: {available} of {minimum} (readyThreshold {threshold}%) updated replicas are available"
        )
    } else if role == Role::Primary && desired == Some(0) {
        return Readiness::Waiting(format!(
            "{prefix}spec.replicas is 0 (scaled to zero); scale {name} up, or let its autoscaler do so, to continue"
        ));
    } else {
        return Readiness::Ready;
    };
    let stuck_since = condition(&conditions, "Available")
        .filter(|c| {
            c.status == ConditionStatus::False && c.reason.as_deref() == Some("MinimumReplicasUnavailable")
        })
        .and_then(|c| c.last_update_time.as_ref());
    // Without a recorded time the deadline cannot be shown to have passed: keep waiting.
    match stuck_since {
        Some(since) if since.0.saturating_add(deadline(canary)).is_ok_and(|end| end < now) => {
            Readiness::Failed(format!("{prefix}{waiting}"))
        }
        _ => Readiness::Waiting(format!("{prefix}{waiting}")),
    }
}

/// Readiness of a DaemonSet: all desired pods updated and the threshold of them available. Not ready
/// turns `Failed` once the Canary's `status.lastTransitionTime` is older than its progress deadline
/// (DaemonSets have no progress condition of their own).
pub fn daemon_set_readiness(
    canary: &Canary,
    role: Role,
    daemon_set: &DaemonSet,
    now: Timestamp,
) -> Readiness {
    let name = daemon_set.metadata.name.as_deref().unwrap_or_default();
    let namespace = daemon_set.metadata.namespace.as_deref().unwrap_or_default();
    let prefix = format!("{} daemonset {name}.{namespace} not ready: ", role.as_str());
    let status = daemon_set.status.clone().unwrap_or_default();
    if daemon_set.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return Readiness::Waiting(format!(
            "{prefix}waiting for rollout to finish: observed daemonset generation less than desired generation"
        ));
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    let threshold = role.threshold(canary);
    let minimum = ready_minimum(desired, threshold);
    let waiting = if updated < desired {
        format!("waiting for rollout to finish: {updated} out of {desired} new pods have been updated")
    } else if available < minimum {
        format!(
            "waiting for rollout to finish: {available} of {minimum} (readyThreshold {threshold}%) updated pods are available"
        )
    } else {
        return Readiness::Ready;
    };
    let since = canary.status.as_ref().and_then(|s| s.last_transition_time.as_ref());
    match since {
        Some(since) if since.0.saturating_add(deadline(canary)).is_ok_and(|end| end < now) => {
            let seconds = deadline(canary).as_secs();
            Readiness::Failed(format!("{prefix}exceeded its progressDeadlineSeconds: {seconds} ({waiting})"))
        }
        _ => Readiness::Waiting(format!("{prefix}{waiting}")),
    }
}
