//! Logs, the controller's own metrics and the admin HTTP server (`/metrics`, `/healthz`, `/readyz`).
//!
//! Flagger's series keep their names (`flagger_*`) so existing dashboards keep working; Veer's own
//! series are `veer_*`.

use std::{
    ffi::OsStr,
    io::IsTerminal,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

mod collectors;
pub use collectors::{CanaryTotal, CountCanaries, ProcessCollector};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Plain,
}

/// Initializes logging to stdout. `level` is a tracing filter (`info`, `debug`,
/// `veer=debug,kube=info`).
pub fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => {
            registry.with(fmt::layer().json().flatten_event(true).with_current_span(false)).try_init()
        }
        LogFormat::Plain => {
            let ansi = plain_ansi(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
            registry.with(fmt::layer().with_writer(std::io::stdout).with_ansi(ansi)).try_init()
        }
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// Whether plain log lines carry ANSI colour codes: only for a person at a terminal (not in a
/// file, a pipe or collected pod logs), and not when `NO_COLOR` is set to a non-empty value
/// (<https://no-color.org>, which tracing-subscriber's default honours as well).
fn plain_ansi(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub version: String,
    pub mesh_provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryLabels {
    pub name: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkloadLabels {
    pub workload: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabels {
    pub name: String,
    pub namespace: String,
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub name: String,
    pub namespace: String,
    pub deployment_strategy: String,
    pub analysis_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// The controller's metrics.
#[derive(Clone)]
pub struct ControllerMetrics {
    pub info: Family<InfoLabels, Gauge>,
    /// Counted at each scrape ([`CanaryTotal::count_with`]).
    pub canary_total: CanaryTotal,
    /// 0 = Progressing, 2 = Failed, 1 = anything else (Flagger's encoding).
    pub canary_status: Family<CanaryLabels, Gauge>,
    pub canary_weight: Family<WorkloadLabels, Gauge>,
    pub metric_analysis: Family<MetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub canary_duration: Family<CanaryLabels, Histogram>,
    pub successes: Family<RunLabels, Counter>,
    pub failures: Family<RunLabels, Counter>,
    /// Veer: reconciles that failed, by error kind.
    pub reconcile_errors: Family<KindLabels, Counter>,
    /// Veer: writes to the API server, by kind of write.
    pub api_writes: Family<KindLabels, Counter>,
    /// Veer: how long each write to the API server took, from sending to answer, by the kinds of
    /// [`api_writes`](Self::api_writes).
    pub api_write_duration: Family<KindLabels, Histogram>,
    /// Veer: how late analysis steps ran compared with `lastStepTime + interval`, in seconds.
    pub step_lag: Histogram,
    /// Veer: how late a Canary's scheduled tick started after it was due, in seconds: the
    /// controller's own queue and CPU, without the API server's answers.
    pub wake_lag: Histogram,
    /// Veer: Events waiting to be recorded (`controller::events`).
    pub event_queue_depth: Gauge,
    /// Veer: Events not recorded because their queue was full.
    pub events_dropped: Counter,
}

/// Observes the time since it was made in `veer_api_write_duration_seconds` when dropped: when
/// the write got its answer, or when it was cancelled (timed out, the leadership ended).
pub struct WriteTimer {
    histogram: Histogram,
    started: std::time::Instant,
}

impl Drop for WriteTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

impl ControllerMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> ControllerMetrics {
        let m = ControllerMetrics {
            info: Family::default(),
            canary_total: CanaryTotal::default(),
            canary_status: Family::default(),
            canary_weight: Family::default(),
            metric_analysis: Family::default(),
            canary_duration: Family::new_with_constructor(|| {
                Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
            }),
            successes: Family::default(),
            failures: Family::default(),
            reconcile_errors: Family::default(),
            api_writes: Family::default(),
            api_write_duration: Family::new_with_constructor(|| {
                Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
            }),
            step_lag: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
            wake_lag: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
            event_queue_depth: Gauge::default(),
            events_dropped: Counter::default(),
        };
        registry.register_collector(Box::new(ProcessCollector::new()));
        let f = registry.sub_registry_with_prefix("flagger");
        f.register("info", "Flagger version and mesh provider information", m.info.clone());
        f.register_collector(Box::new(m.canary_total.clone()));
        f.register(
            "canary_status",
            "Last canary analysis result (0 progressing, 1 done, 2 failed)",
            m.canary_status.clone(),
        );
        f.register("canary_weight", "The virtual service destination weight", m.canary_weight.clone());
        f.register(
            "canary_metric_analysis",
            "Last canary analysis result per metric",
            m.metric_analysis.clone(),
        );
        f.register(
            "canary_duration_seconds",
            "Seconds spent performing canary analysis",
            m.canary_duration.clone(),
        );
        f.register("canary_successes", "Total number of canary successes", m.successes.clone());
        f.register("canary_failures", "Total number of canary failures", m.failures.clone());
        let v = registry.sub_registry_with_prefix("veer");
        v.register("reconcile_errors", "Reconciles that failed, by error kind", m.reconcile_errors.clone());
        v.register("api_writes", "Writes sent to the API server, by kind", m.api_writes.clone());
        v.register(
            "api_write_duration_seconds",
            "Time from sending a write to the API server to its answer, by kind",
            m.api_write_duration.clone(),
        );
        v.register("step_lag_seconds", "Delay of analysis steps behind their due time", m.step_lag.clone());
        v.register(
            "wake_lag_seconds",
            "Delay of scheduled reconciles behind their due time (the controller's queue and CPU)",
            m.wake_lag.clone(),
        );
        v.register("event_queue_depth", "Events waiting to be recorded", m.event_queue_depth.clone());
        v.register(
            "events_dropped",
            "Events not recorded because their queue was full",
            m.events_dropped.clone(),
        );
        m
    }

    /// Counts a write of `kind` in `veer_api_writes_total`.
    pub fn count_write(&self, kind: &str) {
        self.api_writes.get_or_create(&KindLabels { kind: kind.to_string() }).inc();
    }

    /// Starts timing a write of `kind` that is being sent (see [`WriteTimer`]).
    pub fn time_write(&self, kind: &str) -> WriteTimer {
        let histogram = self.api_write_duration.get_or_create_owned(&KindLabels { kind: kind.to_string() });
        WriteTimer { histogram, started: std::time::Instant::now() }
    }
}

/// Shared state of the admin server.
#[derive(Clone)]
pub struct Admin {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
}

impl Admin {
    pub fn new(registry: Registry) -> Admin {
        Admin { registry: Arc::new(registry), ready: Arc::new(AtomicBool::new(false)) }
    }

    /// Marks the controller ready (caches synced).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// The flag `/readyz` answers from, for whoever else must know that the caches are synced.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// The admin routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "OK" }))
            .route("/readyz", get(readyz))
            .with_state(self.clone())
    }

    /// Serves the admin routes until `shutdown` completes.
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    let mut body = String::new();
    match encode(&mut body, &admin.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        ),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], e.to_string()),
    }
}

async fn readyz(State(admin): State<Admin>) -> (StatusCode, &'static str) {
    if admin.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "OK")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_logs_are_coloured_only_on_a_terminal() {
        assert!(plain_ansi(true, None));
        assert!(plain_ansi(true, Some(OsStr::new(""))));
        assert!(!plain_ansi(true, Some(OsStr::new("1"))));
        assert!(!plain_ansi(false, None));
        assert!(!plain_ansi(false, Some(OsStr::new(""))));
    }

    #[tokio::test]
    async fn admin_endpoints() {
        let mut registry = Registry::default();
        let m = ControllerMetrics::register(&mut registry);
        m.info.get_or_create(&InfoLabels { version: "0.1.0".into(), mesh_provider: "istio".into() }).set(1);
        m.successes
            .get_or_create(&RunLabels {
                name: "podinfo".into(),
                namespace: "test".into(),
                deployment_strategy: "canary".into(),
                analysis_status: "completed".into(),
            })
            .inc();
        let admin = Admin::new(registry);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = admin.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = crate::http::client_builder().build().unwrap();
        let get = |path: &str| client.get(format!("{base}{path}")).send();
        assert_eq!(get("/healthz").await.unwrap().text().await.unwrap(), "OK");
        assert_eq!(get("/readyz").await.unwrap().status(), 503);
        admin.set_ready(true);
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        let body = get("/metrics").await.unwrap().text().await.unwrap();
        assert!(body.contains(r#"flagger_info{version="0.1.0",mesh_provider="istio"} 1"#), "{body}");
        assert!(
            body.contains(r#"flagger_canary_successes_total{name="podinfo",namespace="test",deployment_strategy="canary",analysis_status="completed"} 1"#),
            "{body}"
        );
    }
}
