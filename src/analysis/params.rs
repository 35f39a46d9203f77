//! Effective analysis parameters: Flagger's defaults and floors applied to a Canary spec.

use std::time::Duration;

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
    pub provider: String,
}

/// Parses a Go-style duration (`1m30s`, `500ms`, `2h`). `None` when it is not one.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

/// Formats a duration as Go's `time.Duration.String()` does for the values Veer prints
/// (`612ms`, `1.5s`, `1m0s`), so Event texts match Flagger's.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", trim_fraction(nanos, div));
    }
    let total_secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let (h, m, s) = (total_secs / 3600, (total_secs / 60) % 60, total_secs % 60);
    let secs = trim_fraction(s * 1_000_000_000 + frac, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn trim_fraction(value: u128, div: u128) -> String {
    let whole = value / div;
    let frac = value % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

impl Params {
    /// Applies Flagger's defaults to a spec. `provider` is the resolved provider (spec or flag).
    pub fn new(spec: &CanarySpec, settings: &Settings) -> Params {
        let default = CanaryAnalysis::default();
        let a = spec.analysis.as_ref().unwrap_or(&default);
        let provider =
            spec.provider.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| settings.mesh_provider.clone());
        let interval = a
            .interval
            .as_deref()
            .and_then(parse_duration)
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
        let kubernetes = provider == "kubernetes";
        // The kubernetes provider cannot shift traffic: it runs Blue/Green, 10 iterations by default.
        if kubernetes && iterations < 1 {
            iterations = 10;
        }
        let strategy = match (iterations > 0, has_match && !kubernetes) {
            (true, true) => Strategy::AbTesting,
            (true, false) => Strategy::BlueGreen,
            (false, _) => Strategy::Canary,
        };
        Params {
            interval,
            threshold: a.threshold.unwrap_or(0).max(1),
            max_weight,
            step_weight,
            step_weights,
            step_weight_promotion: a.step_weight_promotion.unwrap_or(0).clamp(0, 100),
            iterations,
            // Only Istio mirrors in the canary strategy; Blue/Green mirrors on any traffic router.
            mirror: a.mirror.unwrap_or(false) && !kubernetes,
            strategy,
            skip_analysis: spec.skip_analysis.unwrap_or(false) || spec.analysis.is_none(),
            progress_deadline: Duration::from_secs(
                spec.progress_deadline_seconds.unwrap_or(600).max(0) as u64
            ),
            provider,
        }
    }

    /// Whether the router of this canary mirrors traffic.
    pub fn router_mirrors(&self) -> bool {
        self.provider == "istio" || self.provider.starts_with("gatewayapi")
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

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn durations_format_like_go() {
        assert_eq!(format_duration(Duration::from_millis(612)), "612ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(format_duration(Duration::from_secs(3601)), "1h0m1s");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    fn params(analysis: CanaryAnalysis) -> Params {
        let spec = CanarySpec { analysis: Some(analysis), ..Default::default() };
        Params::new(&spec, &Settings::default())
    }

    #[test]
    fn defaults_follow_flagger() {
        let p = params(CanaryAnalysis { step_weight: Some(10), ..Default::default() });
        assert_eq!(p.interval, Duration::from_secs(60));
        assert_eq!(p.threshold, 1);
        assert_eq!(p.max_weight, 100);
        assert_eq!(p.strategy, Strategy::Canary);
        assert_eq!(p.progress_deadline, Duration::from_secs(600));
        assert_eq!(p.provider, "istio");
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
        let k = Params::new(&spec, &Settings::default());
        assert_eq!((k.strategy, k.iterations), (Strategy::BlueGreen, 10));
    }
}
