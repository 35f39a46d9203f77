//! Property tests: random Canaries driven through random histories must keep the invariants of
//! the state machine whatever happens.

use std::{collections::BTreeMap, time::Duration};

use proptest::prelude::{
    Just, ProptestConfig, Strategy as Gen, TestCaseError, any, prop_assert, prop_assert_eq, prop_oneof,
    proptest,
};

use super::{tests::*, *};
use crate::api::{AbMatch, CanaryAnalysis, CanaryMetric, Phase, ThresholdRange};

#[derive(Clone, Debug)]
enum Action {
    Advance(u64),
    Deploy(u8),
    Config(u8),
    Hook(usize, bool),
    Metric(usize, MetricResult),
    TargetReadiness(u8),
    PrimaryReadiness(u8),
    Suspend(bool),
    /// The next tick's controller dies after its status write and this many effects.
    Crash(usize),
}

const HOOKS: [(&str, &str); 6] = [
    ("gate", "confirm-rollout"),
    ("pre", "pre-rollout"),
    ("load", "rollout"),
    ("more", "confirm-traffic-increase"),
    ("promote", "confirm-promotion"),
    ("abort", "rollback"),
];

fn metric_result() -> impl Gen<Value = MetricResult> {
    prop_oneof![
        4 => (0.0..200.0f64).prop_map(MetricResult::Value),
        1 => Just(MetricResult::NoData),
        1 => Just(MetricResult::Value(f64::NAN)),
        1 => prop_oneof![Just(f64::INFINITY), Just(f64::NEG_INFINITY)].prop_map(MetricResult::Value),
        1 => Just(MetricResult::Error("boom".into())),
    ]
}

fn action() -> impl Gen<Value = Action> {
    prop_oneof![
        6 => (0u64..90).prop_map(Action::Advance),
        1 => (0u8..4).prop_map(Action::Deploy),
        1 => (0u8..3).prop_map(Action::Config),
        2 => (0..HOOKS.len(), any::<bool>()).prop_map(|(i, b)| Action::Hook(i, b)),
        2 => (0usize..2, metric_result()).prop_map(|(i, r)| Action::Metric(i, r)),
        1 => (0u8..3).prop_map(Action::TargetReadiness),
        1 => (0u8..3).prop_map(Action::PrimaryReadiness),
        1 => any::<bool>().prop_map(Action::Suspend),
        1 => (0usize..6).prop_map(Action::Crash),
    ]
}

fn canary_analysis() -> impl Gen<Value = (CanaryAnalysis, String, bool)> {
    let strategy = prop_oneof![
        (1i32..60, 0i32..=100).prop_map(|(s, m)| (Some(s), None, Some(m), None, None)),
        proptest::collection::btree_set(1i32..=100, 1..5).prop_map(|set| (
            None,
            Some(set.into_iter().collect::<Vec<_>>()),
            None,
            None,
            None
        )),
        (1i32..5).prop_map(|i| (None, None, None, Some(i), None)),
        (1i32..5).prop_map(|i| (None, None, None, Some(i), Some(vec![AbMatch::default()]))),
    ];
    (
        strategy,
        0i32..4,
        prop_oneof![Just(0i32), 1i32..60],
        any::<bool>(),
        proptest::sample::subsequence(HOOKS.to_vec(), 0..=HOOKS.len()),
        prop_oneof![Just("istio"), Just("nginx"), Just("kubernetes")],
        any::<bool>(),
    )
        .prop_map(
            |((step, steps, max, iterations, match_), threshold, promo, mirror, hooks, provider, skip)| {
                let analysis = CanaryAnalysis {
                    interval: Some("30s".into()),
                    threshold: Some(threshold),
                    step_weight: step,
                    step_weights: steps,
                    max_weight: max,
                    iterations,
                    match_,
                    mirror: Some(mirror),
                    step_weight_promotion: Some(promo),
                    metrics: Some(vec![
                        CanaryMetric {
                            name: REQUEST_SUCCESS_RATE.into(),
                            threshold_range: Some(ThresholdRange { min: Some(99.0), max: None }),
                            ..Default::default()
                        },
                        CanaryMetric {
                            name: REQUEST_DURATION.into(),
                            threshold_range: Some(ThresholdRange { min: None, max: Some(500.0) }),
                            ..Default::default()
                        },
                    ]),
                    webhooks: Some(hooks.iter().map(|(n, t)| hook(n, t)).collect()),
                    ..Default::default()
                };
                (analysis, provider.to_string(), skip)
            },
        )
}

fn readiness(n: u8) -> Readiness {
    match n {
        0 => Readiness::Ready,
        1 => Readiness::Waiting("rolling out".into()),
        _ => Readiness::Failed("deadline".into()),
    }
}

fn apply(w: &mut World, a: &Action) {
    match a {
        Action::Advance(s) => w.advance(Duration::from_secs(*s)),
        Action::Deploy(r) => w.deploy(&r.to_string()),
        Action::Config(c) => {
            w.target.configs = BTreeMap::from([("configmap/app".to_string(), format!("{c:016}"))]);
        }
        Action::Hook(i, pass) => {
            let answer = if *pass { HookResult::Passed } else { HookResult::Failed("no".into()) };
            w.hook_answers.insert(HOOKS[*i].0.into(), answer);
        }
        Action::Metric(i, r) => {
            let name = [REQUEST_SUCCESS_RATE, REQUEST_DURATION][*i];
            // Durations are judged against max 500: map the success-rate range onto it.
            let r = match r {
                MetricResult::Value(v) if *i == 1 => MetricResult::Value(v * 5.0),
                r => r.clone(),
            };
            w.metric_values.insert(name.into(), r);
        }
        Action::TargetReadiness(n) => w.target.readiness = readiness(*n),
        Action::PrimaryReadiness(n) => {
            if let Some(p) = w.primary.as_mut() {
                p.readiness = readiness(*n);
            }
        }
        Action::Suspend(s) => w.canary.spec.suspend = Some(*s),
        Action::Crash(k) => w.crash_after = Some(*k),
    }
}

/// Checks every invariant after one tick (`crashed`: the tick's controller died before it was done).
fn check(before: &World, w: &World, out: &Outcome, crashed: bool) -> Result<(), TestCaseError> {
    let p = Params::new(&w.canary.spec, &w.settings).expect("the generated specs are within bounds");
    let old = before.canary.status.clone().unwrap_or_default();
    let new = &out.status;
    let r = w.routes;
    prop_assert_eq!(r.primary + r.canary, 100, "weights sum to 100: {:?}", r);
    prop_assert!((0..=100).contains(&r.canary));
    if matches!(new.phase, Phase::Progressing | Phase::WaitingPromotion) && p.strategy == Strategy::Canary {
        prop_assert!(r.canary <= p.max_weight, "canary {} above max {}", r.canary, p.max_weight);
        prop_assert!(new.canary_weight <= p.max_weight);
    }
    for e in &out.effects {
        if let Effect::SetRoutes(r) = e {
            prop_assert_eq!(r.primary + r.canary, 100);
        }
    }
    // No promotion without every confirm-promotion hook passing in this tick.
    let hooks = w.canary.spec.analysis.as_ref().and_then(|a| a.webhooks.clone()).unwrap_or_default();
    let promoted =
        out.effects.contains(&Effect::Promote) && old.phase != Phase::Promoting && !p.skip_analysis;
    if promoted {
        for (i, h) in hooks.iter().enumerate() {
            if HookType::of(h) == Some(HookType::ConfirmPromotion) {
                let asked = w.probes.iter().any(|pr| matches!(pr, Probe::Hook { index, .. } if *index == i));
                prop_assert!(asked, "confirm-promotion hook {} not asked", h.name);
                prop_assert_eq!(
                    w.hook_answers.get(&h.name).cloned().unwrap_or(HookResult::Passed),
                    HookResult::Passed
                );
            }
        }
    }
    // Reaching the threshold always rolls back.
    if matches!(new.phase, Phase::Progressing | Phase::WaitingPromotion) {
        prop_assert!(
            new.failed_checks < p.threshold,
            "{} failed checks, threshold {}",
            new.failed_checks,
            p.threshold
        );
    }
    if old.phase != Phase::Failed && new.phase == Phase::Failed && new.canary_weight == 0 {
        prop_assert!(out.effects.contains(&Effect::SetRoutes(Routes::PRIMARY)));
        let scaled_down = out.effects.contains(&Effect::ScaleCanary { up: false });
        prop_assert!(scaled_down, "rollback without scale down");
    }
    // Missing data never counts as a pass.
    let consulted: Vec<usize> = w
        .probes
        .iter()
        .filter_map(|p| if let Probe::Metric { index } = p { Some(*index) } else { None })
        .collect();
    let metrics = w.canary.spec.analysis.as_ref().and_then(|a| a.metrics.clone()).unwrap_or_default();
    let any_missing = consulted.iter().any(|i| match w.metric_values.get(&metrics[*i].name) {
        None => false,
        Some(MetricResult::Value(v)) => !v.is_finite(),
        Some(_) => true,
    });
    if any_missing {
        prop_assert!(!out.effects.contains(&Effect::Promote), "promoted on missing data");
        prop_assert!(
            new.failed_checks == old.failed_checks + 1 || new.phase == Phase::Failed,
            "missing data did not count: {} -> {}",
            old.failed_checks,
            new.failed_checks
        );
        let advanced =
            out.effects.iter().any(|e| matches!(e, Effect::SetRoutes(r) if r.canary > before.routes.canary));
        prop_assert!(!advanced, "advanced on missing data");
    }
    // A promotion is recorded only for the template the primary runs.
    if new.phase == Phase::Succeeded && !crashed {
        let primary = w.primary.as_ref().map(|p| p.revision.clone()).unwrap_or_default();
        prop_assert_eq!(&new.last_promoted_spec, &primary, "Succeeded without the primary running it");
    }
    // A tick that ended a run keeps its end-of-run effects until they are done.
    if new.phase.is_idle() && old.phase != new.phase {
        let end =
            out.effects.iter().any(|e| matches!(e, Effect::PostRolloutHooks { .. } | Effect::Event { .. }));
        prop_assert!(!end || !new.pending_effects.is_empty(), "end-of-run effects not kept");
    }
    if crashed {
        return Ok(()); // the routes and scale are the next controller's to restore
    }
    // The routes the status stands for are the routes the router has.
    if !matches!(new.phase, Phase::Empty | Phase::Initializing) && !w.canary.spec.suspend.unwrap_or(false) {
        let intended = intended_routes(new, &p);
        prop_assert_eq!((intended.primary, intended.canary), (r.primary, r.canary), "status {:?}", new.phase);
    }
    Ok(())
}

/// A random Canary, the webhooks' first answers, and a history of events.
fn history() -> impl Gen<Value = (World, Vec<Action>)> {
    (
        canary_analysis(),
        proptest::collection::vec(any::<bool>(), HOOKS.len()),
        proptest::collection::vec(action(), 1..60),
    )
        .prop_map(|((a, provider, skip), answers, actions)| {
            let mut w = World::new(a).with_spec(|s| {
                s.provider = Some(provider);
                s.skip_analysis = Some(skip);
            });
            w.primary = Some(Primary { revision: w.target.revision.clone(), readiness: Readiness::Ready });
            for ((name, _), pass) in HOOKS.iter().zip(answers) {
                let answer = if pass { HookResult::Passed } else { HookResult::Failed("no".into()) };
                w.hook_answers.insert(name.to_string(), answer);
            }
            w.tick();
            (w, actions)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_histories((mut w, actions) in history()) {
        for act in &actions {
            apply(&mut w, act);
            let before = w.clone();
            // Determinism: the same inputs give the same decision.
            let obs = w.observations();
            prop_assert_eq!(
                decide(&w.canary, &obs, &w.settings, w.now),
                decide(&w.canary, &obs, &w.settings, w.now)
            );
            let crashed = w.crash_after.is_some();
            let out = w.tick();
            check(&before, &w, &out, crashed)?;
        }
        settle(&mut w)?;
    }
}

/// No release is lost: after any history, a new revision deployed into a healthy world (gates
/// open, metrics good, workloads ready) is promoted, and nothing is left pending.
fn settle(w: &mut World) -> Result<(), TestCaseError> {
    w.canary.spec.suspend = None;
    w.target.readiness = Readiness::Ready;
    if let Some(p) = w.primary.as_mut() {
        p.readiness = Readiness::Ready;
    }
    for (name, kind) in HOOKS {
        // A rollback hook that passes asks for a rollback: it must not.
        let answer = if kind == "rollback" { HookResult::Failed("no".into()) } else { HookResult::Passed };
        w.hook_answers.insert(name.into(), answer);
    }
    w.metric_values.clear();
    w.deploy("final");
    for _ in 0..200 {
        w.advance(Duration::from_secs(30));
        w.tick();
        if w.phase() == Phase::Succeeded && w.status().last_promoted_spec == revision("final") {
            break;
        }
    }
    let s = w.status().clone();
    prop_assert_eq!(s.phase, Phase::Succeeded, "the final revision was not promoted: {:?}", s.decision);
    prop_assert_eq!(&s.last_promoted_spec, &revision("final"));
    prop_assert_eq!(w.primary.as_ref().map(|p| p.revision.clone()), Some(revision("final")));
    w.tick();
    prop_assert!(w.status().pending_effects.is_empty());
    prop_assert!(!w.target.scaled_up, "the canary runs after its promotion");
    prop_assert_eq!(w.routes, Routes::PRIMARY);
    Ok(())
}

/// The histories above are not vacuous: they reach every phase of a run.
#[test]
fn random_histories_reach_every_phase() {
    use proptest::{
        strategy::ValueTree,
        test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
    };
    let mut runner =
        TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..1500 {
        let (mut w, actions) = history().new_tree(&mut runner).unwrap().current();
        for act in &actions {
            apply(&mut w, act);
            w.tick();
            seen.insert(w.phase());
        }
    }
    for phase in [
        Phase::Waiting,
        Phase::Progressing,
        Phase::WaitingPromotion,
        Phase::Promoting,
        Phase::Finalising,
        Phase::Succeeded,
        Phase::Failed,
    ] {
        assert!(seen.contains(&phase), "no history reached {phase}: {seen:?}");
    }
}

/// Any string a user could put in a duration field: valid, huge, or nonsense.
fn any_duration() -> impl Gen<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        "[0-9]{1,3}(ms|s|m|h)",
        "[0-9]{1,30}(\\.[0-9]{0,12})?(ns|us|µs|ms|s|m|h)",
        ".{0,24}",
    ])
}

/// Any analysis a stored Canary could carry, including what the schema would reject.
fn any_analysis() -> impl Gen<Value = CanaryAnalysis> {
    let hook = (
        prop_oneof![
            Just(""),
            Just("confirm-rollout"),
            Just("pre-rollout"),
            Just("rollout"),
            Just("confirm-promotion"),
            Just("post-rollout"),
            Just("rollback"),
            Just("confirm-traffic-increase"),
            Just("event"),
            Just("bogus")
        ],
        any_duration(),
        proptest::option::of(any::<i32>()),
    )
        .prop_map(|(t, timeout, retries)| crate::api::CanaryWebhook {
            name: format!("h-{t}"),
            type_: Some(t.into()),
            url: "http://h/".into(),
            timeout,
            retries,
            ..Default::default()
        });
    let metric = (
        prop_oneof![Just(REQUEST_SUCCESS_RATE), Just(REQUEST_DURATION), Just("custom")],
        any_duration(),
        proptest::option::of(any::<f64>()),
        proptest::option::of(any::<f64>()),
        proptest::option::of(any::<f64>()),
    )
        .prop_map(|(name, interval, threshold, min, max)| CanaryMetric {
            name: name.into(),
            interval,
            threshold,
            threshold_range: (min.is_some() || max.is_some()).then_some(ThresholdRange { min, max }),
            ..Default::default()
        });
    (
        (any_duration(), proptest::option::of(any::<i32>()), proptest::option::of(any::<i32>())),
        (
            proptest::option::of(any::<i32>()),
            proptest::option::of(any::<i32>()),
            proptest::option::of(any::<i32>()),
        ),
        proptest::option::of(proptest::collection::vec(any::<i32>(), 0..6)),
        (proptest::option::of(any::<bool>()), any::<bool>()),
        proptest::collection::vec(hook, 0..5),
        proptest::collection::vec(metric, 0..3),
    )
        .prop_map(
            |((interval, threshold, iterations), (max, step, promo), steps, (mirror, ab), hooks, metrics)| {
                CanaryAnalysis {
                    interval,
                    threshold,
                    iterations,
                    max_weight: max,
                    step_weight: step,
                    step_weight_promotion: promo,
                    step_weights: steps,
                    mirror,
                    match_: ab.then(|| vec![AbMatch::default()]),
                    webhooks: Some(hooks),
                    metrics: Some(metrics),
                    ..Default::default()
                }
            },
        )
}

/// Any status a stored Canary could carry: written by another version, by Flagger, or by hand.
fn any_status() -> impl Gen<Value = crate::api::CanaryStatus> {
    let phase = proptest::sample::select(vec![
        Phase::Empty,
        Phase::Initializing,
        Phase::Initialized,
        Phase::Waiting,
        Phase::Progressing,
        Phase::WaitingPromotion,
        Phase::Promoting,
        Phase::Finalising,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Terminating,
        Phase::Terminated,
    ]);
    let time = prop_oneof![
        Just(None),
        Just(Some(k8s_openapi::jiff::Timestamp::MIN)),
        Just(Some(k8s_openapi::jiff::Timestamp::MAX)),
        (1_700_000_000i64..1_900_000_000).prop_map(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok()),
    ];
    let spec = prop_oneof![
        Just(String::new()),
        Just(revision("1")),
        Just(revision("2")),
        Just("5f7d8c4b9f".to_string())
    ];
    (phase, any::<i32>(), any::<i32>(), any::<i32>(), time, spec.clone(), spec).prop_map(
        |(phase, weight, failed, iterations, last_step_time, applied, promoted)| crate::api::CanaryStatus {
            phase,
            canary_weight: weight,
            failed_checks: failed,
            iterations,
            last_step_time,
            last_applied_spec: applied,
            last_promoted_spec: promoted,
            ..Default::default()
        },
    )
}

fn any_routes() -> impl Gen<Value = Result<Routes, String>> {
    prop_oneof![
        4 => (0i32..=100, any::<bool>()).prop_map(|(c, mirrored)| Ok(Routes { mirrored, ..Routes::canary(c) })),
        1 => (any::<i32>(), any::<i32>(), any::<bool>()).prop_map(|(primary, canary, mirrored)| Ok(Routes { primary, canary, mirrored })),
        1 => Just(Err("VirtualService not found".to_string())),
    ]
}

fn any_metric_result() -> impl Gen<Value = MetricResult> {
    prop_oneof![
        3 => any::<f64>().prop_map(MetricResult::Value),
        1 => prop_oneof![Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(f64::MAX), Just(1e300)].prop_map(MetricResult::Value),
        1 => Just(MetricResult::NoData),
        1 => Just(MetricResult::Error("boom".into())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever a Canary, its status, the router and the probes hold, a tick decides without
    /// panicking, and any routes it sets are a valid split.
    #[test]
    fn any_spec_and_status_are_decided_without_panic(
        analysis in any_analysis(),
        status in any_status(),
        provider in prop_oneof![Just("istio"), Just("nginx"), Just("kubernetes"), Just("")],
        skip in any::<bool>(),
        routes in any_routes(),
        results in proptest::collection::vec((any::<bool>(), any_metric_result()), 8),
        scaled_up in any::<bool>(),
        now in prop_oneof![Just(k8s_openapi::jiff::Timestamp::MAX), Just(k8s_openapi::jiff::Timestamp::MIN),
            (1_700_000_000i64..1_900_000_000).prop_map(|s| k8s_openapi::jiff::Timestamp::from_second(s).unwrap())],
        progress_deadline in proptest::option::of(any::<i32>()),
    ) {
        let mut w = World::new(analysis).with_spec(|s| {
            s.provider = Some(provider.into());
            s.skip_analysis = Some(skip);
            s.progress_deadline_seconds = progress_deadline;
        });
        w.canary.status = Some(status);
        w.now = now;
        w.target.scaled_up = scaled_up;
        w.primary = Some(Primary { revision: revision("1"), readiness: Readiness::Ready });
        let mut obs = w.observations();
        obs.routes = routes;
        let mut step = decide(&w.canary, &obs, &w.settings, w.now);
        for _ in 0..100 {
            let Step::Observe(probes) = step else { break };
            for (i, p) in probes.into_iter().enumerate() {
                let (pass, metric) = results[i % results.len()].clone();
                match p {
                    Probe::Hook { index, .. } => {
                        obs.hooks.insert(index, if pass { HookResult::Passed } else { HookResult::Failed("no".into()) });
                    }
                    Probe::Metric { index } => {
                        obs.metrics.insert(index, metric);
                    }
                    Probe::MetricsProviders => obs.metrics_providers = Some(Ok(())),
                }
            }
            step = decide(&w.canary, &obs, &w.settings, w.now);
        }
        let Step::Done(out) = step else { return Err(TestCaseError::fail("the tick never decided")) };
        for e in &out.effects {
            if let Effect::SetRoutes(r) = e {
                prop_assert_eq!(r.primary + r.canary, 100, "{:?}", r);
                prop_assert!((0..=100).contains(&r.canary), "{:?}", r);
            }
        }
    }
}
