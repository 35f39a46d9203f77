//! `veer status`: a Canary's state in one line per change — phase, weight, the step of the run,
//! failed checks, the latest metric values against their ranges, and why the last decision was
//! taken; or the same as JSON or YAML for scripts.

use std::{fmt::Write, time::Duration};

use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};

use crate::{
    analysis::{Params, Strategy},
    api::{Canary, CanaryStatus, CheckKind, CheckRecord, Decision, Phase},
};

/// Flags of `veer status`.
#[derive(clap::Args, Clone, Debug)]
pub struct StatusArgs {
    /// Namespace of the Canary (default: the kubeconfig's).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Canary name (default: every Canary of the namespace).
    pub name: Option<String>,
    /// Every namespace.
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Output: one line per Canary, `wide` (also the strategy and the time to the next step),
    /// `json` (one object per line) or `yaml` (one document per Canary).
    #[arg(long, short, value_enum, default_value_t = Output::Line)]
    pub output: Output,
    /// Keep printing a line at each change.
    #[arg(long, short)]
    pub watch: bool,
    /// With --watch: stop once the Canary reaches one of these phases (comma-separated), after
    /// having been in another phase.
    #[arg(long, value_delimiter = ',')]
    pub until: Vec<String>,
    /// With --watch: give up after this long.
    #[arg(long, default_value = "30m", value_parser = |s: &str| crate::duration::parse(s).map_err(|e| e.to_string()))]
    pub timeout: Duration,
}

/// How `veer status` prints a Canary.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Line,
    Wide,
    Json,
    Yaml,
}

/// A Canary as `-o json` and `-o yaml` print it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub weight: i32,
    pub failed_checks: i32,
    /// `analysis.threshold`; absent when the spec is out of bounds.
    pub threshold: Option<i32>,
    pub strategy: Option<String>,
    /// The step of the run in progress, counting from 1: a weight step or an iteration.
    pub step: Option<i32>,
    pub steps: Option<i32>,
    /// Seconds until the next step may run.
    pub next_step_in_seconds: Option<u64>,
    pub checks: Vec<CheckRecord>,
    pub decision: Option<Decision>,
}

impl Row {
    pub fn of(canary: &Canary, now: k8s_openapi::jiff::Timestamp) -> Row {
        let s = canary.status.clone().unwrap_or_default();
        let params = Params::new(&canary.spec, &Default::default()).ok();
        let step = params.as_ref().and_then(|p| step(p, &s));
        Row {
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
            name: canary.metadata.name.clone().unwrap_or_default(),
            phase: s.phase.as_str().to_string(),
            weight: s.canary_weight,
            failed_checks: s.failed_checks,
            threshold: params.as_ref().map(|p| p.threshold),
            strategy: params.as_ref().map(|p| p.strategy.as_str().to_string()),
            step: step.map(|(n, _)| n),
            steps: step.map(|(_, of)| of),
            next_step_in_seconds: params.as_ref().and_then(|p| next_step_in(p, &s, now)).map(|d| d.as_secs()),
            checks: s.checks.clone(),
            decision: s.decision.clone(),
        }
    }
}

/// Where a run stands: `(step, steps)`, counting from 1 — the weight steps of a canary release
/// (each `stepWeight` or `stepWeights` rung up to `maxWeight`), the iterations of Blue/Green and
/// A/B testing. `None` outside a run.
pub fn step(params: &Params, status: &CanaryStatus) -> Option<(i32, i32)> {
    if !matches!(status.phase, Phase::Progressing | Phase::WaitingPromotion | Phase::Waiting) {
        return None;
    }
    match params.strategy {
        Strategy::BlueGreen | Strategy::AbTesting => {
            Some((status.iterations.min(params.iterations), params.iterations))
        }
        Strategy::Canary => {
            // The ladder of weights from 0: bounded by maxWeight (at most 100 rungs).
            let mut rungs = Vec::new();
            let mut weight = 0;
            while weight < params.max_weight && rungs.len() < 100 {
                let next = params.next_weight(weight);
                if next <= weight {
                    break;
                }
                rungs.push(next);
                weight = next;
            }
            let done = rungs.iter().filter(|w| **w <= status.canary_weight).count() as i32;
            Some((done, rungs.len() as i32))
        }
    }
}

/// How long until the run's next step may happen (`lastStepTime` plus the interval), while a
/// run is in progress.
pub fn next_step_in(
    params: &Params,
    status: &CanaryStatus,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<Duration> {
    if !matches!(status.phase, Phase::Progressing | Phase::WaitingPromotion | Phase::Waiting) {
        return None;
    }
    let last = status.last_step_time?;
    let due = last.checked_add(k8s_openapi::jiff::SignedDuration::try_from(params.interval).ok()?).ok()?;
    let left = now.duration_until(due);
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

/// Why `veer status` failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot connect to Kubernetes (set KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    #[error("cannot read Canaries: {0}")]
    Read(#[source] kube::Error),
    #[error("the watch failed: {0}")]
    Watch(#[source] watcher::Error),
    #[error("gave up after {0:?} without reaching {1}")]
    Timeout(Duration, String),
}

/// One line describing a Canary: time, name, phase, weight, failed checks, checks, decision.
pub fn line(canary: &Canary, now: &str) -> String {
    let s = canary.status.clone().unwrap_or_default();
    // A spec out of bounds shows as a threshold of `?` (its Stalled decision says why).
    let threshold = Params::new(&canary.spec, &Default::default())
        .map_or_else(|_| "?".to_string(), |p| p.threshold.to_string());
    let mut out = format!(
        "{now}  {:<22} {:<16} weight {:>3}  failed {}/{}",
        crate::router::display_name(canary),
        phase_name(s.phase),
        s.canary_weight,
        s.failed_checks,
        threshold
    );
    for c in s.checks.iter().filter(|c| c.kind == CheckKind::Metric) {
        let _ = write!(out, "  {}", check(c));
    }
    if let Some(d) = &s.decision {
        let _ = write!(out, "  | {}", d.message);
    }
    out
}

/// `line` with the strategy, the step of the run and the time to the next step.
pub fn wide(canary: &Canary, now: k8s_openapi::jiff::Timestamp, clock: &str) -> String {
    let row = Row::of(canary, now);
    let mut out = line(canary, clock);
    let mut extra = String::new();
    if let Some(strategy) = &row.strategy {
        let _ = write!(extra, "  {strategy}");
    }
    if let (Some(n), Some(of)) = (row.step, row.steps) {
        let _ = write!(extra, " step {n}/{of}");
    }
    if let Some(secs) = row.next_step_in_seconds {
        let _ = write!(extra, "  next step in {secs}s");
    }
    // Before the decision, which ends the line.
    match out.find("  | ") {
        Some(i) => out.insert_str(i, &extra),
        None => out.push_str(&extra),
    }
    out
}

/// A Canary printed as `output` says.
fn print(canary: &Canary, output: Output) {
    let now = k8s_openapi::jiff::Timestamp::now();
    match output {
        Output::Line => println!("{}", line(canary, &clock())),
        Output::Wide => println!("{}", wide(canary, now, &clock())),
        Output::Json => println!("{}", serde_json::to_string(&Row::of(canary, now)).unwrap_or_default()),
        Output::Yaml => print!("---\n{}", serde_saphyr::to_string(&Row::of(canary, now)).unwrap_or_default()),
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Empty => "-",
        p => p.as_str(),
    }
}

fn check(c: &CheckRecord) -> String {
    let value = c.value.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into());
    let range = match (c.min, c.max) {
        (Some(min), Some(max)) => format!("{min}..{max}"),
        (Some(min), None) => format!(">={min}"),
        (None, Some(max)) => format!("<={max}"),
        (None, None) => String::new(),
    };
    let mark = if c.result == "Passed" { "ok" } else { "FAIL" };
    format!("{}={value}({range}) {mark}", c.name)
}

fn clock() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    now.strftime("%H:%M:%S").to_string()
}

/// Runs `veer status`.
pub async fn run(args: StatusArgs) -> Result<(), StatusError> {
    crate::http::install_crypto_provider();
    let client = Client::try_default().await.map_err(StatusError::Client)?;
    let ns = args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<Canary> = if args.all_namespaces { Api::all(client) } else { Api::namespaced(client, &ns) };
    if !args.watch {
        let list = api.list(&Default::default()).await.map_err(StatusError::Read)?;
        for c in list.items.iter().filter(|c| args.name.as_deref().is_none_or(|n| c.name_any() == n)) {
            print(c, args.output);
        }
        return Ok(());
    }
    let config = match &args.name {
        Some(n) => watcher::Config::default().fields(&format!("metadata.name={n}")),
        None => watcher::Config::default(),
    };
    let mut stream = watcher(api, config).default_backoff().applied_objects().boxed();
    let mut last = std::collections::HashMap::<String, CanaryStatus>::new();
    let mut left_start = false;
    let deadline = tokio::time::Instant::now() + args.timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let canary = match next {
            Err(_) => return Err(StatusError::Timeout(args.timeout, args.until.join(","))),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(StatusError::Watch(e)),
            Ok(Some(Ok(c))) => c,
        };
        let status = canary.status.clone().unwrap_or_default();
        let key = format!("{}/{}", canary.namespace().unwrap_or_default(), canary.name_any());
        // Print only what changed (ignoring timestamps of unchanged checks).
        if last.get(&key).is_some_and(|s| same(s, &status)) {
            continue;
        }
        print(&canary, args.output);
        let phase = status.phase.as_str().to_string();
        let done = args.until.iter().any(|u| u == &phase);
        if !done {
            left_start = true;
        }
        last.insert(key, status);
        if done && left_start {
            return Ok(());
        }
    }
}

fn same(a: &CanaryStatus, b: &CanaryStatus) -> bool {
    let values = |s: &CanaryStatus| {
        s.checks
            .iter()
            .map(|c| (c.name.clone(), c.value.map(f64::to_bits), c.result.clone()))
            .collect::<Vec<_>>()
    };
    a.phase == b.phase
        && a.canary_weight == b.canary_weight
        && a.failed_checks == b.failed_checks
        && a.iterations == b.iterations
        && a.decision.as_ref().map(|d| &d.message) == b.decision.as_ref().map(|d| &d.message)
        && values(a) == values(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CanaryAnalysis, CanarySpec, Decision};

    fn params(analysis: serde_json::Value) -> Params {
        let spec: CanarySpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 80},
            "analysis": analysis,
        }))
        .unwrap();
        Params::new(&spec, &Default::default()).unwrap()
    }

    fn running(weight: i32, iterations: i32) -> CanaryStatus {
        CanaryStatus { phase: Phase::Progressing, canary_weight: weight, iterations, ..Default::default() }
    }

    #[test]
    fn steps_count_weight_rungs_and_iterations() {
        let p = params(serde_json::json!({"interval": "15s", "stepWeight": 10, "maxWeight": 30}));
        assert_eq!(step(&p, &running(0, 0)), Some((0, 3)));
        assert_eq!(step(&p, &running(20, 0)), Some((2, 3)));
        let p = params(serde_json::json!({"interval": "15s", "stepWeights": [10, 20, 30, 40, 50, 60]}));
        assert_eq!(step(&p, &running(40, 0)), Some((4, 6)));
        let p = params(serde_json::json!({"interval": "15s", "iterations": 5}));
        assert_eq!(step(&p, &running(0, 2)), Some((2, 5)));
        assert_eq!(step(&p, &running(100, 6)), Some((5, 5)), "routed to the canary after the last");
        let done = CanaryStatus { phase: Phase::Succeeded, ..Default::default() };
        assert_eq!(step(&p, &done), None);
        // A one-percent ladder is bounded.
        let p = params(serde_json::json!({"interval": "15s", "stepWeight": 1}));
        assert_eq!(step(&p, &running(37, 0)), Some((37, 100)));
    }

    #[test]
    fn the_next_step_is_due_one_interval_after_the_last() {
        let p = params(serde_json::json!({"interval": "15s", "stepWeight": 10}));
        let now = k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap();
        let mut s = running(10, 0);
        s.last_step_time = Some(k8s_openapi::jiff::Timestamp::from_second(995).unwrap());
        assert_eq!(next_step_in(&p, &s, now), Some(Duration::from_secs(10)));
        s.last_step_time = Some(k8s_openapi::jiff::Timestamp::from_second(900).unwrap());
        assert_eq!(next_step_in(&p, &s, now), Some(Duration::ZERO), "overdue");
        s.phase = Phase::Failed;
        assert_eq!(next_step_in(&p, &s, now), None);
    }

    #[test]
    fn json_rows_carry_the_step_and_the_decision() {
        let mut c = crate::fixtures::canary("podinfo", "demo")
            .spec(serde_json::json!({
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 80},
                "analysis": {"interval": "15s", "threshold": 2, "stepWeight": 25, "maxWeight": 50},
            }))
            .build();
        c.status = Some(running(25, 0));
        let row = serde_json::to_value(Row::of(&c, k8s_openapi::jiff::Timestamp::UNIX_EPOCH)).unwrap();
        assert_eq!(row["namespace"], "demo");
        assert_eq!(row["phase"], "Progressing");
        assert_eq!((row["step"].as_i64(), row["steps"].as_i64()), (Some(1), Some(2)));
        assert_eq!(row["strategy"], "canary");
        assert_eq!(row["threshold"], 2);
        let mut s = running(25, 0);
        s.last_step_time = Some(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        c.status = Some(s);
        let w = wide(&c, k8s_openapi::jiff::Timestamp::from_second(5).unwrap(), "12:00:00");
        assert!(w.ends_with("failed 0/2  canary step 1/2  next step in 10s"), "{w}");
    }

    #[test]
    fn a_line_says_phase_weight_checks_and_why() {
        let mut c = Canary::new(
            "podinfo",
            CanarySpec {
                analysis: Some(CanaryAnalysis { threshold: Some(3), ..Default::default() }),
                ..Default::default()
            },
        );
        c.metadata.namespace = Some("demo".into());
        let time = k8s_openapi::jiff::Timestamp::UNIX_EPOCH;
        c.status = Some(CanaryStatus {
            phase: Phase::Progressing,
            canary_weight: 20,
            failed_checks: 1,
            checks: vec![CheckRecord {
                kind: "metric".into(),
                name: "request-success-rate".into(),
                result: "Failed".into(),
                value: Some(97.5),
                min: Some(99.0),
                time,
                ..Default::default()
            }],
            decision: Some(Decision {
                time,
                reason: "MetricFailed".into(),
                message: "success rate 97.50% < 99%".into(),
            }),
            ..Default::default()
        });
        let l = line(&c, "12:00:00");
        assert!(l.starts_with("12:00:00  podinfo.demo"), "{l}");
        for part in [
            "Progressing",
            "weight  20",
            "failed 1/3",
            "request-success-rate=97.5(>=99) FAIL",
            "| success rate 97.50% < 99%",
        ] {
            assert!(l.contains(part), "{part:?} missing from {l}");
        }
    }
}
