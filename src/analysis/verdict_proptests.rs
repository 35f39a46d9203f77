//! Property tests: any metric value and any thresholds (NaN, ±Inf, subnormals, `f64::MAX`, values
//! too large for a `Duration`) give a verdict without panicking, a value that is not a finite
//! number never passes, and messages stay short.

use proptest::{
    prelude::{
        BoxedStrategy, ProptestConfig, Strategy, any, prop_assert, prop_assert_eq, prop_oneof, proptest,
    },
    sample::select,
};

use super::*;
use crate::api::ThresholdRange;

/// Any `f64`, with the awkward ones drawn often.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => any::<f64>(),
        1 => -1e6..1e6f64,
        1 => select(&[
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            0.0,
            -0.0,
            1.8e22,
            1.9e22,
            99.0,
            500.0,
        ][..]),
    ]
}

/// Finite `f64`s only, the extremes included.
fn finite() -> impl Strategy<Value = f64> {
    float().prop_filter("finite", |v| v.is_finite())
}

fn metric() -> impl Strategy<Value = CanaryMetric> {
    metric_of(float().boxed())
}

/// Metrics whose thresholds come from `numbers`.
fn metric_of(numbers: BoxedStrategy<f64>) -> impl Strategy<Value = CanaryMetric> {
    (
        select(&[REQUEST_SUCCESS_RATE, REQUEST_DURATION, "errors", "latency-é🦀"][..]),
        proptest::option::of((proptest::option::of(numbers.clone()), proptest::option::of(numbers.clone()))),
        proptest::option::of(numbers),
        any::<bool>(),
    )
        .prop_map(|(name, range, threshold, query)| CanaryMetric {
            name: name.into(),
            threshold_range: range.map(|(min, max)| ThresholdRange { min, max }),
            threshold,
            query: query.then(|| "sum(rate(x[1m]))".into()),
            ..Default::default()
        })
}

fn result() -> impl Strategy<Value = MetricResult> {
    prop_oneof![
        8 => float().prop_map(MetricResult::Value),
        1 => proptest::strategy::Just(MetricResult::NoData),
        1 => proptest::strategy::Just(MetricResult::Error("connection refused".into())),
    ]
}

/// The longest message any verdict may carry: numbers print in full (`f64::MAX` has 309 digits),
/// but nothing grows beyond a few of them.
const MAX_MESSAGE: usize = 1200;

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn any_value_gets_a_verdict_and_a_non_finite_one_never_passes(m in metric(), r in result()) {
        let verdict = judge(&m, &r, same("podinfo.test"), "istio");
        let message = match &verdict {
            Verdict::Pass => "",
            Verdict::Fail(s) | Verdict::NoData(s) | Verdict::Error(s) => s.as_str(),
        };
        prop_assert!(message.len() <= MAX_MESSAGE, "{} bytes: {message}", message.len());
        if let MetricResult::Value(v) = r {
            if v.is_nan() {
                prop_assert!(matches!(verdict, Verdict::NoData(_)), "{verdict:?}");
            } else if v.is_infinite() {
                prop_assert!(matches!(verdict, Verdict::Fail(_)), "{verdict:?}");
                prop_assert!(message.contains(&m.name) && message.contains("not a finite number"), "{message}");
            }
            prop_assert!(v.is_finite() || !verdict.passed());
        } else {
            prop_assert!(!verdict.passed());
        }
    }

    #[test]
    fn a_finite_value_passes_exactly_within_its_finite_bounds(m in metric_of(finite().boxed()), v in finite()) {
        let (min, max) = bounds(&m);
        // A target without "inf" in its name, for the check on the message.
        let verdict = judge(&m, &MetricResult::Value(v), same("web.prod"), "istio");
        let inside = min.is_none_or(|min| v >= min) && max.is_none_or(|max| v <= max);
        prop_assert_eq!(verdict.passed(), inside, "{:?} for {} in {:?}..{:?}", verdict, v, min, max);
        if let Verdict::Fail(message) = verdict {
            prop_assert!(message.starts_with("Halt web.prod advancement "), "{message}");
            let lower = message.to_lowercase();
            prop_assert!(!lower.contains("inf") && !lower.contains("nan"), "{message}");
        }
    }

    #[test]
    fn bounds_are_the_range_else_the_threshold(m in metric()) {
        let (min, max) = bounds(&m);
        let same = |a: Option<f64>, b: Option<f64>| a.map(f64::to_bits) == b.map(f64::to_bits);
        match m.threshold_range {
            Some(r) => prop_assert!(same(min, r.min) && same(max, r.max)),
            None => {
                let t = Some(m.threshold.unwrap_or(0.0));
                if m.name == REQUEST_SUCCESS_RATE {
                    prop_assert!(same(min, t) && max.is_none());
                } else {
                    prop_assert!(min.is_none() && same(max, t));
                }
            }
        }
    }
}
