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
    }
}

/// Checks every invariant after one tick.
fn check(before: &World, w: &World, out: &Outcome) -> Result<(), TestCaseError> {
    let p = Params::new(&w.canary.spec, &w.settings);
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
        Some(MetricResult::Value(v)) => v.is_nan(),
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
            let out = w.tick();
            check(&before, &w, &out)?;
        }
    }
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
