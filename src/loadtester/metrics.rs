//! The load tester's own Prometheus metrics (`/metrics`), prefixed `veer_loadtester_`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
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
    task_type: String,
    result: &'static str,
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
        }
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Counts one task request.
    pub fn task(&self, task_type: &str, result: &'static str) {
        self.tasks.get_or_create(&TaskLabels { task_type: task_type.to_owned(), result }).inc();
    }

    /// The observer for one Canary's hey run: live counters and latency histogram.
    pub fn run_observer(&self, name: &str, namespace: &str) -> Arc<dyn RequestObserver> {
        let outcome = |o| {
            self.load_requests
                .get_or_create(&OutcomeLabels {
                    name: name.to_owned(),
                    namespace: namespace.to_owned(),
                    outcome: o,
                })
                .clone()
        };
        Arc::new(RunObserver {
            success: outcome("success"),
            http_error: outcome("http_error"),
            transport_error: outcome("transport_error"),
            latency: self
                .load_latency
                .get_or_create(&CanaryLabels { name: name.to_owned(), namespace: namespace.to_owned() })
                .clone(),
        })
    }

    /// Marks a run as started; the returned guard marks it finished when dropped.
    pub fn run_started(&self) -> ActiveRun {
        self.load_runs_active.inc();
        ActiveRun(self.load_runs_active.clone())
    }

    /// Publishes a finished run's percentiles and rate.
    pub fn run_finished(&self, name: &str, namespace: &str, report: &RunReport) {
        for (q, label) in [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")] {
            let value = report.latency.quantile(q).map_or(f64::NAN, |d| d.as_secs_f64());
            self.last_run_latency
                .get_or_create(&QuantileLabels {
                    name: name.to_owned(),
                    namespace: namespace.to_owned(),
                    quantile: label,
                })
                .set(value);
        }
        self.last_run_rate
            .get_or_create(&CanaryLabels { name: name.to_owned(), namespace: namespace.to_owned() })
            .set(report.rate());
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
