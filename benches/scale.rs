//! Scale benchmark of `veer controller` on the local control plane (DESIGN.md, "Performance
//! targets"). Not a test: it measures and reports, it asserts nothing about timings.
//!
//! ```text
//! e2e/up.sh && . e2e/.run/env
//! cargo bench --bench scale -- --canaries 100 [--report docs/benchmarks.md]
//! ```
//!
//! (`e2e/bench.sh` does all of it, including the stack.) Stages, for N Canaries (provider
//! kubernetes, Blue/Green `iterations`, one tiny podinfo-like Deployment with 1 replica, a ConfigMap
//! and a Secret each), in one fresh namespace:
//!
//! 1. setup: targets created and Ready *before* the controller runs, then the N Canaries;
//! 2. init: the controller starts; time until every Canary is `Initialized`;
//! 3. idle: API server requests (`apiserver_request_total`) over a fixed window with the controller
//!    running and idle, then over the same window with it stopped; Veer's `veer_api_writes_total`;
//! 4. restart: the controller starts again over N initialized Canaries (writes expected: none);
//! 5. detection: K targets get a new image one at a time; patch → `Progressing` seen by a watch;
//! 6. steps: all N targets get a new image at once; `status.lastStepTime` spacing vs the interval,
//!    and `veer_step_lag_seconds`.
//!
//! Controller RSS (VmRSS sampled every 250 ms, VmHWM) and CPU time (/proc/<pid>/stat) per stage.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use common::harness::{Process, free_port};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Secret},
        networking::v1::ServiceCIDR,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use veer::api::{Canary, Phase};

#[derive(Parser, Debug, Clone)]
#[command(about = "Veer scale benchmark against the local control plane (e2e/up.sh)")]
struct Args {
    /// Number of Canaries (each with its own Deployment, ConfigMap and Secret).
    #[arg(long, default_value_t = 100)]
    canaries: usize,
    /// analysis.interval in seconds.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Blue/Green iterations.
    #[arg(long, default_value_t = 3)]
    iterations: u32,
    /// Canaries whose detection latency is measured one at a time (default: min(N, 100)).
    #[arg(long)]
    detect: Option<usize>,
    /// Pause after each detection before the next image change, in milliseconds.
    #[arg(long, default_value_t = 200)]
    detect_spacing_ms: u64,
    /// Length of each idle window (controller running, controller stopped), in seconds.
    #[arg(long, default_value_t = 30)]
    idle_window: u64,
    /// Requests in flight when creating or patching many objects.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
    /// Targets without a ConfigMap and a Secret.
    #[arg(long)]
    no_config: bool,
    /// Append the report (Markdown) to this file; it is printed in any case.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Keep the namespace (and its objects) at the end.
    #[arg(long)]
    keep: bool,
    /// Upper bound of every wait, in seconds (scaled up for large N where noted).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Skip the last stage (all N images changed at once).
    #[arg(long)]
    no_steps: bool,
    /// Give up a wait after this many seconds without progress.
    #[arg(long, default_value_t = 180)]
    stall: u64,
    /// Controllers measured one after the other, each over its own fresh namespace and workload
    /// (`veer`, `flagger`: Flagger from `VEER_E2E_FLAGGER`, built by e2e/build-tools.sh).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Ctl::Veer])]
    controllers: Vec<Ctl>,
    /// `blue-green`: provider kubernetes, no metrics. `istio`: Istio routing, `stepWeight` 10 up to
    /// 10 × iterations, and the two built-in checks (request-success-rate, request-duration) through
    /// Prometheus and the traffic simulator (`TRAFFICSIM_URL`).
    #[arg(long, value_enum, default_value_t = Profile::BlueGreen)]
    profile: Profile,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A controller under measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Ctl {
    Veer,
    Flagger,
}

impl Ctl {
    fn label(self) -> &'static str {
        match self {
            Ctl::Veer => "Veer",
            Ctl::Flagger => "Flagger",
        }
    }
}

/// What each Canary does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Profile {
    BlueGreen,
    Istio,
}

impl Profile {
    fn provider(self) -> &'static str {
        match self {
            Profile::BlueGreen => "kubernetes",
            Profile::Istio => "istio",
        }
    }

    fn describe(self, iterations: u32) -> String {
        match self {
            Profile::BlueGreen => {
                format!("provider kubernetes, Blue/Green {iterations} iterations, threshold 2")
            }
            Profile::Istio => format!(
                "provider istio, stepWeight 10 up to {}, threshold 2, request-success-rate (min 99, 1m) and \
                 request-duration (max 500 ms, 30s) through Prometheus, traffic simulator at 10 rps, 0 errors, 50 ms",
                10 * iterations
            ),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Canary status changes as a watch sees them

#[derive(Clone, Debug)]
struct Change {
    at: Instant,
    phase: Phase,
    /// Veer's `status.lastStepTime` (Flagger has none).
    step: Option<Timestamp>,
    reason: String,
    /// `status.iterations` and `status.canaryWeight`: a step as both controllers show it.
    progress: (i32, i32),
}

#[derive(Clone, Default)]
struct Tracks(Arc<Mutex<HashMap<String, Vec<Change>>>>);

impl Tracks {
    fn record(&self, c: &Canary) {
        let s = c.status.clone().unwrap_or_default();
        let change = Change {
            at: Instant::now(),
            phase: s.phase,
            step: s.last_step_time,
            reason: s.decision.map(|d| d.reason).unwrap_or_default(),
            progress: (s.iterations, s.canary_weight),
        };
        let mut all = self.0.lock().unwrap();
        let v = all.entry(c.name_any()).or_default();
        let same = v.last().is_some_and(|l| {
            l.phase == change.phase
                && l.step == change.step
                && l.reason == change.reason
                && l.progress == change.progress
        });
        if !same {
            v.push(change);
        }
    }

    fn phase(&self, name: &str) -> Phase {
        self.0.lock().unwrap().get(name).and_then(|v| v.last()).map(|c| c.phase).unwrap_or_default()
    }

    fn count(&self, pred: impl Fn(Phase) -> bool) -> usize {
        self.0.lock().unwrap().values().filter(|v| v.last().is_some_and(|c| pred(c.phase))).count()
    }

    fn changes(&self, name: &str) -> Vec<Change> {
        self.0.lock().unwrap().get(name).cloned().unwrap_or_default()
    }

    /// When `name` was first seen in `phase` at or after `since`.
    fn first_seen(&self, name: &str, phase: Phase, since: Instant) -> Option<Instant> {
        let all = self.0.lock().unwrap();
        all.get(name)?.iter().find(|c| c.at >= since && c.phase == phase).map(|c| c.at)
    }
}

fn spawn_tracker(client: &Client, ns: &str, tracks: Tracks) -> tokio::task::JoinHandle<()> {
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).default_backoff().applied_objects().boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(c) = ev {
                tracks.record(&c);
            }
        }
    })
}

/// When each Deployment was last seen becoming ready (wall clock, comparable with `lastStepTime`):
/// rolled out, every wanted replica updated and available, no old replica left.
#[derive(Clone, Default)]
struct ReadyTimes(Arc<Mutex<HashMap<String, ReadyHistory>>>);

/// Whether a Deployment is ready now, and when it became ready.
type ReadyHistory = (bool, Vec<Timestamp>);

impl ReadyTimes {
    fn record(&self, d: &Deployment) {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = d.status.clone().unwrap_or_default();
        let ready = want > 0
            && st.observed_generation >= d.metadata.generation
            && st.updated_replicas.unwrap_or(0) >= want
            && st.available_replicas.unwrap_or(0) >= want
            && st.replicas.unwrap_or(0) == st.updated_replicas.unwrap_or(0);
        let mut all = self.0.lock().unwrap();
        let e = all.entry(d.name_any()).or_default();
        if ready && !e.0 {
            e.1.push(Timestamp::now());
        }
        e.0 = ready;
    }

    /// The latest time one of `names` became ready, not after `before`.
    fn latest(&self, names: &[String], before: Timestamp) -> Option<Timestamp> {
        let all = self.0.lock().unwrap();
        names
            .iter()
            .filter_map(|n| all.get(n))
            .flat_map(|e| e.1.iter().copied().filter(|t| *t <= before))
            .max()
    }
}

fn spawn_ready_tracker(client: &Client, ns: &str, times: ReadyTimes) -> tokio::task::JoinHandle<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).default_backoff().applied_objects().boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(d) = ev {
                times.record(&d);
            }
        }
    })
}

// ------------------------------------------------------------------------------------------------
// /proc: RSS and CPU of the controller and of the control plane

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from `state` (field 3) here.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clk_tck())
}

/// The control plane processes e2e/up.sh recorded (`.run/pids/NN-name`: "pid exe").
fn control_plane() -> Vec<(String, u32)> {
    let run = std::env::var("VEER_E2E_RUN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/.run"));
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(run.join("pids")) else { return out };
    let mut entries: Vec<_> = dir.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let mut it = text.split_whitespace();
        let (Some(pid), Some(exe)) = (it.next().and_then(|p| p.parse::<u32>().ok()), it.next()) else {
            continue;
        };
        let actual = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if actual.to_string_lossy().trim_end_matches(" (deleted)") == exe {
            let name = e.file_name().to_string_lossy().split_once('-').map(|(_, n)| n.to_string());
            out.push((name.unwrap_or_default(), pid));
        }
    }
    out
}

/// CPU seconds of the controller and of each control plane process, at one moment.
#[derive(Clone, Debug, Default)]
struct CpuSnap {
    controller: f64,
    others: BTreeMap<String, f64>,
}

fn cpu_snap(controller: Option<u32>) -> CpuSnap {
    CpuSnap {
        controller: controller.and_then(cpu_seconds).unwrap_or(0.0),
        others: control_plane().into_iter().filter_map(|(n, p)| Some((n, cpu_seconds(p)?))).collect(),
    }
}

/// Samples the controller's VmRSS every 250 ms; keeps the maximum per stage.
#[derive(Clone, Default)]
struct RssSampler {
    pid: Arc<AtomicU32>,
    stage: Arc<AtomicUsize>,
    max_kib: Arc<Mutex<BTreeMap<usize, u64>>>,
}

impl RssSampler {
    fn start(&self) -> tokio::task::JoinHandle<()> {
        let s = self.clone();
        tokio::spawn(async move {
            loop {
                let pid = s.pid.load(Ordering::SeqCst);
                if pid != 0
                    && let Some(kib) = proc_status_kib(pid, "VmRSS:")
                {
                    let stage = s.stage.load(Ordering::SeqCst);
                    let mut m = s.max_kib.lock().unwrap();
                    let e = m.entry(stage).or_default();
                    *e = (*e).max(kib);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }

    fn max_mib(&self, stage: usize) -> f64 {
        self.max_kib.lock().unwrap().get(&stage).copied().unwrap_or(0) as f64 / 1024.0
    }
}

// ------------------------------------------------------------------------------------------------
// Prometheus text: the API server's and the controller's

/// `name{labels} value` lines of one metric family member (exact name), labels parsed.
fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (labels, value) = if let Some(inner) = rest.strip_prefix('{') {
            let Some((l, v)) = inner.split_once("} ") else { continue };
            (l, v)
        } else if let Some(v) = rest.strip_prefix(' ') {
            ("", v)
        } else {
            continue;
        };
        let mut map = BTreeMap::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once("=\"") {
                map.insert(k.trim_start_matches(',').to_string(), v.trim_end_matches('"').to_string());
            }
        }
        let value = value.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        out.push((map, value));
    }
    out
}

/// API server requests by "VERB resource[/subresource]" (resource requests only; /metrics and other
/// non-resource paths are left out).
async fn apiserver_requests(client: &Client) -> BTreeMap<String, f64> {
    let req = http::Request::get("/metrics").body(Vec::new()).expect("a request");
    let text = client.request_text(req).await.expect("the API server's /metrics (admin kubeconfig)");
    let mut out = BTreeMap::new();
    for (l, v) in samples(&text, "apiserver_request_total") {
        let resource = l.get("resource").cloned().unwrap_or_default();
        if resource.is_empty() {
            continue;
        }
        let sub = l.get("subresource").filter(|s| !s.is_empty()).map(|s| format!("/{s}")).unwrap_or_default();
        let key = format!("{} {resource}{sub}", l.get("verb").cloned().unwrap_or_default());
        *out.entry(key).or_default() += v;
    }
    out
}

fn diff(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

async fn controller_metrics(port: u16) -> String {
    let client = veer::http::client_builder().build().expect("an HTTP client");
    match client.get(format!("http://127.0.0.1:{port}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn writes_by_kind(text: &str) -> BTreeMap<String, f64> {
    samples(text, "veer_api_writes_total")
        .into_iter()
        .map(|(l, v)| (l.get("kind").cloned().unwrap_or_default(), v))
        .collect()
}

/// `veer_step_lag_seconds`: (upper bound, cumulative count) buckets, sum, count.
#[derive(Clone, Debug, Default)]
struct Histo {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

fn step_lag(text: &str) -> Histo {
    histo(text, "veer_step_lag_seconds", None)
}

/// A histogram family member from Prometheus text; `label`: only the series with that label value.
fn histo(text: &str, name: &str, label: Option<(&str, &str)>) -> Histo {
    let keep = |l: &BTreeMap<String, String>| label.is_none_or(|(k, v)| l.get(k).is_some_and(|x| x == v));
    let mut buckets: Vec<(f64, f64)> = samples(text, &format!("{name}_bucket"))
        .into_iter()
        .filter(|(l, _)| keep(l))
        .map(|(l, v)| {
            let le = l.get("le").map(|s| if s == "+Inf" { f64::INFINITY } else { s.parse().unwrap_or(0.0) });
            (le.unwrap_or(0.0), v)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let one = |n: &str| samples(text, n).into_iter().filter(|(l, _)| keep(l)).map(|s| s.1).sum::<f64>();
    Histo { buckets, sum: one(&format!("{name}_sum")), count: one(&format!("{name}_count")) }
}

impl Histo {
    fn minus(&self, before: &Histo) -> Histo {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, v)| {
                let b = before.buckets.iter().find(|(l, _)| l == le).map(|x| x.1).unwrap_or(0.0);
                (*le, v - b)
            })
            .collect();
        Histo { buckets, sum: self.sum - before.sum, count: self.count - before.count }
    }

    /// `count …, mean …, p50 …, p99 …`.
    fn describe(&self) -> String {
        let mean = if self.count > 0.0 { format!("{:.3} s", self.sum / self.count) } else { "—".into() };
        format!("count {}, mean {mean}, p50 {}, p99 {}", self.count, self.quantile(0.5), self.quantile(0.99))
    }

    /// The upper bound of the bucket that holds quantile `q`.
    fn quantile(&self, q: f64) -> String {
        if self.count == 0.0 {
            return "—".into();
        }
        let rank = q * self.count;
        match self.buckets.iter().find(|(_, c)| *c >= rank) {
            Some((le, _)) if le.is_infinite() => "> last bucket".into(),
            Some((le, _)) => format!("≤ {le} s"),
            None => "—".into(),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Objects

fn name(i: usize, n: usize) -> String {
    let width = n.saturating_sub(1).to_string().len().max(4);
    format!("app-{i:0width$}")
}

fn target_json(name: &str, image: &str, config: bool) -> Value {
    let mut container = json!({
        "name": "app",
        "image": image,
        "ports": [{"name": "http", "containerPort": 9898}],
    });
    let mut pod = json!({"containers": []});
    if config {
        container["envFrom"] = json!([{"secretRef": {"name": format!("{name}-secret")}}]);
        container["volumeMounts"] = json!([{"name": "config", "mountPath": "/etc/podinfo"}]);
        pod["volumes"] = json!([{"name": "config", "configMap": {"name": format!("{name}-config")}}]);
    }
    pod["containers"] = json!([container]);
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
        },
    })
}

fn canary_json(name: &str, interval: u64, iterations: u32, profile: Profile) -> Value {
    let analysis = match profile {
        Profile::BlueGreen => {
            json!({"interval": format!("{interval}s"), "threshold": 2, "iterations": iterations})
        }
        Profile::Istio => json!({
            "interval": format!("{interval}s"),
            "threshold": 2,
            "stepWeight": 10,
            "maxWeight": 10 * iterations,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"},
            ],
        }),
    };
    json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": profile.provider(),
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 600,
            "service": {"port": 9898},
            "analysis": analysis,
        },
    })
}

async fn apply_all<K>(client: &Client, ns: &str, docs: Vec<Value>, parallel: usize)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams::apply("veer-bench").force();
    futures::stream::iter(docs)
        .map(|doc| {
            let (api, pp) = (api.clone(), pp.clone());
            async move {
                let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
                api.patch(&name, &pp, &Patch::Apply(&doc))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{name}: {e}"))
            }
        })
        .buffer_unordered(parallel)
        .try_collect::<Vec<()>>()
        .await
        .unwrap_or_else(|e| panic!("cannot apply {}: {e}", K::kind(&())));
}

async fn set_images(client: &Client, ns: &str, names: &[String], image: &str, parallel: usize) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(names.iter().cloned())
        .map(|n| {
            let api = api.clone();
            let patch =
                json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
            async move { api.patch(&n, &PatchParams::default(), &Patch::Strategic(&patch)).await.map(|_| ()) }
        })
        .buffer_unordered(parallel)
        .try_collect::<Vec<()>>()
        .await
        .expect("image patches");
}

/// Targets and primaries as counted from one LIST.
#[derive(Debug, Default)]
struct Rollout {
    targets_ready: usize,
    targets_scaled_down: usize,
    primaries_ready: usize,
}

async fn rollout(client: &Client, ns: &str) -> Rollout {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    let mut r = Rollout::default();
    for d in list {
        let spec_replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = d.status.clone().unwrap_or_default();
        let ready = st.ready_replicas.unwrap_or(0) >= 1
            && st.updated_replicas.unwrap_or(0) >= 1
            && st.observed_generation == d.metadata.generation;
        if d.name_any().ends_with("-primary") {
            r.primaries_ready += usize::from(ready);
        } else {
            r.targets_ready += usize::from(ready);
            r.targets_scaled_down += usize::from(spec_replicas == 0 && st.replicas.unwrap_or(0) == 0);
        }
    }
    r
}

/// Polls a progress count every `every` until it reaches `target`; gives up after `timeout`, or
/// after `stall` without progress. Logs the count every 10 s. Returns whether the target was reached.
async fn until_count(
    what: &str,
    target: usize,
    timeout: Duration,
    stall: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> usize,
) -> bool {
    let start = Instant::now();
    let (mut best, mut moved, mut logged) = (0, start, start);
    loop {
        let count = probe().await;
        if count >= target {
            return true;
        }
        if count > best {
            (best, moved) = (count, Instant::now());
        }
        if logged.elapsed() >= Duration::from_secs(10) {
            eprintln!("[bench]   {what}: {count}/{target} after {:.0?}", start.elapsed());
            logged = Instant::now();
        }
        if start.elapsed() >= timeout || moved.elapsed() >= stall {
            eprintln!("[bench]   {what}: gave up at {count}/{target} after {:.0?}", start.elapsed());
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `probe` every `every` until it holds or `timeout` passes; returns whether it held.
async fn until(timeout: Duration, every: Duration, mut probe: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if probe().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// Each Canary gets three ClusterIP Services; e2e/up.sh's service range (a /24) holds about 250.
/// A second ServiceCIDR (networking.k8s.io/v1, GA since Kubernetes 1.33) makes room for more.
async fn ensure_service_ips(client: &Client, needed: usize) {
    if needed < 200 {
        return;
    }
    let api: Api<ServiceCIDR> = Api::all(client.clone());
    let cidr = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": "veer-bench"},
        "spec": {"cidrs": ["10.96.0.0/16"]},
    });
    api.patch("veer-bench", &PatchParams::apply("veer-bench").force(), &Patch::Apply(&cidr))
        .await
        .expect("ServiceCIDR veer-bench");
    let ready = until(Duration::from_secs(30), Duration::from_millis(200), async || {
        api.get("veer-bench")
            .await
            .ok()
            .and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
    assert!(ready, "ServiceCIDR veer-bench (10.96.0.0/16) did not become Ready");
}

// ------------------------------------------------------------------------------------------------
// Statistics and report helpers

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn summary(values: &[f64], unit: &str, scale: f64) -> String {
    let mut v: Vec<f64> = values.iter().map(|x| x * scale).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {:.3}{unit}, p90 {:.3}{unit}, p99 {:.3}{unit}, max {:.3}{unit} (n = {})",
        pct(&v, 50.0),
        pct(&v, 90.0),
        pct(&v, 99.0),
        v[v.len() - 1],
        v.len()
    )
}

/// Whether the API server writes an audit log (e2e/up.sh does, of the writes to what Veer
/// reads and writes: every such write also costs a line in that file).
fn apiserver_audit() -> &'static str {
    let Some((_, pid)) = control_plane().into_iter().find(|(n, _)| n == "kube-apiserver") else {
        return "unknown";
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains("--audit-log-path=") {
        "an audit log of writes (Metadata level)"
    } else {
        "no audit log"
    }
}

/// The KCM's client rate limit, from its command line (e2e/up.sh, VEER_E2E_KCM_QPS).
fn kcm_rate() -> String {
    let Some((_, pid)) = control_plane().into_iter().find(|(n, _)| n == "kube-controller-manager") else {
        return "unknown".into();
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> =
        cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let flag = |name: &str| args.iter().find_map(|a| a.strip_prefix(name).map(str::to_string));
    match (flag("--kube-api-qps="), flag("--kube-api-burst=")) {
        (Some(q), Some(b)) => format!("{q} QPS, burst {b}"),
        _ => "20 QPS, burst 30 (its defaults)".into(),
    }
}

fn machine_facts() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let meminfo = read("/proc/meminfo");
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .unwrap_or("")
        .trim_start_matches("MemTotal:")
        .trim();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|x| x.1.trim())
        .unwrap_or("?");
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease");
    let load = read("/proc/loadavg");
    format!(
        "nproc {nproc} ({model}), RAM {mem}, kernel {}, load average at start {}",
        kernel.trim(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

struct Controller {
    kind: Ctl,
    process: Process,
    port: u16,
    started: Instant,
}

fn start_controller(kind: Ctl, ns: &str, interval: u64, profile: Profile, tag: &str) -> Controller {
    let started = Instant::now();
    let process = match kind {
        Ctl::Veer => {
            let port = free_port();
            let args: Vec<String> = [
                "controller",
                "--namespace",
                ns,
                "--mesh-provider",
                profile.provider(),
                "--metrics-server",
                &std::env::var("PROMETHEUS_URL").unwrap_or_else(|_| "http://127.0.0.1:9".into()),
                "--min-analysis-interval",
                &format!("{}s", interval.min(10)),
                "--log-format",
                "plain",
                "--log-level",
                "info",
                "--listen-address",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Process::veer(&format!("veer-bench-{ns}-{tag}"), &args, port)
        }
        // Out of cluster, as the differential tests run it: its defaults (client 100 QPS, burst
        // 250), the local Prometheus, one namespace.
        Ctl::Flagger => Process::flagger(ns, profile.provider()),
    };
    Controller { kind, port: process.port, process, started }
}

/// Until the controller says it is ready: Veer's `/readyz` (every cache listed); Flagger has only
/// `/healthz`, served from its start.
async fn wait_ready(c: &Controller, timeout: Duration) -> Option<Duration> {
    let client = veer::http::client_builder().build().expect("an HTTP client");
    let path = match c.kind {
        Ctl::Veer => "readyz",
        Ctl::Flagger => "healthz",
    };
    let url = format!("http://127.0.0.1:{}/{path}", c.port);
    let ok = until(timeout, Duration::from_millis(50), async || {
        client.get(&url).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    ok.then(|| c.started.elapsed())
}

fn cpu_table(out: &mut String, controller: &str, stages: &[(&str, CpuSnap, CpuSnap, Duration)]) {
    let names: Vec<String> = stages.first().map(|s| s.1.others.keys().cloned().collect()).unwrap_or_default();
    let _ = write!(out, "| stage | wall | {controller} |");
    for n in &names {
        let _ = write!(out, " {n} |");
    }
    let _ = write!(out, "\n|---|---|---|");
    for _ in &names {
        let _ = write!(out, "---|");
    }
    out.push('\n');
    for (stage, a, b, wall) in stages {
        let _ =
            write!(out, "| {stage} | {:.1} s | {:.2} s |", wall.as_secs_f64(), b.controller - a.controller);
        for n in &names {
            let d = b.others.get(n).copied().unwrap_or(0.0) - a.others.get(n).copied().unwrap_or(0.0);
            let _ = write!(out, " {d:.1} s |");
        }
        out.push('\n');
    }
}

// ------------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`. With `--include-ignored`
    // and a cluster (make test), a smoke run over 3 Canaries keeps the benchmark working, Flagger's
    // side too when the stack built it; it fails only when a stage does not complete, never on a
    // timing.
    let smoke = !std::env::args().any(|a| a == "--bench");
    if smoke
        && !(std::env::args().any(|a| a == "--include-ignored") && std::env::var_os("KUBECONFIG").is_some())
    {
        eprintln!(
            "benches/scale.rs runs with `cargo bench --bench scale -- --canaries N` (see e2e/bench.sh); \
             `cargo test --bench scale -- --include-ignored` with KUBECONFIG set runs a smoke over 3 Canaries"
        );
        return;
    }
    let args = if smoke {
        let controllers = if std::env::var_os("VEER_E2E_FLAGGER").is_some() {
            "--controllers=veer,flagger"
        } else {
            "--controllers=veer"
        };
        Args::parse_from([
            "scale",
            "--canaries=3",
            "--interval=2",
            "--iterations=1",
            "--detect=2",
            "--idle-window=2",
            "--timeout=120",
            "--stall=60",
            controllers,
        ])
    } else {
        Args::parse()
    };
    let client = common::client().await;
    let machine = machine_facts();
    let command = format!(
        "cargo bench --bench scale -- {}",
        std::env::args().skip(1).filter(|a| a != "--bench").collect::<Vec<_>>().join(" ")
    );
    eprintln!("[bench] {machine}");
    let (n, interval) = (args.canaries, args.interval);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## N = {n} Canaries, {}, interval {interval} s ({})\n",
        match args.profile {
            Profile::BlueGreen => "Blue/Green",
            Profile::Istio => "Istio with metrics",
        },
        Timestamp::now().strftime("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(out, "Command: `{command}`  ");
    let _ = writeln!(out, "Machine: {machine}  ");
    let _ = writeln!(
        out,
        "Control plane: e2e/up.sh; kube-controller-manager client rate limit {}; API server with {}  ",
        kcm_rate(),
        apiserver_audit()
    );
    let _ = writeln!(
        out,
        "Workload: per Canary one Deployment (1 replica{}), {}. Each controller gets its own fresh \
         namespace and workload, one after the other, alone on the control plane.\n",
        if args.no_config { "" } else { ", a ConfigMap volume and a Secret in envFrom" },
        args.profile.describe(args.iterations)
    );
    let mut runs = Vec::new();
    for &kind in &args.controllers {
        runs.push(run_one(kind, &args, &client, smoke).await);
    }
    if runs.len() > 1 {
        side_by_side(&mut out, &runs, n, interval);
    }
    for run in &runs {
        out.push_str(&run.detail);
    }
    println!("{out}");
    if let Some(path) = &args.report {
        use std::io::Write;
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(path).expect("the report file");
        f.write_all(out.as_bytes()).expect("report written");
        eprintln!("[bench] report appended to {}", path.display());
    }
    if smoke {
        let notes: Vec<&String> = runs.iter().flat_map(|r| &r.notes).collect();
        assert!(notes.is_empty(), "the smoke run of the scale benchmark did not complete: {notes:?}");
    }
}

/// What one controller's run measured: its section of the report, and the figures compared side
/// by side.
struct Run {
    kind: Ctl,
    detail: String,
    notes: Vec<String>,
    init_wall: Option<f64>,
    ready: Option<f64>,
    idle_requests: f64,
    idle_cpu_per_min: f64,
    rss_idle: f64,
    /// At the end of the idle window: private memory (heap) and file-backed pages (program text).
    rss_idle_anon: f64,
    rss_idle_file: f64,
    rss_peak: f64,
    detect: Vec<f64>,
    detect_all: Vec<f64>,
    gaps: Vec<f64>,
    canary_requests: f64,
    run_cpu: f64,
    promote_all: Option<f64>,
    failed: usize,
}

/// One controller over a fresh namespace: setup, then the stages in the module's doc.
async fn run_one(kind: Ctl, args: &Args, client: &Client, smoke: bool) -> Run {
    let label = kind.label();
    let n = args.canaries;
    let interval = args.interval;
    let k = args.detect.unwrap_or(n.min(100)).min(n);
    let scale = |base: u64| Duration::from_secs(base.max(args.timeout));
    // A wait without progress for this long gives up (the report says so).
    let stall = Duration::from_secs(args.stall);
    let ns = common::TestNamespace::create(client, "bench").await;
    let nsn = ns.name.clone();
    eprintln!(
        "[bench] {label}: namespace {nsn}, N = {n}, interval {interval}s, iterations {}, {:?}",
        args.iterations, args.profile
    );
    let names: Vec<String> = (0..n).map(|i| name(i, n)).collect();
    let tracks = Tracks::default();
    let tracker = spawn_tracker(client, &nsn, tracks.clone());
    let ready_times = ReadyTimes::default();
    let ready_tracker = spawn_ready_tracker(client, &nsn, ready_times.clone());
    let rss = RssSampler::default();
    let sampler = rss.start();
    let mut notes: Vec<String> = Vec::new();

    // 1. setup ------------------------------------------------------------------------------------
    ensure_service_ips(client, 3 * n).await;
    let t = Instant::now();
    let sim = match args.profile {
        Profile::BlueGreen => None,
        Profile::Istio => {
            let url =
                std::env::var("TRAFFICSIM_URL").expect("TRAFFICSIM_URL (e2e/.run/env) for --profile istio");
            let sim = veer::trafficsim::Client::new(&url).expect("a traffic simulator client");
            let spec = veer::trafficsim::IstioSpec { rps: 10.0, error_rate: 0.0, latency_ms: 50.0 };
            futures::stream::iter(names.iter())
                .map(|name| sim.put_istio(&nsn, name, &spec))
                .buffer_unordered(args.parallel)
                .try_collect::<Vec<_>>()
                .await
                .expect("the traffic simulator takes every workload (raise MAX_STREAMS?)");
            Some(sim)
        }
    };
    if !args.no_config {
        let cms = names
            .iter()
            .map(|n| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{n}-config")}, "data": {"color": "blue"}}))
            .collect();
        apply_all::<ConfigMap>(client, &nsn, cms, args.parallel).await;
        let secrets = names
            .iter()
            .map(|n| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{n}-secret")}, "stringData": {"token": "s3cr3t"}}))
            .collect();
        apply_all::<Secret>(client, &nsn, secrets, args.parallel).await;
    }
    let targets = names.iter().map(|n| target_json(n, "bench/podinfo:1.0.0", !args.no_config)).collect();
    apply_all::<Deployment>(client, &nsn, targets, args.parallel).await;
    let created = t.elapsed();
    let ok = until_count("targets ready", n, scale(900), stall, Duration::from_secs(2), async || {
        rollout(client, &nsn).await.targets_ready
    })
    .await;
    assert!(ok, "the {n} target Deployments did not become ready: {:?}", rollout(client, &nsn).await);
    let targets_ready = t.elapsed();
    apply_all::<Canary>(
        client,
        &nsn,
        names.iter().map(|n| canary_json(n, interval, args.iterations, args.profile)).collect(),
        args.parallel,
    )
    .await;
    eprintln!("[bench] setup: objects created in {created:.1?}, targets ready after {targets_ready:.1?}");

    // 2. init -------------------------------------------------------------------------------------
    rss.stage.store(1, Ordering::SeqCst);
    let cpu0 = cpu_snap(None);
    let mut ctl = start_controller(kind, &nsn, interval, args.profile, "1");
    let pid = ctl.process.pid().expect("the controller runs");
    rss.pid.store(pid, Ordering::SeqCst);
    let t0 = ctl.started;
    let ready = wait_ready(&ctl, Duration::from_secs(120)).await;
    let all_init = until_count("Initialized", n, scale(900), stall, Duration::from_millis(50), async || {
        tracks.count(|p| p == Phase::Initialized)
    })
    .await;
    let init_wall = t0.elapsed();
    let cpu1 = cpu_snap(Some(pid));
    let mut init_times: Vec<f64> = names
        .iter()
        .filter_map(|c| tracks.first_seen(c, Phase::Initialized, t0).map(|at| (at - t0).as_secs_f64()))
        .collect();
    init_times.sort_by(f64::total_cmp);
    let mut first_status: Vec<f64> = names
        .iter()
        .filter_map(|c| tracks.changes(c).iter().find(|x| x.at >= t0).map(|x| (x.at - t0).as_secs_f64()))
        .collect();
    first_status.sort_by(f64::total_cmp);
    if !all_init {
        notes.push(format!(
            "{label}: only {} of {n} Canaries reached Initialized within the timeout",
            tracks.count(|p| p == Phase::Initialized)
        ));
    }
    let hwm_init = proc_status_kib(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    eprintln!("[bench] init: all Initialized after {init_wall:.1?} (ready {ready:?})");

    // Settle: the targets scaled to zero, the primaries ready, the KCM quiet.
    let t = Instant::now();
    let settled = until_count(
        "scaled down + primaries ready",
        2 * n,
        scale(900),
        stall,
        Duration::from_secs(2),
        async || {
            let r = rollout(client, &nsn).await;
            r.targets_scaled_down + r.primaries_ready
        },
    )
    .await;
    if !settled {
        notes.push(format!(
            "{label}: the cluster did not settle after init: {:?}",
            rollout(client, &nsn).await
        ));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settle_wall = t.elapsed();

    // 3. idle -------------------------------------------------------------------------------------
    let window = Duration::from_secs(args.idle_window);
    rss.stage.store(2, Ordering::SeqCst);
    let w0 = writes_by_kind(&controller_metrics(ctl.port).await);
    let a0 = apiserver_requests(client).await;
    let cpu_idle0 = cpu_snap(Some(pid));
    tokio::time::sleep(window).await;
    let a1 = apiserver_requests(client).await;
    let cpu_idle1 = cpu_snap(Some(pid));
    let w1 = writes_by_kind(&controller_metrics(ctl.port).await);
    let rss_idle = proc_status_kib(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
    let rss_idle_anon = proc_status_kib(pid, "RssAnon:").unwrap_or(0) as f64 / 1024.0;
    let rss_idle_file = proc_status_kib(pid, "RssFile:").unwrap_or(0) as f64 / 1024.0;
    let running = diff(&a1, &a0);
    let idle_writes = diff(&w1, &w0);
    drop(ctl);
    rss.pid.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b0 = apiserver_requests(client).await;
    let cpu_stop0 = cpu_snap(None);
    tokio::time::sleep(window).await;
    let b1 = apiserver_requests(client).await;
    let cpu_stop1 = cpu_snap(None);
    let stopped = diff(&b1, &b0);
    eprintln!("[bench] idle windows done");

    // 4. restart ----------------------------------------------------------------------------------
    rss.stage.store(3, Ordering::SeqCst);
    ctl = start_controller(kind, &nsn, interval, args.profile, "2");
    let pid = ctl.process.pid().expect("the controller runs");
    rss.pid.store(pid, Ordering::SeqCst);
    let cpu_r0 = cpu_snap(Some(pid));
    let restart_ready = wait_ready(&ctl, Duration::from_secs(120)).await;
    let r_a0 = apiserver_requests(client).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let r_a1 = apiserver_requests(client).await;
    let restart_writes = writes_by_kind(&controller_metrics(ctl.port).await);
    let cpu_r1 = cpu_snap(Some(pid));
    let restart_wall = ctl.started.elapsed();

    // 5. detection --------------------------------------------------------------------------------
    // One image change every `detect_spacing_ms`, without waiting for the previous one to be seen:
    // a controller that notices changes on a timer (Flagger: the Canary's interval) would otherwise
    // make this stage K intervals long.
    rss.stage.store(4, Ordering::SeqCst);
    let cpu_d0 = cpu_snap(Some(pid));
    let t_detect = Instant::now();
    let picked: Vec<String> = (0..k).map(|i| names[i * n / k.max(1)].clone()).collect();
    let mut sent = Vec::new();
    for c in &picked {
        let t = Instant::now();
        set_images(client, &nsn, std::slice::from_ref(c), "bench/podinfo:2.0.0", 1).await;
        sent.push((c.clone(), t));
        tokio::time::sleep(Duration::from_millis(args.detect_spacing_ms)).await;
    }
    // Flagger at 1,000 Canaries, held back by its client's rate limit, took over a minute.
    let seen_timeout = Duration::from_secs(10 * interval + 60);
    until(seen_timeout, Duration::from_millis(5), async || {
        sent.iter().all(|(c, t)| tracks.first_seen(c, Phase::Progressing, *t).is_some())
    })
    .await;
    let mut latencies = Vec::new();
    let mut missed = 0;
    for (c, t) in &sent {
        match tracks.first_seen(c, Phase::Progressing, *t) {
            Some(at) => latencies.push((at - *t).as_secs_f64()),
            None => missed += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    let detect_wall = t_detect.elapsed();
    let run_timeout = scale((u64::from(args.iterations) + 6) * interval + 300);
    let done = until(run_timeout, Duration::from_millis(200), async || {
        picked.iter().all(|c| matches!(tracks.phase(c), Phase::Succeeded | Phase::Failed))
    })
    .await;
    if !done {
        notes.push(format!("{label}: the detection runs did not all finish within the timeout"));
    }
    let cpu_d1 = cpu_snap(Some(pid));
    let detect_runs_wall = t_detect.elapsed();
    eprintln!("[bench] detection: {}", summary(&latencies, " s", 1.0));

    // 6. all N progressing at once ----------------------------------------------------------------
    rss.stage.store(5, Ordering::SeqCst);
    let m_s0 = controller_metrics(ctl.port).await;
    let lag0 = step_lag(&m_s0);
    let wake0 = histo(&m_s0, "veer_wake_lag_seconds", None);
    let w_s0 = writes_by_kind(&m_s0);
    let a_s0 = apiserver_requests(client).await;
    let cpu_s0 = cpu_snap(Some(pid));
    // --no-steps: the stage runs over no Canary (a quicker run for the earlier stages).
    let run_names: &[String] = if args.no_steps { &[] } else { &names };
    if args.no_steps {
        notes.push("the all-N stage was skipped (--no-steps): its rows have no samples".into());
    }
    let t_all = Instant::now();
    set_images(client, &nsn, run_names, "bench/podinfo:3.0.0", args.parallel).await;
    let patched = t_all.elapsed();
    let all_progressing = until_count(
        "Progressing",
        run_names.len(),
        run_timeout,
        stall,
        Duration::from_millis(50),
        async || {
            run_names.iter().filter(|c| tracks.first_seen(c, Phase::Progressing, t_all).is_some()).count()
        },
    )
    .await;
    let progressing_wall = t_all.elapsed();
    let all_done = until_count(
        "finished",
        run_names.len(),
        run_timeout,
        stall,
        Duration::from_millis(200),
        async || {
            run_names
                .iter()
                .filter(|c| {
                    tracks.first_seen(c, Phase::Succeeded, t_all).is_some()
                        || tracks.first_seen(c, Phase::Failed, t_all).is_some()
                })
                .count()
        },
    )
    .await;
    let steps_wall = t_all.elapsed();
    let cpu_s1 = cpu_snap(Some(pid));
    let a_s1 = apiserver_requests(client).await;
    let m_s1 = controller_metrics(ctl.port).await;
    let lag1 = step_lag(&m_s1);
    let wake1 = histo(&m_s1, "veer_wake_lag_seconds", None);
    let w_s1 = writes_by_kind(&m_s1);
    let hwm_end = proc_status_kib(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    if !all_progressing || !all_done {
        notes.push(format!(
            "{label}: all-N run: {} Progressing, {} finished within the timeout",
            run_names.iter().filter(|c| tracks.first_seen(c, Phase::Progressing, t_all).is_some()).count(),
            tracks.count(|p| matches!(p, Phase::Succeeded | Phase::Failed))
        ));
    }
    let failed = tracks.count(|p| p == Phase::Failed);
    let mut spacing_all = Vec::new();
    let mut spacing_clean = Vec::new();
    let mut waited = 0usize;
    let mut reaction = Vec::new();
    let mut detect_all = Vec::new();
    let mut gaps = Vec::new();
    let slack = k8s_openapi::jiff::SignedDuration::from_millis(500);
    for c in run_names {
        let workloads = [c.clone(), format!("{c}-primary")];
        let changes: Vec<Change> = tracks.changes(c).into_iter().filter(|x| x.at >= t_all).collect();
        if let Some(p) = changes.iter().find(|x| x.phase == Phase::Progressing) {
            detect_all.push((p.at - t_all).as_secs_f64());
        }
        gaps.extend(observed_gaps(&changes, interval as f64));
        let mut last: Option<Timestamp> = None;
        let mut wait_since_last = false;
        for x in &changes {
            if x.reason.starts_with("Wait") {
                wait_since_last = true;
            }
            match (last, x.step) {
                (Some(a), Some(b)) if b > a => {
                    let d = a.duration_until(b).as_secs_f64() - interval as f64;
                    spacing_all.push(d);
                    if wait_since_last {
                        waited += 1;
                        // How long after the awaited workload became ready (or after the step was
                        // due, if later) the step came. The watch that saw it ready may lag the
                        // controller's by a few ms: allow that.
                        let due = a + k8s_openapi::jiff::SignedDuration::from_secs(interval as i64);
                        if let Some(r) = ready_times.latest(&workloads, b + slack) {
                            reaction.push(r.max(due).duration_until(b).as_secs_f64());
                        }
                    } else {
                        spacing_clean.push(d);
                    }
                    last = Some(b);
                    wait_since_last = false;
                }
                (None, Some(b)) if x.phase == Phase::Progressing => {
                    last = Some(b);
                    wait_since_last = false;
                }
                _ => {}
            }
            if matches!(x.phase, Phase::Succeeded | Phase::Failed) {
                break;
            }
        }
    }
    detect_all.sort_by(f64::total_cmp);
    gaps.sort_by(f64::total_cmp);
    let lag = lag1.minus(&lag0);
    let wake = wake1.minus(&wake0);
    let run_writes = diff(&w_s1, &w_s0);
    let run_requests = diff(&a_s1, &a_s0);
    let canary_requests: f64 = run_requests
        .iter()
        .filter(|(key, _)| {
            let (verb, resource) = key.split_once(' ').unwrap_or(("", key));
            verb != "WATCH" && matches!(resource, "canaries" | "canaries/status")
        })
        .map(|x| x.1)
        .sum();
    eprintln!("[bench] steps: {}", summary(&gaps, " s", 1.0));

    // Report ------------------------------------------------------------------------------------
    let mut out = String::new();
    let _ = writeln!(out, "### {label} (namespace `{nsn}`)\n");
    let per_interval = window.as_secs_f64() / interval as f64;
    let sum = |m: &BTreeMap<String, f64>| m.values().sum::<f64>();
    let extra = sum(&running) - sum(&stopped);
    let veer_calls =
        |m: &BTreeMap<String, f64>| m.iter().filter(|(k, _)| is_veer_call(k)).map(|x| x.1).sum::<f64>();
    let extra_veer = veer_calls(&running) - veer_calls(&stopped);
    let idle_w = sum(&idle_writes) + 0.0;
    let is_veer = kind == Ctl::Veer;
    let _ = writeln!(out, "| measure | result |\n|---|---|");
    let _ = writeln!(
        out,
        "| setup (not the controller): {} objects applied; targets Ready | {created:.1?}; {targets_ready:.1?} |",
        n * if args.no_config { 1 } else { 3 }
    );
    let _ = writeln!(
        out,
        "| controller start → {} | {} |",
        if is_veer { "/readyz (caches synced)" } else { "/healthz (served from the start)" },
        ready.map(|d| format!("{d:.2?}")).unwrap_or("not ready".into())
    );
    let _ = writeln!(
        out,
        "| controller start → all {n} `Initialized` | {:.1} s (per Canary: first status write {}; Initialized {}) |",
        init_wall.as_secs_f64(),
        summary(&first_status, " s", 1.0),
        summary(&init_times, " s", 1.0)
    );
    let _ = writeln!(
        out,
        "| API requests per idle Canary per interval (apiserver_request_total, running − stopped, {} s windows) | {:.4} ({:+} requests: {} running vs {} stopped) |",
        args.idle_window,
        extra / n as f64 / per_interval + 0.0,
        extra + 0.0,
        sum(&running),
        sum(&stopped)
    );
    let _ = writeln!(
        out,
        "| … the same, only non-WATCH requests on the kinds Veer reads or writes | {:.4} ({:+} requests: {} running vs {} stopped) |",
        extra_veer / n as f64 / per_interval + 0.0,
        extra_veer + 0.0,
        veer_calls(&running) + 0.0,
        veer_calls(&stopped) + 0.0
    );
    if is_veer {
        let _ = writeln!(
            out,
            "| Veer writes per idle Canary per interval (veer_api_writes_total) | {:.4} ({idle_w:.0} writes in {} s) |",
            idle_w / n as f64 / per_interval + 0.0,
            args.idle_window
        );
    }
    let _ = writeln!(
        out,
        "| restart over {n} initialized Canaries: ready; writes; API requests in the 10 s after ready | {}; {}; {} |",
        restart_ready.map(|d| format!("{d:.2?}")).unwrap_or("not ready".into()),
        if is_veer { fmt_requests(&restart_writes) } else { "see the requests".into() },
        fmt_requests(&diff(&r_a1, &r_a0))
    );
    let _ = writeln!(
        out,
        "| detection, one image change every {} ms (K = {k}; patch → `Progressing` seen by a watch) | {}{} |",
        args.detect_spacing_ms,
        summary(&latencies, " s", 1.0),
        if missed > 0 {
            format!(", {missed} missed (> {} s)", seen_timeout.as_secs())
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "| all {n} images changed at once: patches sent; all `Progressing`; all finished | {patched:.1?}; {progressing_wall:.1?} (per Canary {}); {steps_wall:.1?} ({failed} Failed) |",
        summary(&detect_all, " s", 1.0)
    );
    let _ = writeln!(
        out,
        "| step spacing − interval as a watch sees it (consecutive changes of `iterations`/`canaryWeight`, and the move to `Promoting`; from the second step) | {} |",
        summary(&gaps, " s", 1.0)
    );
    if is_veer {
        let _ = writeln!(
            out,
            "| step spacing − interval, all steps (consecutive `lastStepTime`) | {} |",
            summary(&spacing_all, " s", 1.0)
        );
        let _ = writeln!(
            out,
            "| step spacing − interval, steps without a readiness wait in between | {} ({waited} steps waited for a workload to become ready) |",
            summary(&spacing_clean, " s", 1.0)
        );
        let _ = writeln!(
            out,
            "| steps that waited: step time − max(due, target or primary seen ready) | {} |",
            summary(&reaction, " s", 1.0)
        );
        for (what, h) in [
            (
                "`veer_step_lag_seconds` (`lastStepTime` + interval → decision; includes the waits for readiness)",
                &lag,
            ),
            (
                "`veer_wake_lag_seconds` (a scheduled tick due → its reconcile starts: Veer's queue and CPU)",
                &wake,
            ),
        ] {
            let _ = writeln!(out, "| {what} during the all-N run | {} |", h.describe());
        }
        let mut kinds: Vec<String> = run_writes.keys().cloned().collect();
        kinds.sort();
        let durations: Vec<String> =
            kinds
                .iter()
                .filter_map(|kind| {
                    let h = histo(&m_s1, "veer_api_write_duration_seconds", Some(("kind", kind)))
                        .minus(&histo(&m_s0, "veer_api_write_duration_seconds", Some(("kind", kind))));
                    (h.count > 0.0).then(|| {
                        format!(
                            "{kind} mean {:.3} s, p50 {}, p99 {}",
                            h.sum / h.count,
                            h.quantile(0.5),
                            h.quantile(0.99)
                        )
                    })
                })
                .collect();
        if !durations.is_empty() {
            let _ = writeln!(
                out,
                "| API server time per write during the all-N run (`veer_api_write_duration_seconds`) | {} |",
                durations.join("; ")
            );
        }
        let _ = writeln!(
            out,
            "| Veer writes during the all-N run | {} ({:.1} per Canary) |",
            fmt_requests(&run_writes),
            sum(&run_writes) / n as f64
        );
    }
    let _ = writeln!(
        out,
        "| requests on Canaries (canaries, canaries/status; not WATCH) during the all-N run | {canary_requests:.0} ({:.1} per Canary) |",
        canary_requests / n as f64
    );
    let _ = writeln!(
        out,
        "| controller RSS (max VmRSS sampled every 250 ms) | init {:.1} MiB, idle {:.1} MiB (at the end of the window {rss_idle:.1} MiB: {rss_idle_anon:.1} anonymous, {rss_idle_file:.1} file-backed), restart {:.1} MiB, detection {:.1} MiB, all-N run {:.1} MiB |",
        rss.max_mib(1),
        rss.max_mib(2),
        rss.max_mib(3),
        rss.max_mib(4),
        rss.max_mib(5)
    );
    let _ = writeln!(
        out,
        "| controller VmHWM | first process (init + idle) {hwm_init:.1} MiB; second process (restart → end) {hwm_end:.1} MiB |"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "CPU seconds (user + system) per stage, controller and control plane (from /proc/<pid>/stat):\n"
    );
    cpu_table(
        &mut out,
        &label.to_lowercase(),
        &[
            ("init (start → all Initialized)", cpu0, cpu1.clone(), init_wall),
            ("idle, controller running", cpu_idle0.clone(), cpu_idle1.clone(), window),
            ("idle, controller stopped", cpu_stop0, cpu_stop1, window),
            ("restart (+10 s)", cpu_r0, cpu_r1, restart_wall),
            ("detection runs (K, until finished)", cpu_d0, cpu_d1, detect_runs_wall),
            ("all-N run", cpu_s0.clone(), cpu_s1.clone(), steps_wall),
        ],
    );
    let _ = writeln!(
        out,
        "\nAPI server requests during the idle windows, by verb and resource (resource requests only):\n"
    );
    let _ = writeln!(out, "| request | controller running | controller stopped |\n|---|---|---|");
    let mut keys: Vec<&String> = running.keys().chain(stopped.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let _ = writeln!(
            out,
            "| {key} | {} | {} |",
            running.get(key).copied().unwrap_or(0.0),
            stopped.get(key).copied().unwrap_or(0.0)
        );
    }
    if !idle_writes.is_empty() {
        let _ = writeln!(out, "\nVeer writes in the idle window: {}", fmt_requests(&idle_writes));
    }
    let _ = writeln!(
        out,
        "\nOther timings: settle after init {settle_wall:.1?}; detection stage {detect_wall:.1?} for K = {k} (then {detect_runs_wall:.1?} until their runs finished)."
    );
    for note in &notes {
        let _ = writeln!(out, "\n**Note:** {note}");
    }
    out.push('\n');

    drop(ctl);
    tracker.abort();
    ready_tracker.abort();
    sampler.abort();
    if let Some(sim) = &sim {
        for name in &names {
            let _ = sim.delete_istio(&nsn, name).await;
        }
    }
    if args.keep && !smoke {
        eprintln!("[bench] keeping namespace {nsn}");
    } else {
        // Large namespaces take long to empty; wait a bounded time so that the next controller
        // starts on a quiet control plane.
        let t = Instant::now();
        ns.delete().await;
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let gone = until(Duration::from_secs(300), Duration::from_secs(1), async || {
            matches!(api.get_opt(&nsn).await, Ok(None))
        })
        .await;
        eprintln!("[bench] namespace {nsn} deleted: {gone} after {:.1?}", t.elapsed());
    }
    let idle_cpu = cpu_idle1.controller - cpu_idle0.controller;
    Run {
        kind,
        detail: out,
        notes,
        init_wall: all_init.then_some(init_wall.as_secs_f64()),
        ready: ready.map(|d| d.as_secs_f64()),
        idle_requests: extra / n as f64 / per_interval + 0.0,
        idle_cpu_per_min: idle_cpu / window.as_secs_f64() * 60.0,
        rss_idle: rss.max_mib(2),
        rss_idle_anon,
        rss_idle_file,
        rss_peak: (1..=5).map(|s| rss.max_mib(s)).fold(0.0, f64::max),
        detect: latencies,
        detect_all,
        gaps,
        canary_requests: canary_requests / n as f64,
        run_cpu: cpu_s1.controller - cpu_s0.controller,
        promote_all: (all_done && !args.no_steps).then_some(steps_wall.as_secs_f64()),
        failed,
    }
}

/// Watch-observed steps of one run: each change of `iterations` or `canaryWeight` while
/// `Progressing`, and the move to `Promoting`. Returns the gaps between consecutive steps, minus
/// the interval, from the second step on (the first follows the canary's readiness, not a timer).
fn observed_gaps(changes: &[Change], interval: f64) -> Vec<f64> {
    let mut steps: Vec<Instant> = Vec::new();
    let mut progress = None;
    for x in changes {
        match x.phase {
            Phase::Progressing => {
                if progress.is_some_and(|p| p != x.progress) {
                    steps.push(x.at);
                }
                progress = Some(x.progress);
            }
            Phase::Promoting => {
                if progress.is_some() {
                    steps.push(x.at);
                }
                break;
            }
            Phase::Succeeded | Phase::Failed => break,
            _ => {}
        }
    }
    steps.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() - interval).collect()
}

/// The comparison table: one row per figure, one column per controller, and the ratio of the
/// others to the first (Veer, as run).
fn side_by_side(out: &mut String, runs: &[Run], n: usize, interval: u64) {
    let first = &runs[0];
    let _ = write!(out, "| measure |");
    for r in runs {
        let _ = write!(out, " {} |", r.kind.label());
    }
    for r in &runs[1..] {
        let _ = write!(out, " {} ÷ {} |", r.kind.label(), first.kind.label());
    }
    let _ = write!(out, "\n|---|");
    for _ in 0..(2 * runs.len() - 1) {
        let _ = write!(out, "---|");
    }
    out.push('\n');
    // (name, value per run, unit, digits); values under `floor` make no ratio.
    let row =
        |out: &mut String, what: &str, values: Vec<Option<f64>>, unit: &str, digits: usize, floor: f64| {
            let _ = write!(out, "| {what} |");
            for v in &values {
                match v {
                    Some(v) if v.is_finite() => {
                        let _ = write!(out, " {v:.digits$}{unit} |");
                    }
                    _ => {
                        let _ = write!(out, " — |");
                    }
                }
            }
            for v in &values[1..] {
                match (values[0], v) {
                    (Some(a), Some(b)) if a.abs() >= floor && a.is_finite() && b.is_finite() => {
                        let _ = write!(out, " {:.1}× |", b / a);
                    }
                    _ => {
                        let _ = write!(out, " — |");
                    }
                }
            }
            out.push('\n');
        };
    let p = |v: &[f64], q: f64| (!v.is_empty()).then(|| pct(v, q));
    row(
        out,
        "detection p50 (one change at a time)",
        runs.iter().map(|r| p(&r.detect, 50.0)).collect(),
        " s",
        3,
        0.001,
    );
    row(
        out,
        "detection p99 (one change at a time)",
        runs.iter().map(|r| p(&r.detect, 99.0)).collect(),
        " s",
        3,
        0.001,
    );
    row(
        out,
        &format!("all {n} changed at once: last `Progressing`"),
        runs.iter().map(|r| p(&r.detect_all, 100.0)).collect(),
        " s",
        1,
        0.001,
    );
    row(
        out,
        &format!("step spacing − {interval} s, p50 (watch-observed)"),
        runs.iter().map(|r| p(&r.gaps, 50.0)).collect(),
        " s",
        3,
        0.001,
    );
    row(
        out,
        &format!("step spacing − {interval} s, p99 (watch-observed)"),
        runs.iter().map(|r| p(&r.gaps, 99.0)).collect(),
        " s",
        3,
        0.001,
    );
    row(
        out,
        &format!("time to finish all {n} rollouts"),
        runs.iter().map(|r| r.promote_all).collect(),
        " s",
        1,
        0.1,
    );
    row(out, "rollouts Failed", runs.iter().map(|r| Some(r.failed as f64)).collect(), "", 0, f64::INFINITY);
    row(
        out,
        "API requests per idle Canary per interval",
        runs.iter().map(|r| Some(r.idle_requests)).collect(),
        "",
        3,
        0.01,
    );
    row(
        out,
        "requests on Canaries per Canary, all-N run",
        runs.iter().map(|r| Some(r.canary_requests)).collect(),
        "",
        1,
        0.1,
    );
    row(
        out,
        "controller CPU, idle (s per minute)",
        runs.iter().map(|r| Some(r.idle_cpu_per_min)).collect(),
        " s",
        2,
        0.01,
    );
    row(out, "controller CPU, all-N run", runs.iter().map(|r| Some(r.run_cpu)).collect(), " s", 1, 0.01);
    row(out, "RSS idle", runs.iter().map(|r| Some(r.rss_idle)).collect(), " MiB", 1, 0.1);
    row(
        out,
        "… of it anonymous (heap), end of idle",
        runs.iter().map(|r| Some(r.rss_idle_anon)).collect(),
        " MiB",
        1,
        0.1,
    );
    row(
        out,
        "… of it file-backed (program text), end of idle",
        runs.iter().map(|r| Some(r.rss_idle_file)).collect(),
        " MiB",
        1,
        0.1,
    );
    row(out, "RSS peak", runs.iter().map(|r| Some(r.rss_peak)).collect(), " MiB", 1, 0.1);
    row(
        out,
        &format!("start → all {n} `Initialized`"),
        runs.iter().map(|r| r.init_wall).collect(),
        " s",
        1,
        0.1,
    );
    row(out, "start → ready", runs.iter().map(|r| r.ready).collect(), " s", 2, 0.01);
    out.push('\n');
}

/// Kinds (resource[/subresource]) the controller reads or writes; WATCH requests are left out
/// (a watch is re-established every few minutes, whatever the number of Canaries).
fn is_veer_call(key: &str) -> bool {
    const KINDS: [&str; 14] = [
        "canaries",
        "canaries/status",
        "deployments",
        "daemonsets",
        "services",
        "configmaps",
        "secrets",
        "horizontalpodautoscalers",
        "ingresses",
        "metrictemplates",
        "alertproviders",
        "virtualservices",
        "destinationrules",
        "events",
    ];
    let (verb, resource) = key.split_once(' ').unwrap_or(("", key));
    verb != "WATCH" && KINDS.contains(&resource)
}

fn fmt_requests(m: &BTreeMap<String, f64>) -> String {
    let parts: Vec<String> = m.iter().filter(|x| *x.1 != 0.0).map(|(k, v)| format!("{k} {v:.0}")).collect();
    if parts.is_empty() { "none".into() } else { parts.join(", ") }
}
