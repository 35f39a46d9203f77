//! Judging one metric value against its thresholds, with Flagger's Event texts.

use std::time::Duration;

use super::Reason;
use crate::api::CanaryMetric;
use crate::duration::format as format_duration;

/// Name of the built-in success-rate check (percent, 0–100).
pub const REQUEST_SUCCESS_RATE: &str = "request-success-rate";
/// Name of the built-in latency check (milliseconds).
pub const REQUEST_DURATION: &str = "request-duration";

/// What a metric query returned.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricResult {
    /// A value.
    Value(f64),
    /// The query returned nothing, or NaN: usually no traffic.
    NoData,
    /// The query could not run (server down, bad query, template error, unsupported provider).
    Error(String),
}

/// The verdict on one metric.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Pass,
    /// The value is outside the accepted range; the text is Flagger's Event message (without the
    /// `Halt <name>.<ns> advancement` prefix).
    Fail(String),
    /// No data: never a pass.
    NoData(String),
    /// The query failed: never a pass.
    Error(String),
}

impl Verdict {
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    /// The `result` word of a status check record.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "Passed",
            Verdict::Fail(_) => "Failed",
            Verdict::NoData(_) => "NoData",
            Verdict::Error(_) => "Error",
        }
    }

    /// The decision reason of a failed check with this verdict; `None` for a pass.
    pub fn failure_reason(&self) -> Option<Reason> {
        match self {
            Verdict::Pass => None,
            Verdict::Fail(_) => Some(Reason::MetricFailed),
            Verdict::NoData(_) => Some(Reason::MetricNoData),
            Verdict::Error(_) => Some(Reason::MetricError),
        }
    }
}

/// Whether the metric is one of the two built-in checks.
pub fn is_builtin(metric: &CanaryMetric) -> bool {
    metric.name == REQUEST_SUCCESS_RATE || metric.name == REQUEST_DURATION
}

/// The effective accepted range `(min, max)` of a metric: `thresholdRange`, or the deprecated
/// `threshold` (a minimum for success rate, a maximum otherwise).
pub fn bounds(metric: &CanaryMetric) -> (Option<f64>, Option<f64>) {
    if let Some(r) = metric.threshold_range {
        return (r.min, r.max);
    }
    let t = metric.threshold.unwrap_or(0.0);
    if metric.name == REQUEST_SUCCESS_RATE { (Some(t), None) } else { (None, Some(t)) }
}

/// Whom the messages name, each as `<name>.<namespace>`. As in Flagger, the `Halt ...` texts name
/// the Canary and the no-data texts name its target (they differ when `metadata.name` is not
/// `targetRef.name`).
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub canary: &'a str,
    pub target: &'a str,
}

/// Judges a metric result; `provider` is the metrics provider name used in the no-data text.
/// Total: any value and any thresholds give a verdict, and a value that is not a finite number
/// never passes (NaN is no data, ±Inf a failed check).
pub fn judge(metric: &CanaryMetric, result: &MetricResult, subject: Subject<'_>, provider: &str) -> Verdict {
    let (name, canary, target) = (&metric.name, subject.canary, subject.target);
    let value = match result {
        MetricResult::Value(v) if v.is_nan() => return no_data(metric, target, provider),
        MetricResult::Value(v) if v.is_infinite() => {
            return Verdict::Fail(format!(
                "Halt {canary} advancement {name} query returned {}, which is not a finite number: \
                 no range accepts it (does the query divide by zero?)",
                num(*v)
            ));
        }
        MetricResult::Value(v) => *v,
        MetricResult::NoData => return no_data(metric, target, provider),
        MetricResult::Error(e) if is_builtin(metric) => {
            return Verdict::Error(format!("Prometheus query failed: {e}"));
        }
        MetricResult::Error(e) => return Verdict::Error(format!("Metric query failed for {name}: {e}")),
    };
    let (min, max) = bounds(metric);
    let below = min.is_some_and(|m| value < m);
    let above = max.is_some_and(|m| value > m);
    if !below && !above {
        return Verdict::Pass;
    }
    let (op, limit) = if below { ("<", min.unwrap_or_default()) } else { (">", max.unwrap_or_default()) };
    Verdict::Fail(match name.as_str() {
        REQUEST_SUCCESS_RATE => {
            format!("Halt {canary} advancement success rate {value:.2}% {op} {}%", num(limit))
        }
        REQUEST_DURATION => format!(
            "Halt {canary} advancement request duration {} {op} {}",
            millis_text(value),
            millis_text(limit)
        ),
        _ => format!("Halt {canary} advancement {name} {value:.2} {op} {}", num(limit)),
    })
}

fn no_data(metric: &CanaryMetric, target: &str, provider: &str) -> Verdict {
    Verdict::NoData(if is_builtin(metric) || metric.query.is_some() {
        format!(
            "Halt advancement no values found for {provider} metric {} probably {target} is not receiving traffic",
            metric.name
        )
    } else {
        format!(
            "Halt advancement no values found for custom metric: {} probably {target} is not receiving traffic",
            metric.name
        )
    })
}

/// Milliseconds as Flagger prints a duration (`612ms`, `1m30s`). A value no `Duration` holds
/// (above about 1.8e22 ms, or infinite) is printed as a number of milliseconds instead.
fn millis_text(ms: f64) -> String {
    match Duration::try_from_secs_f64(ms.max(0.0) / 1000.0) {
        Ok(d) => format_duration(d),
        Err(_) => format!("{}ms", num(ms)),
    }
}

/// Formats a number as Go's `%v` does for the thresholds users write (`99`, `99.5`), and
/// infinities and NaN as Go and Prometheus write them (`+Inf`, `-Inf`, `NaN`).
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A Canary named after its target.
#[cfg(test)]
fn same(name: &str) -> Subject<'_> {
    Subject { canary: name, target: name }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ThresholdRange;

    #[test]
    fn halt_texts_name_the_canary_and_no_data_texts_its_target() {
        let who = Subject { canary: "web.test", target: "podinfo.test" };
        let m = metric(REQUEST_SUCCESS_RATE, Some(99.0), None);
        assert_eq!(
            judge(&m, &MetricResult::Value(97.5), who, "istio"),
            Verdict::Fail("Halt web.test advancement success rate 97.50% < 99%".into())
        );
        let Verdict::NoData(message) = judge(&m, &MetricResult::NoData, who, "istio") else { panic!() };
        assert!(message.ends_with("probably podinfo.test is not receiving traffic"), "{message}");
        let custom = metric("errors", None, Some(5.0));
        assert_eq!(
            judge(&custom, &MetricResult::Value(6.0), who, "istio"),
            Verdict::Fail("Halt web.test advancement errors 6.00 > 5".into())
        );
    }

    fn metric(name: &str, min: Option<f64>, max: Option<f64>) -> CanaryMetric {
        CanaryMetric {
            name: name.into(),
            threshold_range: Some(ThresholdRange { min, max }),
            ..Default::default()
        }
    }

    #[test]
    fn success_rate_below_min_fails_with_flagger_text() {
        let m = metric(REQUEST_SUCCESS_RATE, Some(99.0), None);
        assert_eq!(
            judge(&m, &MetricResult::Value(97.5), same("podinfo.test"), "istio"),
            Verdict::Fail("Halt podinfo.test advancement success rate 97.50% < 99%".into())
        );
        assert_eq!(judge(&m, &MetricResult::Value(99.0), same("podinfo.test"), "istio"), Verdict::Pass);
    }

    #[test]
    fn duration_above_max_fails() {
        let m = metric(REQUEST_DURATION, None, Some(500.0));
        assert_eq!(
            judge(&m, &MetricResult::Value(612.0), same("podinfo.test"), "istio"),
            Verdict::Fail("Halt podinfo.test advancement request duration 612ms > 500ms".into())
        );
    }

    #[test]
    fn bounds_are_inclusive() {
        let m = metric("latency", Some(1.0), Some(2.0));
        for v in [1.0, 1.5, 2.0] {
            assert!(judge(&m, &MetricResult::Value(v), same("a.b"), "istio").passed());
        }
        for v in [0.999, 2.001] {
            assert!(!judge(&m, &MetricResult::Value(v), same("a.b"), "istio").passed());
        }
    }

    #[test]
    fn deprecated_threshold() {
        let sr =
            CanaryMetric { name: REQUEST_SUCCESS_RATE.into(), threshold: Some(99.0), ..Default::default() };
        assert!(!judge(&sr, &MetricResult::Value(98.0), same("a.b"), "istio").passed());
        let custom = CanaryMetric { name: "errors".into(), threshold: Some(5.0), ..Default::default() };
        assert!(judge(&custom, &MetricResult::Value(5.0), same("a.b"), "istio").passed());
        assert!(!judge(&custom, &MetricResult::Value(6.0), same("a.b"), "istio").passed());
        let no_threshold = CanaryMetric { name: "errors".into(), ..Default::default() };
        assert!(!judge(&no_threshold, &MetricResult::Value(0.1), same("a.b"), "istio").passed());
    }

    #[test]
    fn missing_data_is_never_a_pass() {
        let m = metric(REQUEST_SUCCESS_RATE, Some(99.0), None);
        let v = judge(&m, &MetricResult::NoData, same("podinfo.test"), "istio");
        assert_eq!(
            v,
            Verdict::NoData(
                "Halt advancement no values found for istio metric request-success-rate probably podinfo.test is not receiving traffic".into()
            )
        );
        assert!(!judge(&m, &MetricResult::Value(f64::NAN), same("a.b"), "istio").passed());
        assert!(matches!(
            judge(&m, &MetricResult::Value(f64::NAN), same("a.b"), "istio"),
            Verdict::NoData(_)
        ));
        assert_eq!(
            judge(&m, &MetricResult::Error("connection refused".into()), same("a.b"), "istio"),
            Verdict::Error("Prometheus query failed: connection refused".into())
        );
    }

    #[test]
    fn an_infinite_value_is_a_failed_check_naming_the_metric() {
        // Flagger passes +Inf against a minimum only, and -Inf against a maximum only.
        for (name, min, max, value, shown) in [
            (REQUEST_SUCCESS_RATE, Some(99.0), None, f64::INFINITY, "+Inf"),
            (REQUEST_DURATION, None, Some(500.0), f64::NEG_INFINITY, "-Inf"),
            (REQUEST_DURATION, None, Some(500.0), f64::INFINITY, "+Inf"),
            ("errors", None, None, f64::INFINITY, "+Inf"),
        ] {
            let verdict =
                judge(&metric(name, min, max), &MetricResult::Value(value), same("podinfo.test"), "istio");
            assert_eq!(
                verdict,
                Verdict::Fail(format!(
                    "Halt podinfo.test advancement {name} query returned {shown}, which is not a finite number: \
                     no range accepts it (does the query divide by zero?)"
                )),
            );
        }
    }

    #[test]
    fn durations_too_long_for_a_duration_are_printed_in_milliseconds() {
        let m = metric(REQUEST_DURATION, None, Some(500.0));
        assert_eq!(
            judge(&m, &MetricResult::Value(1e30), same("podinfo.test"), "istio"),
            Verdict::Fail(
                "Halt podinfo.test advancement request duration 1000000000000000000000000000000ms > 500ms"
                    .into()
            )
        );
        let huge_threshold = metric(REQUEST_DURATION, Some(f64::MAX), None);
        let Verdict::Fail(message) =
            judge(&huge_threshold, &MetricResult::Value(90_000.0), same("a.b"), "istio")
        else {
            panic!("90 s is below the minimum");
        };
        assert!(
            message.starts_with("Halt a.b advancement request duration 1m30s < 17976931348623157"),
            "{message}"
        );
        assert!(message.ends_with("ms"), "{message}");
    }
}

#[cfg(test)]
#[path = "verdict_proptests.rs"]
mod proptests;
