//! `veer status`: a Canary's state in one line per change — phase, weight, failed checks, the
//! latest metric values against their ranges, and why the last decision was taken.

use std::{fmt::Write, time::Duration};

use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};

use crate::{
    analysis::Params,
    api::{Canary, CanaryStatus, CheckKind, CheckRecord, Phase},
};

/// Flags of `veer status`.
#[derive(clap::Args, Clone, Debug)]
pub struct StatusArgs {
    /// Namespace of the Canary (default: the kubeconfig's).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Canary name (default: every Canary of the namespace).
    pub name: Option<String>,
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
    let api: Api<Canary> = Api::namespaced(client, &ns);
    if !args.watch {
        let list = api.list(&Default::default()).await.map_err(StatusError::Read)?;
        for c in list.items.iter().filter(|c| args.name.as_deref().is_none_or(|n| c.name_any() == n)) {
            println!("{}", line(c, &clock()));
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
        let key = canary.name_any();
        // Print only what changed (ignoring timestamps of unchanged checks).
        if last.get(&key).is_some_and(|s| same(s, &status)) {
            continue;
        }
        println!("{}", line(&canary, &clock()));
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
