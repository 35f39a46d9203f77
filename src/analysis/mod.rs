//! The canary state machine as a pure function.
//!
//! `decide(canary, observations, settings, now)` returns either the probes (webhooks, metric
//! queries) it needs before it can decide, or the [`Outcome`] of the tick: the new status, the
//! ordered effects to carry out, and when to run again. It never reads a clock, a cluster or the
//! network; the controller gathers observations, calls it (again, with each batch of probe
//! results) and applies the outcome. Every rule follows `flagger-behaviour.md` §2 unless
//! `docs/compatibility.md` says otherwise.
//!
//! Timing: the analysis `interval` is the minimum spacing between *steps* (`status.lastStepTime`);
//! reacting to a new revision, a readiness deadline or a changed spec is immediate.

mod machine;
mod params;
mod reason;
pub mod request;
mod verdict;
mod vocabulary;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, time::Duration};

pub use machine::{after, decide, intended_routes, invalid_spec_message, stalled, target_kind, target_lost};
pub use params::{HookType, Params, Settings, SpecError, Strategy, cross_namespace_ref};
pub use reason::Reason;
pub use verdict::{MetricResult, REQUEST_DURATION, REQUEST_SUCCESS_RATE, Verdict, bounds, is_builtin, judge};
pub use vocabulary::{GatewayApiVersion, MetricSource, Provider, SmiProvider, SmiVersion, TargetKind};

use crate::api::{CanaryStatus, PendingEffect, PendingEffectType, Phase};

/// What the controller saw for one Canary at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Observations {
    /// The target workload (the canary).
    pub target: Target,
    /// The primary workload; `None` while it does not exist yet.
    pub primary: Option<Primary>,
    /// Current weights read back from the router, or why they could not be read.
    pub routes: Result<Routes, String>,
    /// Results of the webhooks run this tick, by index in `analysis.webhooks`.
    pub hooks: BTreeMap<usize, HookResult>,
    /// Results of the metric queries run this tick, by index in `analysis.metrics`.
    pub metrics: BTreeMap<usize, MetricResult>,
    /// Whether the metrics providers answer, once checked this tick; `Err` says which does not.
    pub metrics_providers: Option<Result<(), String>>,
}

/// The target workload as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// Revision hash of the pod template (see `crate::revision`).
    pub revision: String,
    /// Checksums of the tracked ConfigMaps and Secrets (`configmap/<name>` → checksum).
    pub configs: BTreeMap<String, String>,
    /// Readiness of the canary pods.
    pub readiness: Readiness,
    /// Whether the target runs pods (replicas > 0; DaemonSet without the scale-to-zero selector).
    pub scaled_up: bool,
}

/// The primary workload as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct Primary {
    /// The revision hash of the target template the primary runs (the primary template with Veer's
    /// renames undone), so that it compares equal to `Target::revision` when they match.
    pub revision: String,
    /// Readiness of the primary pods.
    pub readiness: Readiness,
}

/// Readiness of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not ready yet; the message says why (Flagger's text).
    Waiting(String),
    /// Will not become ready: the progress deadline has passed.
    Failed(String),
}

/// Traffic weights (percent) of primary and canary, and whether traffic is mirrored to the canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Routes {
    pub primary: i32,
    pub canary: i32,
    pub mirrored: bool,
}

impl Routes {
    /// All traffic to the primary.
    pub const PRIMARY: Routes = Routes { primary: 100, canary: 0, mirrored: false };

    /// `canary` percent to the canary (clamped to 0–100: a status written by hand or by another
    /// version may hold anything), the rest to the primary.
    pub fn canary(canary: i32) -> Routes {
        let canary = canary.clamp(0, 100);
        Routes { primary: 100 - canary, canary, mirrored: false }
    }
}

/// The result of one webhook call: success is an HTTP status of 200–202.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookResult {
    Passed,
    Failed(String),
}

/// Something the decision needs observed before it can go on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// Call webhook `index` with this phase in the payload.
    Hook { index: usize, phase: Phase },
    /// Run metric query `index`.
    Metric { index: usize },
    /// Check that the metrics servers of the built-in checks and of the MetricTemplates answer
    /// (Flagger's check at initialization).
    MetricsProviders,
}

/// One call of [`decide`].
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// Run these probes (webhooks one after the other, in order), add their results to the
    /// observations and call `decide` again.
    Observe(Vec<Probe>),
    /// The decision of this tick.
    Done(Outcome),
}

/// The decision of one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The new status; write it (once) if it differs from the old one.
    pub status: CanaryStatus,
    /// What to do, in order, after the status is written.
    pub effects: Vec<Effect>,
    /// When to run again even if nothing changes; `None` waits for a change.
    pub requeue: Option<Duration>,
}

/// A side effect of a decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Set the router's weights.
    SetRoutes(Routes),
    /// Scale the target (canary) up from zero, or down to zero.
    ScaleCanary { up: bool },
    /// Copy the target's pod template (and tracked configs, autoscaler) to the primary.
    Promote,
    /// Call the post-rollout webhooks with this phase; failures only produce Events.
    PostRolloutHooks { phase: Phase },
    /// Record a Kubernetes Event on the Canary (reason `Synced`, like Flagger). `phase` is the
    /// Canary's phase when it happened (before a transition the same tick decides), which event
    /// webhooks receive, as in Flagger.
    Event { warning: bool, message: String, phase: Phase },
    /// Send an alert to the Canary's alert providers.
    Alert { severity: Severity, message: String, details: bool },
    /// A run ended: count it (`flagger_canary_successes_total` / `_failures_total`).
    RunFinished { strategy: Strategy, result: RunResult },
    /// The request in `veer.dev/request` was handled (acted on or refused): remove the annotation,
    /// unless it no longer holds this value (a newer request).
    ClearRequest { value: String },
}

/// Alert severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warn,
    Error,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunResult {
    Completed,
    Skipped,
    Failed,
}

impl Severity {
    /// The name used in AlertProviders and `status.pendingEffects`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }

    /// The severity named by [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warn, Severity::Error].into_iter().find(|v| v.as_str() == s)
    }
}

impl RunResult {
    fn as_str(self) -> &'static str {
        match self {
            RunResult::Completed => "Completed",
            RunResult::Skipped => "Skipped",
            RunResult::Failed => "Failed",
        }
    }

    fn parse(s: &str) -> Option<RunResult> {
        [RunResult::Completed, RunResult::Skipped, RunResult::Failed].into_iter().find(|v| v.as_str() == s)
    }
}

impl Effect {
    /// The effect as kept in `status.pendingEffects`, for the effects that nothing else would redo
    /// after a crash: routes, scaling and promotion converge from the status by themselves.
    pub fn to_pending(&self) -> Option<PendingEffect> {
        let blank = |type_| PendingEffect {
            type_,
            phase: None,
            message: None,
            warning: None,
            severity: None,
            details: None,
            strategy: None,
            result: None,
        };
        Some(match self {
            Effect::PostRolloutHooks { phase } => {
                PendingEffect { phase: Some(*phase), ..blank(PendingEffectType::PostRolloutHooks) }
            }
            Effect::RunFinished { strategy, result } => PendingEffect {
                strategy: Some(strategy.as_str().into()),
                result: Some(result.as_str().into()),
                ..blank(PendingEffectType::RunFinished)
            },
            Effect::Event { warning, message, phase } => PendingEffect {
                warning: Some(*warning),
                message: Some(message.clone()),
                phase: Some(*phase),
                ..blank(PendingEffectType::Event)
            },
            Effect::Alert { severity, message, details } => PendingEffect {
                severity: Some(severity.as_str().into()),
                message: Some(message.clone()),
                details: Some(*details),
                ..blank(PendingEffectType::Alert)
            },
            Effect::SetRoutes(_)
            | Effect::ScaleCanary { .. }
            | Effect::Promote
            | Effect::ClearRequest { .. } => {
                return None;
            }
        })
    }

    /// The effect a pending entry stands for; `None` for an entry that does not parse (written by
    /// another version), which is dropped. An Event kept without its phase (by an earlier version)
    /// gets `phase`, the phase its run ended in.
    pub fn from_pending(p: &PendingEffect, phase: Phase) -> Option<Effect> {
        Some(match p.type_ {
            PendingEffectType::PostRolloutHooks => Effect::PostRolloutHooks { phase: p.phase? },
            PendingEffectType::RunFinished => Effect::RunFinished {
                strategy: Strategy::parse(p.strategy.as_deref()?)?,
                result: RunResult::parse(p.result.as_deref()?)?,
            },
            PendingEffectType::Event => Effect::Event {
                warning: p.warning.unwrap_or(false),
                message: p.message.clone()?,
                phase: p.phase.unwrap_or(phase),
            },
            PendingEffectType::Alert => Effect::Alert {
                severity: Severity::parse(p.severity.as_deref()?)?,
                message: p.message.clone()?,
                details: p.details.unwrap_or(false),
            },
        })
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    #[test]
    fn end_of_run_effects_round_trip_through_the_status() {
        let effects = [
            Effect::PostRolloutHooks { phase: Phase::Succeeded },
            Effect::RunFinished { strategy: Strategy::BlueGreen, result: RunResult::Skipped },
            Effect::Event {
                warning: true,
                message: "Canary failed! Scaling down podinfo.test".into(),
                phase: Phase::Progressing,
            },
            Effect::Alert { severity: Severity::Warn, message: "m".into(), details: true },
        ];
        for e in effects {
            let p = e.to_pending().expect("an end-of-run effect is kept");
            let json = serde_json::to_value(&p).unwrap();
            let back: PendingEffect = serde_json::from_value(json).unwrap();
            assert_eq!(Effect::from_pending(&back, Phase::Failed), Some(e));
        }
        for converging in
            [Effect::Promote, Effect::ScaleCanary { up: false }, Effect::SetRoutes(Routes::PRIMARY)]
        {
            assert_eq!(converging.to_pending(), None);
        }
        let mut unknown = Effect::Alert { severity: Severity::Info, message: "m".into(), details: false }
            .to_pending()
            .unwrap();
        unknown.severity = Some("critical".into());
        assert_eq!(
            Effect::from_pending(&unknown, Phase::Failed),
            None,
            "an entry of another version is dropped"
        );
    }
}
