//! Operators' requests (`veer.dev/request`, `veer.dev/paused`) walked through the state machine
//! in the simulated world of `tests.rs`.

use std::time::Duration;

use proptest::prelude::*;

use super::{
    request::{PAUSED_ANNOTATION, REQUEST_ANNOTATION},
    tests::{INTERVAL, World, analysis, hook, revision},
    *,
};
use crate::api::{CanaryAnalysis, CanaryWebhook, Phase};

impl World {
    fn annotate(&mut self, key: &str, value: &str) {
        self.canary.metadata.annotations.get_or_insert_default().insert(key.into(), value.into());
    }

    fn unannotate(&mut self, key: &str) {
        self.canary.metadata.annotations.get_or_insert_default().remove(key);
    }

    fn request(&mut self, value: &str) {
        self.annotate(REQUEST_ANNOTATION, value);
    }

    fn pending_request(&self) -> Option<&String> {
        self.canary.metadata.annotations.as_ref()?.get(REQUEST_ANNOTATION)
    }

    fn reason(&self) -> &str {
        &self.status().decision.as_ref().expect("a decision").reason
    }

    /// A run of revision 2 at canary weight 10.
    fn running(analysis: CanaryAnalysis) -> World {
        let mut w = World::initialized(analysis);
        w.deploy("2");
        w.tick();
        w.step();
        assert_eq!(w.routes, Routes::canary(10));
        w.take_log();
        w
    }

    /// Revision 2 held in `Waiting` by a confirm-rollout gate that refuses it, then `hooks`.
    fn waiting(hooks: Vec<CanaryWebhook>) -> World {
        let mut a = analysis();
        a.webhooks = Some([vec![hook("gate", "confirm-rollout")], hooks].concat());
        let mut w = World::initialized(a);
        w.hook_answers.insert("gate".into(), HookResult::Failed("Forbidden".into()));
        w.deploy("2");
        w.tick();
        assert_eq!(w.phase(), Phase::Waiting);
        w.take_log();
        w
    }

    /// Revision 2 rolled back after failed checks, still deployed.
    fn failed() -> World {
        let mut w = World::running(analysis());
        w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Value(80.0));
        w.step();
        w.step();
        assert_eq!(w.phase(), Phase::Failed);
        w.metric_values.clear();
        w.take_log();
        w
    }
}

#[test]
fn promote_runs_the_next_step_now_and_promotes_when_its_checks_pass() {
    let mut w = World::running(analysis());
    w.request("promote");
    w.advance(Duration::from_secs(1)); // not one interval later: now
    w.tick();
    assert_eq!(w.phase(), Phase::Promoting);
    assert_eq!(
        w.take_log(),
        [
            "metric request-success-rate",
            "Normal Promotion of podinfo.test requested (veer.dev/request=promote): checks passed, skipping the remaining steps and gates",
            "Normal Copying podinfo.test template spec to podinfo-primary.test",
            "promote",
            "clear request promote",
        ]
    );
    assert_eq!(w.pending_request(), None);
    w.step();
    w.step();
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.status().last_promoted_spec, revision("2"));
}

#[test]
fn promote_does_not_promote_a_revision_failing_its_checks() {
    let mut w = World::running(analysis());
    w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Value(80.0));
    w.request("promote");
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
    assert!(!w.has("promote"));
    assert_eq!(w.status().failed_checks, 1);
    assert!(w.has("clear request promote"), "the request is answered: {:#?}", w.log);
    assert_eq!(w.routes, Routes::canary(10), "the weight stays");
}

#[test]
fn promote_skips_the_gates() {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("more", "confirm-traffic-increase"), hook("ship", "confirm-promotion")]);
    let mut w = World::running(a);
    w.hook_answers.insert("more".into(), HookResult::Failed("Forbidden".into()));
    w.hook_answers.insert("ship".into(), HookResult::Failed("Forbidden".into()));
    w.step();
    assert_eq!(w.reason(), "WaitConfirmTrafficIncrease");
    w.take_log();
    w.request("promote");
    w.tick();
    assert_eq!(w.phase(), Phase::Promoting);
    assert!(!w.log.iter().any(|l| l.starts_with("hook ")), "no gate asked: {:#?}", w.log);
}

#[test]
fn promote_while_waiting_for_rollout_approval_starts_the_run_then_promotes() {
    let mut w = World::waiting(vec![hook("smoke", "pre-rollout")]);
    w.request("promote");
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
    assert!(w.target.scaled_up);
    assert!(!w.has("hook gate Waiting"), "the gate is skipped: {:#?}", w.log);
    assert_eq!(w.pending_request().map(String::as_str), Some("promote"), "not done yet");
    w.advance(Duration::from_secs(1));
    w.tick();
    assert_eq!(w.phase(), Phase::Promoting, "{:#?}", w.log);
    assert!(w.has("hook smoke Progressing"), "the first step's checks run");
    assert_eq!(w.pending_request(), None);
}

#[test]
fn promote_full_promotes_now_without_checks() {
    let mut w = World::running(analysis());
    w.request("promote-full");
    w.tick();
    assert_eq!(w.phase(), Phase::Promoting);
    assert!(w.probes.is_empty(), "no check: {:?}", w.probes);
    assert_eq!(w.reason(), "PromoteRequested");
    assert!(w.has("alert Info Canary promotion requested, skipping the analysis."));
    w.step();
    w.step();
    assert_eq!(w.phase(), Phase::Succeeded);
}

#[test]
fn promote_full_promotes_a_failed_revision_still_deployed() {
    let mut w = World::failed();
    w.request(&format!("promote-full@{}", revision("2")));
    w.tick();
    assert_eq!(w.phase(), Phase::Promoting);
    assert_eq!(w.status().failed_checks, 0);
    for _ in 0..3 {
        w.step();
    }
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.status().last_promoted_spec, revision("2"));
    assert_eq!(w.primary.as_ref().unwrap().revision, revision("2"));
    assert!(!w.target.scaled_up);
}

#[test]
fn promote_of_a_failed_run_is_refused_with_what_to_do() {
    let mut w = World::failed();
    w.request("promote");
    let out = w.tick();
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(
        w.take_log(),
        [
            "Warning Canary podinfo.test: request veer.dev/request refused: the run failed: `veer retry` analyses the revision again, `veer promote --full` promotes it without analysis",
            "clear request promote",
        ]
    );
    assert_eq!(out.status.decision, w.status().decision, "the decision stays");
}

#[test]
fn abort_rolls_back_now_and_the_revision_does_not_start_again() {
    let mut w = World::running(analysis());
    w.request("abort");
    w.tick();
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.routes, Routes::PRIMARY);
    assert!(!w.target.scaled_up);
    assert!(w.has("Warning Rolling back podinfo.test: abort requested (veer.dev/request=abort)"));
    assert!(w.has("alert Error Canary aborted on request, rolled back."));
    assert!(w.has("finished canary Failed"));
    assert_eq!(w.reason(), "Aborted");
    assert_eq!(w.pending_request(), None);
    w.take_log();
    assert!(w.step().effects.is_empty(), "{:#?}", w.log);
    assert_eq!(w.phase(), Phase::Failed);
}

#[test]
fn abort_while_waiting_for_approval_fails_that_revision() {
    let mut w = World::waiting(vec![]);
    w.request("abort");
    w.tick();
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.status().last_applied_spec, revision("2"));
    w.hook_answers.clear();
    w.step();
    assert_eq!(w.phase(), Phase::Failed, "it does not start by itself");
}

#[test]
fn abort_during_the_promotion_is_refused() {
    let mut w = World::running(analysis());
    w.request("promote-full");
    w.tick();
    w.request("abort");
    w.take_log();
    w.step();
    assert!(w.has(
        "Warning Canary podinfo.test: request veer.dev/request refused: too late to abort: the primary already runs the new revision; set the target back to the previous revision to roll back"
    ));
    assert_eq!(w.phase(), Phase::Finalising, "the promotion goes on");
}

#[test]
fn retry_analyses_the_failed_revision_again() {
    let mut w = World::failed();
    w.request("retry");
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
    assert!(w.target.scaled_up);
    assert_eq!(w.status().last_applied_spec, revision("2"));
    assert_eq!(w.status().failed_checks, 0);
    assert_eq!(w.reason(), "Retried");
    assert!(w.has("Normal Retrying the analysis of podinfo.test on request"));
    assert_eq!(w.pending_request(), None);
    for _ in 0..8 {
        w.step();
    }
    assert_eq!(w.phase(), Phase::Succeeded);
}

#[test]
fn retry_waits_for_the_primary_before_answering() {
    let mut w = World::failed();
    w.primary.as_mut().unwrap().readiness = Readiness::Waiting("1 of 2 updated".into());
    w.request("retry");
    w.tick();
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.pending_request().map(String::as_str), Some("retry"), "kept until it can act");
    w.primary.as_mut().unwrap().readiness = Readiness::Ready;
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
}

#[test]
fn retry_after_a_revert_is_refused() {
    let mut w = World::failed();
    w.deploy("1");
    w.tick();
    w.request("retry");
    w.take_log();
    w.tick();
    assert_eq!(w.phase(), Phase::Failed);
    assert!(w.log[0].ends_with("nothing to retry: the target is back at the promoted revision (apply the failed revision again to analyse it)"), "{:#?}", w.log);
}

#[test]
fn a_request_for_another_revision_is_refused_and_the_run_goes_on() {
    let mut w = World::running(analysis());
    w.request(&format!("promote-full@{}", revision("1")));
    w.step();
    let refused = "Warning Canary podinfo.test: request veer.dev/request refused: it was made for revision";
    assert!(w.log.iter().any(|l| l.starts_with(refused)), "{:#?}", w.log);
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(w.routes, Routes::canary(20), "the step of this tick still runs");
}

#[test]
fn an_unreadable_request_is_refused_and_removed() {
    let mut w = World::running(analysis());
    w.request("ship it");
    w.step();
    assert!(w.has("clear request ship it"));
    let refused = "\"ship it\" is not a request: write promote, promote-full, abort or retry";
    assert!(w.log.iter().any(|l| l.contains(refused)), "{:#?}", w.log);
    assert_eq!(w.routes, Routes::canary(20));
}

#[test]
fn requests_before_initialization_are_refused() {
    let mut w = World::new(analysis());
    w.request("abort");
    w.tick();
    assert!(w.log.iter().any(|l| l.contains("refused: the Canary is initializing")), "{:#?}", w.log);
    assert_eq!(w.pending_request(), None);
}

#[test]
fn pause_holds_the_weight_until_resumed() {
    let mut w = World::running(analysis());
    w.annotate(PAUSED_ANNOTATION, "true");
    let out = w.step();
    assert_eq!(w.reason(), "Paused");
    assert_eq!(out.requeue, None, "nothing to wait for but the annotation");
    assert_eq!(
        w.take_log(),
        [
            "Normal Canary podinfo.test paused (veer.dev/paused) at canary weight 10: remove the annotation (veer resume) to go on"
        ]
    );
    for _ in 0..5 {
        assert!(w.step().effects.is_empty(), "held, silently");
    }
    assert_eq!(w.routes, Routes::canary(10));
    w.unannotate(PAUSED_ANNOTATION);
    w.tick();
    assert!(w.has("Normal Canary podinfo.test resumed"));
    assert_eq!(w.routes, Routes::canary(20), "the step was due long ago");
}

#[test]
fn pause_holds_a_new_revision_and_resume_starts_it() {
    let mut w = World::initialized(analysis());
    w.annotate(PAUSED_ANNOTATION, "maintenance");
    w.deploy("2");
    w.tick();
    assert_eq!(w.phase(), Phase::Initialized);
    assert!(!w.target.scaled_up);
    w.annotate(PAUSED_ANNOTATION, "false");
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
}

#[test]
fn a_request_is_taken_while_paused() {
    let mut w = World::running(analysis());
    w.annotate(PAUSED_ANNOTATION, "true");
    w.step();
    w.request("abort");
    w.tick();
    assert_eq!(w.phase(), Phase::Failed);
}

#[test]
fn resuming_an_idle_canary_says_so_in_its_decision() {
    let mut w = World::initialized(analysis());
    w.annotate(PAUSED_ANNOTATION, "true");
    w.tick();
    w.unannotate(PAUSED_ANNOTATION);
    w.tick();
    assert_eq!(w.reason(), "Resumed");
    assert!(w.tick().effects.is_empty(), "once");
}

/// Each world the requests are tried in: (name, world).
fn worlds() -> Vec<(&'static str, World)> {
    let mut promoting = World::running(analysis());
    promoting.request("promote-full");
    promoting.tick();
    vec![
        ("new", World::new(analysis())),
        ("initialized", World::initialized(analysis())),
        ("running", World::running(analysis())),
        ("failed", World::failed()),
        ("promoting", promoting),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the value and the phase, a tick never panics, and a request is either acted on or
    /// refused in the tick, or kept only in a phase that acts on it once the world allows.
    #[test]
    fn any_request_in_any_phase_is_answered(
        value in prop_oneof![
            Just("promote".to_string()), Just("promote-full".to_string()), Just("abort".to_string()),
            Just("retry".to_string()), ".{0,40}", "[a-z-]{1,12}@v1-[0-9]{16}"
        ],
        world in 0..5usize,
    ) {
        let (name, mut w) = worlds().swap_remove(world);
        w.request(&value);
        w.advance(Duration::from_secs(1));
        w.tick();
        if w.pending_request().is_some() {
            // Only a plain promote that started a run, or that waits for the next step's checks.
            prop_assert!(value == "promote" && w.phase() == Phase::Progressing, "{name}: {value:?} kept in {:?}", w.phase());
            w.advance(INTERVAL);
            w.tick();
            prop_assert!(w.pending_request().is_none(), "{name}: {value:?} still kept");
        }
    }
}
