//! The Canary status. Flagger's fields keep their names and meaning; Veer's additions
//! (`lastStepTime`, `decision`, `checks`) are additive, so tools written for Flagger keep working.

use std::collections::BTreeMap;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The phase of a canary run (Flagger's strings).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
pub enum Phase {
    /// Never reconciled.
    #[default]
    #[serde(rename = "")]
    Empty,
    /// Creating the primary, Services and routing.
    Initializing,
    /// Ready; waiting for a new revision.
    Initialized,
    /// A confirm-rollout gate refused the new revision.
    Waiting,
    /// Analysis running.
    Progressing,
    /// A confirm-promotion gate refused the promotion.
    WaitingPromotion,
    /// The canary spec was copied to the primary; traffic is moving back to it.
    Promoting,
    /// The primary has all traffic; the canary is scaled down next.
    Finalising,
    /// Promotion finished.
    Succeeded,
    /// Rolled back.
    Failed,
    /// Being deleted with `revertOnDeletion`.
    Terminating,
    /// Declared by Flagger, never set.
    Terminated,
}

impl Phase {
    /// The phase string as Flagger writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Empty => "",
            Phase::Initializing => "Initializing",
            Phase::Initialized => "Initialized",
            Phase::Waiting => "Waiting",
            Phase::Progressing => "Progressing",
            Phase::WaitingPromotion => "WaitingPromotion",
            Phase::Promoting => "Promoting",
            Phase::Finalising => "Finalising",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Terminating => "Terminating",
            Phase::Terminated => "Terminated",
        }
    }

    /// Phases between runs: the Canary waits for a new revision.
    pub fn is_idle(self) -> bool {
        matches!(self, Phase::Initialized | Phase::Succeeded | Phase::Failed)
    }

    /// Phases in which a canary run is under way.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Phase::Progressing
                | Phase::Waiting
                | Phase::WaitingPromotion
                | Phase::Promoting
                | Phase::Finalising
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// CanaryStatus defines the observed state of a canary.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// Analysis phase of this canary.
    #[serde(default)]
    pub phase: Phase,
    /// Failed checks of the current run.
    #[serde(default)]
    pub failed_checks: i32,
    /// Traffic weight routed to the canary.
    #[serde(default)]
    pub canary_weight: i32,
    /// Iterations of the current run (A/B testing, Blue/Green).
    #[serde(default)]
    pub iterations: i32,
    /// Checksums of the tracked ConfigMaps and Secrets (`configmap/<name>`, `secret/<name>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tracked_configs: BTreeMap<String, String>,
    /// Revision hash of the target pod template at the last sync.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_applied_spec: String,
    /// Revision hash last promoted to the primary.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_promoted_spec: String,
    /// Last time the status changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Session affinity cookie of the current run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_affinity_cookie: String,
    /// Primary session affinity cookie of the current run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub primary_session_affinity_cookie: String,
    /// Session affinity cookie of the previous run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_session_affinity_cookie: String,
    /// Conditions: `Promoted` (Flagger's) and `Stalled` (Veer: the canary cannot proceed until
    /// something is fixed; the message says what).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<CanaryCondition>,

    /// Veer: when the last analysis step ran. Steps are at least one `analysis.interval` apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_step_time: Option<Timestamp>,
    /// Veer: the last decision and why it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Veer: the latest result of each metric check and webhook of the current run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub checks: Vec<CheckRecord>,
    /// Veer: effects of the tick that ended the last run (post-rollout webhooks, the run counters,
    /// its Events and alert) that are not yet known to be carried out. A controller that stops
    /// after writing the status carries them out when it (or another replica) resumes, so they
    /// happen at least once; the list is emptied once they are done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub pending_effects: Vec<PendingEffect>,
}

/// Veer: an end-of-run effect waiting to be carried out (see `status.pendingEffects`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingEffect {
    /// What to do.
    #[serde(rename = "type")]
    pub type_: PendingEffectType,
    /// `PostRolloutHooks`: the phase sent to the webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Event`, `Alert`: the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Event`: a Warning Event rather than a Normal one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<bool>,
    /// `Alert`: the severity (`info`, `warn`, `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// `Alert`: with the Canary's details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<bool>,
    /// `RunFinished`: the strategy label (`canary`, `ab-testing`, `blue-green`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// `RunFinished`: `Completed`, `Skipped` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// The kinds of [`PendingEffect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum PendingEffectType {
    /// Call the post-rollout webhooks.
    PostRolloutHooks,
    /// Count the run (`flagger_canary_successes_total` / `_failures_total`).
    RunFinished,
    /// Record a Kubernetes Event.
    Event,
    /// Send an alert.
    Alert,
}

/// A status condition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryCondition {
    /// Type: `Promoted` or `Stalled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Last time the condition was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Last time the status changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Machine-readable reason (for `Promoted`, the phase).
    pub reason: String,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The status of a condition (`CanaryCondition.status`, and the conditions of Kubernetes objects).
/// The CRD keeps the field a string; this is the vocabulary code sets and compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    /// The value as written: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<ConditionStatus> for String {
    /// A status read back from an object against a value of the vocabulary.
    fn eq(&self, other: &ConditionStatus) -> bool {
        self == other.as_str()
    }
}

/// Veer: a decision of the controller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct Decision {
    /// When it was taken.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub time: Timestamp,
    /// Short machine-readable reason, e.g. `AdvanceWeight`, `WaitCanaryReady`, `RolledBack`.
    pub reason: String,
    /// What was decided and why, in words.
    pub message: String,
}

/// What a check record is about (`CheckRecord.kind`, a string in the CRD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// A metric query of `analysis.metrics`.
    Metric,
    /// A webhook of `analysis.webhooks`.
    Webhook,
}

impl CheckKind {
    /// The kind as written: `metric` or `webhook`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Metric => "metric",
            CheckKind::Webhook => "webhook",
        }
    }
}

impl PartialEq<CheckKind> for String {
    /// A kind read back from the status against a value of the vocabulary.
    fn eq(&self, other: &CheckKind) -> bool {
        self == other.as_str()
    }
}

/// Veer: the result of one metric check or webhook.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    /// `metric` or `webhook`.
    pub kind: String,
    /// Metric or webhook name.
    pub name: String,
    /// `Passed`, `Failed`, `NoData` or `Error`.
    pub result: String,
    /// Measured value (metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Lowest accepted value (metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest accepted value (metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Details: the failure, the response body, the query error.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When it was measured.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub time: Timestamp,
}
