//! The tick: one pass of the state machine over (spec, status, observations, now).

use std::time::Duration;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};
use sha2::{Digest, Sha256};

use super::{
    Effect, HookResult, HookType, Observations, Outcome, Params, Probe, Readiness, Reason, Routes, RunResult,
    Settings, Severity, Step, Strategy,
    request::{self, Action, REQUEST_ANNOTATION, Request},
    verdict,
};
use crate::{
    api::{Canary, CanaryCondition, CanaryStatus, CheckKind, CheckRecord, ConditionStatus, Decision, Phase},
    revision,
};

/// Condition type of Flagger's promotion condition.
pub const PROMOTED: &str = "Promoted";
/// Condition type Veer sets while a Canary cannot proceed until something is fixed.
pub const STALLED: &str = "Stalled";
/// Bound on `status.checks`.
const MAX_CHECKS: usize = 64;
/// Bound on `status.pendingEffects` (the oldest go first).
const MAX_PENDING: usize = 64;

/// Decides one tick. See the module docs of [`crate::analysis`].
pub fn decide(canary: &Canary, obs: &Observations, settings: &Settings, now: Timestamp) -> Step {
    let p = match Params::new(&canary.spec, settings) {
        Ok(p) => p,
        Err(e) => {
            return Step::Done(stalled(canary, Reason::InvalidSpec, &invalid_spec_message(canary, &e), now));
        }
    };
    let mut tick = Tick::new(canary, p, obs, now);
    match tick.run() {
        Err(Interrupt::Need(probes)) => Step::Observe(probes),
        Ok(()) | Err(Interrupt::Stop) => Step::Done(tick.finish()),
    }
}

/// The Stalled message for a spec value out of bounds: the Canary, the field, the fix.
pub fn invalid_spec_message(canary: &Canary, e: &super::SpecError) -> String {
    format!(
        "Canary {}.{}: {e}; fix the field (the CRD of this Veer version rejects such values)",
        canary.metadata.name.as_deref().unwrap_or_default(),
        canary.metadata.namespace.as_deref().unwrap_or_default()
    )
}

/// The outcome for a Canary that cannot be reconciled (missing target, invalid spec, unsupported
/// provider): a `Stalled` condition and a Warning Event when the problem is new.
pub fn stalled(canary: &Canary, reason: Reason, message: &str, now: Timestamp) -> Outcome {
    let old = canary.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut effects = Vec::new();
    let changed =
        set_condition(&mut status.conditions, STALLED, ConditionStatus::True, reason.as_str(), message, now);
    record_decision(&mut status, reason, message, now);
    if status.phase == Phase::Empty {
        status.phase = Phase::Initializing;
        set_promoted(&mut status, target_kind(canary), now);
    }
    if changed {
        effects.push(Effect::Event { warning: true, message: message.to_string(), phase: status.phase });
    }
    touch(&old, &mut status, now);
    Outcome { status, effects, requeue: None }
}

/// The outcome for a Canary whose target disappeared. During a run its traffic must not stay on a
/// canary Service without pods: all of it goes back to the primary, the run ends as failed (with
/// its Events, alert, counters and post-rollout hooks), and the Canary stalls until the target is
/// back. Between runs it only stalls.
pub fn target_lost(canary: &Canary, message: &str, settings: &Settings, now: Timestamp) -> Outcome {
    let old = canary.status.clone().unwrap_or_default();
    let p = match Params::new(&canary.spec, settings) {
        Ok(p) if old.phase.is_running() => p,
        _ => return stalled(canary, Reason::TargetNotFound, message, now),
    };
    let obs = Observations {
        target: super::Target {
            revision: old.last_applied_spec.clone(),
            configs: old.tracked_configs.clone(),
            readiness: Readiness::Failed(message.to_string()),
            scaled_up: false,
        },
        primary: None,
        routes: Ok(intended_routes(&old, &p)),
        hooks: Default::default(),
        metrics: Default::default(),
        metrics_providers: None,
    };
    let mut tick = Tick::new(canary, p, &obs, now);
    let _ = tick.lose_target(message);
    let mut out = tick.finish();
    set_condition(
        &mut out.status.conditions,
        STALLED,
        ConditionStatus::True,
        Reason::TargetNotFound.as_str(),
        message,
        now,
    );
    out
}

/// The routes a Veer-written status stands for. The router is brought back to them when they
/// differ (for example after a restart between writing the status and setting the routes).
pub fn intended_routes(status: &CanaryStatus, p: &Params) -> Routes {
    let n = p.iterations;
    match status.phase {
        Phase::Progressing | Phase::WaitingPromotion => match p.strategy {
            Strategy::Canary if status.canary_weight == 0 && status.iterations > 0 && p.mirror => {
                Routes { mirrored: true, ..Routes::PRIMARY }
            }
            Strategy::Canary => Routes::canary(status.canary_weight),
            Strategy::AbTesting if status.iterations > 0 => Routes::canary(100),
            Strategy::AbTesting => Routes::PRIMARY,
            Strategy::BlueGreen if status.iterations > n => Routes::canary(100),
            Strategy::BlueGreen if status.iterations > 0 && p.mirror => {
                Routes { mirrored: true, ..Routes::PRIMARY }
            }
            Strategy::BlueGreen => Routes::PRIMARY,
        },
        Phase::Promoting | Phase::Failed => Routes::canary(status.canary_weight),
        _ => Routes::PRIMARY,
    }
}

enum Interrupt {
    /// Observations are missing.
    Need(Vec<Probe>),
    /// The tick is decided.
    Stop,
}

type Flow = Result<(), Interrupt>;

/// Why a run is rolled back.
enum Rollback {
    Threshold,
    Deadline(String),
    Manual,
    /// `veer abort`.
    Requested,
}

struct Tick<'a> {
    canary: &'a Canary,
    name: String,
    namespace: String,
    p: Params,
    obs: &'a Observations,
    now: Timestamp,
    /// The status as stored.
    stored: CanaryStatus,
    /// The status the rules read: the stored one, after adopting a Flagger-written status.
    old: CanaryStatus,
    /// The status being decided.
    status: CanaryStatus,
    effects: Vec<Effect>,
    /// Where this tick's own effects start (before: the pending effects of an earlier run end).
    own_effects: usize,
    /// Whether this tick ended a run (or the initialization).
    ended_run: bool,
    requeue: Option<Duration>,
    /// Routes after this tick's route changes.
    routes: Routes,
    /// The operator's request in `veer.dev/request`, if any, as written.
    request: Option<&'a str>,
    /// Whether this tick handled the request (acted on it or refused it): it is removed then.
    request_handled: bool,
    /// A `promote` request was admitted: the next step runs now and promotes if its checks pass.
    promote_requested: bool,
}

impl<'a> Tick<'a> {
    fn new(canary: &'a Canary, p: Params, obs: &'a Observations, now: Timestamp) -> Self {
        let old = canary.status.clone().unwrap_or_default();
        Tick {
            canary,
            name: canary.metadata.name.clone().unwrap_or_default(),
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
            p,
            obs,
            now,
            status: old.clone(),
            stored: old.clone(),
            old,
            effects: Vec::new(),
            own_effects: 0,
            ended_run: false,
            requeue: None,
            routes: Routes::PRIMARY,
            request: Request::raw(canary),
            request_handled: false,
            promote_requested: false,
        }
    }

    fn finish(mut self) -> Outcome {
        // A reconcile that proceeds means nothing is stalled any more.
        self.status.conditions.retain(|c| c.type_ != STALLED);
        // A tick that ends a run keeps its end-of-run effects in the status until the controller
        // has carried them out (it empties the list then), so that a crash cannot lose them.
        if self.ended_run {
            let pending = self.effects[self.own_effects..].iter().filter_map(Effect::to_pending);
            self.status.pending_effects.extend(pending);
            let excess = self.status.pending_effects.len().saturating_sub(MAX_PENDING);
            self.status.pending_effects.drain(..excess);
        }
        if self.status.phase != self.old.phase || !self.status.conditions.iter().any(|c| c.type_ == PROMOTED)
        {
            set_promoted(&mut self.status, target_kind(self.canary), self.now);
        }
        if self.request_handled
            && let Some(value) = self.request
        {
            self.effects.push(Effect::ClearRequest { value: value.to_string() });
        }
        touch(&self.stored, &mut self.status, self.now);
        Outcome { status: self.status, effects: self.effects, requeue: self.requeue }
    }

    fn run(&mut self) -> Flow {
        if self.old.phase == Phase::Terminating {
            return Ok(()); // the finalizer owns a Canary being deleted
        }
        // End-of-run effects an earlier controller decided but may not have carried out: again,
        // first (at least once). They stay pending until the controller reports them done.
        let ended = self.old.phase;
        self.effects.extend(self.old.pending_effects.iter().filter_map(|p| Effect::from_pending(p, ended)));
        self.own_effects = self.effects.len();
        if self.canary.spec.suspend.unwrap_or(false) {
            let msg = "skipping canary run as object is suspended";
            if self.decision_is_new(Reason::Suspended, msg) {
                self.event(false, msg.to_string());
            }
            self.record(Reason::Suspended, msg.to_string());
            return Ok(());
        }
        match self.old.phase {
            Phase::Empty | Phase::Initializing => {
                let _ = self.admitted_request(); // refused: nothing to act on yet
                return self.initialize();
            }
            Phase::Terminating | Phase::Terminated => return Ok(()),
            _ => {}
        }
        if !self.old.last_applied_spec.is_empty() && !revision::is_current(&self.old.last_applied_spec) {
            self.adopt_flagger_status();
        }
        self.converge_routes()?;
        match self.admitted_request() {
            Some(Action::Abort) => return self.abort(),
            Some(Action::PromoteFull) => return self.promote_now(),
            Some(Action::Retry) => return self.retry(),
            Some(Action::Promote) => self.promote_requested = true,
            None => self.hold_while_paused()?,
        }
        match self.old.phase {
            Phase::Initialized | Phase::Succeeded | Phase::Failed => self.idle(),
            Phase::Waiting => self.waiting(),
            _ => self.advance(),
        }
    }

    // ---------------------------------------------------------------- operators' requests

    /// The action of the request in `veer.dev/request` when this Canary takes it now; a request
    /// it does not take is refused (a Warning Event says why and what to do) and removed.
    fn admitted_request(&mut self) -> Option<Action> {
        let value = self.request?;
        let refusal = match Request::parse(value) {
            Ok(r) => match request::admit(&r, &self.old, &self.obs.target.revision) {
                Ok(()) => return Some(r.action),
                Err(refusal) => refusal,
            },
            Err(refusal) => refusal,
        };
        self.request_handled = true;
        self.event(
            true,
            format!(
                "Canary {}.{}: request {REQUEST_ANNOTATION} refused: {refusal}",
                self.name, self.namespace
            ),
        );
        None
    }

    /// `veer.dev/paused` holds the Canary where it is: no step, no new run, until it is removed.
    fn hold_while_paused(&mut self) -> Flow {
        let was_paused = self.old.decision.as_ref().is_some_and(|d| d.reason == Reason::Paused);
        if !request::paused(self.canary) {
            if was_paused {
                let msg = format!("Canary {}.{} resumed", self.name, self.namespace);
                self.event(false, msg.clone());
                self.record(Reason::Resumed, msg); // a later decision of this tick replaces it
            }
            return Ok(());
        }
        let msg = if self.old.phase.is_running() {
            format!(
                "paused ({}) at canary weight {}: remove the annotation (veer resume) to go on",
                request::PAUSED_ANNOTATION,
                self.routes.canary
            )
        } else {
            format!(
                "paused ({}): a new revision waits until the annotation is removed (veer resume)",
                request::PAUSED_ANNOTATION
            )
        };
        if self.decision_is_new(Reason::Paused, &msg) {
            self.event(false, format!("Canary {}.{} {msg}", self.name, self.namespace));
        }
        self.requeue = None; // removing the annotation wakes the Canary
        self.conclude(Reason::Paused, msg)
    }

    /// `veer abort`: roll back now.
    fn abort(&mut self) -> Flow {
        self.request_handled = true;
        let waiting = self.old.phase == Phase::Waiting;
        let flow = self.rollback(Rollback::Requested);
        if waiting {
            // The refused revision never started a run: record it as the failed one, so that it
            // does not start again by itself.
            self.status.last_applied_spec = self.obs.target.revision.clone();
            self.status.tracked_configs = self.obs.target.configs.clone();
        }
        flow
    }

    /// `veer promote --full`: copy the target to the primary now, without the checks (also a
    /// failed revision the target still holds).
    fn promote_now(&mut self) -> Flow {
        self.request_handled = true;
        if matches!(self.old.phase, Phase::Waiting | Phase::Failed) {
            // A run for the target's revision, which the promotion ends.
            self.reset_run(Phase::Progressing);
        }
        self.event(
            false,
            format!(
                "Promotion of {} requested ({REQUEST_ANNOTATION}=promote-full): skipping the remaining steps and checks",
                self.target()
            ),
        );
        self.alert(Severity::Info, "Canary promotion requested, skipping the analysis.".into(), false);
        let msg = self.promote_effects();
        self.status.last_step_time = Some(self.now);
        self.requeue = Some(self.p.interval);
        self.conclude(Reason::PromoteRequested, format!("{msg} (promotion requested, without checks)"))
    }

    /// `veer retry`: the failed revision, still deployed, is analysed again.
    fn retry(&mut self) -> Flow {
        self.require_primary_ready()?;
        self.request_handled = true;
        self.event(false, format!("Retrying the analysis of {} on request", self.target()));
        self.start_run()?;
        self.record(
            Reason::Retried,
            format!("{} is analysed again on request: analysis starts", self.target()),
        );
        Ok(())
    }

    // ---------------------------------------------------------------- initialization

    fn initialize(&mut self) -> Flow {
        self.status.phase = Phase::Initializing;
        if self.obs.primary.is_none() && !self.p.skip_analysis {
            // As Flagger, before the primary is created: whether the metrics servers answer, so
            // that a wrong address shows now rather than at the first analysis step.
            match &self.obs.metrics_providers {
                None => return Err(Interrupt::Need(vec![Probe::MetricsProviders])),
                Some(Ok(())) => self.event(false, "all the metrics providers are available!".into()),
                Some(Err(e)) => self.event(true, format!("Error checking metric providers: {e}")),
            }
        }
        let Some(primary) = &self.obs.primary else {
            return self.wait(Reason::WaitPrimaryCreated, format!("creating {}-primary", self.target()));
        };
        if !self.p.skip_analysis {
            match &primary.readiness {
                Readiness::Ready => {}
                Readiness::Waiting(msg) => return self.wait(Reason::WaitPrimaryReady, msg.clone()),
                Readiness::Failed(msg) => {
                    let msg = msg.clone();
                    return self.rollback(Rollback::Deadline(msg));
                }
            }
        }
        if self.obs.target.scaled_up {
            self.effects.push(Effect::ScaleCanary { up: false });
        }
        self.reset_run(Phase::Initialized);
        self.ended_run = true;
        // The primary was copied from the target as it was then: a change since is a new revision,
        // which the next tick starts a run for (recording the target's would lose it).
        if !primary.revision.is_empty() {
            self.status.last_applied_spec = primary.revision.clone();
        }
        self.status.last_promoted_spec = self.status.last_applied_spec.clone();
        let kind = target_kind(self.canary).to_string();
        self.event(false, format!("Initialization done! {}.{}", self.name, self.namespace));
        self.alert(Severity::Info, format!("New {kind} detected, initialization completed."), true);
        self.record(
            Reason::Initialized,
            format!("{kind} {} initialized; waiting for a new revision", self.target()),
        );
        Ok(())
    }

    /// Takes over a status written by Flagger, whose revision hashes cannot be reproduced: when
    /// the primary already runs the target's template, record Veer's hashes without a new run.
    fn adopt_flagger_status(&mut self) {
        let target = &self.obs.target;
        let primary_matches = self.obs.primary.as_ref().is_some_and(|p| p.revision == target.revision);
        let message = match self.old.phase {
            Phase::Initialized | Phase::Succeeded if primary_matches => {
                self.status.last_promoted_spec = target.revision.clone();
                "adopted: the primary already runs the target's template, no analysis needed"
            }
            // A run in progress or a failed one: the target is the revision under analysis.
            Phase::Initialized | Phase::Succeeded => return,
            _ => {
                if let Some(p) = &self.obs.primary {
                    self.status.last_promoted_spec = p.revision.clone();
                }
                "adopted: continuing with the target's current template"
            }
        };
        self.status.last_applied_spec = target.revision.clone();
        self.status.tracked_configs = target.configs.clone();
        if let Ok(r) = &self.obs.routes {
            // Flagger's canaryWeight is not always the routed weight; the router is.
            if matches!(self.old.phase, Phase::Progressing | Phase::WaitingPromotion | Phase::Promoting) {
                self.status.canary_weight = r.canary;
            }
        }
        self.old.last_applied_spec = self.status.last_applied_spec.clone();
        self.old.last_promoted_spec = self.status.last_promoted_spec.clone();
        self.old.canary_weight = self.status.canary_weight;
        self.old.tracked_configs = self.status.tracked_configs.clone();
        self.record(Reason::Adopted, message.to_string());
    }

    /// Brings the router back to the routes the status stands for.
    fn converge_routes(&mut self) -> Flow {
        let current = match &self.obs.routes {
            Ok(r) => *r,
            Err(e) => {
                let msg = e.clone();
                return self.wait(Reason::RoutesUnavailable, msg);
            }
        };
        let intended = intended_routes(&self.old, &self.p);
        let differs = if self.p.provider.mirrors() {
            current != intended
        } else {
            (current.primary, current.canary) != (intended.primary, intended.canary)
        };
        if differs {
            self.set_routes(intended);
            // The last step was decided (its status written) but its routes never reached the
            // router: a crash or a failed write in between. Its Event comes after the routes in the
            // effects, so it was not sent either; send it now, once, with the routes.
            if let Some(d) = self.old.decision.as_ref().filter(|d| d.reason == Reason::AdvanceWeight) {
                self.event(false, d.message.clone());
            }
        } else {
            self.routes = current;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- idle phases

    fn idle(&mut self) -> Flow {
        if self.revision_changed() {
            return self.start_run();
        }
        let target = &self.obs.target;
        if self.old.phase == Phase::Failed && target.revision != self.old.last_applied_spec {
            // The target is back at the promoted revision (any other would have started a run).
            // As in Flagger, the last applied revision follows it, so that applying the failed
            // revision again (a `git revert` of the revert) analyses it again.
            self.status.last_applied_spec = target.revision.clone();
            self.record(
                Reason::Reverted,
                format!(
                    "{} is back at the promoted revision: applying the failed one again starts a new analysis",
                    self.target()
                ),
            );
        }
        // Between runs, what the status says is made true again: a scale-down or a promotion that
        // was decided but never carried out (the controller stopped, or the API failed) is redone.
        let target = &self.obs.target;
        if target.scaled_up && intended_routes(&self.old, &self.p).canary == 0 {
            // (After a failed promotion the canary keeps all traffic, and keeps running.)
            self.effects.push(Effect::ScaleCanary { up: false });
        }
        if self.old.phase == Phase::Succeeded
            && target.revision == self.old.last_promoted_spec
            && self.obs.primary.as_ref().is_some_and(|p| p.revision != self.old.last_promoted_spec)
        {
            self.effects.push(Effect::Promote);
            return self.conclude(
                Reason::RepeatPromotion,
                format!("{} does not run the promoted template yet: copying it again", self.primary_name()),
            );
        }
        Ok(())
    }

    fn revision_changed(&self) -> bool {
        let t = &self.obs.target;
        let s = &self.old;
        s.last_applied_spec.is_empty()
            || (t.revision != s.last_applied_spec && t.revision != s.last_promoted_spec)
            || t.configs != s.tracked_configs
    }

    /// A new revision: confirm-rollout gates, then scale the canary up and start the analysis.
    fn start_run(&mut self) -> Flow {
        self.require_primary_ready()?;
        if !self.promote_requested {
            self.confirm_rollout()?;
        }
        self.status.phase = Phase::Progressing;
        self.event(false, format!("New revision detected! Scaling up {}", self.target()));
        self.alert(Severity::Info, "New revision detected, progressing canary analysis.".into(), true);
        if self.routes != Routes::PRIMARY {
            // After a failed promotion the canary kept all traffic; a new run starts from the primary.
            self.set_routes(Routes::PRIMARY);
        }
        self.effects.push(Effect::ScaleCanary { up: true });
        self.reset_run(Phase::Progressing);
        self.status.last_step_time = Some(self.now);
        self.requeue = Some(self.p.interval);
        self.record(Reason::Started, format!("new revision of {}: analysis starts", self.target()));
        Ok(())
    }

    fn waiting(&mut self) -> Flow {
        if !self.due() && !self.promote_requested {
            return self.not_due();
        }
        self.status.last_step_time = Some(self.now);
        self.start_run()
    }

    // ---------------------------------------------------------------- running phases

    fn advance(&mut self) -> Flow {
        let phase = self.old.phase;
        if matches!(phase, Phase::Progressing | Phase::WaitingPromotion | Phase::Promoting)
            && !self.obs.target.scaled_up
        {
            self.effects.push(Effect::ScaleCanary { up: true });
        }
        if phase == Phase::Promoting
            && self.obs.primary.as_ref().is_some_and(|p| p.revision != self.old.last_applied_spec)
        {
            if self.obs.target.revision != self.old.last_applied_spec {
                // The promotion was decided but never copied, and the target no longer holds the
                // analysed template: what it holds now is analysed from the start.
                return self.restart();
            }
            // The promotion was decided but the primary does not run the promoted template yet.
            self.effects.push(Effect::Promote);
            return self.wait(
                Reason::WaitPrimaryPromoted,
                format!("copying {} template spec to the primary", self.target()),
            );
        }
        if !self.p.skip_analysis
            && let Some(Readiness::Failed(msg)) = self.obs.primary.as_ref().map(|p| &p.readiness)
        {
            let msg = msg.clone();
            return if matches!(phase, Phase::Promoting | Phase::Finalising) {
                self.failed_promotion(msg)
            } else {
                self.rollback(Rollback::Deadline(msg))
            };
        }
        if matches!(phase, Phase::Progressing | Phase::WaitingPromotion)
            && self.revision_changed_since_start()
        {
            return self.restart();
        }
        // A revision deployed while the analysed one is being promoted must not receive the
        // canary's traffic: the promotion finishes at once (the primary runs the analysed
        // template), and the new revision gets a run of its own afterwards.
        let superseded =
            matches!(phase, Phase::Promoting | Phase::Finalising) && self.revision_changed_since_start();
        if let Readiness::Failed(msg) = &self.obs.target.readiness
            && !superseded
        {
            let msg = msg.clone();
            return self.rollback(Rollback::Deadline(msg));
        }
        if !superseded && !self.due() && !self.promote_requested {
            return self.not_due();
        }
        if !self.p.skip_analysis {
            self.require_primary_ready()?;
        }
        if let Readiness::Waiting(msg) = &self.obs.target.readiness
            && !superseded
        {
            let msg = msg.clone();
            return self.wait(Reason::WaitCanaryReady, msg);
        }
        self.status.last_step_time = Some(self.now);
        self.requeue = Some(self.p.interval);
        // A promote request ends with this step: promoted if its checks pass, not otherwise.
        self.request_handled |= self.promote_requested;

        if self.p.skip_analysis {
            return self.promote_skipping_analysis();
        }
        match phase {
            Phase::Promoting => return self.promotion_step(superseded),
            Phase::Finalising => return self.finalise(),
            _ => {}
        }
        self.rollback_hooks()?;
        if self.old.failed_checks >= self.p.threshold {
            return self.rollback(Rollback::Threshold);
        }
        self.checks()?;
        if self.promote_requested {
            let msg = format!(
                "Promotion of {} requested ({REQUEST_ANNOTATION}=promote): checks passed, skipping the remaining steps and gates",
                self.target()
            );
            self.event(false, msg);
            return self.promote();
        }
        match self.p.strategy {
            Strategy::Canary => self.canary_step(),
            Strategy::AbTesting => self.ab_step(),
            Strategy::BlueGreen => self.blue_green_step(),
        }
    }

    fn revision_changed_since_start(&self) -> bool {
        let t = &self.obs.target;
        t.revision != self.old.last_applied_spec || t.configs != self.old.tracked_configs
    }

    /// A new revision during the analysis: back to the primary, and the analysis starts over.
    fn restart(&mut self) -> Flow {
        self.event(false, format!("New revision detected! Restarting analysis for {}", self.target()));
        self.set_routes(Routes::PRIMARY);
        self.reset_run(Phase::Progressing);
        self.status.last_step_time = Some(self.now);
        self.requeue = Some(self.p.interval);
        self.record(
            Reason::Restarted,
            format!("new revision of {} during the analysis: it starts over", self.target()),
        );
        Ok(())
    }

    fn rollback_hooks(&mut self) -> Flow {
        for (index, hook) in self.hooks(HookType::Rollback) {
            match self.hook(index, self.old.phase)? {
                HookResult::Passed => {
                    self.event(false, format!("Rollback check {hook} passed"));
                    self.event(
                        true,
                        format!("Rolling back {}.{} manual webhook invoked", self.name, self.namespace),
                    );
                    self.alert(Severity::Warn, "Rolling back manual webhook invoked".into(), false);
                    return self.rollback(Rollback::Manual);
                }
                HookResult::Failed(_) => {
                    self.event(false, format!("Rollback hook {hook} not signaling a rollback"))
                }
            }
        }
        Ok(())
    }

    /// Pre-rollout hooks on the first step, rollout hooks and metrics on the others. The first
    /// failure counts one failed check.
    fn checks(&mut self) -> Flow {
        let first_step =
            self.routes.canary == 0 && self.old.iterations == 0 && !(self.p.mirror && self.routes.mirrored);
        if first_step {
            self.event(false, format!("Starting canary analysis for {}", self.target()));
            for (index, hook) in self.hooks(HookType::PreRollout) {
                match self.hook(index, Phase::Progressing)? {
                    HookResult::Passed => self.event(false, format!("Pre-rollout check {hook} passed")),
                    HookResult::Failed(e) => {
                        let msg = format!(
                            "Halt {}.{} advancement pre-rollout check {hook} failed {e}",
                            self.name, self.namespace
                        );
                        return self.failed_check(Reason::PreRolloutFailed, msg);
                    }
                }
            }
            return Ok(());
        }
        for (index, hook) in self.hooks(HookType::Rollout) {
            if let HookResult::Failed(e) = self.hook(index, Phase::Progressing)? {
                let msg = format!(
                    "Halt {}.{} advancement external check {hook} failed {e}",
                    self.name, self.namespace
                );
                return self.failed_check(Reason::WebhookFailed, msg);
            }
        }
        let metrics = self.canary.spec.analysis.as_ref().and_then(|a| a.metrics.clone()).unwrap_or_default();
        let missing: Vec<Probe> = (0..metrics.len())
            .filter(|i| !self.obs.metrics.contains_key(i))
            .map(|index| Probe::Metric { index })
            .collect();
        if !missing.is_empty() {
            return Err(Interrupt::Need(missing));
        }
        let (canary, target) = (format!("{}.{}", self.name, self.namespace), self.target());
        let subject = verdict::Subject { canary: &canary, target: &target };
        let mut first_failure = None;
        for (index, metric) in metrics.iter().enumerate() {
            let result = &self.obs.metrics[&index];
            let v = verdict::judge(metric, result, subject, self.p.provider.as_str());
            let (min, max) = verdict::bounds(metric);
            let message = match &v {
                verdict::Verdict::Pass => String::new(),
                verdict::Verdict::Fail(m) | verdict::Verdict::NoData(m) | verdict::Verdict::Error(m) => {
                    m.clone()
                }
            };
            let value = match result {
                verdict::MetricResult::Value(x) if x.is_finite() => Some(*x),
                _ => None,
            };
            self.record_check(CheckRecord {
                kind: CheckKind::Metric.as_str().into(),
                name: metric.name.clone(),
                result: v.word().into(),
                value,
                min,
                max,
                message: message.clone(),
                time: self.now,
            });
            if let Some(reason) = v.failure_reason()
                && first_failure.is_none()
            {
                first_failure = Some((reason, message));
            }
        }
        match first_failure {
            Some((reason, message)) => self.failed_check(reason, message),
            None => Ok(()),
        }
    }

    fn canary_step(&mut self) -> Flow {
        let weight = self.routes.canary;
        if weight >= self.p.max_weight {
            self.confirm_promotion()?;
            return self.promote();
        }
        if self.p.mirror && self.p.provider.mirrors() && weight == 0 && !self.routes.mirrored {
            // One step of mirrored (shadow) traffic before the canary receives real traffic.
            self.set_routes(Routes { mirrored: true, ..Routes::PRIMARY });
            self.status.iterations = 1;
            return self.conclude(
                Reason::MirrorTraffic,
                "mirroring traffic to the canary before shifting weight".into(),
            );
        }
        if !self.routes.mirrored {
            self.confirm_traffic_increase()?;
        }
        let next = self.p.next_weight(weight);
        self.set_routes(Routes::canary(next));
        self.status.canary_weight = next;
        self.ensure_session_cookies();
        let msg = format!("Advance {}.{} canary weight {next}", self.name, self.namespace);
        self.event(false, msg.clone());
        self.conclude(Reason::AdvanceWeight, msg)
    }

    fn ab_step(&mut self) -> Flow {
        if self.old.iterations < self.p.iterations {
            self.set_routes(Routes::canary(100));
            self.advance_iteration()
        } else {
            self.confirm_promotion()?;
            self.promote()
        }
    }

    fn blue_green_step(&mut self) -> Flow {
        let n = self.p.iterations;
        if self.old.iterations < n {
            if self.p.mirror && self.p.provider.mirrors() && !self.routes.mirrored {
                self.set_routes(Routes { mirrored: true, ..Routes::PRIMARY });
            }
            return self.advance_iteration();
        }
        // The gate is asked before switching traffic and again before promoting.
        self.confirm_promotion()?;
        if self.old.iterations == n && self.p.provider.routes_traffic() {
            let msg = if self.routes.mirrored {
                "Stop traffic mirroring and route all traffic to canary"
            } else {
                "Routing all traffic to canary"
            };
            self.event(false, msg.into());
            self.set_routes(Routes::canary(100));
            self.status.iterations = n + 1;
            return self.conclude(Reason::RouteToCanary, msg.into());
        }
        self.promote()
    }

    fn advance_iteration(&mut self) -> Flow {
        let i = self.old.iterations + 1;
        self.status.iterations = i;
        let msg =
            format!("Advance {}.{} canary iteration {i}/{}", self.name, self.namespace, self.p.iterations);
        self.event(false, msg.clone());
        self.conclude(Reason::AdvanceIteration, msg)
    }

    /// The webhooks of a confirm gate, in spec order, called with `phase`: an Event for each one
    /// that approves; the first one that does not is returned (index and name), and the ones after
    /// it are not called.
    fn unapproved(
        &mut self,
        gate: HookType,
        phase: Phase,
        what: &str,
    ) -> Result<Option<(usize, String)>, Interrupt> {
        for (index, hook) in self.hooks(gate) {
            match self.hook(index, phase)? {
                HookResult::Passed => self.event(false, format!("{what} check {hook} passed")),
                HookResult::Failed(_) => return Ok(Some((index, hook))),
            }
        }
        Ok(None)
    }

    /// A new revision waits (phase `Waiting`) until every confirm-rollout webhook approves it.
    fn confirm_rollout(&mut self) -> Flow {
        let Some((index, hook)) =
            self.unapproved(HookType::ConfirmRollout, self.old.phase, "Confirm-rollout")?
        else {
            return Ok(());
        };
        if self.old.phase != Phase::Waiting {
            self.status.phase = Phase::Waiting;
            self.status.last_step_time = Some(self.now);
            self.event(
                true,
                format!("Halt {}.{} advancement waiting for approval {hook}", self.name, self.namespace),
            );
            if !self.muted(index) {
                self.alert(Severity::Warn, "Canary is waiting for approval.".into(), false);
            }
        }
        self.requeue = Some(self.p.interval);
        self.conclude(
            Reason::WaitConfirmRollout,
            format!("confirm-rollout webhook {hook} has not approved the new revision"),
        )
    }

    /// The canary weight advances only when every confirm-traffic-increase webhook approves.
    fn confirm_traffic_increase(&mut self) -> Flow {
        let Some((index, hook)) = self.unapproved(
            HookType::ConfirmTrafficIncrease,
            Phase::Progressing,
            "Confirm-traffic-increase",
        )?
        else {
            return Ok(());
        };
        let msg = format!(
            "Halt {}.{} advancement waiting for traffic increase approval {hook}",
            self.name, self.namespace
        );
        if self.decision_is_new(Reason::WaitConfirmTrafficIncrease, &msg) {
            self.event(true, msg.clone());
            if !self.muted(index) {
                self.alert(Severity::Warn, "Canary traffic increase is waiting for approval.".into(), false);
            }
        }
        self.conclude(Reason::WaitConfirmTrafficIncrease, msg)
    }

    /// The promotion waits (phase `WaitingPromotion`) until every confirm-promotion webhook
    /// approves it.
    fn confirm_promotion(&mut self) -> Flow {
        let Some((index, hook)) =
            self.unapproved(HookType::ConfirmPromotion, Phase::Progressing, "Confirm-promotion")?
        else {
            return Ok(());
        };
        let msg = format!(
            "Halt {}.{} advancement waiting for promotion approval {hook}",
            self.name, self.namespace
        );
        if self.old.phase != Phase::WaitingPromotion {
            self.event(true, msg.clone());
            self.status.phase = Phase::WaitingPromotion;
            if !self.muted(index) {
                self.alert(Severity::Warn, "Canary promotion is waiting for approval.".into(), false);
            }
        }
        self.conclude(Reason::WaitConfirmPromotion, msg)
    }

    /// The analysis passed: copy the canary to the primary.
    fn promote(&mut self) -> Flow {
        let msg = self.promote_effects();
        self.conclude(Reason::Promote, msg)
    }

    /// The promotion's Event, copy and phase; returns the Event's message.
    fn promote_effects(&mut self) -> String {
        let t = self.target_name();
        let ns = &self.namespace;
        let msg = format!("Copying {t}.{ns} template spec to {t}-primary.{ns}");
        self.event(false, msg.clone());
        self.effects.push(Effect::Promote);
        self.status.phase = Phase::Promoting;
        // From here the status' weight is the routed one, whatever the strategy.
        self.status.canary_weight = self.routes.canary;
        msg
    }

    /// Promoting: the primary runs the new template; move traffic back to it (all at once when a
    /// newer revision `superseded` the promoted one and is reaching the canary's pods).
    fn promotion_step(&mut self, superseded: bool) -> Flow {
        if !self.p.provider.routes_traffic() {
            self.status.phase = Phase::Finalising;
            self.status.canary_weight = 0;
            return self.conclude(Reason::Finalise, "primary promoted".into());
        }
        let primary = if superseded { 100 } else { self.p.next_primary_weight(self.routes.primary) };
        self.set_routes(Routes::canary(100 - primary));
        if superseded {
            self.event(
                false,
                format!(
                    "New revision detected! Routing all traffic to primary before analysing it for {}",
                    self.target()
                ),
            );
        } else if self.p.step_weight_promotion == 0 {
            self.event(false, "Routing all traffic to primary".into());
        } else {
            self.event(false, format!("Advance {}.{} primary weight {primary}", self.name, self.namespace));
        }
        if primary >= 100 {
            self.status.phase = Phase::Finalising;
            self.status.canary_weight = 0;
            self.conclude(Reason::RouteToPrimary, "all traffic routed to the primary".into())
        } else {
            self.status.canary_weight = 100 - primary;
            self.conclude(Reason::AdvancePrimaryWeight, format!("primary weight {primary}"))
        }
    }

    /// Finalising: the primary has all traffic; scale the canary down.
    fn finalise(&mut self) -> Flow {
        self.effects.push(Effect::ScaleCanary { up: false });
        self.finish_run(Phase::Succeeded, RunResult::Completed);
        self.event(false, format!("Promotion completed! Scaling down {}", self.target()));
        self.alert(
            Severity::Info,
            "Canary analysis completed successfully, promotion finished.".into(),
            false,
        );
        self.requeue = None;
        self.conclude(Reason::Succeeded, format!("promotion of {} finished", self.target()))
    }

    fn promote_skipping_analysis(&mut self) -> Flow {
        self.set_routes(Routes::PRIMARY);
        self.effects.push(Effect::Promote);
        self.effects.push(Effect::ScaleCanary { up: false });
        self.finish_run(Phase::Succeeded, RunResult::Skipped);
        self.event(false, format!("Promotion completed! Canary analysis was skipped for {}", self.target()));
        self.alert(Severity::Info, "Canary analysis was skipped, promotion finished.".into(), false);
        self.requeue = None;
        self.conclude(
            Reason::Succeeded,
            format!("promotion of {} finished without analysis (skipAnalysis)", self.target()),
        )
    }

    fn failed_check(&mut self, reason: Reason, message: String) -> Flow {
        self.status.failed_checks = self.old.failed_checks + 1;
        self.event(true, message.clone());
        if self.status.failed_checks >= self.p.threshold {
            // Veer rolls back in the tick that reaches the threshold (Flagger waits one interval).
            return self.rollback(Rollback::Threshold);
        }
        self.conclude(
            reason,
            format!("{message} ({}/{} failed checks)", self.status.failed_checks, self.p.threshold),
        )
    }

    fn rollback(&mut self, why: Rollback) -> Flow {
        let (n, ns) = (self.name.clone(), self.namespace.clone());
        let reason = match &why {
            Rollback::Threshold => {
                let k = self.status.failed_checks.max(self.old.failed_checks);
                self.event(true, format!("Rolling back {n}.{ns} failed checks threshold reached {k}"));
                self.alert(Severity::Error, format!("Failed checks threshold reached {k}"), false);
                format!("failed checks threshold reached {k}")
            }
            Rollback::Deadline(msg) => {
                self.event(true, format!("Rolling back {n}.{ns} progress deadline exceeded {msg}"));
                self.alert(Severity::Error, format!("Progress deadline exceeded {msg}"), false);
                format!("progress deadline exceeded: {msg}")
            }
            Rollback::Manual => "a rollback webhook asked for it".to_string(),
            Rollback::Requested => {
                self.event(
                    true,
                    format!("Rolling back {n}.{ns}: abort requested ({REQUEST_ANNOTATION}=abort)"),
                );
                self.alert(Severity::Error, "Canary aborted on request, rolled back.".into(), false);
                "aborted on request".to_string()
            }
        };
        let decision = if matches!(why, Rollback::Requested) { Reason::Aborted } else { Reason::RolledBack };
        self.set_routes(Routes::PRIMARY);
        // Sent as from the failed Canary, as Flagger does.
        let msg = format!("Canary failed! Scaling down {}.{}", self.name, self.namespace);
        self.event_in(Phase::Failed, true, msg);
        self.effects.push(Effect::ScaleCanary { up: false });
        self.finish_run(Phase::Failed, RunResult::Failed);
        self.requeue = None;
        self.conclude(decision, format!("rolled back {}: {reason}", self.target()))
    }

    /// The target is gone during a run: all traffic to the primary, the run ends as failed.
    fn lose_target(&mut self, message: &str) -> Flow {
        let (n, ns) = (self.name.clone(), self.namespace.clone());
        self.set_routes(Routes::PRIMARY);
        self.event(
            true,
            format!("Rolling back {n}.{ns}: {message}; all traffic is back on {}", self.primary_name()),
        );
        self.alert(Severity::Error, format!("Rolled back: {message}"), false);
        self.finish_run(Phase::Failed, RunResult::Failed);
        self.requeue = None;
        self.conclude(Reason::TargetLost, format!("rolled back {}: {message}", self.target()))
    }

    fn failed_promotion(&mut self, msg: String) -> Flow {
        self.event(true, format!("Promotion of {} failed, primary not ready: {msg}", self.target()));
        self.alert(Severity::Error, format!("Promotion failed, primary not ready: {msg}"), false);
        // The canary is the only healthy copy: it keeps all traffic and keeps running.
        self.set_routes(Routes::canary(100));
        self.finish_run(Phase::Failed, RunResult::Failed);
        self.status.canary_weight = 100;
        self.requeue = None;
        self.conclude(Reason::PromotionFailed, format!("primary not ready: {msg}"))
    }

    // ---------------------------------------------------------------- helpers

    /// Enters `phase` for a new run: counters to zero, the target's revision recorded.
    fn reset_run(&mut self, phase: Phase) {
        let s = &mut self.status;
        s.phase = phase;
        s.canary_weight = 0;
        s.failed_checks = 0;
        s.iterations = 0;
        s.last_applied_spec = self.obs.target.revision.clone();
        s.tracked_configs = self.obs.target.configs.clone();
        s.checks.clear();
    }

    fn finish_run(&mut self, phase: Phase, result: RunResult) {
        let failed = result == RunResult::Failed;
        // Keep this run's check records so that `kubectl describe` explains the outcome.
        let checks = std::mem::take(&mut self.status.checks);
        self.reset_run(phase);
        self.ended_run = true;
        self.status.checks = checks;
        if self.old.phase.is_running() {
            // The run ends for the revision it analysed. A newer one deployed meanwhile (during the
            // promotion, say) is then a change, and gets a run of its own.
            self.status.last_applied_spec = self.old.last_applied_spec.clone();
            self.status.tracked_configs = self.old.tracked_configs.clone();
        }
        if !failed {
            self.status.last_promoted_spec = self.status.last_applied_spec.clone();
        }
        if !self.status.session_affinity_cookie.is_empty() {
            self.status.previous_session_affinity_cookie =
                std::mem::take(&mut self.status.session_affinity_cookie);
        }
        self.status.primary_session_affinity_cookie.clear();
        self.effects.push(Effect::RunFinished { strategy: self.p.strategy, result });
        self.effects.push(Effect::PostRolloutHooks { phase });
    }

    fn require_primary_ready(&mut self) -> Flow {
        if self.p.skip_analysis {
            return Ok(());
        }
        match self.obs.primary.as_ref().map(|p| &p.readiness) {
            None => {
                self.wait(Reason::WaitPrimaryCreated, format!("{}-primary does not exist yet", self.target()))
            }
            Some(Readiness::Ready) => Ok(()),
            Some(Readiness::Waiting(msg)) => {
                let msg = msg.clone();
                self.wait(Reason::WaitPrimaryReady, msg)
            }
            Some(Readiness::Failed(msg)) => {
                let msg = msg.clone();
                self.rollback(Rollback::Deadline(msg))
            }
        }
    }

    /// When the next step may run: one interval after the last step (now if there was none).
    fn next_step(&self) -> Timestamp {
        self.old.last_step_time.map_or(self.now, |t| after(t, self.p.interval))
    }

    fn due(&self) -> bool {
        self.now >= self.next_step()
    }

    fn not_due(&mut self) -> Flow {
        let wait = self.now.duration_until(self.next_step()).max(SignedDuration::ZERO);
        self.requeue = Some(Duration::try_from(wait).unwrap_or_default().max(Duration::from_millis(10)));
        Err(Interrupt::Stop)
    }

    /// Nothing can happen until something changes: record why (with an Event when the reason is
    /// new), check again after an interval.
    fn wait(&mut self, reason: Reason, message: String) -> Flow {
        // Waiting for Veer's own write of the primary to show in the cache is no news: Flagger
        // records nothing there either.
        let own_write = matches!(reason, Reason::WaitPrimaryCreated | Reason::WaitPrimaryPromoted);
        if self.decision_is_new(reason, &message) && !own_write {
            self.event(reason == Reason::RoutesUnavailable, message.clone());
        }
        self.requeue = Some(self.p.interval);
        self.conclude(reason, message)
    }

    /// Records the decision and ends the tick.
    fn conclude(&mut self, reason: Reason, message: String) -> Flow {
        self.record(reason, message);
        Err(Interrupt::Stop)
    }

    /// Records the decision; the tick goes on (a later decision of the same tick replaces it).
    fn record(&mut self, reason: Reason, message: String) {
        record_decision(&mut self.status, reason, &message, self.now);
    }

    fn decision_is_new(&self, reason: Reason, message: &str) -> bool {
        self.old.decision.as_ref().is_none_or(|d| d.reason != reason || d.message != message)
    }

    /// The result of webhook `index`, or an interrupt asking for it.
    fn hook(&mut self, index: usize, phase: Phase) -> Result<HookResult, Interrupt> {
        let Some(result) = self.obs.hooks.get(&index) else {
            return Err(Interrupt::Need(vec![Probe::Hook { index, phase }]));
        };
        let hook = &self.webhooks()[index];
        let (word, message) = match result {
            HookResult::Passed => ("Passed", String::new()),
            HookResult::Failed(e) => ("Failed", e.clone()),
        };
        self.record_check(CheckRecord {
            kind: CheckKind::Webhook.as_str().into(),
            name: hook.name.clone(),
            result: word.into(),
            message,
            time: self.now,
            ..Default::default()
        });
        Ok(result.clone())
    }

    fn webhooks(&self) -> &'a [crate::api::CanaryWebhook] {
        self.canary.spec.analysis.as_ref().and_then(|a| a.webhooks.as_deref()).unwrap_or(&[])
    }

    /// Webhooks of one type, in spec order, with their index.
    fn hooks(&self, kind: HookType) -> Vec<(usize, String)> {
        self.webhooks()
            .iter()
            .enumerate()
            .filter(|(_, h)| HookType::of(h) == Some(kind))
            .map(|(i, h)| (i, h.name.clone()))
            .collect()
    }

    fn muted(&self, index: usize) -> bool {
        self.webhooks()[index].mute_alert.unwrap_or(false)
    }

    fn record_check(&mut self, record: CheckRecord) {
        upsert_check(&mut self.status.checks, record);
    }

    fn set_routes(&mut self, routes: Routes) {
        self.routes = routes;
        self.effects.push(Effect::SetRoutes(routes));
    }

    fn event(&mut self, warning: bool, message: String) {
        self.event_in(self.status.phase, warning, message);
    }

    /// An Event that event webhooks receive with `phase`.
    fn event_in(&mut self, phase: Phase, warning: bool, message: String) {
        self.effects.push(Effect::Event { warning, message, phase });
    }

    fn alert(&mut self, severity: Severity, message: String, details: bool) {
        self.effects.push(Effect::Alert { severity, message, details });
    }

    /// Session affinity cookies are created when the canary first receives traffic. The value is
    /// derived from the run and the time, so the decision stays a pure function.
    fn ensure_session_cookies(&mut self) {
        let Some(sa) = self.canary.spec.analysis.as_ref().and_then(|a| a.session_affinity.as_ref()) else {
            return;
        };
        let seed = format!("{}/{}/{}/{}", self.namespace, self.name, self.status.last_applied_spec, self.now);
        if self.status.session_affinity_cookie.is_empty() {
            self.status.session_affinity_cookie = format!("{}={}", sa.cookie_name, letters(&seed, "canary"));
        }
        if let Some(primary) = &sa.primary_cookie_name
            && self.status.primary_session_affinity_cookie.is_empty()
        {
            self.status.primary_session_affinity_cookie = format!("{primary}={}", letters(&seed, "primary"));
        }
    }

    fn target_name(&self) -> &str {
        &self.canary.spec.target_ref.name
    }

    /// `<target>-primary.<namespace>`.
    fn primary_name(&self) -> String {
        format!("{}-primary.{}", self.target_name(), self.namespace)
    }

    /// `<target>.<namespace>` as in Flagger's messages.
    fn target(&self) -> String {
        format!("{}.{}", self.target_name(), self.namespace)
    }
}

/// `t + d`, saturating at the largest timestamp (a `lastStepTime` near year 9999 must not panic).
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// Ten lowercase letters derived from a seed.
fn letters(seed: &str, salt: &str) -> String {
    let digest = Sha256::digest(format!("{salt}/{seed}").as_bytes());
    digest.iter().take(10).map(|b| (b'a' + b % 26) as char).collect()
}

/// The kind of a Canary's target as messages name it: its [`TargetKind`](super::TargetKind)
/// (`Deployment` when empty), or an unsupported kind as written.
pub fn target_kind(canary: &Canary) -> &str {
    match super::TargetKind::of(canary) {
        Ok(kind) => kind.as_str(),
        Err(other) => other,
    }
}

fn upsert_check(checks: &mut Vec<CheckRecord>, record: CheckRecord) {
    if let Some(existing) = checks.iter_mut().find(|c| c.kind == record.kind && c.name == record.name) {
        *existing = record;
    } else {
        checks.push(record);
        if checks.len() > MAX_CHECKS {
            checks.remove(0);
        }
    }
}

/// Records a decision in the status (its time moves only when the reason or message changes).
fn record_decision(status: &mut CanaryStatus, reason: Reason, message: &str, now: Timestamp) {
    let same = status.decision.as_ref().is_some_and(|d| d.reason == reason && d.message == message);
    if !same {
        status.decision =
            Some(Decision { time: now, reason: reason.as_str().into(), message: message.into() });
    }
}

/// Seconds precision, as Kubernetes stores `metav1.Time`.
fn k8s_time(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Bumps `lastTransitionTime` when anything else in the status changed.
fn touch(old: &CanaryStatus, status: &mut CanaryStatus, now: Timestamp) {
    status.last_transition_time = old.last_transition_time.clone();
    if status != old || status.last_transition_time.is_none() {
        status.last_transition_time = Some(k8s_time(now));
    }
}

/// Sets a condition; returns whether it changed. `lastTransitionTime` moves only when the status
/// does.
fn set_condition(
    conditions: &mut Vec<CanaryCondition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let time = Some(k8s_time(now));
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status && c.reason == reason && c.message.as_deref() == Some(message) => false,
        Some(c) => {
            if c.status != status {
                c.last_transition_time = time.clone();
            }
            c.status = status.as_str().into();
            c.reason = reason.into();
            c.message = Some(message.into());
            c.last_update_time = time;
            true
        }
        None => {
            conditions.push(CanaryCondition {
                type_: type_.into(),
                status: status.as_str().into(),
                last_update_time: time.clone(),
                last_transition_time: time,
                reason: reason.into(),
                message: Some(message.into()),
            });
            true
        }
    }
}

/// Flagger's `Promoted` condition for the status' phase.
fn set_promoted(status: &mut CanaryStatus, kind: &str, now: Timestamp) {
    use ConditionStatus::{False, True, Unknown};
    let (s, message) = match status.phase {
        Phase::Initialized => (True, format!("{kind} initialization completed.")),
        Phase::Waiting | Phase::WaitingPromotion => (Unknown, "Waiting for approval.".into()),
        Phase::Progressing => (Unknown, "New revision detected, progressing canary analysis.".into()),
        Phase::Promoting => (Unknown, "Canary analysis completed, starting primary rolling update.".into()),
        Phase::Finalising => (Unknown, "Canary analysis completed, routing all traffic to primary.".into()),
        Phase::Succeeded => (True, "Canary analysis completed successfully, promotion finished.".into()),
        Phase::Failed => (False, format!("Canary analysis failed, {kind} scaled to zero.")),
        _ => (Unknown, format!("New {kind} detected, starting initialization.")),
    };
    let reason = match status.phase {
        Phase::Empty => Phase::Initializing.as_str(),
        p => p.as_str(),
    };
    set_condition(&mut status.conditions, PROMOTED, s, reason, &message, now);
}
