//! Scenario tests of the state machine, written from `flagger-behaviour.md` §2: a small simulated
//! world answers the probes and carries out the effects, and each test walks a timeline.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;
use crate::api::{
    AbMatch, Canary, CanaryAnalysis, CanaryMetric, CanarySpec, CanaryStatus, CanaryWebhook,
    LocalObjectReference, Phase, SessionAffinity, ThresholdRange,
};

pub(super) const INTERVAL: Duration = Duration::from_secs(30);

/// The world one Canary lives in: target, primary, router, webhook and metric answers, a clock.
#[derive(Clone, Debug)]
pub(super) struct World {
    pub canary: Canary,
    pub settings: Settings,
    pub now: Timestamp,
    pub target: Target,
    pub primary: Option<Primary>,
    pub routes: Routes,
    /// Webhook answers by name; unknown hooks pass.
    pub hook_answers: BTreeMap<String, HookResult>,
    /// Metric values by name; unknown metrics return 99.9.
    pub metric_values: BTreeMap<String, MetricResult>,
    /// The answer to the metrics providers' check.
    pub metrics_providers: Result<(), String>,
    /// Everything that happened, in order, for assertions.
    pub log: Vec<String>,
    /// Probes of the last tick.
    pub probes: Vec<Probe>,
    pub last: Option<Outcome>,
    /// The next tick stops (as a killed controller would) after writing its status and carrying out
    /// this many of its effects.
    pub crash_after: Option<usize>,
}

pub(super) fn analysis() -> CanaryAnalysis {
    CanaryAnalysis {
        interval: Some("30s".into()),
        threshold: Some(2),
        max_weight: Some(50),
        step_weight: Some(10),
        metrics: Some(vec![CanaryMetric {
            name: REQUEST_SUCCESS_RATE.into(),
            threshold_range: Some(ThresholdRange { min: Some(99.0), max: None }),
            interval: Some("1m".into()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

pub(super) fn hook(name: &str, type_: &str) -> CanaryWebhook {
    CanaryWebhook {
        name: name.into(),
        type_: Some(type_.into()),
        url: format!("http://loadtester.test/{name}"),
        ..Default::default()
    }
}

impl World {
    pub fn new(analysis: CanaryAnalysis) -> World {
        let spec = CanarySpec {
            provider: Some("istio".into()),
            target_ref: LocalObjectReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "podinfo".into(),
            },
            analysis: Some(analysis),
            ..Default::default()
        };
        let mut canary = Canary::new("podinfo", spec);
        canary.metadata.namespace = Some("test".into());
        World {
            canary,
            settings: Settings::default(),
            now: Timestamp::from_second(1_800_000_000).unwrap(),
            target: Target {
                revision: revision("1"),
                configs: BTreeMap::new(),
                readiness: Readiness::Ready,
                scaled_up: true,
            },
            primary: None,
            routes: Routes::PRIMARY,
            hook_answers: BTreeMap::new(),
            metric_values: BTreeMap::new(),
            metrics_providers: Ok(()),
            log: Vec::new(),
            probes: Vec::new(),
            last: None,
            crash_after: None,
        }
    }

    pub fn with_spec(mut self, f: impl FnOnce(&mut CanarySpec)) -> World {
        f(&mut self.canary.spec);
        self
    }

    pub fn status(&self) -> &CanaryStatus {
        self.canary.status.as_ref().expect("a status")
    }

    pub fn phase(&self) -> Phase {
        self.canary.status.as_ref().map(|s| s.phase).unwrap_or_default()
    }

    pub fn observations(&self) -> Observations {
        Observations {
            target: self.target.clone(),
            primary: self.primary.clone(),
            routes: Ok(self.routes),
            hooks: BTreeMap::new(),
            metrics: BTreeMap::new(),
            metrics_providers: None,
        }
    }

    /// Runs one reconcile: answers probes, then applies the outcome to the world.
    pub fn tick(&mut self) -> Outcome {
        let mut obs = self.observations();
        self.probes.clear();
        let hooks = self.canary.spec.analysis.as_ref().and_then(|a| a.webhooks.clone()).unwrap_or_default();
        let metrics = self.canary.spec.analysis.as_ref().and_then(|a| a.metrics.clone()).unwrap_or_default();
        let outcome = loop {
            match decide(&self.canary, &obs, &self.settings, self.now) {
                Step::Observe(probes) => {
                    assert!(!probes.is_empty(), "asked for nothing");
                    for p in probes {
                        assert!(!self.probes.contains(&p), "probe {p:?} asked twice in one tick");
                        self.probes.push(p.clone());
                        match p {
                            Probe::Hook { index, phase } => {
                                let h = &hooks[index];
                                self.log.push(format!("hook {} {phase}", h.name));
                                let answer =
                                    self.hook_answers.get(&h.name).cloned().unwrap_or(HookResult::Passed);
                                obs.hooks.insert(index, answer);
                            }
                            Probe::Metric { index } => {
                                let m = &metrics[index];
                                self.log.push(format!("metric {}", m.name));
                                let v = self
                                    .metric_values
                                    .get(&m.name)
                                    .cloned()
                                    .unwrap_or(MetricResult::Value(99.9));
                                obs.metrics.insert(index, v);
                            }
                            Probe::MetricsProviders => {
                                self.log.push("metrics providers".into());
                                obs.metrics_providers = Some(self.metrics_providers.clone());
                            }
                        }
                    }
                }
                Step::Done(outcome) => break outcome,
            }
        };
        // Status first, then effects, as the controller does.
        self.canary.status = Some(outcome.status.clone());
        let crash_after = self.crash_after.take();
        for e in outcome.effects.iter().take(crash_after.unwrap_or(usize::MAX)) {
            match e {
                Effect::SetRoutes(r) => {
                    self.routes = *r;
                    self.log.push(format!(
                        "routes {}/{}{}",
                        r.primary,
                        r.canary,
                        if r.mirrored { " mirrored" } else { "" }
                    ));
                }
                Effect::ScaleCanary { up } => {
                    self.target.scaled_up = *up;
                    self.log.push(format!("scale {}", if *up { "up" } else { "down" }));
                }
                Effect::Promote => {
                    let p = self
                        .primary
                        .get_or_insert(Primary { revision: String::new(), readiness: Readiness::Ready });
                    p.revision = self.target.revision.clone();
                    self.log.push("promote".into());
                }
                Effect::PostRolloutHooks { phase } => self.log.push(format!("post-rollout {phase}")),
                Effect::Event { warning, message, .. } => {
                    self.log.push(format!("{} {message}", if *warning { "Warning" } else { "Normal" }))
                }
                Effect::Alert { severity, message, .. } => {
                    self.log.push(format!("alert {severity:?} {message}"))
                }
                Effect::RunFinished { strategy, result } => {
                    self.log.push(format!("finished {} {result:?}", strategy.as_str()))
                }
                Effect::ClearRequest { value } => {
                    let annotations = self.canary.metadata.annotations.get_or_insert_default();
                    if annotations.get(request::REQUEST_ANNOTATION) == Some(value) {
                        annotations.remove(request::REQUEST_ANNOTATION);
                    }
                    self.log.push(format!("clear request {value}"));
                }
            }
        }
        if crash_after.is_none() {
            // All done: the controller empties the pending effects with a second status write.
            self.canary.status.as_mut().expect("a status").pending_effects.clear();
        }
        self.last = Some(outcome.clone());
        outcome
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += SignedDuration::try_from(d).unwrap();
    }

    /// Waits one interval and reconciles.
    pub fn step(&mut self) -> Outcome {
        self.advance(INTERVAL);
        self.tick()
    }

    /// A world whose Canary is initialized (primary ready, target scaled down).
    pub fn initialized(analysis: CanaryAnalysis) -> World {
        let mut w = World::new(analysis);
        w.primary = Some(Primary { revision: w.target.revision.clone(), readiness: Readiness::Ready });
        w.tick();
        assert_eq!(w.phase(), Phase::Initialized);
        w.log.clear();
        w
    }

    /// Deploys a new template revision.
    pub fn deploy(&mut self, rev: &str) {
        self.target.revision = revision(rev);
    }

    pub fn has(&self, line: &str) -> bool {
        self.log.iter().any(|l| l == line)
    }

    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }
}

pub(super) fn revision(s: &str) -> String {
    format!("v1-{s:0>16}")
}

// ------------------------------------------------------------------- initialization

/// As Flagger: before the primary is created, whether the metrics servers answer; the answer is an
/// Event, and initialization goes on either way.
#[test]
fn initialization_checks_the_metrics_providers_once() {
    let mut w = World::new(analysis());
    w.tick();
    assert!(w.probes.contains(&Probe::MetricsProviders));
    assert!(w.has("Normal all the metrics providers are available!"), "{:#?}", w.log);
    w.primary =
        Some(Primary { revision: w.target.revision.clone(), readiness: Readiness::Waiting("0 of 1".into()) });
    w.take_log();
    w.tick();
    assert!(!w.probes.contains(&Probe::MetricsProviders), "once the primary exists, not again");

    let mut w = World::new(analysis());
    w.metrics_providers = Err("prometheus not available: connection refused".into());
    w.tick();
    assert!(w.has("Warning Error checking metric providers: prometheus not available: connection refused"));
    assert_eq!(w.phase(), Phase::Initializing);
    assert_eq!(w.status().decision.as_ref().unwrap().reason, "WaitPrimaryCreated", "not blocking");

    let mut w = World::new(analysis()).with_spec(|s| s.skip_analysis = Some(true));
    w.tick();
    assert!(!w.probes.contains(&Probe::MetricsProviders), "skipAnalysis: nothing to check");
}

#[test]
fn initialization_waits_for_the_primary_then_scales_the_target_down() {
    let mut w = World::new(analysis());
    w.tick();
    assert_eq!(w.phase(), Phase::Initializing);
    assert_eq!(w.status().decision.as_ref().unwrap().reason, "WaitPrimaryCreated");
    w.primary =
        Some(Primary { revision: w.target.revision.clone(), readiness: Readiness::Waiting("0 of 1".into()) });
    w.tick();
    assert_eq!(w.phase(), Phase::Initializing);
    assert!(w.target.scaled_up, "the target keeps serving until the primary is ready");
    w.primary.as_mut().unwrap().readiness = Readiness::Ready;
    let out = w.tick();
    assert_eq!(w.phase(), Phase::Initialized);
    assert!(!w.target.scaled_up);
    assert!(w.has("Normal Initialization done! podinfo.test"));
    assert!(w.has("alert Info New Deployment detected, initialization completed."));
    let s = w.status();
    assert_eq!(s.last_applied_spec, w.target.revision);
    assert_eq!(s.last_promoted_spec, w.target.revision);
    let promoted = s.conditions.iter().find(|c| c.type_ == "Promoted").unwrap();
    assert_eq!((promoted.status.as_str(), promoted.reason.as_str()), ("True", "Initialized"));
    assert_eq!(promoted.message.as_deref(), Some("Deployment initialization completed."));
    assert_eq!(out.requeue, None, "an initialized canary waits for a change");
}

#[test]
fn an_idle_canary_decides_nothing() {
    let mut w = World::initialized(analysis());
    let before = w.canary.status.clone();
    let out = w.step();
    assert!(out.effects.is_empty());
    assert_eq!(out.requeue, None);
    assert!(w.probes.is_empty());
    assert_eq!(w.canary.status, before, "no status write");
}

#[test]
fn skip_analysis_initializes_without_waiting_for_the_primary() {
    let mut w = World::new(analysis()).with_spec(|s| s.skip_analysis = Some(true));
    w.primary =
        Some(Primary { revision: w.target.revision.clone(), readiness: Readiness::Waiting("0 of 1".into()) });
    w.tick();
    assert_eq!(w.phase(), Phase::Initialized);
}

// ------------------------------------------------------------------- the canary strategy

/// Reference §2.9's timeline: T0 new revision → Progressing; T1 pre-rollout, →10; T2..T5 →20..50;
/// T6 promote; T7 all traffic to the primary → Finalising; T8 canary scaled to zero → Succeeded.
#[test]
fn canary_promotion_timeline() {
    let mut a = analysis();
    a.webhooks =
        Some(vec![hook("acceptance", "pre-rollout"), hook("load", "rollout"), hook("post", "post-rollout")]);
    let mut w = World::initialized(a);
    w.deploy("2");
    // T0: detected at once, not one interval later.
    let out = w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
    assert!(w.target.scaled_up);
    assert!(w.has("Normal New revision detected! Scaling up podinfo.test"));
    assert_eq!(out.requeue, Some(INTERVAL));
    assert_eq!(w.status().last_applied_spec, revision("2"));
    // T1
    w.take_log();
    w.step();
    assert_eq!(
        w.take_log(),
        vec![
            "hook acceptance Progressing",
            "Normal Starting canary analysis for podinfo.test",
            "Normal Pre-rollout check acceptance passed",
            "routes 90/10",
            "Normal Advance podinfo.test canary weight 10",
        ]
    );
    for weight in [20, 30, 40, 50] {
        w.step();
        assert_eq!(w.routes, Routes::canary(weight));
        assert_eq!(w.status().canary_weight, weight);
        assert!(w.has("hook load Progressing") && w.has("metric request-success-rate"));
        w.take_log();
    }
    // T6: at max weight the analysis runs once more, then the promotion starts.
    w.step();
    assert_eq!(w.phase(), Phase::Promoting);
    assert!(w.has("promote"));
    assert!(w.has("Normal Copying podinfo.test template spec to podinfo-primary.test"));
    assert_eq!(w.primary.as_ref().unwrap().revision, revision("2"));
    // T7
    w.step();
    assert_eq!(w.phase(), Phase::Finalising);
    assert_eq!(w.routes, Routes::PRIMARY);
    assert!(w.has("Normal Routing all traffic to primary"));
    // T8
    let out = w.step();
    assert_eq!(w.phase(), Phase::Succeeded);
    assert!(!w.target.scaled_up);
    assert!(w.has("post-rollout Succeeded"));
    assert!(w.has("finished canary Completed"));
    assert!(w.has("Normal Promotion completed! Scaling down podinfo.test"));
    assert_eq!(w.status().last_promoted_spec, revision("2"));
    assert_eq!(out.requeue, None);
}

#[test]
fn steps_wait_for_the_interval() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    w.advance(Duration::from_secs(10));
    let out = w.tick();
    assert!(w.probes.is_empty(), "no webhook or query before the interval");
    assert!(out.effects.is_empty());
    assert_eq!(out.requeue, Some(Duration::from_secs(20)));
    w.advance(Duration::from_secs(20));
    w.tick();
    assert_eq!(w.routes, Routes::canary(10));
}

#[test]
fn step_weights_ladder() {
    let mut a = analysis();
    a.step_weight = None;
    a.step_weights = Some(vec![1, 5, 25, 75]);
    let mut w = World::initialized(a);
    w.deploy("2");
    w.tick();
    for weight in [1, 5, 25, 75] {
        w.step();
        assert_eq!(w.routes.canary, weight);
    }
    w.step();
    assert_eq!(w.phase(), Phase::Promoting);
}

#[test]
fn step_weight_promotion_moves_traffic_back_in_steps() {
    let mut a = analysis();
    a.step_weight_promotion = Some(20);
    let mut w = World::initialized(a);
    w.deploy("2");
    w.tick();
    for _ in 0..6 {
        w.step();
    }
    assert_eq!(w.phase(), Phase::Promoting);
    assert_eq!(w.routes, Routes::canary(50));
    w.step();
    assert_eq!(w.routes, Routes::canary(30));
    assert!(w.has("Normal Advance podinfo.test primary weight 70"));
    assert_eq!(w.phase(), Phase::Promoting);
    w.step();
    assert_eq!(w.routes, Routes::canary(10));
    w.step();
    assert_eq!((w.routes, w.phase()), (Routes::PRIMARY, Phase::Finalising));
}

#[test]
fn promotion_waits_for_the_primary_rollout() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    for _ in 0..6 {
        w.step();
    }
    assert_eq!(w.phase(), Phase::Promoting);
    w.primary.as_mut().unwrap().readiness = Readiness::Waiting("primary rolling out".into());
    w.step();
    assert_eq!(w.phase(), Phase::Promoting);
    assert_eq!(w.routes, Routes::canary(50), "traffic stays until the primary is ready");
    w.primary.as_mut().unwrap().readiness = Readiness::Ready;
    w.advance(Duration::from_secs(1));
    w.tick();
    assert_eq!(w.phase(), Phase::Finalising, "the overdue step runs as soon as the primary is ready");
}

// ------------------------------------------------------------------- failures and rollback

#[test]
fn failed_metric_checks_roll_back_in_the_tick_that_reaches_the_threshold() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    w.step();
    assert_eq!(w.routes.canary, 10);
    w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Value(80.0));
    w.step();
    assert_eq!(w.status().failed_checks, 1);
    assert_eq!(w.routes.canary, 10, "a failed check does not advance");
    assert!(w.has("Warning Halt podinfo.test advancement success rate 80.00% < 99%"));
    w.take_log();
    let out = w.step();
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.routes, Routes::PRIMARY);
    assert!(!w.target.scaled_up);
    assert_eq!(out.requeue, None);
    let log = w.take_log();
    let pos =
        |s: &str| log.iter().position(|l| l == s).unwrap_or_else(|| panic!("{s} missing from {log:#?}"));
    assert!(pos("Warning Rolling back podinfo.test failed checks threshold reached 2") < pos("routes 100/0"));
    assert!(pos("routes 100/0") < pos("scale down"));
    assert!(log.contains(&"alert Error Failed checks threshold reached 2".to_string()));
    assert!(log.contains(&"post-rollout Failed".to_string()));
    assert!(log.contains(&"finished canary Failed".to_string()));
    let failed = Effect::Event {
        warning: true,
        message: "Canary failed! Scaling down podinfo.test".into(),
        phase: Phase::Failed,
    };
    assert!(out.effects.contains(&failed), "sent as from the failed Canary, as Flagger does");
    let s = w.status();
    assert_eq!((s.failed_checks, s.canary_weight), (0, 0));
    assert_eq!(s.last_applied_spec, revision("2"), "the failed revision is not analysed again by itself");
    assert_eq!(s.last_promoted_spec, revision("1"));
    let promoted = s.conditions.iter().find(|c| c.type_ == "Promoted").unwrap();
    assert_eq!(promoted.status, "False");
    let check = s.checks.iter().find(|c| c.name == REQUEST_SUCCESS_RATE).unwrap();
    assert_eq!((check.result.as_str(), check.value, check.min), ("Failed", Some(80.0), Some(99.0)));
    // It stays failed until a new revision.
    let out = w.step();
    assert!(out.effects.is_empty());
    assert_eq!(w.phase(), Phase::Failed);
}

/// Failed(2), the user sets the target back to 1, then applies 2 again (a `git revert` of the
/// revert): as in Flagger, 2 is analysed again.
#[test]
fn a_failed_revision_applied_again_after_a_revert_runs_again() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    w.step();
    w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Value(80.0));
    w.step();
    w.step();
    assert_eq!(w.phase(), Phase::Failed);
    w.metric_values.clear();
    // Applying 2 again without a revert changes nothing: the object is the same.
    assert!(w.tick().effects.is_empty());
    assert_eq!(w.phase(), Phase::Failed);

    w.deploy("1");
    w.take_log();
    let out = w.tick();
    assert!(out.effects.is_empty(), "a revert to the promoted revision starts no run: {:?}", out.effects);
    assert_eq!(w.phase(), Phase::Failed);
    let s = w.status();
    assert_eq!((s.last_applied_spec.clone(), s.last_promoted_spec.clone()), (revision("1"), revision("1")));
    assert_eq!(s.decision.as_ref().unwrap().reason, "Reverted");
    assert!(w.tick().effects.is_empty(), "and says so once");

    w.deploy("2");
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
    assert!(w.has("Normal New revision detected! Scaling up podinfo.test"), "{:#?}", w.log);
    assert_eq!(w.status().last_applied_spec, revision("2"));
}

/// A Canary named `web` whose target is `podinfo`: each text names the one Flagger's names.
#[test]
fn texts_name_the_canary_or_its_target_as_flagger_does() {
    let mut w = World::initialized(analysis());
    w.canary.metadata.name = Some("web".into());
    w.deploy("2");
    w.tick();
    assert!(w.has("Normal New revision detected! Scaling up podinfo.test"), "{:#?}", w.log);
    w.step();
    assert!(w.has("Normal Advance web.test canary weight 10"), "{:#?}", w.log);
    w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Value(80.0));
    w.step();
    assert!(w.has("Warning Halt web.test advancement success rate 80.00% < 99%"), "{:#?}", w.log);
    w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::NoData);
    w.step();
    assert!(
        w.has("Warning Halt advancement no values found for istio metric request-success-rate probably podinfo.test is not receiving traffic"),
        "{:#?}",
        w.log
    );
    assert!(w.has("Warning Rolling back web.test failed checks threshold reached 2"), "{:#?}", w.log);
    assert!(w.has("Warning Canary failed! Scaling down web.test"), "{:#?}", w.log);
}

#[test]
fn failed_checks_are_cumulative_not_consecutive() {
    let mut a = analysis();
    a.threshold = Some(3);
    let mut w = World::initialized(a);
    w.deploy("2");
    w.tick();
    w.step();
    for (value, checks) in [(50.0, 1), (99.9, 1), (50.0, 2), (99.9, 2)] {
        w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Value(value));
        w.step();
        assert_eq!(w.status().failed_checks, checks);
    }
    w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Value(50.0));
    w.step();
    assert_eq!(w.phase(), Phase::Failed);
}

#[test]
fn no_data_is_a_failed_check_never_a_pass() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    w.step();
    w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::NoData);
    w.step();
    assert_eq!(w.status().failed_checks, 1);
    assert!(w.has(
        "Warning Halt advancement no values found for istio metric request-success-rate probably podinfo.test is not receiving traffic"
    ));
    assert_eq!(w.status().checks[0].result, "NoData");
    w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Error("connection refused".into()));
    w.step();
    assert_eq!(w.phase(), Phase::Failed);
    assert!(w.has("Warning Prometheus query failed: connection refused"));
}

#[test]
fn failing_rollout_webhook_counts_and_skips_the_metrics() {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("load", "rollout"), hook("smoke", "")]);
    let mut w = World::initialized(a);
    w.deploy("2");
    w.tick();
    w.step();
    w.hook_answers.insert("smoke".into(), HookResult::Failed("503 unavailable".into()));
    w.take_log();
    w.step();
    assert_eq!(
        w.take_log(),
        vec![
            "hook load Progressing",
            "hook smoke Progressing",
            "Warning Halt podinfo.test advancement external check smoke failed 503 unavailable",
        ]
    );
    assert_eq!(w.status().failed_checks, 1);
    w.step();
    assert_eq!(w.phase(), Phase::Failed);
}

#[test]
fn failing_pre_rollout_webhook_counts_a_failed_check() {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("acceptance", "pre-rollout")]);
    let mut w = World::initialized(a);
    w.hook_answers.insert("acceptance".into(), HookResult::Failed("exit 1".into()));
    w.deploy("2");
    w.tick();
    w.step();
    assert!(w.has("Warning Halt podinfo.test advancement pre-rollout check acceptance failed exit 1"));
    assert_eq!((w.status().failed_checks, w.routes.canary), (1, 0));
    w.hook_answers.clear();
    w.step();
    assert_eq!(w.routes.canary, 10, "pre-rollout runs again and passes");
}

#[test]
fn rollback_webhook_aborts_the_run() {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("manual", "rollback")]);
    let mut w = World::initialized(a);
    w.hook_answers.insert("manual".into(), HookResult::Failed("403 Forbidden".into()));
    w.deploy("2");
    w.tick();
    w.step();
    assert!(w.has("Normal Rollback hook manual not signaling a rollback"));
    assert_eq!(w.routes.canary, 10);
    w.hook_answers.insert("manual".into(), HookResult::Passed);
    w.take_log();
    w.step();
    assert_eq!(w.phase(), Phase::Failed);
    assert!(w.has("Warning Rolling back podinfo.test manual webhook invoked"));
    assert!(w.has("alert Warn Rolling back manual webhook invoked"));
    assert!(!w.has("metric request-success-rate"), "no analysis after a rollback request");
}

#[test]
fn canary_progress_deadline_rolls_back_at_once() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    w.target.readiness = Readiness::Waiting("0 of 1 updated replicas are available".into());
    w.step();
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(w.status().decision.as_ref().unwrap().reason, "WaitCanaryReady");
    assert!(w.probes.is_empty(), "no analysis while the canary is not ready");
    w.target.readiness = Readiness::Failed("progress deadline exceeded".into());
    w.advance(Duration::from_secs(1));
    w.tick();
    assert_eq!(w.phase(), Phase::Failed);
    assert!(
        w.has("Warning Rolling back podinfo.test.test progress deadline exceeded progress deadline exceeded")
            || w.has(
                "Warning Rolling back podinfo.test progress deadline exceeded progress deadline exceeded"
            )
    );
    assert!(w.has("alert Error Progress deadline exceeded progress deadline exceeded"));
}

#[test]
fn primary_failing_during_promotion_leaves_traffic_on_the_canary() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    for _ in 0..6 {
        w.step();
    }
    assert_eq!(w.phase(), Phase::Promoting);
    w.primary.as_mut().unwrap().readiness = Readiness::Failed("ProgressDeadlineExceeded".into());
    w.advance(Duration::from_secs(1));
    w.tick();
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.routes, Routes::canary(100));
    assert_eq!(w.status().canary_weight, 100);
    assert!(w.target.scaled_up, "the canary is the only healthy copy");
    assert!(w.has("Warning Promotion of podinfo.test failed, primary not ready: ProgressDeadlineExceeded"));
}

// ------------------------------------------------------------------- gates

#[test]
fn confirm_rollout_gate_holds_in_waiting() {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("gate", "confirm-rollout")]);
    let mut w = World::initialized(a);
    w.hook_answers.insert("gate".into(), HookResult::Failed("Forbidden".into()));
    w.deploy("2");
    w.tick();
    assert_eq!(w.phase(), Phase::Waiting);
    assert!(!w.target.scaled_up, "the canary stays at zero while waiting");
    assert!(w.has("hook gate Initialized"), "confirm-rollout receives the current phase");
    assert!(w.has("Warning Halt podinfo.test advancement waiting for approval gate"));
    assert!(w.has("alert Warn Canary is waiting for approval."));
    w.take_log();
    w.advance(Duration::from_secs(5));
    w.tick();
    assert!(w.probes.is_empty(), "the gate is polled once per interval");
    w.advance(INTERVAL);
    w.tick();
    assert_eq!(w.take_log(), vec!["hook gate Waiting"], "no repeated events while waiting");
    w.hook_answers.clear();
    w.step();
    assert_eq!(w.phase(), Phase::Progressing);
    assert!(w.target.scaled_up);
    assert!(w.has("Normal Confirm-rollout check gate passed"));
}

#[test]
fn muted_gates_send_no_alert() {
    let mut a = analysis();
    let mut gate = hook("gate", "confirm-rollout");
    gate.mute_alert = Some(true);
    a.webhooks = Some(vec![gate]);
    let mut w = World::initialized(a);
    w.hook_answers.insert("gate".into(), HookResult::Failed("Forbidden".into()));
    w.deploy("2");
    w.tick();
    assert_eq!(w.phase(), Phase::Waiting);
    assert!(!w.log.iter().any(|l| l.starts_with("alert")));
}

#[test]
fn confirm_promotion_gate_holds_while_the_analysis_continues() {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("promote-gate", "confirm-promotion")]);
    let mut w = World::initialized(a);
    w.hook_answers.insert("promote-gate".into(), HookResult::Failed("Forbidden".into()));
    w.deploy("2");
    w.tick();
    for _ in 0..5 {
        w.step();
        assert!(!w.has("hook promote-gate Progressing"), "asked only at max weight");
    }
    w.step();
    assert_eq!(w.phase(), Phase::WaitingPromotion);
    assert!(w.has("Warning Halt podinfo.test advancement waiting for promotion approval promote-gate"));
    assert_eq!(w.status().canary_weight, 50, "the status keeps the routed weight");
    w.take_log();
    w.step();
    assert_eq!(w.phase(), Phase::WaitingPromotion);
    assert_eq!(w.take_log(), vec!["metric request-success-rate", "hook promote-gate Progressing"]);
    // A failing check while waiting still counts.
    w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Value(1.0));
    w.step();
    assert_eq!(w.status().failed_checks, 1);
    w.metric_values.clear();
    w.hook_answers.clear();
    w.step();
    assert_eq!(w.phase(), Phase::Promoting);
    assert!(w.has("Normal Confirm-promotion check promote-gate passed"));
}

/// Event webhooks get the phase the Canary was in when the Event happened, as Flagger sends it
/// (compared with Flagger itself by `tests/e2e_differential.rs`).
#[test]
fn events_carry_the_phase_the_canary_was_in() {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("approve", "confirm-promotion")]);
    let mut w = World::initialized(a);
    w.hook_answers.insert("approve".into(), HookResult::Failed("Forbidden".into()));
    w.deploy("2");
    let mut events = Vec::new();
    let mut keep = |out: Outcome| {
        events.extend(out.effects.into_iter().filter_map(|e| match e {
            Effect::Event { message, phase, .. } => Some((message, phase)),
            _ => None,
        }))
    };
    keep(w.tick());
    for _ in 0..7 {
        keep(w.step());
    }
    w.hook_answers.clear();
    for _ in 0..12 {
        keep(w.step());
    }
    assert_eq!(w.phase(), Phase::Succeeded);
    let phase = |start: &str| {
        events.iter().find(|(m, _)| m.starts_with(start)).unwrap_or_else(|| panic!("{start}: {events:#?}")).1
    };
    assert_eq!(phase("New revision detected! Scaling up"), Phase::Progressing);
    assert_eq!(phase("Advance podinfo.test canary weight 50"), Phase::Progressing);
    assert_eq!(phase("Halt podinfo.test advancement waiting for promotion approval"), Phase::Progressing);
    assert_eq!(phase("Confirm-promotion check approve passed"), Phase::WaitingPromotion);
    assert_eq!(phase("Copying podinfo.test template spec"), Phase::WaitingPromotion);
    assert_eq!(phase("Promotion completed! Scaling down"), Phase::Succeeded, "{events:#?}");
}

#[test]
fn confirm_traffic_increase_gate_holds_the_weight() {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("more", "confirm-traffic-increase")]);
    let mut w = World::initialized(a);
    w.deploy("2");
    w.tick();
    w.step();
    assert_eq!(w.routes.canary, 10);
    w.hook_answers.insert("more".into(), HookResult::Failed("Forbidden".into()));
    w.step();
    assert_eq!(w.routes.canary, 10);
    assert!(w.has("Warning Halt podinfo.test advancement waiting for traffic increase approval more"));
    assert_eq!(w.status().failed_checks, 0, "a closed gate is not a failed check");
    w.hook_answers.clear();
    w.step();
    assert_eq!(w.routes.canary, 20);
    // At max weight the next step promotes: no traffic increase to confirm.
    for _ in 0..3 {
        w.step();
    }
    w.take_log();
    w.hook_answers.insert("more".into(), HookResult::Failed("Forbidden".into()));
    w.step();
    assert_eq!(w.phase(), Phase::Promoting);
    assert!(!w.has("hook more Progressing"));
}

// ------------------------------------------------------------------- A/B and Blue/Green

#[test]
fn ab_testing_runs_iterations_then_promotes() {
    let mut a = analysis();
    a.step_weight = None;
    a.max_weight = None;
    a.iterations = Some(3);
    a.match_ = Some(vec![AbMatch {
        headers: Some(BTreeMap::from([(
            "x-canary".into(),
            crate::api::HeaderMatch { exact: Some("insider".into()), ..Default::default() },
        )])),
        ..Default::default()
    }]);
    let mut w = World::initialized(a);
    w.deploy("2");
    w.tick();
    for i in 1..=3 {
        w.step();
        assert_eq!(w.routes, Routes::canary(100), "matching requests go to the canary");
        assert_eq!(w.status().iterations, i);
        assert!(w.has(&format!("Normal Advance podinfo.test canary iteration {i}/3")));
    }
    w.step();
    assert_eq!(w.phase(), Phase::Promoting);
    w.step();
    assert_eq!((w.phase(), w.routes), (Phase::Finalising, Routes::PRIMARY));
    w.step();
    assert!(w.has("finished ab-testing Completed"));
}

#[test]
fn blue_green_with_mirroring_on_istio() {
    let mut a = analysis();
    a.step_weight = None;
    a.max_weight = None;
    a.iterations = Some(2);
    a.mirror = Some(true);
    let mut w = World::initialized(a);
    w.deploy("2");
    w.tick();
    w.step();
    assert_eq!(w.routes, Routes { mirrored: true, ..Routes::PRIMARY });
    w.step();
    assert_eq!(w.status().iterations, 2);
    assert!(w.routes.mirrored);
    w.step();
    assert!(w.has("Normal Stop traffic mirroring and route all traffic to canary"));
    assert_eq!(w.routes, Routes::canary(100));
    assert_eq!(w.status().iterations, 3);
    w.step();
    assert_eq!(w.phase(), Phase::Promoting);
    w.step();
    w.step();
    assert_eq!(w.phase(), Phase::Succeeded);
    assert!(w.has("finished blue-green Completed"));
}

#[test]
fn kubernetes_provider_is_blue_green_without_traffic_shifting() {
    let mut w = World::new(analysis()).with_spec(|s| s.provider = Some("kubernetes".into()));
    w.primary = Some(Primary { revision: w.target.revision.clone(), readiness: Readiness::Ready });
    w.tick();
    w.deploy("2");
    w.tick();
    for i in 1..=10 {
        w.step();
        assert_eq!(w.status().iterations, i);
    }
    assert!(!w.log.iter().any(|l| l.starts_with("routes")), "nothing to route");
    w.step();
    assert_eq!(w.phase(), Phase::Promoting);
    w.step();
    assert_eq!(w.phase(), Phase::Finalising);
    w.step();
    assert_eq!(w.phase(), Phase::Succeeded);
}

#[test]
fn canary_with_mirroring_shadows_before_shifting() {
    let mut a = analysis();
    a.mirror = Some(true);
    a.webhooks = Some(vec![hook("acceptance", "pre-rollout"), hook("more", "confirm-traffic-increase")]);
    let mut w = World::initialized(a);
    w.deploy("2");
    w.tick();
    w.step();
    assert_eq!(w.routes, Routes { mirrored: true, ..Routes::PRIMARY });
    assert!(w.has("hook acceptance Progressing"));
    assert!(!w.has("hook more Progressing"));
    w.take_log();
    w.step();
    assert!(w.has("metric request-success-rate"), "the mirrored step is analysed");
    assert!(!w.has("hook acceptance Progressing"), "pre-rollout runs once");
    assert!(!w.has("hook more Progressing"), "leaving the mirror is not a traffic increase to confirm");
    assert_eq!(w.routes, Routes::canary(10));
}

#[test]
fn mirroring_is_ignored_by_routers_that_cannot_mirror() {
    let mut a = analysis();
    a.mirror = Some(true);
    let mut w = World::new(a).with_spec(|s| s.provider = Some("nginx".into()));
    w.primary = Some(Primary { revision: w.target.revision.clone(), readiness: Readiness::Ready });
    w.tick();
    w.deploy("2");
    w.tick();
    w.step();
    assert_eq!(w.routes, Routes::canary(10));
}

// ------------------------------------------------------------------- revisions

#[test]
fn a_new_revision_during_the_analysis_restarts_it_at_once() {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("acceptance", "pre-rollout")]);
    let mut w = World::initialized(a);
    w.deploy("2");
    w.tick();
    w.step();
    w.step();
    assert_eq!(w.routes.canary, 20);
    w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Value(1.0));
    w.step();
    assert_eq!(w.status().failed_checks, 1);
    w.metric_values.clear();
    w.deploy("3");
    w.advance(Duration::from_secs(1));
    w.take_log();
    w.tick();
    assert!(w.has("Normal New revision detected! Restarting analysis for podinfo.test"));
    assert_eq!(w.routes, Routes::PRIMARY);
    let s = w.status();
    assert_eq!((s.phase, s.canary_weight, s.failed_checks), (Phase::Progressing, 0, 0));
    assert_eq!(s.last_applied_spec, revision("3"));
    w.step();
    assert!(w.has("hook acceptance Progressing"), "pre-rollout runs again for the new revision");
}

#[test]
fn a_config_change_alone_starts_a_run() {
    let mut w = World::initialized(analysis());
    w.target.configs.insert("configmap/podinfo-config".into(), "0123456789abcdef".into());
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(w.status().tracked_configs.len(), 1);
}

#[test]
fn reverting_to_the_promoted_template_does_not_start_a_run() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Value(1.0));
    for _ in 0..3 {
        w.step();
    }
    assert_eq!(w.phase(), Phase::Failed);
    w.deploy("1");
    w.tick();
    assert_eq!(w.phase(), Phase::Failed, "manual rollback to the primary's template");
    w.deploy("3");
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
}

// ------------------------------------------------------------------- skipAnalysis and suspend

#[test]
fn skip_analysis_promotes_directly() {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("post", "post-rollout")]);
    let mut w = World::initialized(a);
    w.canary.spec.skip_analysis = Some(true);
    w.deploy("2");
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
    w.step();
    assert_eq!(w.phase(), Phase::Succeeded);
    assert!(w.probes.is_empty(), "no analysis");
    assert!(w.has("promote") && w.has("scale down") && w.has("post-rollout Succeeded"));
    assert!(w.has("finished canary Skipped"));
    assert!(w.has("Normal Promotion completed! Canary analysis was skipped for podinfo.test"));
    assert_eq!(w.status().last_promoted_spec, revision("2"));
}

#[test]
fn suspend_pauses_everything_and_says_so_once() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    w.step();
    w.canary.spec.suspend = Some(true);
    w.take_log();
    w.step();
    assert_eq!(w.take_log(), vec!["Normal skipping canary run as object is suspended"]);
    w.step();
    assert!(w.take_log().is_empty());
    assert_eq!(w.routes.canary, 10);
    w.canary.spec.suspend = None;
    w.step();
    assert_eq!(w.routes.canary, 20);
}

// ------------------------------------------------------------------- restarts and adoption

#[test]
fn routes_lost_between_status_and_effects_are_restored_without_a_step() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    w.step();
    w.step();
    assert_eq!(w.routes.canary, 20);
    // A crash after the status was written, before the routes were set.
    w.routes = Routes::canary(10);
    w.advance(Duration::from_secs(2));
    w.take_log();
    w.tick();
    // The step's Event was not sent either (it follows the routes): it comes with them, once.
    assert_eq!(w.take_log(), vec!["routes 80/20", "Normal Advance podinfo.test canary weight 20"]);
    w.tick();
    assert_eq!(w.take_log(), Vec::<String>::new(), "nothing twice");
    w.advance(INTERVAL);
    w.tick();
    assert_eq!(w.routes.canary, 30, "no step repeated, none skipped");
}

#[test]
fn a_promotion_interrupted_before_the_copy_is_completed() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    for _ in 0..6 {
        w.step();
    }
    assert_eq!(w.phase(), Phase::Promoting);
    // The primary never got the new template (crash before the Promote effect).
    w.primary.as_mut().unwrap().revision = revision("1");
    w.take_log();
    let out = w.step();
    assert!(w.has("promote"));
    assert_eq!(w.phase(), Phase::Promoting, "traffic stays until the primary runs the promoted template");
    assert_eq!(w.routes, Routes::canary(50));
    assert_eq!(w.status().decision.as_ref().unwrap().reason, "WaitPrimaryPromoted");
    // Copying again is Veer's own business (a restart, or its cache behind its write), as in
    // Flagger: no Event.
    assert!(!out.effects.iter().any(|e| matches!(e, Effect::Event { .. })), "{:?}", out.effects);
}

#[test]
fn a_canary_promoted_by_flagger_is_adopted_without_a_run() {
    let mut w = World::initialized(analysis());
    let s = w.canary.status.as_mut().unwrap();
    s.phase = Phase::Succeeded;
    s.last_applied_spec = "5f7d8c4b9f".into();
    s.last_promoted_spec = "5f7d8c4b9f".into();
    s.last_step_time = None;
    s.decision = None;
    w.tick();
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.status().last_applied_spec, w.target.revision);
    assert_eq!(w.status().decision.as_ref().unwrap().reason, "Adopted");
    assert!(w.log.iter().all(|l| !l.starts_with("scale")));
    // The primary does not match: a new revision was deployed while Flagger was away.
    let mut w = World::initialized(analysis());
    let s = w.canary.status.as_mut().unwrap();
    s.phase = Phase::Succeeded;
    s.last_applied_spec = "5f7d8c4b9f".into();
    s.last_promoted_spec = "5f7d8c4b9f".into();
    w.deploy("2");
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
}

#[test]
fn session_affinity_cookies_follow_the_run() {
    let mut a = analysis();
    a.session_affinity = Some(SessionAffinity {
        cookie_name: "canary".into(),
        primary_cookie_name: Some("primary".into()),
        ..Default::default()
    });
    let mut w = World::initialized(a);
    w.deploy("2");
    w.tick();
    assert!(w.status().session_affinity_cookie.is_empty());
    w.step();
    let cookie = w.status().session_affinity_cookie.clone();
    assert!(cookie.starts_with("canary=") && cookie.len() == "canary=".len() + 10, "{cookie}");
    assert!(w.status().primary_session_affinity_cookie.starts_with("primary="));
    w.step();
    assert_eq!(w.status().session_affinity_cookie, cookie, "stable during the run");
    for _ in 0..6 {
        w.step();
    }
    assert_eq!(w.phase(), Phase::Succeeded);
    assert!(w.status().session_affinity_cookie.is_empty());
    assert_eq!(w.status().previous_session_affinity_cookie, cookie);
}

#[test]
fn stalled_canaries_get_a_condition_and_one_event() {
    let w = World::new(analysis());
    let out = stalled(&w.canary, Reason::TargetNotFound, "Deployment podinfo.test not found", w.now);
    let c = out.status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "TargetNotFound"));
    assert_eq!(out.effects.len(), 1);
    let mut canary = w.canary.clone();
    canary.status = Some(out.status);
    let again = stalled(&canary, Reason::TargetNotFound, "Deployment podinfo.test not found", w.now);
    assert!(again.effects.is_empty(), "the same problem is reported once");
    // Once the problem is gone, the next tick clears the condition.
    let mut w2 = World::new(analysis());
    w2.canary = canary;
    w2.primary = Some(Primary { revision: w2.target.revision.clone(), readiness: Readiness::Ready });
    w2.tick();
    assert!(w2.status().conditions.iter().all(|c| c.type_ != "Stalled"));
}

#[test]
fn routes_that_cannot_be_read_wait_with_a_warning() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    let mut obs = w.observations();
    obs.routes = Err("VirtualService podinfo.test not found".into());
    let Step::Done(out) = decide(&w.canary, &obs, &w.settings, w.now) else { panic!("decided") };
    assert_eq!(out.status.phase, Phase::Initialized);
    assert!(out.effects.contains(&Effect::Event {
        warning: true,
        message: "VirtualService podinfo.test not found".into(),
        phase: Phase::Initialized,
    }));
    assert_eq!(out.requeue, Some(INTERVAL));
}

#[test]
fn last_transition_time_moves_only_when_the_status_changes() {
    let mut w = World::initialized(analysis());
    let t0 = w.status().last_transition_time.clone();
    w.step();
    assert_eq!(w.status().last_transition_time, t0);
    w.deploy("2");
    w.tick();
    assert_ne!(w.status().last_transition_time, t0);
}

// ------------------------------------------------------------------- no release is lost

/// A world at the tick that copied revision 2 to the primary (phase Promoting, canary at 50%).
fn promoting(a: CanaryAnalysis) -> World {
    let mut w = World::initialized(a);
    w.deploy("2");
    w.tick();
    for _ in 0..6 {
        w.step();
    }
    assert_eq!(w.phase(), Phase::Promoting);
    assert_eq!(w.primary.as_ref().unwrap().revision, revision("2"));
    w.take_log();
    w
}

#[test]
fn a_revision_deployed_during_the_promotion_is_analysed_after_it() {
    let mut a = analysis();
    a.step_weight_promotion = Some(10);
    let mut w = promoting(a);
    w.deploy("3");
    // At once, not one interval later: revision 3 must not keep the canary's traffic.
    w.advance(Duration::from_secs(1));
    w.tick();
    assert_eq!(w.routes, Routes::PRIMARY, "all traffic back on the primary, which runs revision 2");
    assert_eq!(w.phase(), Phase::Finalising);
    assert!(w.has(
        "Normal New revision detected! Routing all traffic to primary before analysing it for podinfo.test"
    ));
    w.advance(Duration::from_secs(1));
    w.tick();
    assert_eq!(w.phase(), Phase::Succeeded);
    let s = w.status();
    assert_eq!(s.last_promoted_spec, revision("2"), "what was analysed is what was promoted");
    assert_eq!(s.last_applied_spec, revision("2"));
    assert_eq!(w.primary.as_ref().unwrap().revision, revision("2"));
    // The next tick sees revision 3 as new and analyses it from the start.
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(w.status().last_applied_spec, revision("3"));
    assert!(w.target.scaled_up);
    for _ in 0..20 {
        if w.phase() == Phase::Succeeded {
            break;
        }
        w.step();
    }
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.primary.as_ref().unwrap().revision, revision("3"));
}

#[test]
fn a_revision_deployed_while_finalising_is_analysed_after_it() {
    let mut w = promoting(analysis());
    w.step();
    assert_eq!(w.phase(), Phase::Finalising);
    w.deploy("3");
    w.advance(Duration::from_secs(1));
    w.tick();
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.status().last_promoted_spec, revision("2"));
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(w.status().last_applied_spec, revision("3"));
}

#[test]
fn a_revision_deployed_before_an_interrupted_copy_restarts_the_analysis() {
    let mut w = promoting(analysis());
    // The copy never reached the primary, and the target now holds revision 3: revision 2 can no
    // longer be copied, so revision 3 is analysed from the start (the primary keeps revision 1).
    w.primary.as_mut().unwrap().revision = revision("1");
    w.deploy("3");
    w.advance(Duration::from_secs(1));
    w.tick();
    assert!(!w.has("promote"), "an unanalysed template is never copied");
    assert_eq!(w.routes, Routes::PRIMARY);
    let s = w.status();
    assert_eq!((s.phase, s.canary_weight), (Phase::Progressing, 0));
    assert_eq!(s.last_applied_spec, revision("3"));
    assert_eq!(s.last_promoted_spec, revision("1"));
}

#[test]
fn a_revision_deployed_while_waiting_for_promotion_approval_restarts_the_analysis() {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("approve", "confirm-promotion")]);
    let mut w = World::initialized(a);
    w.hook_answers.insert("approve".into(), HookResult::Failed("closed".into()));
    w.deploy("2");
    w.tick();
    for _ in 0..6 {
        w.step();
    }
    assert_eq!(w.phase(), Phase::WaitingPromotion);
    w.deploy("3");
    w.advance(Duration::from_secs(1));
    w.tick();
    assert!(!w.has("promote"));
    let s = w.status();
    assert_eq!((s.phase, s.canary_weight), (Phase::Progressing, 0));
    assert_eq!(s.last_applied_spec, revision("3"));
    assert_eq!(w.routes, Routes::PRIMARY);
}

#[test]
fn a_revision_deployed_during_initialization_gets_a_run() {
    let mut w = World::new(analysis());
    w.primary =
        Some(Primary { revision: w.target.revision.clone(), readiness: Readiness::Waiting("0 of 1".into()) });
    w.tick();
    w.deploy("2"); // the primary was created from revision 1
    w.primary.as_mut().unwrap().readiness = Readiness::Ready;
    w.tick();
    assert_eq!(w.phase(), Phase::Initialized);
    assert_eq!(w.status().last_promoted_spec, revision("1"), "what the primary runs");
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(w.status().last_applied_spec, revision("2"));
}

#[test]
fn a_rollback_for_a_failed_primary_keeps_the_newer_revision_for_a_run() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    w.step();
    w.deploy("3");
    w.primary.as_mut().unwrap().readiness = Readiness::Failed("primary progress deadline exceeded".into());
    w.advance(Duration::from_secs(1));
    w.tick();
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.status().last_applied_spec, revision("2"), "the failed run is revision 2's");
    w.primary.as_mut().unwrap().readiness = Readiness::Ready;
    w.tick();
    assert_eq!(w.phase(), Phase::Progressing, "revision 3 was never analysed");
    assert_eq!(w.status().last_applied_spec, revision("3"));
}

/// Kills the controller after the status write of the run's last tick and after each of its
/// effects in turn: the next controller carries out the rest, and the run's end effects happen at
/// least once.
#[test]
fn end_of_run_effects_survive_a_crash_at_every_boundary() {
    for (name, fail) in [("promotion", false), ("rollback", true)] {
        let effects = {
            let mut w = end_of_run(fail);
            w.step().effects.len()
        };
        assert!(effects >= 4, "{name}: {effects} effects");
        for k in 0..=effects {
            let mut w = end_of_run(fail);
            w.crash_after = Some(k);
            let out = w.step();
            let ended = if fail { Phase::Failed } else { Phase::Succeeded };
            assert_eq!(w.phase(), ended);
            assert!(!w.status().pending_effects.is_empty(), "{name}/{k}: kept until done");
            assert_eq!(out.effects.len(), effects);
            // The next controller resumes.
            w.advance(Duration::from_secs(1));
            w.tick();
            assert!(w.status().pending_effects.is_empty(), "{name}/{k}: done");
            assert!(!w.target.scaled_up, "{name}/{k}: the canary is scaled down");
            assert_eq!(w.routes, Routes::PRIMARY, "{name}/{k}");
            let phase = ended.as_str();
            assert!(w.has(&format!("post-rollout {phase}")), "{name}/{k}: {:?}", w.log);
            let counted = w.log.iter().filter(|l| l.starts_with("finished canary")).count();
            assert!(counted >= 1, "{name}/{k}: the run is counted");
            // Effects never carried out twice past the crash boundary but the first time.
            let posts = w.log.iter().filter(|l| l.starts_with("post-rollout")).count();
            assert_eq!(posts, if k > effects_before_post(fail) { 2 } else { 1 }, "{name}/{k}: {:?}", w.log);
            // And later ticks do nothing more.
            w.take_log();
            w.tick();
            assert!(w.take_log().is_empty(), "{name}/{k}");
        }
    }
}

/// A world one step before its run ends: Finalising (promotion) or one failed check from the
/// threshold (rollback).
fn end_of_run(fail: bool) -> World {
    let mut a = analysis();
    a.webhooks = Some(vec![hook("post", "post-rollout")]);
    if fail {
        let mut w = World::initialized(a);
        w.deploy("2");
        w.tick();
        w.step();
        w.metric_values.insert(REQUEST_SUCCESS_RATE.into(), MetricResult::Value(1.0));
        w.step();
        assert_eq!(w.status().failed_checks, 1);
        w.take_log();
        w
    } else {
        let mut w = promoting(a);
        w.step();
        assert_eq!(w.phase(), Phase::Finalising);
        w.take_log();
        w
    }
}

/// How many effects of the run's last tick come before its post-rollout hooks.
fn effects_before_post(fail: bool) -> usize {
    let mut w = end_of_run(fail);
    let out = w.step();
    out.effects.iter().position(|e| matches!(e, Effect::PostRolloutHooks { .. })).unwrap()
}

#[test]
fn a_scale_down_that_never_happened_is_redone_between_runs() {
    let mut w = World::initialized(analysis());
    w.target.scaled_up = true; // the scale-down of the initialization failed
    w.tick();
    assert_eq!(w.take_log(), vec!["scale down"]);
    w.tick();
    assert!(w.take_log().is_empty());
}

#[test]
fn a_canary_that_kept_the_traffic_after_a_failed_promotion_keeps_running() {
    let mut w = promoting(analysis());
    w.primary.as_mut().unwrap().readiness = Readiness::Failed("primary progress deadline exceeded".into());
    w.step();
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.routes, Routes::canary(100));
    w.take_log();
    w.tick();
    assert!(w.take_log().is_empty(), "no scale-down of the only healthy copy");
    assert!(w.target.scaled_up);
}

#[test]
fn a_promotion_without_analysis_that_never_reached_the_primary_is_redone() {
    let mut w = World::initialized(analysis());
    w.canary.spec.skip_analysis = Some(true);
    w.deploy("2");
    w.tick();
    w.step();
    assert_eq!(w.phase(), Phase::Succeeded);
    // The copy was lost: the primary still runs revision 1.
    w.primary.as_mut().unwrap().revision = revision("1");
    w.take_log();
    w.tick();
    assert_eq!(w.take_log(), vec!["promote"]);
    assert_eq!(w.status().decision.as_ref().unwrap().reason, "RepeatPromotion");
    assert_eq!(w.phase(), Phase::Succeeded);
    w.tick();
    assert!(w.take_log().is_empty());
}

// ------------------------------------------------------------------- hostile values

#[test]
fn a_spec_out_of_bounds_stalls_the_canary_with_the_field_named() {
    let mut w = World::initialized(analysis());
    w.canary.spec.analysis.as_mut().unwrap().interval = Some("99999999999999999999h".into());
    let out = w.tick();
    let c = out.status.conditions.iter().find(|c| c.type_ == "Stalled").expect("a Stalled condition");
    assert_eq!(c.reason, "InvalidSpec");
    let message = c.message.as_deref().unwrap();
    assert!(message.contains("spec.analysis.interval") && message.contains("too large"), "{message}");
    assert!(matches!(&out.effects[..], [Effect::Event { warning: true, .. }]));
    // Fixed: the next tick proceeds and clears it.
    w.canary.spec.analysis.as_mut().unwrap().interval = Some("30s".into());
    w.tick();
    assert!(w.status().conditions.iter().all(|c| c.type_ != "Stalled"));
}

#[test]
fn a_last_step_time_at_the_end_of_time_does_not_panic() {
    let mut w = World::initialized(analysis());
    w.deploy("2");
    w.tick();
    w.canary.status.as_mut().unwrap().last_step_time = Some(Timestamp::MAX);
    w.now = Timestamp::MAX;
    let out = w.tick();
    assert_eq!(w.phase(), Phase::Progressing);
    assert!(out.requeue.is_some());
}
