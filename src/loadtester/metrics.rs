//! The load tester's own Prometheus metrics (`/metrics`), prefixed `veer_loadtester_`.
//!
//! Label values come from callers' payloads, so they are bounded: task types outside the known
//! ones count as `other`, and Canaries beyond [`MAX_CANARIES`] count as `_other` (not a valid
//! Kubernetes name, so it cannot be a Canary's). Names themselves are checked as Kubernetes names
//! before a task runs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::hey::{Outcome, RequestObserver, RunReport};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabels {
    name: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    name: String,
    namespace: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabels {
    name: String,
    namespace: String,
    quantile: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task_type: &'static str,
    result: &'static str,
}

/// Most Canaries with series of their own. A load tester serves the Canaries of a namespace or a
/// team; each Canary has about 27 series (counters, a 17-bucket histogram, gauges), so 200 are
/// ~5,400 series and a few MB. Runs of further Canaries are counted under `_other`.
pub const MAX_CANARIES: usize = 200;
/// The label value of Canaries beyond [`MAX_CANARIES`].
pub const OTHER_CANARY: &str = "_other";

/// The `task_type` label of a task type from a payload: the type itself when the load tester
/// knows it, else `other`.
fn task_type_label(task_type: &str) -> &'static str {
    const KNOWN: &[&str] = &["cmd", "bash", "helm", "helmv3", "kubectl", "concord", "ngrinder"];
    KNOWN.iter().find(|k| **k == task_type).copied().unwrap_or("other")
}

type HistogramCtor = fn() -> Histogram;

/// All metrics, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    load_requests: Family<OutcomeLabels, Counter>,
    load_latency: Family<CanaryLabels, Histogram, HistogramCtor>,
    last_run_latency: Family<QuantileLabels, Gauge<f64, AtomicU64>>,
    last_run_rate: Family<CanaryLabels, Gauge<f64, AtomicU64>>,
    load_runs_active: Gauge,
    tasks: Family<TaskLabels, Counter>,
    /// The Canaries that have series of their own.
    canaries: Mutex<HashSet<(String, String)>>,
    /// Whether the "too many Canaries" warning was logged.
    warned: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("veer_loadtester");
        let load_requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "load_requests",
            "Requests sent by built-in hey runs, by outcome (success = 2xx, http_error, transport_error)",
            load_requests.clone(),
        );
        let load_latency =
            Family::<CanaryLabels, Histogram, HistogramCtor>::new_with_constructor(latency_histogram);
        registry.register(
            "load_request_duration_seconds",
            "Latency of requests sent by built-in hey runs, including the response body",
            load_latency.clone(),
        );
        let last_run_latency = Family::<QuantileLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "load_last_run_latency_seconds",
            "Latency percentiles (0.5, 0.9, 0.99) of the last finished hey run of each Canary",
            last_run_latency.clone(),
        );
        let last_run_rate = Family::<CanaryLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "load_last_run_requests_per_second",
            "Achieved request rate of the last finished hey run of each Canary",
            last_run_rate.clone(),
        );
        let load_runs_active = Gauge::default();
        registry.register("load_runs_active", "Built-in hey runs in progress", load_runs_active.clone());
        let tasks = Family::<TaskLabels, Counter>::default();
        registry.register(
            "tasks",
            "Task requests to / by type and result (accepted, already_running, succeeded, failed, refused, invalid, busy)",
            tasks.clone(),
        );
        Self {
            registry,
            load_requests,
            load_latency,
            last_run_latency,
            last_run_rate,
            load_runs_active,
            tasks,
            canaries: Mutex::new(HashSet::new()),
            warned: AtomicBool::new(false),
        }
    }

    /// The (name, namespace) labels for a Canary: its own while fewer than [`MAX_CANARIES`]
    /// have series, else [`OTHER_CANARY`].
    fn canary(&self, name: &str, namespace: &str) -> CanaryLabels {
        let mut known = self.canaries.lock().expect("canary set lock poisoned");
        let key = (name.to_owned(), namespace.to_owned());
        if known.contains(&key) || known.len() < MAX_CANARIES {
            known.insert(key);
            return CanaryLabels { name: name.to_owned(), namespace: namespace.to_owned() };
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "load runs of more than {MAX_CANARIES} Canaries: further ones are counted under name and \
                 namespace {OTHER_CANARY:?}"
            );
        }
        CanaryLabels { name: OTHER_CANARY.to_owned(), namespace: OTHER_CANARY.to_owned() }
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Counts one task request.
    pub fn task(&self, task_type: &str, result: &'static str) {
        self.tasks.get_or_create(&TaskLabels { task_type: task_type_label(task_type), result }).inc();
    }

    /// The observer for one Canary's hey run: live counters and latency histogram.
    pub fn run_observer(&self, name: &str, namespace: &str) -> Arc<dyn RequestObserver> {
        let canary = self.canary(name, namespace);
        let outcome = |o| {
            self.load_requests
                .get_or_create(&OutcomeLabels {
                    name: canary.name.clone(),
                    namespace: canary.namespace.clone(),
                    outcome: o,
                })
                .clone()
        };
        Arc::new(RunObserver {
            success: outcome("success"),
            http_error: outcome("http_error"),
            transport_error: outcome("transport_error"),
            latency: self.load_latency.get_or_create(&canary).clone(),
        })
    }

    /// Marks a run as started; the returned guard marks it finished when dropped.
    pub fn run_started(&self) -> ActiveRun {
        self.load_runs_active.inc();
        ActiveRun(self.load_runs_active.clone())
    }

    /// Publishes a finished run's percentiles and rate.
    pub fn run_finished(&self, name: &str, namespace: &str, report: &RunReport) {
        let canary = self.canary(name, namespace);
        for (q, label) in [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")] {
            let value = report.latency.quantile(q).map_or(f64::NAN, |d| d.as_secs_f64());
            self.last_run_latency
                .get_or_create(&QuantileLabels {
                    name: canary.name.clone(),
                    namespace: canary.namespace.clone(),
                    quantile: label,
                })
                .set(value);
        }
        self.last_run_rate.get_or_create(&canary).set(report.rate());
    }
}

/// Decrements the active-runs gauge when the run ends, however it ends.
pub struct ActiveRun(Gauge);

impl Drop for ActiveRun {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct RunObserver {
    success: Counter,
    http_error: Counter,
    transport_error: Counter,
    latency: Histogram,
}

impl RequestObserver for RunObserver {
    fn observe(&self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Success => self.success.inc(),
            Outcome::HttpError => self.http_error.inc(),
            Outcome::TransportError => self.transport_error.inc(),
        };
        self.latency.observe(latency.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(m: &Metrics, metric: &str) -> Vec<String> {
        m.render().lines().filter(|l| l.starts_with(metric)).map(str::to_owned).collect()
    }

    #[test]
    fn unknown_task_types_are_folded_into_other() {
        let m = Metrics::new();
        let long = "y".repeat(10_000);
        for t in ["bash", "kubectl", "x1", "x2", "<script>", long.as_str()] {
            m.task(t, "invalid");
        }
        let tasks = series(&m, "veer_loadtester_tasks_total");
        assert_eq!(tasks.len(), 3, "{tasks:#?}");
        assert!(tasks.iter().any(|l| l.contains(r#"task_type="other",result="invalid"} 4"#)), "{tasks:#?}");
        assert!(tasks.iter().any(|l| l.contains(r#"task_type="kubectl""#)));
    }

    #[test]
    fn canaries_beyond_the_limit_share_one_series() {
        let m = Metrics::new();
        for i in 0..MAX_CANARIES + 30 {
            m.run_observer(&format!("app-{i}"), "test").observe(Outcome::Success, Duration::from_millis(1));
        }
        // A Canary seen before the limit keeps its own series.
        m.run_observer("app-0", "test").observe(Outcome::Success, Duration::from_millis(1));
        let requests = series(&m, "veer_loadtester_load_requests_total");
        let success: Vec<_> = requests.iter().filter(|l| l.contains(r#"outcome="success""#)).collect();
        assert_eq!(success.len(), MAX_CANARIES + 1, "one per Canary plus _other");
        assert!(
            success.iter().any(|l| l.contains(r#"name="_other",namespace="_other""#) && l.ends_with(" 30"))
        );
        assert!(success.iter().any(|l| l.contains(r#"name="app-0",namespace="test""#) && l.ends_with(" 2")));
    }
}
