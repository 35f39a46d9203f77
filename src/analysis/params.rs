//! Effective analysis parameters: Flagger's defaults and floors applied to a Canary spec.

use std::time::Duration;

use super::Provider;
use crate::api::{CanaryAnalysis, CanarySpec, CanaryWebhook};

/// Controller-wide settings the decision depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `--mesh-provider`: the provider of Canaries that name none.
    pub mesh_provider: String,
    /// Shortest analysis interval; shorter intervals are raised to it (Flagger: 10s).
    pub min_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { mesh_provider: "istio".into(), min_interval: Duration::from_secs(10) }
    }
}

/// How traffic moves during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Progressive weights (`stepWeight` / `stepWeights`).
    Canary,
    /// `iterations` with `match`: matching requests go to the canary.
    AbTesting,
    /// `iterations` without `match`: canary tested, then all traffic switched.
    BlueGreen,
}

impl Strategy {
    /// The `deployment_strategy` label of Flagger's run counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::AbTesting => "ab-testing",
            Strategy::BlueGreen => "blue-green",
        }
    }

    /// The strategy named by [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Strategy> {
        [Strategy::Canary, Strategy::AbTesting, Strategy::BlueGreen].into_iter().find(|v| v.as_str() == s)
    }
}

/// Webhook types (`analysis.webhooks[].type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookType {
    ConfirmRollout,
    PreRollout,
    Rollout,
    ConfirmTrafficIncrease,
    ConfirmPromotion,
    PostRollout,
    Rollback,
    Event,
}

impl HookType {
    /// Parses a webhook type; empty means `rollout`. Unknown values are `None`.
    pub fn parse(s: &str) -> Option<HookType> {
        Some(match s {
            "" | "rollout" => HookType::Rollout,
            "confirm-rollout" => HookType::ConfirmRollout,
            "pre-rollout" => HookType::PreRollout,
            "confirm-traffic-increase" => HookType::ConfirmTrafficIncrease,
            "confirm-promotion" => HookType::ConfirmPromotion,
            "post-rollout" => HookType::PostRollout,
            "rollback" => HookType::Rollback,
            "event" => HookType::Event,
            _ => return None,
        })
    }

    /// The type of a webhook of the spec.
    pub fn of(hook: &CanaryWebhook) -> Option<HookType> {
        HookType::parse(hook.type_.as_deref().unwrap_or(""))
    }
}

/// The analysis section of a spec with every default applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub interval: Duration,
    pub threshold: i32,
    pub max_weight: i32,
    pub step_weight: i32,
    pub step_weights: Vec<i32>,
    pub step_weight_promotion: i32,
    pub iterations: i32,
    pub mirror: bool,
    pub strategy: Strategy,
    pub skip_analysis: bool,
    pub progress_deadline: Duration,
    /// `spec.provider`, or the controller's `--mesh-provider`.
    pub provider: Provider,
}

/// A value of a Canary spec that Veer cannot act on: unparsable, or above its bound. The CRD schema
/// rejects these, so only objects stored under Flagger's CRD or before an upgrade can have them; the
/// Canary then stalls with a condition naming the field, until it is fixed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field} {problem}")]
pub struct SpecError {
    /// The field, e.g. `analysis.webhooks[2].timeout`.
    pub field: String,
    /// What is wrong and what is accepted.
    pub problem: String,
}

impl SpecError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> SpecError {
        SpecError { field: field.into(), problem: problem.into() }
    }
}

/// The first reference of a Canary to an object in another namespace (a MetricTemplate, an
/// AlertProvider, a Gloo upstream), as Flagger's `-no-cross-namespace-refs` words it; an empty
/// namespace means the Canary's.
pub fn cross_namespace_ref(spec: &CanarySpec, namespace: &str) -> Option<String> {
    let other = |ns: Option<&str>| ns.is_some_and(|n| !n.is_empty() && n != namespace);
    if let Some(u) = spec.upstream_ref.as_ref().filter(|u| other(u.namespace.as_deref())) {
        let ns = u.namespace.as_deref().unwrap_or_default();
        return Some(format!(
            "can't access gloo upstream {}.{ns}, cross-namespace references are blocked",
            u.name
        ));
    }
    let a = spec.analysis.as_ref()?;
    for m in a.metrics.iter().flatten() {
        if let Some(r) = m.template_ref.as_ref().filter(|r| other(r.namespace.as_deref())) {
            let ns = r.namespace.as_deref().unwrap_or_default();
            return Some(format!(
                "can't access metric template {}.{ns}, cross-namespace references are blocked",
                r.name
            ));
        }
    }
    for alert in a.alerts.iter().flatten() {
        let r = &alert.provider_ref;
        if other(r.namespace.as_deref()) {
            let ns = r.namespace.as_deref().unwrap_or_default();
            return Some(format!(
                "can't access alert provider {}.{ns}, cross-namespace references are blocked",
                r.name
            ));
        }
    }
    None
}

/// Parses an optional duration field of the spec, checking it against its bound.
fn bounded_duration(field: &str, value: Option<&str>, max: Duration) -> Result<Option<Duration>, SpecError> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else { return Ok(None) };
    let d = crate::duration::parse(value.trim()).map_err(|e| SpecError::new(field, e.to_string()))?;
    if d > max {
        return Err(SpecError::new(
            field,
            format!("is {}, above the limit of {}", crate::duration::format(d), crate::duration::format(max)),
        ));
    }
    Ok(Some(d))
}

/// Checks a count or a length against its bound.
fn bounded<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    max: T,
    what: &str,
) -> Result<(), SpecError> {
    if value > max {
        return Err(SpecError::new(field, format!("has {value} {what}, above the limit of {max}")));
    }
    Ok(())
}

/// Checks what the decision does not read itself but the controller acts on: webhook timeouts and
/// retries, metric windows and queries, and the sizes of the lists.
fn check_bounds(spec: &CanarySpec, a: &CanaryAnalysis) -> Result<(), SpecError> {
    use crate::api::limits::*;
    if let Some(url) = &spec.metrics_server {
        bounded("metricsServer", url.len(), MAX_URL_LENGTH, "characters")?;
    }
    let webhooks = a.webhooks.as_deref().unwrap_or_default();
    bounded("analysis.webhooks", webhooks.len(), MAX_WEBHOOKS, "entries")?;
    for (i, hook) in webhooks.iter().enumerate() {
        bounded_duration(
            &format!("analysis.webhooks[{i}].timeout"),
            hook.timeout.as_deref(),
            MAX_WEBHOOK_TIMEOUT,
        )?;
        bounded(
            &format!("analysis.webhooks[{i}].retries"),
            hook.retries.unwrap_or(0),
            MAX_WEBHOOK_RETRIES,
            "retries",
        )?;
        bounded(&format!("analysis.webhooks[{i}].url"), hook.url.len(), MAX_URL_LENGTH, "characters")?;
    }
    let metrics = a.metrics.as_deref().unwrap_or_default();
    bounded("analysis.metrics", metrics.len(), MAX_METRICS, "entries")?;
    for (i, m) in metrics.iter().enumerate() {
        bounded_duration(
            &format!("analysis.metrics[{i}].interval"),
            m.interval.as_deref(),
            MAX_METRIC_INTERVAL,
        )?;
        if let Some(q) = &m.query {
            bounded(&format!("analysis.metrics[{i}].query"), q.len(), MAX_QUERY_LENGTH, "characters")?;
        }
        if let Some(vars) = &m.template_variables {
            bounded(
                &format!("analysis.metrics[{i}].templateVariables"),
                vars.len(),
                MAX_TEMPLATE_VARIABLES,
                "entries",
            )?;
        }
    }
    bounded("analysis.alerts", a.alerts.as_deref().unwrap_or_default().len(), MAX_ALERTS, "entries")?;
    bounded("analysis.match", a.match_.as_deref().unwrap_or_default().len(), MAX_MATCHES, "entries")?;
    bounded("analysis.iterations", a.iterations.unwrap_or(0), MAX_ITERATIONS, "iterations")?;
    bounded("analysis.threshold", a.threshold.unwrap_or(0), MAX_THRESHOLD, "failed checks")?;
    bounded(
        "progressDeadlineSeconds",
        spec.progress_deadline_seconds.unwrap_or(0),
        MAX_PROGRESS_DEADLINE_SECONDS,
        "seconds",
    )?;
    Ok(())
}

impl Params {
    /// Applies Flagger's defaults to a spec, or says which value is out of bounds (see
    /// [`crate::api::limits`]). The provider is the spec's, or the controller's default.
    pub fn new(spec: &CanarySpec, settings: &Settings) -> Result<Params, SpecError> {
        let default = CanaryAnalysis::default();
        let a = spec.analysis.as_ref().unwrap_or(&default);
        check_bounds(spec, a)?;
        let provider = Provider::of_spec(spec, &settings.mesh_provider);
        let interval = bounded_duration(
            "analysis.interval",
            a.interval.as_deref(),
            crate::api::limits::MAX_ANALYSIS_INTERVAL,
        )?
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(60))
        .max(settings.min_interval);
        let step_weight = a.step_weight.unwrap_or(0).clamp(0, 100);
        let step_weights: Vec<i32> = a.step_weights.clone().unwrap_or_default();
        let max_weight = if step_weight == 0 && !step_weights.is_empty() {
            step_weights.last().copied().unwrap_or(100).clamp(1, 100)
        } else {
            match a.max_weight.unwrap_or(0) {
                w if w <= 0 => 100,
                w => w.min(100),
            }
        };
        let has_match = a.match_.as_ref().is_some_and(|m| !m.is_empty());
        let mut iterations = a.iterations.unwrap_or(0).max(0);
        let routes_traffic = provider.routes_traffic();
        // The kubernetes provider cannot shift traffic: it runs Blue/Green, 10 iterations by default.
        if !routes_traffic && iterations < 1 {
            iterations = 10;
        }
        let strategy = match (iterations > 0, has_match && routes_traffic) {
            (true, true) => Strategy::AbTesting,
            (true, false) => Strategy::BlueGreen,
            (false, _) => Strategy::Canary,
        };
        Ok(Params {
            interval,
            threshold: a.threshold.unwrap_or(0).max(1),
            max_weight,
            step_weight,
            step_weights,
            step_weight_promotion: a.step_weight_promotion.unwrap_or(0).clamp(0, 100),
            iterations,
            // Only Istio mirrors in the canary strategy; Blue/Green mirrors on any traffic router.
            mirror: a.mirror.unwrap_or(false) && routes_traffic,
            strategy,
            skip_analysis: spec.skip_analysis.unwrap_or(false) || spec.analysis.is_none(),
            progress_deadline: Duration::from_secs(
                spec.progress_deadline_seconds.unwrap_or(600).max(0) as u64
            ),
            provider,
        })
    }

    /// The canary weight after the next step from `weight`, never above `max_weight` (Flagger can
    /// overshoot; see docs/compatibility.md).
    pub fn next_weight(&self, weight: i32) -> i32 {
        let next = if self.step_weight > 0 || self.step_weights.is_empty() {
            weight + self.step_weight.max(1)
        } else {
            // The first ladder rung above the current weight.
            self.step_weights.iter().copied().find(|w| *w > weight).unwrap_or(100)
        };
        next.clamp(0, self.max_weight).max(weight.min(self.max_weight))
    }

    /// Primary weight after the next promotion step from `primary`.
    pub fn next_primary_weight(&self, primary: i32) -> i32 {
        if self.step_weight_promotion == 0 { 100 } else { (primary + self.step_weight_promotion).min(100) }
    }

    /// `Traffic routing` field of alerts.
    pub fn routing_description(&self) -> String {
        match self.strategy {
            Strategy::AbTesting => "A/B Testing".into(),
            Strategy::BlueGreen => "Blue/Green".into(),
            Strategy::Canary if self.step_weight == 0 && !self.step_weights.is_empty() => {
                let steps: Vec<String> = self.step_weights.iter().map(|w| w.to_string()).collect();
                format!("Weight steps: {} max: {}", steps.join(","), self.max_weight)
            }
            Strategy::Canary => format!("Weight step: {} max: {}", self.step_weight, self.max_weight),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(analysis: CanaryAnalysis) -> Params {
        try_params(analysis).unwrap()
    }

    fn try_params(analysis: CanaryAnalysis) -> Result<Params, SpecError> {
        let spec = CanarySpec { analysis: Some(analysis), ..Default::default() };
        Params::new(&spec, &Settings::default())
    }

    #[test]
    fn values_above_their_bounds_name_the_field() {
        use crate::api::{CanaryMetric, CanaryWebhook};
        let hook = |timeout: &str, retries| CanaryWebhook {
            name: "h".into(),
            url: "http://h/".into(),
            timeout: Some(timeout.into()),
            retries: Some(retries),
            ..Default::default()
        };
        let cases: Vec<(CanaryAnalysis, &str)> = vec![
            (
                CanaryAnalysis { interval: Some("25h".into()), ..Default::default() },
                "spec.analysis.interval is 25h0m0s, above the limit of 24h0m0s",
            ),
            (
                CanaryAnalysis { interval: Some("99999999999999999999h".into()), ..Default::default() },
                "spec.analysis.interval \"99999999999999999999h\" is not a duration: too large",
            ),
            (
                CanaryAnalysis { interval: Some("often".into()), ..Default::default() },
                "spec.analysis.interval \"often\" is not a duration",
            ),
            (
                CanaryAnalysis { webhooks: Some(vec![hook("5s", 0), hook("2h", 0)]), ..Default::default() },
                "spec.analysis.webhooks[1].timeout is 2h0m0s, above the limit of 1h0m0s",
            ),
            (
                CanaryAnalysis { webhooks: Some(vec![hook("5s", 11)]), ..Default::default() },
                "spec.analysis.webhooks[0].retries has 11 retries, above the limit of 10",
            ),
            (
                CanaryAnalysis { webhooks: Some(vec![hook("5s", 0); 65]), ..Default::default() },
                "spec.analysis.webhooks has 65 entries, above the limit of 64",
            ),
            (
                CanaryAnalysis {
                    metrics: Some(vec![CanaryMetric {
                        name: "m".into(),
                        interval: Some("1000h".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                "spec.analysis.metrics[0].interval is 1000h0m0s, above the limit of 720h0m0s",
            ),
            (
                CanaryAnalysis {
                    metrics: Some(vec![CanaryMetric {
                        name: "m".into(),
                        query: Some("x".repeat(70_000)),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                "spec.analysis.metrics[0].query has 70000 characters, above the limit of 65536",
            ),
            (
                CanaryAnalysis { iterations: Some(i32::MAX), ..Default::default() },
                "spec.analysis.iterations has 2147483647 iterations, above the limit of 10000",
            ),
        ];
        for (analysis, want) in cases {
            let e = try_params(analysis).expect_err(want);
            assert!(e.to_string().starts_with(want), "{e} does not start with {want}");
        }
        let spec = CanarySpec { progress_deadline_seconds: Some(i32::MAX), ..Default::default() };
        let e = Params::new(&spec, &Settings::default()).unwrap_err();
        assert_eq!(e.field, "progressDeadlineSeconds");
    }

    #[test]
    fn cross_namespace_references_are_found() {
        use crate::api::{CanaryAlert, CanaryMetric, CrossNamespaceRef};
        let metric = |ns: Option<&str>| CanaryMetric {
            name: "m".into(),
            template_ref: Some(CrossNamespaceRef { name: "latency".into(), namespace: ns.map(Into::into) }),
            ..Default::default()
        };
        let spec = |metrics, alerts| CanarySpec {
            analysis: Some(CanaryAnalysis {
                metrics: Some(metrics),
                alerts: Some(alerts),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            cross_namespace_ref(&spec(vec![metric(None), metric(Some("test"))], vec![]), "test"),
            None
        );
        assert_eq!(
            cross_namespace_ref(&spec(vec![metric(Some("flagger-system"))], vec![]), "test").as_deref(),
            Some(
                "can't access metric template latency.flagger-system, cross-namespace references are blocked"
            )
        );
        let alert = CanaryAlert {
            name: "a".into(),
            provider_ref: CrossNamespaceRef { name: "slack".into(), namespace: Some("ops".into()) },
            ..Default::default()
        };
        assert_eq!(
            cross_namespace_ref(&spec(vec![], vec![alert]), "test").as_deref(),
            Some("can't access alert provider slack.ops, cross-namespace references are blocked")
        );
    }

    #[test]
    fn values_at_their_bounds_are_accepted() {
        let p = params(CanaryAnalysis {
            interval: Some("24h".into()),
            step_weight: Some(10),
            ..Default::default()
        });
        assert_eq!(p.interval, Duration::from_secs(24 * 3600));
        let p = params(CanaryAnalysis { interval: Some("0s".into()), ..Default::default() });
        assert_eq!(p.interval, Duration::from_secs(60), "zero means the default");
    }

    #[test]
    fn defaults_follow_flagger() {
        let p = params(CanaryAnalysis { step_weight: Some(10), ..Default::default() });
        assert_eq!(p.interval, Duration::from_secs(60));
        assert_eq!(p.threshold, 1);
        assert_eq!(p.max_weight, 100);
        assert_eq!(p.strategy, Strategy::Canary);
        assert_eq!(p.progress_deadline, Duration::from_secs(600));
        assert_eq!(p.provider, Provider::Istio);
        let p = params(CanaryAnalysis { interval: Some("2s".into()), ..Default::default() });
        assert_eq!(p.interval, Duration::from_secs(10), "raised to the 10s floor");
    }

    #[test]
    fn step_weights_set_the_max() {
        let p = params(CanaryAnalysis { step_weights: Some(vec![1, 5, 25, 50]), ..Default::default() });
        assert_eq!(p.max_weight, 50);
        assert_eq!(p.next_weight(0), 1);
        assert_eq!(p.next_weight(1), 5);
        assert_eq!(p.next_weight(25), 50);
        assert_eq!(p.next_weight(7), 25, "a weight off the ladder goes to the next rung");
        assert_eq!(p.next_weight(50), 50);
    }

    #[test]
    fn step_weight_never_overshoots_max() {
        let p = params(CanaryAnalysis { step_weight: Some(30), max_weight: Some(50), ..Default::default() });
        assert_eq!(p.next_weight(0), 30);
        assert_eq!(p.next_weight(30), 50);
    }

    #[test]
    fn strategy_from_iterations_and_match() {
        let ab = params(CanaryAnalysis {
            iterations: Some(5),
            match_: Some(vec![Default::default()]),
            ..Default::default()
        });
        assert_eq!(ab.strategy, Strategy::AbTesting);
        let bg = params(CanaryAnalysis { iterations: Some(5), ..Default::default() });
        assert_eq!(bg.strategy, Strategy::BlueGreen);
        let spec = CanarySpec {
            provider: Some("kubernetes".into()),
            analysis: Some(CanaryAnalysis { step_weight: Some(10), ..Default::default() }),
            ..Default::default()
        };
        let k = Params::new(&spec, &Settings::default()).unwrap();
        assert_eq!((k.strategy, k.iterations), (Strategy::BlueGreen, 10));
    }
}
