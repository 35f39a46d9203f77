//! Veer beside Flagger itself. The same Canary is run by Flagger (the release pinned in
//! `e2e/versions.env`, built by `e2e/build-tools.sh` and run out of cluster) in one namespace and by
//! Veer in another; the objects each generates, the Canary's status and the Events are compared
//! after normalising what must differ: namespace names, uids, times, resourceVersions, cluster IPs,
//! the revision hashes (`docs/compatibility.md`, "Hashes and adoption") and Flagger's random
//! `flagger-id`. Every other difference fails the test, unless `docs/compatibility.md` lists it and
//! the test names it where it allows it ([`normalise`], [`KNOWN`]).

mod common;

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::harness::*;
use k8s_openapi::api::core::v1::Event;
use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, ListParams},
    discovery::pinned_kind,
};
use serde_json::{Value, json};
use veer::api::{CanaryStatus, Phase};

const BOOT: Duration = Duration::from_secs(120);
const RUN: Duration = Duration::from_secs(180);
const OLD: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const NEW: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";

macro_rules! say {
    ($tag:expr, $($arg:tt)*) => { println!("[{}] {}", $tag, format!($($arg)*)) };
}

/// Events only one of the two records, each a difference written in `docs/compatibility.md`
/// ("Events"): (who records it, how its text starts).
const KNOWN: &[(&str, &str)] = &[
    // The primary's readiness while it rolls out: Flagger words it after the Deployment's
    // condition and repeats it as a Warning every tick; Veer says how many replicas are ready,
    // once, as a Normal Event.
    ("flagger", "podinfo-primary.NS not ready: waiting for rollout to finish"),
    ("veer", "primary deployment podinfo-primary.NS not ready: waiting for rollout to finish"),
];

/// The webhooks of every scenario, `BASE` standing for a [`Receiver`]'s address: a pre-rollout
/// check with metadata, a rollout hook, a promotion gate that holds both controllers in
/// `WaitingPromotion` (a state to compare mid-run) until it opens, a post-rollout hook, and an
/// event hook with metadata of its own (one key clashing with the event's).
const WEBHOOKS: &str = "    webhooks:\n    \
    - {name: acceptance, type: pre-rollout, url: BASE/hook/pre-rollout, metadata: {suite: smoke}}\n    \
    - {name: load, type: rollout, url: BASE/hook/rollout, timeout: 5s, metadata: {cmd: hey}}\n    \
    - {name: approve, type: confirm-promotion, url: BASE/gate}\n    \
    - {name: notify, type: post-rollout, url: BASE/hook/post-rollout}\n    \
    - {name: audit, type: event, url: BASE/hook/events, timeout: 5s, retries: 1, metadata: {env: prod, eventType: mine}}";

/// A webhook receiver for one controller: records each payload with its path, answers 200, 403
/// on `/gate` until [`Receiver::open`], and 500 on the rollout hook after [`Receiver::fail`].
struct Receiver {
    base: String,
    open: Arc<AtomicBool>,
    failing: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let (open, failing) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let seen = Arc::<Mutex<Vec<(String, Value)>>>::default();
        let (gate, fail, record) = (open.clone(), failing.clone(), seen.clone());
        let app = axum::Router::new().fallback(axum::routing::post(
            move |uri: axum::http::Uri, axum::Json(body): axum::Json<Value>| {
                let (gate, fail, record) = (gate.clone(), fail.clone(), record.clone());
                async move {
                    use axum::http::StatusCode;
                    let path = uri.path().to_string();
                    let answer = match path.as_str() {
                        "/gate" if !gate.load(Ordering::SeqCst) => (StatusCode::FORBIDDEN, "closed"),
                        "/hook/rollout" if fail.load(Ordering::SeqCst) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, "load test failed")
                        }
                        _ => (StatusCode::OK, ""),
                    };
                    record.lock().unwrap().push((path, body));
                    answer
                }
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { base, open, failing, seen }
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    fn fail(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }

    /// Each distinct call, as `path payload` with the namespace as `NS` and without the checksum
    /// (a hash of Flagger's own format).
    fn calls(&self, ns: &str) -> BTreeSet<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(path, _)| path != EVENTS)
            .map(|(path, body)| {
                let mut body = body.clone();
                body.as_object_mut().map(|o| o.remove("checksum"));
                format!("{path} {body}").replace(ns, "NS")
            })
            .collect()
    }

    /// The Events sent to the event hook by `who`, in order: type, text, phase and the other
    /// metadata, without the timestamp and the checksum. Left out: the [`KNOWN`] differences, and
    /// repeats (Flagger sends some Events again at every tick, Veer once: `docs/compatibility.md`).
    fn events(&self, who: &str, ns: &str) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        let (mut events, mut sent) = (Vec::new(), BTreeSet::new());
        for (_, body) in seen.iter().filter(|(path, _)| path == EVENTS) {
            let mut meta = body["metadata"].as_object().cloned().unwrap_or_default();
            let message = meta.remove("eventMessage").unwrap_or_default();
            let message = comparable(message.as_str().unwrap_or_default().replace(ns, "NS"));
            if KNOWN.iter().any(|(w, start)| *w == who && message.starts_with(start)) {
                continue;
            }
            let kind = meta.remove("eventType").unwrap_or_default();
            let kind = kind.as_str().unwrap_or_default();
            meta.remove("timestamp");
            let mut phase = body["phase"].as_str().unwrap_or_default();
            if who == "flagger" && message.starts_with("Post-rollout check") && phase == "Progressing" {
                // After a rollback Flagger sends the post-rollout Events with the phase the run
                // had; Veer with `Failed` (docs/compatibility.md, Events).
                phase = "Failed";
            }
            if sent.insert(format!("{kind} {message}")) {
                events.push(format!("{kind} {message} (phase {phase}, {})", Value::Object(meta)));
            }
        }
        events
    }
}

/// Where the event hook of [`WEBHOOKS`] posts.
const EVENTS: &str = "/hook/events";

/// What the two controllers generate for every podinfo Canary, and the target.
const OBJECTS: &[Kind] = &[
    ("apps", "v1", "Deployment", "podinfo"),
    ("apps", "v1", "Deployment", "podinfo-primary"),
    ("", "v1", "Service", "podinfo"),
    ("", "v1", "Service", "podinfo-primary"),
    ("", "v1", "Service", "podinfo-canary"),
    ("", "v1", "ConfigMap", "podinfo-config-primary"),
    ("", "v1", "Secret", "podinfo-secret-primary"),
];

/// What Istio Canaries add.
const ISTIO: &[Kind] = &[
    ("networking.istio.io", "v1beta1", "VirtualService", "podinfo"),
    ("networking.istio.io", "v1beta1", "DestinationRule", "podinfo-primary"),
    ("networking.istio.io", "v1beta1", "DestinationRule", "podinfo-canary"),
];

/// What NGINX Canaries add: the canary Ingress, and the user's Ingress it copies.
const NGINX: &[Kind] = &[
    ("networking.k8s.io", "v1", "Ingress", "podinfo"),
    ("networking.k8s.io", "v1", "Ingress", "podinfo-canary"),
];

/// The target's autoscaler; Flagger and Veer give the primary a copy.
const HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: podinfo}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  minReplicas: 2
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 99}}
"#;

/// What Gateway API Canaries add.
const GATEWAY_API: &[Kind] = &[("gateway.networking.k8s.io", "v1", "HTTPRoute", "podinfo")];

/// What SMI Canaries add, in the TrafficSplit version of the provider.
const SMI_V1ALPHA1: &[Kind] = &[("split.smi-spec.io", "v1alpha1", "TrafficSplit", "podinfo")];
const SMI_V1ALPHA3: &[Kind] = &[("split.smi-spec.io", "v1alpha3", "TrafficSplit", "podinfo")];

/// An object: group, version, kind and name.
type Kind = (&'static str, &'static str, &'static str, &'static str);

/// `value` with what must differ between two namespaces and two controllers taken out, and the
/// namespace's name replaced by `NS`.
fn normalise(mut value: Value, ns: &str) -> Value {
    let meta = &mut value["metadata"];
    if let Some(meta) = meta.as_object_mut() {
        for key in ["uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "namespace"]
        {
            meta.remove(key);
        }
        // Flagger copies the target's kubectl annotation to the primary; Veer does not
        // (docs/workload.md, "Primary annotations").
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        for owner in meta.get_mut("ownerReferences").and_then(Value::as_array_mut).into_iter().flatten() {
            owner.as_object_mut().map(|o| o.remove("uid"));
        }
    }
    if let Some(o) = value.as_object_mut() {
        o.remove("status");
    }
    if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    // A new id at each promotion: random in Flagger, derived in Veer.
    if let Some(id) = value.pointer_mut("/spec/template/metadata/annotations/flagger-id") {
        *id = json!("<id>");
    }
    // A VirtualService route with one destination sends it all traffic whatever its weight: Veer
    // writes 100 where Flagger writes the primary's weight (0 during A/B testing), see
    // docs/compatibility.md (Routing).
    // Veer names the session-affinity routes, Flagger does not (docs/compatibility.md, Routing).
    if value["kind"] == "VirtualService" {
        for http in value["spec"]["http"].as_array_mut().into_iter().flatten() {
            if let Some([only]) = http["route"].as_array_mut().map(Vec::as_mut_slice) {
                only.as_object_mut().map(|o| o.remove("weight"));
            }
            if http["name"].as_str().is_some_and(|n| n.starts_with("sticky-route")) {
                http.as_object_mut().map(|o| o.remove("name"));
            }
        }
    }
    // Session-affinity cookie values are random in both.
    let cookie = regex::Regex::new(r"(flagger-cookie[=.*]+)[A-Za-z]{10}").expect("a regex");
    let text = serde_json::to_string(&value).expect("JSON").replace(ns, "NS");
    let text = cookie.replace_all(&text, "${1}<cookie>");
    serde_json::from_str(&text).expect("JSON")
}

async fn object(client: &Client, ns: &str, (group, version, kind, name): Kind) -> Value {
    let (resource, _) = pinned_kind(client, &GroupVersionKind::gvk(group, version, kind))
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let obj = api.get(name).await.unwrap_or_else(|e| panic!("{kind} {name}.{ns}: {e}"));
    normalise(serde_json::to_value(obj).expect("JSON"), ns)
}

/// The lines of `a` and `b` that differ, for a failure message.
fn diff(a: &Value, b: &Value) -> String {
    let (a, b) = (serde_json::to_string_pretty(a).unwrap(), serde_json::to_string_pretty(b).unwrap());
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = Vec::new();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).copied().unwrap_or(""), b.get(i).copied().unwrap_or(""));
        if x != y {
            out.push(format!("  line {i}:\n    flagger: {x}\n    veer:    {y}"));
        }
    }
    out.join("\n")
}

/// Asserts that Flagger in `f` and Veer in `v` generated the same `objects`.
async fn same_objects(client: &Client, f: &str, v: &str, objects: &[Kind], when: &str) {
    for &o in objects {
        let (flagger, veer) = (object(client, f, o).await, object(client, v, o).await);
        assert!(flagger == veer, "{} {} differs {when}:\n{}", o.2, o.3, diff(&flagger, &veer));
        say!("differential", "{} {} {when}: the same", o.2, o.3);
    }
}

/// The fields of the status both controllers write, normalised (Veer's hashes are its own).
fn status_fields(s: &CanaryStatus) -> Value {
    let conditions: Vec<Value> = s
        .conditions
        .iter()
        .map(|c| json!({"type": c.type_, "status": c.status, "reason": c.reason, "message": c.message}))
        .collect();
    json!({
        "phase": s.phase.as_str(),
        "canaryWeight": s.canary_weight,
        "failedChecks": s.failed_checks,
        "iterations": s.iterations,
        "trackedConfigs": s.tracked_configs,
        "lastAppliedIsLastPromoted": s.last_applied_spec == s.last_promoted_spec,
        "conditions": conditions,
    })
}

/// The Events Veer recorded on the Canary `podinfo`, as `type: message` with the namespace as
/// `NS`, less the [`KNOWN`] differences.
async fn veer_events(client: &Client, ns: &str) -> BTreeSet<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().fields("involvedObject.kind=Canary,involvedObject.name=podinfo"))
        .await
        .expect("Events listed");
    let events = list.items.into_iter().map(|e| (e.type_.unwrap_or_default(), e.message.unwrap_or_default()));
    known_removed("veer", ns, events)
}

/// The Events Flagger recorded, read from its log: client-go's recorder combines more than ten
/// distinct messages on one object within ten minutes into one Event, "(combined from similar
/// events): <the latest>" (docs/compatibility.md, Events), so the API shows only some of them.
/// Flagger logs each Event it records, from `pkg/controller/events.go`: line 33 the Normal ones,
/// lines 39 and 45 the Warnings (the lines of the pinned release).
fn flagger_events(flagger: &Process, ns: &str) -> BTreeSet<String> {
    let log = std::fs::read_to_string(&flagger.log).expect("Flagger's log");
    let events = log.lines().filter_map(|line| {
        let entry: Value = serde_json::from_str(line).ok()?;
        let kind = match entry["caller"].as_str()? {
            "controller/events.go:33" => "Normal",
            "controller/events.go:39" | "controller/events.go:45" => "Warning",
            _ => return None,
        };
        Some((kind.to_string(), entry["msg"].as_str()?.to_string()))
    });
    known_removed("flagger", ns, events)
}

fn known_removed(who: &str, ns: &str, events: impl Iterator<Item = (String, String)>) -> BTreeSet<String> {
    events
        .map(|(kind, message)| (kind, comparable(message.replace(ns, "NS"))))
        .filter(|(_, m)| !KNOWN.iter().any(|(w, start)| *w == who && m.starts_with(start)))
        .map(|(kind, message)| format!("{kind}: {message}"))
        .collect()
}

/// An Event's text with what is allowed to differ replaced: the error of a failed webhook, which
/// Flagger gives as the response body alone and Veer with the HTTP status first
/// (`docs/compatibility.md`, Events).
fn comparable(message: String) -> String {
    match message.find(" external check ").and_then(|i| message[i..].find(" failed ").map(|j| i + j)) {
        Some(end) => format!("{} failed <error>", &message[..end]),
        None => message,
    }
}

/// The `flagger_*` series a controller serves on `port`, as `name{labels} value` with the
/// namespace as `NS`, for comparison: times are left out (the histograms' values, the values of
/// metric checks, which both query at their own moments) and so is the version of `flagger_info`.
async fn series(port: u16, ns: &str) -> BTreeSet<String> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let Ok(answer) = reqwest::get(&url).await else { return BTreeSet::new() };
    let text = answer.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("flagger_"))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            if name.ends_with("_bucket") || name.ends_with("_sum") {
                return None;
            }
            let mut labels: Vec<String> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .filter(|l| name != "flagger_info" || !l.starts_with("version="))
                .map(|l| l.replace(ns, "NS"))
                .collect();
            labels.sort();
            // How often a run was timed depends on when each controller looked.
            let value = if name == "flagger_canary_metric_analysis" || name.ends_with("_count") {
                "<value>".to_string()
            } else {
                value.parse::<f64>().map_or(value.to_string(), |v| v.to_string())
            };
            Some(format!("{name}{{{}}} {value}", labels.join(",")))
        })
        .collect()
}

/// Waits until both recorded the same Events (each once or more: Flagger repeats some every
/// tick), and fails with the two lists when they do not agree within a while.
async fn same_events(client: &Client, flagger: &Process, f: &str, v: &str, when: &str) {
    common::wait_for(&format!("the same Events {when}"), Duration::from_secs(30), || async {
        let (a, b) = (flagger_events(flagger, f), veer_events(client, v).await);
        if a == b { Ok(()) } else { Err(format!("\nflagger: {a:#?}\nveer: {b:#?}")) }
    })
    .await;
    say!("differential", "Events {when}: the same");
}

/// How the new revision's run ends.
#[derive(Clone, Copy, PartialEq)]
enum End {
    /// Held at the promotion gate, compared there, then promoted.
    Promoted,
    /// The rollout hook fails until the failed-check threshold rolls it back.
    RolledBack,
}

/// Runs `canary` (YAML) under Flagger with `--mesh-provider provider` and under Veer, each in a
/// namespace of its own with podinfo, and compares `objects`, the status and the Events once both
/// initialized it, again mid-run and once both promoted a new revision; then the webhook calls,
/// the Events sent to the event hook, in order, and the `flagger_*` series.
async fn side_by_side(provider: &str, canary: &str, objects: &[Kind]) {
    side_by_side_with(provider, "", canary, objects, End::Promoted).await;
}

/// [`side_by_side`] with `extra` objects (YAML) applied before the Canary, and the run ending as
/// `end` says.
async fn side_by_side_with(provider: &str, extra: &str, canary: &str, objects: &[Kind], end: End) {
    let client = common::client().await;
    common::with_namespace(&client, "diff-flagger", async |f| {
        common::with_namespace(&client, "diff-veer", async |v| {
            let (f, v) = (f.name.as_str(), v.name.as_str());
            let (hf, hv) = (Receiver::start().await, Receiver::start().await);
            for (ns, hooks) in [(f, &hf), (v, &hv)] {
                apply_yaml(&client, ns, &podinfo_yaml("podinfo", OLD)).await;
                apply_yaml(&client, ns, extra).await;
                apply_yaml(&client, ns, &format!("{canary}{}\n", WEBHOOKS.replace("BASE", &hooks.base)))
                    .await;
            }
            let flagger = Process::flagger(f, provider);
            let veer = Process::controller(v, &["--mesh-provider", provider]);

            let (sf, sv) = (
                wait_phase(&client, f, "podinfo", Phase::Initialized, BOOT).await,
                wait_phase(&client, v, "podinfo", Phase::Initialized, BOOT).await,
            );
            assert_eq!(status_fields(&sf), status_fields(&sv), "the status once initialized");
            wait_replicas(&client, f, "podinfo", 0, "Flagger scaled the target down").await;
            wait_replicas(&client, v, "podinfo", 0, "Veer scaled the target down").await;
            same_objects(&client, f, v, objects, "once initialized").await;
            same_events(&client, &flagger, f, v, "once initialized").await;

            if end == End::RolledBack {
                hf.fail();
                hv.fail();
            }
            for ns in [f, v] {
                set_image(&client, ns, "podinfo", NEW).await;
            }
            let (phase, when) = match end {
                End::Promoted => {
                    // Analysed up to the closed promotion gate: the routes at their last step,
                    // the canary running the new revision, the primary the old one.
                    wait_phase(&client, f, "podinfo", Phase::WaitingPromotion, RUN).await;
                    wait_phase(&client, v, "podinfo", Phase::WaitingPromotion, RUN).await;
                    same_objects(&client, f, v, objects, "waiting for promotion").await;
                    same_events(&client, &flagger, f, v, "waiting for promotion").await;
                    hf.open();
                    hv.open();
                    (Phase::Succeeded, "once promoted")
                }
                End::RolledBack => (Phase::Failed, "once rolled back"),
            };
            let (sf, sv) = (
                wait_phase(&client, f, "podinfo", phase, RUN).await,
                wait_phase(&client, v, "podinfo", phase, RUN).await,
            );
            assert_eq!(status_fields(&sf), status_fields(&sv), "the status {when}");
            wait_replicas(&client, f, "podinfo", 0, "Flagger scaled the target down").await;
            wait_replicas(&client, v, "podinfo", 0, "Veer scaled the target down").await;
            same_objects(&client, f, v, objects, when).await;
            same_events(&client, &flagger, f, v, when).await;
            common::wait_for("the same webhook calls", Duration::from_secs(30), || async {
                let (a, b) = (hf.calls(f), hv.calls(v));
                if a == b { Ok(()) } else { Err(format!("\nflagger: {a:#?}\nveer: {b:#?}")) }
            })
            .await;
            say!("differential", "webhook calls: the same ({})", hf.calls(f).len());
            common::wait_for("the same Events through the event hook", Duration::from_secs(30), || async {
                let (a, b) = (hf.events("flagger", f), hv.events("veer", v));
                if a == b { Ok(()) } else { Err(format!("\nflagger: {a:#?}\nveer: {b:#?}")) }
            })
            .await;
            say!(
                "differential",
                "Events through the event hook: the same, in the same order ({})",
                hf.events("flagger", f).len()
            );
            common::wait_for("the same flagger_* series", Duration::from_secs(30), || async {
                let (a, b) = (series(flagger.port, f).await, series(veer.port, v).await);
                if a == b { Ok(()) } else { Err(format!("\nflagger: {a:#?}\nveer: {b:#?}")) }
            })
            .await;
            say!("differential", "flagger_* series: the same ({})", series(flagger.port, f).await.len());
        })
        .await
    })
    .await;
}

/// Blue/Green with the kubernetes provider, port discovery and apex Service metadata, two
/// iterations.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn blue_green_with_the_kubernetes_provider_matches_flagger() {
    let canary = canary_yaml(
        "  provider: kubernetes\n  progressDeadlineSeconds: 60\n  service:\n    port: 9898\n    \
         portDiscovery: true\n    apex: {labels: {team: a}, annotations: {note: apex}}",
        "    interval: 5s\n    threshold: 2\n    iterations: 2",
    );
    side_by_side("kubernetes", &canary, OBJECTS).await;
}

/// An Istio canary release in two weight steps, with an autoscaler, the Service's gateways, hosts,
/// headers, retries, timeout and a traffic policy for the DestinationRules.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn an_istio_canary_release_matches_flagger() {
    let canary = canary_yaml(
        "  provider: istio\n  progressDeadlineSeconds: 60\n  \
         autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo}\n  \
         service:\n    port: 9898\n    \
         gateways: [public-gateway.istio-system.svc.cluster.local, mesh]\n    hosts: [app.example.com]\n    \
         timeout: 30s\n    retries: {attempts: 3, perTryTimeout: 1s, retryOn: \"gateway-error,connect-failure\"}\n    \
         headers: {request: {add: {x-envoy-upstream-rq-timeout-ms: \"15000\"}}, response: {remove: [x-envoy-upstream-service-time]}}\n    \
         trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}",
        "    interval: 5s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 25",
    );
    let autoscalers = [
        ("autoscaling", "v2", "HorizontalPodAutoscaler", "podinfo"),
        ("autoscaling", "v2", "HorizontalPodAutoscaler", "podinfo-primary"),
    ];
    let objects: Vec<Kind> = OBJECTS.iter().chain(ISTIO).chain(&autoscalers).copied().collect();
    side_by_side_with("istio", HPA, &canary, &objects, End::Promoted).await;
}

/// An Istio canary release rolled back: its rollout hook answers HTTP 500 until the failed-check
/// threshold is reached.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn an_istio_rollback_matches_flagger() {
    let canary = canary_yaml(
        "  provider: istio\n  progressDeadlineSeconds: 60\n  service:\n    port: 9898",
        "    interval: 5s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 25",
    );
    let objects: Vec<Kind> = OBJECTS.iter().chain(ISTIO).copied().collect();
    side_by_side_with("istio", "", &canary, &objects, End::RolledBack).await;
}

/// A Gateway API canary release: the HTTPRoute with a Gateway as parent, hosts, a service match,
/// header filters and timeouts, in two weight steps.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn a_gateway_api_canary_release_matches_flagger() {
    let canary = canary_yaml(
        "  provider: gatewayapi:v1\n  progressDeadlineSeconds: 60\n  service:\n    port: 9898\n    \
         gatewayRefs: [{name: public, namespace: gateways}]\n    hosts: [app.example.com]\n    \
         timeout: 30s\n    backendTimeout: 10s\n    match: [{uri: {prefix: /api}}]\n    \
         headers: {request: {add: {x-b: \"2\", x-a: \"1\"}}, response: {remove: [x-envoy-upstream-service-time]}}",
        "    interval: 5s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 25",
    );
    let objects: Vec<Kind> = OBJECTS.iter().chain(GATEWAY_API).copied().collect();
    side_by_side("gatewayapi:v1", &canary, &objects).await;
}

/// Gateway API A/B testing: the requests with the header or the cookie go to the canary.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn gateway_api_ab_testing_matches_flagger() {
    let canary = canary_yaml(
        "  provider: gatewayapi:v1\n  progressDeadlineSeconds: 60\n  service:\n    port: 9898\n    \
         gatewayRefs: [{name: public, namespace: gateways}]",
        "    interval: 5s\n    threshold: 2\n    iterations: 2\n    match:\n    \
         - headers: {x-canary: {exact: insider}}\n    \
         - headers: {cookie: {regex: \"^(.*?;)?(canary=always)(;.*)?$\"}}",
    );
    let objects: Vec<Kind> = OBJECTS.iter().chain(GATEWAY_API).copied().collect();
    side_by_side("gatewayapi:v1", &canary, &objects).await;
}

/// Gateway API Blue/Green with traffic mirrored to the canary before the switch.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn gateway_api_blue_green_with_mirroring_matches_flagger() {
    let canary = canary_yaml(
        "  provider: gatewayapi:v1\n  progressDeadlineSeconds: 60\n  service:\n    port: 9898\n    \
         gatewayRefs: [{name: public, namespace: gateways}]",
        "    interval: 5s\n    threshold: 2\n    iterations: 2\n    mirror: true",
    );
    let objects: Vec<Kind> = OBJECTS.iter().chain(GATEWAY_API).copied().collect();
    side_by_side("gatewayapi:v1", &canary, &objects).await;
}

/// Gateway API session affinity: responses from the canary set a cookie that pins the session.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn gateway_api_session_affinity_matches_flagger() {
    let canary = canary_yaml(
        "  provider: gatewayapi:v1\n  progressDeadlineSeconds: 60\n  service:\n    port: 9898\n    \
         gatewayRefs: [{name: public, namespace: gateways}]",
        "    interval: 5s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 25\n    \
         sessionAffinity: {cookieName: flagger-cookie, maxAge: 21600}",
    );
    let objects: Vec<Kind> = OBJECTS.iter().chain(GATEWAY_API).copied().collect();
    side_by_side("gatewayapi:v1", &canary, &objects).await;
}

/// A Linkerd (SMI TrafficSplit v1alpha1, weights as quantities) canary release in the steps of
/// Flagger's `test/linkerd/test-steps.sh`.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn a_linkerd_canary_release_in_step_weights_matches_flagger() {
    let canary = canary_yaml(
        "  provider: linkerd\n  progressDeadlineSeconds: 60\n  service: {port: 9898}",
        "    interval: 5s\n    threshold: 2\n    stepWeights: [10, 20, 30, 40, 50, 60]",
    );
    let objects: Vec<Kind> = OBJECTS.iter().chain(SMI_V1ALPHA1).copied().collect();
    side_by_side("linkerd", &canary, &objects).await;
}

/// SMI v1alpha3 for Istio (the gateways annotation, the first host as the split's service),
/// rolled back by a failing rollout hook. The mesh suffix is the controllers' flag: the CRD allows
/// only `smi:v1alpha3` in `spec.provider`.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn an_smi_rollback_matches_flagger() {
    let canary = canary_yaml(
        "  progressDeadlineSeconds: 60\n  service:\n    port: 9898\n    \
         hosts: [podinfo.example.com]\n    gateways: [public-gateway.istio-system.svc.cluster.local]",
        "    interval: 5s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 25",
    );
    let objects: Vec<Kind> = OBJECTS.iter().chain(SMI_V1ALPHA3).copied().collect();
    side_by_side_with("smi:v1alpha3:istio", "", &canary, &objects, End::RolledBack).await;
}

/// An NGINX canary release through the user's Ingress, in two weight steps.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn an_nginx_canary_release_matches_flagger() {
    let canary = canary_yaml(
        "  provider: nginx\n  progressDeadlineSeconds: 60\n  \
         ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: podinfo}\n  \
         service: {port: 80, targetPort: 9898}",
        "    interval: 5s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 25",
    );
    let objects: Vec<Kind> = OBJECTS.iter().chain(NGINX).copied().collect();
    side_by_side_with("nginx", USER_INGRESS, &canary, &objects, End::Promoted).await;
}

/// Istio A/B testing: two iterations for the requests that match a header or a cookie.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn istio_ab_testing_matches_flagger() {
    let canary = canary_yaml(
        "  provider: istio\n  progressDeadlineSeconds: 60\n  service: {port: 9898}",
        "    interval: 5s\n    threshold: 2\n    iterations: 2\n    match:\n    \
         - headers: {x-canary: {exact: insider}}\n    \
         - headers: {cookie: {regex: \"^(.*?;)?(canary=always)(;.*)?$\"}}",
    );
    let objects: Vec<Kind> = OBJECTS.iter().chain(ISTIO).copied().collect();
    side_by_side("istio", &canary, &objects).await;
}

/// Istio with session affinity: the canary's cookie kept once set.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn istio_session_affinity_matches_flagger() {
    let canary = canary_yaml(
        "  provider: istio\n  progressDeadlineSeconds: 60\n  service: {port: 9898}",
        "    interval: 5s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 25\n    \
         sessionAffinity: {cookieName: flagger-cookie, maxAge: 21600}",
    );
    let objects: Vec<Kind> = OBJECTS.iter().chain(ISTIO).copied().collect();
    side_by_side("istio", &canary, &objects).await;
}

/// Istio Blue/Green with traffic mirroring: two iterations mirrored to the canary.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn istio_blue_green_with_mirroring_matches_flagger() {
    let canary = canary_yaml(
        "  provider: istio\n  progressDeadlineSeconds: 60\n  service: {port: 9898}",
        "    interval: 5s\n    threshold: 2\n    iterations: 2\n    mirror: true\n    mirrorWeight: 50",
    );
    let objects: Vec<Kind> = OBJECTS.iter().chain(ISTIO).copied().collect();
    side_by_side("istio", &canary, &objects).await;
}

// ------------------------------------------------------------------------------------------------
// Taking over from Flagger: Flagger runs a Canary and stops, Veer starts on what it left.

/// The objects of `objects` in `ns`, normalised, by kind and name.
async fn snapshot(client: &Client, ns: &str, objects: &[Kind]) -> Vec<Value> {
    let mut out = Vec::new();
    for &o in objects {
        out.push(object(client, ns, o).await);
    }
    out
}

/// The Blue/Green Canary of the takeover scenarios, with the webhooks of [`WEBHOOKS`].
fn takeover_canary(hooks: &Receiver) -> String {
    let canary = canary_yaml(
        "  provider: kubernetes\n  progressDeadlineSeconds: 60\n  service: {port: 9898}",
        "    interval: 5s\n    threshold: 2\n    iterations: 2",
    );
    format!("{canary}{}\n", WEBHOOKS.replace("BASE", &hooks.base))
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn a_canary_flagger_promoted_is_adopted_without_a_run() {
    let client = common::client().await;
    common::with_namespace(&client, "takeover", async |ns| {
        let ns = ns.name.as_str();
        let hooks = Receiver::start().await;
        hooks.open();
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", OLD)).await;
        apply_yaml(&client, ns, &takeover_canary(&hooks)).await;
        let flagger = Process::flagger(ns, "kubernetes");
        wait_phase(&client, ns, "podinfo", Phase::Initialized, BOOT).await;
        set_image(&client, ns, "podinfo", NEW).await;
        wait_phase(&client, ns, "podinfo", Phase::Succeeded, RUN).await;
        wait_replicas(&client, ns, "podinfo", 0, "Flagger scaled the target down").await;
        drop(flagger);
        let left = snapshot(&client, ns, OBJECTS).await;

        let veer = Process::controller(ns, &[]);
        let adopted = wait_adopted(&client, ns, "podinfo", Duration::from_secs(60)).await;
        assert_eq!(adopted.phase, Phase::Succeeded);
        assert!(adopted.last_applied_spec.starts_with("v1-"), "{}", adopted.last_applied_spec);
        // No run, and nothing Flagger left is changed.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(status(&client, ns, "podinfo").await.phase, Phase::Succeeded);
        assert!(!veer.logged("New revision detected"));
        let now = snapshot(&client, ns, OBJECTS).await;
        for (before, after) in left.iter().zip(&now) {
            assert!(before == after, "changed by the takeover:\n{}", diff(before, after));
        }
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        say!("takeover", "a Canary Flagger promoted: adopted, nothing rewritten");
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn a_run_flagger_started_is_finished_by_veer() {
    let client = common::client().await;
    common::with_namespace(&client, "takeover-run", async |ns| {
        let ns = ns.name.as_str();
        let hooks = Receiver::start().await;
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", OLD)).await;
        apply_yaml(&client, ns, &takeover_canary(&hooks)).await;
        let flagger = Process::flagger(ns, "kubernetes");
        wait_phase(&client, ns, "podinfo", Phase::Initialized, BOOT).await;
        set_image(&client, ns, "podinfo", NEW).await;
        // Flagger analysed the revision and waits at the closed promotion gate when it stops.
        wait_phase(&client, ns, "podinfo", Phase::WaitingPromotion, RUN).await;
        drop(flagger);

        let veer = Process::controller(ns, &[]);
        common::wait_for("Veer to ask the gate", Duration::from_secs(60), || async {
            if veer.logged("hook=approve") { Ok(()) } else { Err("not yet".to_string()) }
        })
        .await;
        assert_eq!(status(&client, ns, "podinfo").await.phase, Phase::WaitingPromotion);
        hooks.open();
        let s = wait_phase(&client, ns, "podinfo", Phase::Succeeded, RUN).await;
        assert_eq!(s.last_applied_spec, s.last_promoted_spec);
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        wait_replicas(&client, ns, "podinfo", 0, "Veer scaled the target down").await;
        // The run went on where Flagger left it: not restarted.
        assert!(!veer.logged("New revision detected"), "the run was restarted");
        say!("takeover", "a run Flagger left at its promotion gate: finished by Veer");
    })
    .await;
}
