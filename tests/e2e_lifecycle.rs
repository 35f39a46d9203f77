//! The controller's lifecycle on the real local control plane (project issue 4): rollback on a
//! failing webhook, confirm gates, NGINX canary and A/B routing, Blue/Green, config changes, a new
//! revision mid-analysis, a controller killed mid-analysis, manual rollback, `revertOnDeletion`,
//! DaemonSet targets, stalled Canaries and leader election.
//!
//! Each test runs in its own namespace with its own controller process(es), on a workload shaped
//! like Flagger's podinfo. The assertions are facts from `flagger-behaviour.md` (phases, weights,
//! Event texts, objects) and `docs/compatibility.md`; timings are only printed.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::harness::*;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    coordination::v1::Lease,
    core::v1::{ConfigMap, Service},
    networking::v1::Ingress,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams},
};
use serde_json::Value;
use veer::{
    api::{Canary, CanaryStatus, Phase},
    trafficsim::{Client as Sim, NginxSpec},
    workload::{Workload, target_revision},
};

const OLD: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const NEW: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const NEWER: &str = "ghcr.io/stefanprodan/podinfo:6.0.2";

/// Bounds of the waits: generous, CI may run on a slower machine.
const BOOT: Duration = Duration::from_secs(120);
const RUN: Duration = Duration::from_secs(240);
const REACT: Duration = Duration::from_secs(60);

const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io";

// ------------------------------------------------------------------------------------------------
// Helpers

/// Prints a line tagged with the scenario (tests run in parallel and their output interleaves).
macro_rules! say {
    ($tag:expr, $($arg:tt)*) => { println!("[{}] {}", $tag, format!($($arg)*)) };
}

/// What a test follows: the Canary status and, optionally, what the router says.
#[derive(Clone, Copy)]
enum Routing {
    None,
    /// The canary weight of the VirtualService `podinfo`.
    VirtualService,
    /// An annotation of the canary Ingress `podinfo-canary`.
    IngressAnnotation(&'static str),
}

/// One observation of a Canary.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    phase: Phase,
    weight: i32,
    iterations: i32,
    /// The router's view (see [`Routing`]); `None` when not followed or not there.
    routed: Option<String>,
    last_applied: String,
}

/// Polls a Canary and keeps every distinct observation, in order.
struct Follow {
    client: Client,
    ns: String,
    routing: Routing,
    samples: Vec<Sample>,
    /// When each sample was first seen.
    seen: Vec<Instant>,
}

impl Follow {
    fn new(client: &Client, ns: &str, routing: Routing) -> Follow {
        Follow { client: client.clone(), ns: ns.to_string(), routing, samples: Vec::new(), seen: Vec::new() }
    }

    async fn sample(&self) -> Sample {
        let s = status(&self.client, &self.ns, "podinfo").await;
        let routed = match self.routing {
            Routing::None => None,
            Routing::VirtualService => vs_canary_weight(&self.client, &self.ns).await.map(|w| w.to_string()),
            Routing::IngressAnnotation(key) => {
                let api: Api<Ingress> = Api::namespaced(self.client.clone(), &self.ns);
                api.get_opt("podinfo-canary")
                    .await
                    .ok()
                    .flatten()
                    .and_then(|i| i.annotations().get(&format!("{NGINX_PREFIX}/{key}")).cloned())
            }
        };
        Sample {
            phase: s.phase,
            weight: s.canary_weight,
            iterations: s.iterations,
            routed,
            last_applied: s.last_applied_spec,
        }
    }

    /// Records observations every 100 ms until `done` holds for one, and returns that one.
    async fn until(&mut self, what: &str, timeout: Duration, done: impl Fn(&Sample) -> bool) -> Sample {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.sample().await;
            if self.samples.last() != Some(&s) {
                self.samples.push(s.clone());
                self.seen.push(Instant::now());
            }
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; seen:\n{}",
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Keeps observing for `duration` and returns what was seen in that window.
    async fn hold(&mut self, duration: Duration) -> Vec<Sample> {
        let from = self.samples.len();
        let end = Instant::now() + duration;
        while Instant::now() < end {
            let s = self.sample().await;
            if self.samples.last() != Some(&s) {
                self.samples.push(s);
                self.seen.push(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut window = self.samples[from..].to_vec();
        if window.is_empty() {
            window.extend(self.samples.last().cloned());
        }
        window
    }

    /// Time from the first sample matching `from` to the first later one matching `to` (within the
    /// 100 ms sampling), if both were seen.
    fn time_between(&self, from: impl Fn(&Sample) -> bool, to: impl Fn(&Sample) -> bool) -> Option<Duration> {
        let i = self.samples.iter().position(from)?;
        let j = i + self.samples[i..].iter().position(to)?;
        Some(self.seen[j] - self.seen[i])
    }

    /// The status weights seen while `phase`, without repeats.
    fn weights_in(&self, phase: Phase) -> Vec<i32> {
        dedup(self.samples.iter().filter(|s| s.phase == phase).map(|s| s.weight))
    }

    /// The router's values seen, without repeats.
    fn routed(&self) -> Vec<String> {
        dedup(self.samples.iter().filter_map(|s| s.routed.clone()))
    }

    fn phases(&self) -> Vec<Phase> {
        dedup(self.samples.iter().map(|s| s.phase))
    }

    fn describe(&self) -> String {
        self.samples
            .iter()
            .map(|s| {
                format!(
                    "  {:?} weight {} iterations {} routed {:?} lastApplied {}",
                    s.phase, s.weight, s.iterations, s.routed, s.last_applied
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn dedup<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if out.last() != Some(&i) {
            out.push(i);
        }
    }
    out
}

async fn canary_object(client: &Client, ns: &str) -> Option<Canary> {
    Api::<Canary>::namespaced(client.clone(), ns).get_opt("podinfo").await.expect("get Canary")
}

fn event_messages(events: &[RecordedEvent]) -> Vec<String> {
    events.iter().map(|e| format!("{} x{}: {}", e.type_, e.count, e.message)).collect()
}

/// Waits until an Event of `type_` whose message starts with `prefix` is recorded on the Canary,
/// and returns all its Events (see [`wait_event`]).
async fn expect_event(client: &Client, ns: &str, type_: &str, prefix: &str) -> Vec<RecordedEvent> {
    wait_event(client, ns, "podinfo", Some(type_), Message::StartsWith(prefix)).await
}

/// Waits until the controller's `/metrics` has `line`.
async fn expect_metric(controller: &Process, line: &str) {
    common::wait_for(&format!("{line} in the controller's /metrics"), REACT, || async {
        let metrics = controller.metrics().await;
        if metrics.lines().any(|l| l == line) { Ok(()) } else { Err("absent".to_string()) }
    })
    .await
}

/// Creates podinfo (at `OLD`) and its Canary (see [`canary_yaml`]) and waits until it is
/// `Initialized`; returns that status.
async fn bootstrap(client: &Client, ns: &str, spec: &str, analysis: &str) -> CanaryStatus {
    apply_yaml(client, ns, &podinfo_yaml("podinfo", OLD)).await;
    apply_yaml(client, ns, &canary_yaml(spec, analysis)).await;
    wait_phase(client, ns, "podinfo", Phase::Initialized, BOOT).await
}

fn elapsed(start: Instant) -> String {
    format!("{:.1}s", start.elapsed().as_secs_f64())
}

/// A webhook receiver answering 500 to every POST, keeping the payloads it got.
async fn failing_webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let recorded = seen.clone();
    let app = axum::Router::new().route(
        "/check",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().unwrap().push(body);
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "acceptance tests failed")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}/check", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

// ------------------------------------------------------------------------------------------------
// 1. A failing rollout webhook rolls back after `threshold` failed checks.

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn failing_rollout_webhook_rolls_back_after_threshold() {
    let client = common::client().await;
    common::with_namespace(&client, "webhook-rollback", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let (url, payloads) = failing_webhook().await;
        let controller = Process::controller(ns, &[]);
        bootstrap(
            &client,
            ns,
            "  provider: istio\n  service: {port: 9898}",
            &format!(
                "    interval: 2s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 10\n    \
                 webhooks:\n    - {{name: acceptance, type: rollout, url: \"{url}\", timeout: 5s}}"
            ),
        )
        .await;

        set_image(&client, ns, "podinfo", NEW).await;
        let run = Instant::now();
        let mut follow = Follow::new(&client, ns, Routing::VirtualService);
        // The status is written first, then the routes: wait for both.
        let end = follow
            .until("the rollback", RUN, |s| s.phase == Phase::Failed && s.routed.as_deref() == Some("0"))
            .await;
        say!("webhook-rollback", "new revision → Failed in {}\n{}", elapsed(run), follow.describe());
        // Reported, not asserted (docs/benchmarks.md): the routes follow the status write in the same tick.
        let back = follow.time_between(|s| s.phase == Phase::Failed, |s| s.routed.as_deref() == Some("0"));
        let back = match back {
            Some(d) if d.is_zero() => "in the same sample".to_string(),
            other => format!("{other:?} later"),
        };
        say!("webhook-rollback", "status Failed → VirtualService back on the primary: {back} (100 ms sampling)");

        // One step to 10, then two failed checks at 10, then all traffic back on the primary.
        assert_eq!(follow.weights_in(Phase::Progressing), vec![0, 10], "{}", follow.describe());
        assert_eq!(follow.routed(), vec!["0", "10", "0"], "VirtualService canary weights");
        assert_eq!(end.weight, 0);
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD, "the primary keeps the old image");
        wait_replicas(&client, ns, "podinfo", 0, "the canary is scaled to zero").await;

        let halt = format!("Halt podinfo.{ns} advancement external check acceptance failed");
        expect_event(&client, ns, "Warning", &format!("Rolling back podinfo.{ns} failed checks threshold reached 2"))
            .await;
        let events =
            expect_event(&client, ns, "Warning", &format!("Canary failed! Scaling down podinfo.{ns}")).await;
        assert_eq!(times_recorded(&events, &halt), 2, "one failed check per tick up to the threshold");
        assert!(
            events.iter().any(|e| e.message.starts_with(&halt) && e.message.contains("500")),
            "the Event says what the webhook answered: {:#?}",
            event_messages(&events)
        );

        let s = status(&client, ns, "podinfo").await;
        assert_eq!(s.phase, Phase::Failed);
        let check = s.checks.iter().find(|c| c.name == "acceptance").expect("a check record of the webhook");
        assert_eq!((check.kind.as_str(), check.result.as_str()), ("webhook", "Failed"));
        assert!(check.message.contains("500"), "check message: {}", check.message);
        let promoted = s.conditions.iter().find(|c| c.type_ == "Promoted").expect("Promoted condition");
        assert_eq!((promoted.status.as_str(), promoted.reason.as_str()), ("False", "Failed"));
        assert_eq!(promoted.message.as_deref(), Some("Canary analysis failed, Deployment scaled to zero."));
        for line in [
            format!(r#"flagger_canary_status{{name="podinfo",namespace="{ns}"}} 2"#),
            format!(
                r#"flagger_canary_failures_total{{name="podinfo",namespace="{ns}",deployment_strategy="canary",analysis_status="completed"}} 1"#
            ),
        ] {
            expect_metric(&controller, &line).await;
        }

        // The webhook got Flagger's payload, once per failed check.
        let payloads = payloads.lock().unwrap().clone();
        assert_eq!(payloads.len(), 2, "webhook calls: {payloads:#?}");
        for p in &payloads {
            assert_eq!((p["name"].as_str(), p["namespace"].as_str()), (Some("podinfo"), Some(ns.as_str())));
            assert_eq!(p["phase"], "Progressing");
            assert!(p["checksum"].as_str().is_some_and(|c| !c.is_empty()), "checksum in {p}");
        }
        say!("webhook-rollback", "scenario took {}", elapsed(start));
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
/// `veer wait` as a CI pipeline runs it: for one image, exit 0 once that revision is promoted;
/// exit 1 with the decision when it is rolled back.
async fn veer_wait(ns: &str, image: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_veer"))
        .args(["wait", "-n", ns, "podinfo", "--image", image, "--timeout", "3m"])
        .output()
        .await
        .expect("veer wait runs")
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn veer_wait_follows_one_revision_to_its_promotion_or_rollback() {
    let client = common::client().await;
    common::with_namespace(&client, "wait", async |ns| {
        let ns = &ns.name;
        let _controller = Process::controller(ns, &[]);
        let spec = "  provider: kubernetes\n  service: {port: 9898}";
        bootstrap(&client, ns, spec, "    interval: 2s\n    threshold: 2\n    iterations: 2").await;

        // Started before the target runs the image, as while GitOps catches up with a pipeline.
        let start = Instant::now();
        let (out, ()) = tokio::join!(veer_wait(ns, NEW), async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            set_image(&client, ns, "podinfo", NEW).await;
        });
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        say!("wait", "veer wait {NEW}: {} after {}\n{stdout}{stderr}", out.status, elapsed(start));
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.ends_with(&format!("podinfo.{ns}: promoted\n")), "{stdout}");
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        // Promoted already: at once.
        assert!(veer_wait(ns, NEW).await.status.success());

        let (url, _) = failing_webhook().await;
        let analysis = format!(
            "    interval: 2s\n    threshold: 2\n    iterations: 2\n    \
             webhooks:\n    - {{name: acceptance, type: rollout, url: \"{url}\", timeout: 5s}}"
        );
        apply_yaml(&client, ns, &canary_yaml(spec, &analysis)).await;
        set_image(&client, ns, "podinfo", NEWER).await;
        let start = Instant::now();
        let out = veer_wait(ns, NEWER).await;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        say!("wait", "veer wait {NEWER}: {} after {}\n{stdout}{stderr}", out.status, elapsed(start));
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(
            stderr.contains(&format!(
                "veer wait: podinfo.{ns}: RolledBack: rolled back podinfo.{ns}: failed checks threshold reached 2"
            )),
            "{stderr}"
        );
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);

        // The same binary is a kubectl plugin when installed as `kubectl-veer`.
        let bin = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_veer"), bin.path().join("kubectl-veer")).unwrap();
        let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
        let out = tokio::process::Command::new(common::env("VEER_E2E_KUBECTL"))
            .args(["veer", "status", "-n", ns, "podinfo", "-o", "json"])
            .env("PATH", path)
            .output()
            .await
            .expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let row: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
        assert_eq!((row["name"].as_str(), row["phase"].as_str()), (Some("podinfo"), Some("Failed")));
    })
    .await;
}

/// Runs `veer <args>` and returns its exit status, stdout and stderr.
async fn veer(args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_veer"))
        .args(args)
        .output()
        .await
        .expect("veer runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// `veer pause`, `resume`, `promote --full`, `abort`, `retry` and `promote` on one Canary, each
/// answered by the controller in the same second, and a request that does not apply refused.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn operators_pause_resume_promote_abort_and_retry() {
    let client = common::client().await;
    common::with_namespace(&client, "actions", async |ns| {
        let ns = &ns.name;
        let _controller = Process::controller(ns, &[]);
        let spec = "  provider: kubernetes\n  service: {port: 9898}";
        bootstrap(&client, ns, spec, "    interval: 2s\n    threshold: 2\n    iterations: 20").await;
        let iterations = async || status(&client, ns, "podinfo").await.iterations;
        let decision = async || status(&client, ns, "podinfo").await.decision.expect("a decision");

        set_image(&client, ns, "podinfo", NEW).await;
        wait_phase(&client, ns, "podinfo", Phase::Progressing, REACT).await;
        let (code, out, err) = veer(&["pause", "-n", ns, "podinfo"]).await;
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.starts_with(&format!("podinfo.{ns} paused: Veer holds it where it is")), "{out}");
        common::wait_for("the Paused decision", REACT, || async {
            let d = decision().await;
            if d.reason == "Paused" { Ok(()) } else { Err(format!("{d:?}")) }
        })
        .await;
        let held = iterations().await;
        tokio::time::sleep(Duration::from_secs(5)).await; // two intervals and more
        assert_eq!(iterations().await, held, "no step while paused");
        let (code, out, err) = veer(&["resume", "-n", ns, "podinfo"]).await;
        assert_eq!(code, Some(0), "{out}{err}");
        common::wait_for("a step after resume", REACT, || async {
            let i = iterations().await;
            if i > held { Ok(()) } else { Err(format!("iterations {i}")) }
        })
        .await;

        let start = Instant::now();
        let (code, out, err) = veer(&["promote", "--full", "-n", ns, "podinfo"]).await;
        say!("actions", "veer promote --full: {code:?} after {}\n{out}{err}", elapsed(start));
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("Promoting at canary weight 0: PromoteRequested Copying podinfo"), "{out}");
        wait_phase(&client, ns, "podinfo", Phase::Succeeded, RUN).await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);

        set_image(&client, ns, "podinfo", NEWER).await;
        wait_phase(&client, ns, "podinfo", Phase::Progressing, REACT).await;
        let start = Instant::now();
        let (code, out, err) = veer(&["abort", "-n", ns, "podinfo"]).await;
        say!("actions", "veer abort: {code:?} after {}\n{out}{err}", elapsed(start));
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("Failed at canary weight 0: Aborted rolled back podinfo"), "{out}");
        expect_event(&client, ns, "Warning", &format!("Rolling back podinfo.{ns}: abort requested")).await;
        wait_replicas(&client, ns, "podinfo", 0, "the canary is scaled to zero").await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW, "the primary keeps the promoted image");

        let (code, out, err) = veer(&["retry", "-n", ns, "podinfo"]).await;
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("Progressing at canary weight 0: Retried"), "{out}");
        assert_eq!(status(&client, ns, "podinfo").await.failed_checks, 0);
        // A plain promote: the next step now, promoted as its checks (none here) pass.
        let (code, out, err) = veer(&["promote", "-n", ns, "podinfo"]).await;
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("Promoting"), "{out}");
        wait_phase(&client, ns, "podinfo", Phase::Succeeded, RUN).await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEWER);

        // Nothing runs: refused at once by the command, nothing written.
        let (code, out, err) = veer(&["abort", "-n", ns, "podinfo"]).await;
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(
            err.contains(&format!("veer abort: podinfo.{ns}: nothing to abort: no analysis is running")),
            "{err}"
        );
        let c = canary_object(&client, ns).await.expect("the Canary");
        assert!(!c.annotations().contains_key("veer.dev/request"), "{:?}", c.annotations());
    })
    .await;
}

// 2. confirm-rollout and confirm-promotion gates hold the run until opened.

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn confirm_gates_hold_until_opened() {
    let client = common::client().await;
    common::with_namespace(&client, "gates", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        // Both gates use the key <name>.<namespace>: one load tester each keeps them apart.
        let rollout_gate = Process::loadtester(&format!("loadtester-rollout-{ns}"), &[]);
        let promotion_gate = Process::loadtester(&format!("loadtester-promotion-{ns}"), &[]);
        let _controller = Process::controller(ns, &[]);
        bootstrap(
            &client,
            ns,
            "  provider: istio\n  service: {port: 9898}",
            &format!(
                "    interval: 2s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 25\n    webhooks:\n    \
                 - {{name: rollout-gate, type: confirm-rollout, url: \"{}/gate/check\"}}\n    \
                 - {{name: promotion-gate, type: confirm-promotion, url: \"{}/gate/check\"}}",
                rollout_gate.url(),
                promotion_gate.url()
            ),
        )
        .await;

        set_image(&client, ns, "podinfo", NEW).await;
        let mut follow = Follow::new(&client, ns, Routing::VirtualService);
        follow.until("Waiting", REACT, |s| s.phase == Phase::Waiting).await;
        // Held for several intervals, the canary not started.
        let held = follow.hold(Duration::from_secs(8)).await;
        assert!(held.iter().all(|s| s.phase == Phase::Waiting), "held: {held:?}");
        let s = status(&client, ns, "podinfo").await;
        let promoted = s.conditions.iter().find(|c| c.type_ == "Promoted").expect("Promoted condition");
        assert_eq!(
            (promoted.status.as_str(), promoted.reason.as_str(), promoted.message.as_deref()),
            ("Unknown", "Waiting", Some("Waiting for approval."))
        );
        assert_eq!(replicas(&client, ns, "podinfo").await, Some(0), "the canary stays at 0 replicas");
        let events = expect_event(
            &client,
            ns,
            "Warning",
            &format!("Halt podinfo.{ns} advancement waiting for approval rollout-gate"),
        )
        .await;
        assert!(!events.iter().any(|e| e.message.starts_with("New revision detected!")), "not started yet");

        assert_eq!(loadtester_post(&rollout_gate, "/gate/open", "podinfo", ns).await, 202);
        let opened = Instant::now();
        follow.until("Progressing", REACT, |s| s.phase == Phase::Progressing).await;
        say!("gates", "rollout gate opened → Progressing in {}", elapsed(opened));
        wait_replicas(&client, ns, "podinfo", 2, "the canary is scaled up").await;

        follow.until("WaitingPromotion", RUN, |s| s.phase == Phase::WaitingPromotion).await;
        let held = follow.hold(Duration::from_secs(8)).await;
        assert!(held.iter().all(|s| s.phase == Phase::WaitingPromotion), "held: {held:?}");
        assert!(
            held.iter().all(|s| s.routed.as_deref() == Some("50")),
            "the canary keeps maxWeight while waiting: {held:?}"
        );
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD, "not promoted yet");
        expect_event(
            &client,
            ns,
            "Warning",
            &format!("Halt podinfo.{ns} advancement waiting for promotion approval promotion-gate"),
        )
        .await;

        assert_eq!(loadtester_post(&promotion_gate, "/gate/open", "podinfo", ns).await, 202);
        let opened = Instant::now();
        follow.until("Succeeded", RUN, |s| s.phase == Phase::Succeeded).await;
        say!("gates", "promotion gate opened → Succeeded in {}\n{}", elapsed(opened), follow.describe());
        assert_eq!(follow.weights_in(Phase::Progressing), vec![0, 25, 50]);
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        for expected in [
            "Confirm-rollout check rollout-gate passed",
            &format!("New revision detected! Scaling up podinfo.{ns}"),
            "Confirm-promotion check promotion-gate passed",
            &format!("Promotion completed! Scaling down podinfo.{ns}"),
        ] {
            expect_event(&client, ns, "Normal", expected).await;
        }
        say!("gates", "scenario took {}", elapsed(start));
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// 3. NGINX: the canary Ingress follows the steps; the user's Ingress is never modified.

const NGINX_SPEC: &str = "  provider: nginx\n  ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: podinfo}\n  \
                          service: {port: 80, targetPort: 9898}";

const NGINX_METRICS: &str = "    metrics:\n    \
                             - {name: request-success-rate, thresholdRange: {min: 99}, interval: 30s}\n    \
                             - {name: request-duration, thresholdRange: {max: 500}, interval: 30s}";

async fn ingress(client: &Client, ns: &str, name: &str) -> Ingress {
    Api::<Ingress>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Ingress {name}: {e}"))
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn nginx_canary_ingress_follows_the_steps() {
    let client = common::client().await;
    common::with_namespace(&client, "nginx-canary", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let sim = Sim::new(&common::env("TRAFFICSIM_URL")).unwrap();
        sim.put_nginx(ns, "podinfo", &NginxSpec { rps: 20.0, error_rate: 0.0, latency_ms: 20.0, primary_rps: 10.0 })
            .await
            .unwrap();
        let _controller = Process::controller(ns, &[]);
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", OLD)).await;
        apply_yaml(&client, ns, USER_INGRESS).await;
        let user_before = ingress(&client, ns, "podinfo").await;
        apply_yaml(
            &client,
            ns,
            &canary_yaml(
                NGINX_SPEC,
                &format!("    interval: 2s\n    threshold: 2\n    maxWeight: 40\n    stepWeight: 20\n{NGINX_METRICS}"),
            ),
        )
        .await;
        wait_phase(&client, ns, "podinfo", Phase::Initialized, BOOT).await;

        let canary_ingress = ingress(&client, ns, "podinfo-canary").await;
        let a = canary_ingress.annotations();
        assert_eq!(a.get(&format!("{NGINX_PREFIX}/canary")).map(String::as_str), Some("true"));
        assert_eq!(a.get(&format!("{NGINX_PREFIX}/canary-weight")).map(String::as_str), Some("0"));
        let rule = &canary_ingress.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("app.example.com"));
        let backend = rule.http.as_ref().unwrap().paths[0].backend.service.as_ref().unwrap();
        assert_eq!(backend.name, "podinfo-canary");
        let owner = &canary_ingress.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Canary", "podinfo"));

        set_image(&client, ns, "podinfo", NEW).await;
        let run = Instant::now();
        let mut follow = Follow::new(&client, ns, Routing::IngressAnnotation("canary-weight"));
        follow.until("the promotion", RUN, |s| s.phase == Phase::Succeeded).await;
        say!("nginx-canary", "new revision → Succeeded in {}\n{}", elapsed(run), follow.describe());

        assert_eq!(follow.routed(), vec!["0", "20", "40", "0"], "canary-weight annotations");
        assert_eq!(follow.weights_in(Phase::Progressing), vec![0, 20, 40]);
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        let s = status(&client, ns, "podinfo").await;
        for name in ["request-success-rate", "request-duration"] {
            let check = s.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no {name} record"));
            assert_eq!(check.result, "Passed", "{check:?}");
        }
        let user_after = ingress(&client, ns, "podinfo").await;
        assert_eq!(
            user_after.resource_version(),
            user_before.resource_version(),
            "the user's Ingress is never written"
        );
        for w in [20, 40] {
            expect_event(&client, ns, "Normal", &format!("Advance podinfo.{ns} canary weight {w}")).await;
        }
        sim.delete_nginx(ns, "podinfo").await.ok();
        say!("nginx-canary", "scenario took {}", elapsed(start));
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn nginx_ab_testing_routes_by_header() {
    let client = common::client().await;
    common::with_namespace(&client, "nginx-ab", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let sim = Sim::new(&common::env("TRAFFICSIM_URL")).unwrap();
        sim.put_nginx(
            ns,
            "podinfo",
            &NginxSpec { rps: 20.0, error_rate: 0.0, latency_ms: 20.0, primary_rps: 10.0 },
        )
        .await
        .unwrap();
        let _controller = Process::controller(ns, &[]);
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", OLD)).await;
        apply_yaml(&client, ns, USER_INGRESS).await;
        let user_before = ingress(&client, ns, "podinfo").await;
        apply_yaml(
            &client,
            ns,
            &canary_yaml(
                NGINX_SPEC,
                &format!(
                    "    interval: 2s\n    threshold: 2\n    iterations: 3\n    \
                     match:\n    - headers: {{x-canary: {{exact: insider}}}}\n{NGINX_METRICS}"
                ),
            ),
        )
        .await;
        wait_phase(&client, ns, "podinfo", Phase::Initialized, BOOT).await;

        set_image(&client, ns, "podinfo", NEW).await;
        let run = Instant::now();
        let mut follow = Follow::new(&client, ns, Routing::IngressAnnotation("canary-by-header"));
        follow
            .until("the header routing", RUN, |s| s.phase == Phase::Progressing && s.routed.is_some())
            .await;
        let a = ingress(&client, ns, "podinfo-canary").await.annotations().clone();
        say!("nginx-ab", "canary Ingress annotations during the A/B test: {a:?}");
        let get = |k: &str| a.get(&format!("{NGINX_PREFIX}/{k}")).map(String::as_str);
        assert_eq!(get("canary"), Some("true"));
        assert_eq!(get("canary-by-header"), Some("x-canary"));
        assert_eq!(get("canary-by-header-value"), Some("insider"));
        assert_eq!(get("canary-weight"), Some("0"), "only requests with the header reach the canary");

        follow.until("the promotion", RUN, |s| s.phase == Phase::Succeeded).await;
        say!("nginx-ab", "new revision → Succeeded in {}\n{}", elapsed(run), follow.describe());
        let iterations =
            dedup(follow.samples.iter().filter(|s| s.phase == Phase::Progressing).map(|s| s.iterations));
        assert_eq!(iterations, vec![0, 1, 2, 3]);
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        let a = ingress(&client, ns, "podinfo-canary").await.annotations().clone();
        assert!(
            !a.contains_key(&format!("{NGINX_PREFIX}/canary-by-header")),
            "header routing removed: {a:?}"
        );
        assert_eq!(a.get(&format!("{NGINX_PREFIX}/canary-weight")).map(String::as_str), Some("0"));
        let user_after = ingress(&client, ns, "podinfo").await;
        assert_eq!(
            user_after.resource_version(),
            user_before.resource_version(),
            "the user's Ingress is never written"
        );
        for i in 1..=3 {
            expect_event(&client, ns, "Normal", &format!("Advance podinfo.{ns} canary iteration {i}/3"))
                .await;
        }
        sim.delete_nginx(ns, "podinfo").await.ok();
        say!("nginx-ab", "scenario took {}", elapsed(start));
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// 4. Blue/Green with the kubernetes provider.

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn blue_green_with_kubernetes_provider_promotes() {
    let client = common::client().await;
    common::with_namespace(&client, "blue-green", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let controller = Process::controller(ns, &[]);
        bootstrap(
            &client,
            ns,
            "  provider: kubernetes\n  service: {port: 9898}",
            "    interval: 2s\n    threshold: 2\n    iterations: 3",
        )
        .await;
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        let canary_svc = services.get("podinfo-canary").await.expect("Service podinfo-canary");
        assert_eq!(canary_svc.spec.unwrap().selector.unwrap()["app"], "podinfo");

        set_image(&client, ns, "podinfo", NEW).await;
        let run = Instant::now();
        let mut follow = Follow::new(&client, ns, Routing::None);
        follow.until("the first iteration", RUN, |s| s.iterations >= 1).await;
        assert_eq!(
            replicas(&client, ns, "podinfo").await,
            Some(2),
            "the canary runs as many pods as the primary"
        );
        follow.until("the promotion", RUN, |s| s.phase == Phase::Succeeded).await;
        say!("blue-green", "new revision → Succeeded in {}\n{}", elapsed(run), follow.describe());

        let phases = follow.phases();
        assert_eq!(
            phases,
            vec![
                Phase::Initialized,
                Phase::Progressing,
                Phase::Promoting,
                Phase::Finalising,
                Phase::Succeeded
            ],
            "{}",
            follow.describe()
        );
        let iterations =
            dedup(follow.samples.iter().filter(|s| s.phase == Phase::Progressing).map(|s| s.iterations));
        assert_eq!(iterations, vec![0, 1, 2, 3]);
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        wait_replicas(&client, ns, "podinfo", 0, "the canary is scaled down").await;
        for i in 1..=3 {
            expect_event(&client, ns, "Normal", &format!("Advance podinfo.{ns} canary iteration {i}/3")).await;
        }
        expect_event(&client, ns, "Normal", &format!("Copying podinfo.{ns} template spec to podinfo-primary.{ns}"))
            .await;
        expect_event(&client, ns, "Normal", &format!("Promotion completed! Scaling down podinfo.{ns}")).await;
        let line = format!(
            r#"flagger_canary_successes_total{{name="podinfo",namespace="{ns}",deployment_strategy="blue-green",analysis_status="completed"}} 1"#
        );
        expect_metric(&controller, &line).await;
        say!("blue-green", "scenario took {}", elapsed(start));
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// 5. A ConfigMap change alone starts a run; the promotion copies it to `<cm>-primary`.

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn config_map_change_alone_starts_a_run_and_is_promoted() {
    let client = common::client().await;
    common::with_namespace(&client, "configmap", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let _controller = Process::controller(ns, &[]);
        let before = bootstrap(
            &client,
            ns,
            "  provider: kubernetes\n  service: {port: 9898}",
            "    interval: 2s\n    threshold: 2\n    iterations: 2",
        )
        .await;
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let color = async |name: &str| {
            configmaps.get(name).await.unwrap_or_else(|e| panic!("{name}: {e}")).data.unwrap_or_default()["color"]
                .clone()
        };
        assert_eq!(color("podinfo-config-primary").await, "blue");
        let tracked_before = before.tracked_configs.get("configmap/podinfo-config").cloned();
        assert!(tracked_before.is_some(), "tracked: {:?}", before.tracked_configs);

        apply_yaml(
            &client,
            ns,
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: podinfo-config}\ndata: {color: green}\n",
        )
        .await;
        let changed = Instant::now();
        let mut follow = Follow::new(&client, ns, Routing::None);
        follow.until("Progressing", REACT, |s| s.phase == Phase::Progressing).await;
        say!("configmap", "ConfigMap change → Progressing in {}", elapsed(changed));
        assert_eq!(color("podinfo-config-primary").await, "blue", "not copied before the promotion");
        follow.until("the promotion", RUN, |s| s.phase == Phase::Succeeded).await;
        say!("configmap", "ConfigMap change → Succeeded in {}", elapsed(changed));

        assert_eq!(color("podinfo-config-primary").await, "green");
        let after = status(&client, ns, "podinfo").await;
        assert_ne!(after.tracked_configs.get("configmap/podinfo-config"), tracked_before.as_ref());
        assert_eq!(after.last_applied_spec, before.last_applied_spec, "the pod template did not change");
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);
        expect_event(&client, ns, "Normal", &format!("New revision detected! Scaling up podinfo.{ns}")).await;
        expect_event(&client, ns, "Normal", &format!("Promotion completed! Scaling down podinfo.{ns}")).await;
        say!("configmap", "scenario took {}", elapsed(start));
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// 6. A new revision during the analysis restarts it.

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn new_revision_mid_analysis_restarts_it() {
    let client = common::client().await;
    common::with_namespace(&client, "restart-analysis", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let loadtester = Process::loadtester(&format!("loadtester-{ns}"), &[]);
        let _controller = Process::controller(ns, &[]);
        bootstrap(
            &client,
            ns,
            "  provider: istio\n  service: {port: 9898}",
            &format!(
                "    interval: 3s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 10\n    webhooks:\n    \
                 - {{name: smoke, type: pre-rollout, url: \"{}/gate/approve\"}}",
                loadtester.url()
            ),
        )
        .await;

        set_image(&client, ns, "podinfo", NEW).await;
        let mut follow = Follow::new(&client, ns, Routing::VirtualService);
        let mid = follow.until("weight 20", RUN, |s| s.phase == Phase::Progressing && s.weight >= 20).await;
        set_image(&client, ns, "podinfo", NEWER).await;
        let changed = Instant::now();
        let target: Deployment = Api::namespaced(client.clone(), ns).get("podinfo").await.unwrap();
        let newest = target_revision(Workload::Deployment(&target));
        assert_ne!(newest, mid.last_applied);

        let restarted = follow
            .until("the restart", REACT, |s| s.phase == Phase::Progressing && s.last_applied == newest)
            .await;
        say!("restart-analysis", "newer revision → analysis restarted in {}", elapsed(changed));
        assert_eq!(restarted.weight, 0, "the analysis starts over at weight 0");
        follow.until("the promotion", RUN, |s| s.phase == Phase::Succeeded).await;
        say!("restart-analysis", "newer revision → Succeeded in {}\n{}", elapsed(changed), follow.describe());

        let weights = follow.weights_in(Phase::Progressing);
        let drop = weights.windows(2).position(|w| w[1] < w[0]).expect("the weight went back") + 1;
        assert_eq!(weights[drop..], [0, 10, 20, 30, 40, 50], "after the restart: {weights:?}");
        let routed = follow.routed();
        let drop = routed.iter().position(|w| w == "0").and_then(|first| {
            routed.iter().enumerate().skip(first + 1).find(|(_, w)| *w == "0").map(|(i, _)| i)
        });
        let drop = drop.expect("the VirtualService went back to the primary");
        assert_eq!(routed[drop..], ["0", "10", "20", "30", "40", "50", "0"], "VirtualService: {routed:?}");

        // Counted once the last Event of the run is there.
        let events =
            expect_event(&client, ns, "Normal", &format!("Promotion completed! Scaling down podinfo.{ns}")).await;
        assert_eq!(
            times_recorded(&events, &format!("New revision detected! Restarting analysis for podinfo.{ns}")),
            1
        );
        // The restarted analysis starts with the pre-rollout checks again.
        assert_eq!(times_recorded(&events, &format!("Starting canary analysis for podinfo.{ns}")), 2);
        assert_eq!(times_recorded(&events, "Pre-rollout check smoke passed"), 2);
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEWER, "the newest revision is promoted");
        let s = status(&client, ns, "podinfo").await;
        assert_eq!(s.last_promoted_spec, newest);
        say!("restart-analysis", "scenario took {}", elapsed(start));
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// 7. A controller killed mid-analysis: the next one resumes at the same weight.

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn killed_controller_resumes_without_repeating_or_skipping_a_step() {
    let client = common::client().await;
    common::with_namespace(&client, "kill-resume", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let mut first = Process::controller(ns, &[]);
        bootstrap(
            &client,
            ns,
            "  provider: istio\n  service: {port: 9898}",
            "    interval: 4s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 10",
        )
        .await;

        set_image(&client, ns, "podinfo", NEW).await;
        let mut follow = Follow::new(&client, ns, Routing::VirtualService);
        follow.until("weight 20", RUN, |s| s.phase == Phase::Progressing && s.weight == 20).await;
        first.kill();
        let killed = Instant::now();
        let at_kill = status(&client, ns, "podinfo").await;
        let w = at_kill.canary_weight;
        say!("kill-resume", "killed the controller at weight {w}");
        let down = follow.hold(Duration::from_secs(2)).await;
        assert!(down.iter().all(|s| s.weight == w), "nothing moves without a controller: {down:?}");
        // Whether the killed process got the step's routes out (then its Event may be lost: it
        // follows the routes) or not (then the next process sends both).
        let routed_at_kill = follow.routed().last().cloned();
        say!("kill-resume", "VirtualService canary weight at the kill: {routed_at_kill:?}");

        let _second = Process::controller(ns, &[]);
        let next =
            follow.until("the next step", RUN, |s| s.weight != w || s.phase != Phase::Progressing).await;
        say!(
            "kill-resume",
            "kill → next step ({} at weight {}) in {}",
            next.phase,
            next.weight,
            elapsed(killed)
        );
        assert_eq!((next.phase, next.weight), (Phase::Progressing, w + 10), "{}", follow.describe());
        follow.until("the promotion", RUN, |s| s.phase == Phase::Succeeded).await;
        say!("kill-resume", "{}", follow.describe());

        assert_eq!(follow.weights_in(Phase::Progressing), vec![0, 10, 20, 30, 40, 50]);
        assert_eq!(follow.routed(), vec!["0", "10", "20", "30", "40", "50", "0"], "VirtualService weights");
        // Counted once the last Event of the run is there (an end-of-run effect: carried out at
        // least once, also when a controller was killed right after the status).
        let events =
            expect_event(&client, ns, "Normal", &format!("Promotion completed! Scaling down podinfo.{ns}"))
                .await;
        for step in [10, 20, 30, 40, 50] {
            let message = format!("Advance podinfo.{ns} canary weight {step}");
            let n: i32 = events.iter().filter(|e| e.message == message).map(|e| e.count).sum();
            if step == w && routed_at_kill.as_deref() == Some(&*w.to_string()) {
                assert!(n <= 1, "{message} recorded {n} times: {:#?}", event_messages(&events));
            } else {
                assert_eq!(n, 1, "{message} recorded {n} times: {:#?}", event_messages(&events));
            }
        }
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        say!("kill-resume", "scenario took {}", elapsed(start));
    })
    .await;
}

/// The same, harder: the controller is killed again and again at arbitrary moments of the run
/// (between steps, right after one, while one is being written).
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn repeatedly_killed_controller_never_repeats_or_skips_a_step() {
    let client = common::client().await;
    common::with_namespace(&client, "kill-often", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let mut controller = Process::controller(ns, &[]);
        bootstrap(
            &client,
            ns,
            "  provider: istio\n  service: {port: 9898}",
            "    interval: 2s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 10",
        )
        .await;

        set_image(&client, ns, "podinfo", NEW).await;
        let mut follow = Follow::new(&client, ns, Routing::VirtualService);
        // Lifetimes of the successive controllers, in ms: not in step with the 2 s interval.
        let lifetimes = [700u64, 1900, 1100, 2600, 400, 1500, 2300, 900, 1700, 3100];
        let mut kills = 0;
        let deadline = Instant::now() + RUN;
        for ms in lifetimes.iter().cycle() {
            follow.hold(Duration::from_millis(*ms)).await;
            if follow.samples.last().is_some_and(|s| s.phase == Phase::Succeeded) {
                break;
            }
            assert!(Instant::now() < deadline, "no promotion in {RUN:?}:\n{}", follow.describe());
            controller.kill();
            kills += 1;
            controller = Process::controller(ns, &[]);
        }
        follow.until("the promotion", RUN, |s| s.phase == Phase::Succeeded).await;
        say!("kill-often", "promoted after {kills} kills in {}\n{}", elapsed(start), follow.describe());

        assert_eq!(follow.weights_in(Phase::Progressing), vec![0, 10, 20, 30, 40, 50]);
        assert_eq!(follow.routed(), vec!["0", "10", "20", "30", "40", "50", "0"], "VirtualService weights");
        // Counted once the last Event of the run is there (an end-of-run effect: carried out at
        // least once, also when a controller was killed right after the status).
        let events =
            expect_event(&client, ns, "Normal", &format!("Promotion completed! Scaling down podinfo.{ns}"))
                .await;
        for step in [10, 20, 30, 40, 50] {
            // An Event may be lost with a controller killed between a step's routes and its Event, never repeated.
            let message = format!("Advance podinfo.{ns} canary weight {step}");
            let n: i32 = events.iter().filter(|e| e.message == message).map(|e| e.count).sum();
            assert!(n <= 1, "{message} recorded {n} times: {:#?}", event_messages(&events));
        }
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        say!("kill-often", "scenario took {}", elapsed(start));
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// 8. Reverting the target to the promoted template does not start a run; applying the failed
// revision again does.

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn a_revert_starts_no_run_and_the_failed_revision_applied_again_does() {
    let client = common::client().await;
    common::with_namespace(&client, "manual-rollback", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let loadtester = Process::loadtester(&format!("loadtester-{ns}"), &[]);
        let _controller = Process::controller(ns, &[]);
        bootstrap(
            &client,
            ns,
            "  provider: kubernetes\n  service: {port: 9898}",
            &format!(
                "    interval: 2s\n    threshold: 1\n    iterations: 3\n    webhooks:\n    \
                 - {{name: halt, type: rollout, url: \"{}/gate/halt\"}}",
                loadtester.url()
            ),
        )
        .await;
        set_image(&client, ns, "podinfo", NEW).await;
        let failed = wait_phase(&client, ns, "podinfo", Phase::Failed, RUN).await;
        let events = expect_event(
            &client,
            ns,
            "Warning",
            &format!("Rolling back podinfo.{ns} failed checks threshold reached 1"),
        )
        .await;
        let started = format!("New revision detected! Scaling up podinfo.{ns}");
        assert_eq!(times_recorded(&events, &started), 1);
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);

        // The user rolls the target back to what the primary runs.
        set_image(&client, ns, "podinfo", OLD).await;
        let mut follow = Follow::new(&client, ns, Routing::None);
        let window = follow.hold(Duration::from_secs(10)).await;
        say!("manual-rollback", "after the manual rollback: {window:?}");
        assert!(window.iter().all(|s| s.phase == Phase::Failed), "no run starts: {window:?}");
        assert_eq!(replicas(&client, ns, "podinfo").await, Some(0), "the canary stays scaled down");
        let events = recorded_events(&client, ns, "podinfo").await;
        assert_eq!(times_recorded(&events, &started), 1, "{:#?}", event_messages(&events));
        let reverted = status(&client, ns, "podinfo").await;
        assert_eq!(reverted.last_promoted_spec, failed.last_promoted_spec);
        assert_eq!(
            reverted.last_applied_spec, reverted.last_promoted_spec,
            "the last applied follows the revert"
        );
        assert_eq!(reverted.decision.map(|d| d.reason), Some("Reverted".to_string()));

        // The failed revision applied again (a `git revert` of the revert) is analysed again, as
        // in Flagger.
        set_image(&client, ns, "podinfo", NEW).await;
        let changed = Instant::now();
        follow.until("a new run", REACT, |s| s.phase == Phase::Progressing).await;
        say!("manual-rollback", "failed revision applied again → Progressing in {}", elapsed(changed));
        common::wait_for("the new run's Event", REACT, || async {
            let events = recorded_events(&client, ns, "podinfo").await;
            match times_recorded(&events, &started) {
                2 => Ok(()),
                n => Err(format!("recorded {n} times: {:#?}", event_messages(&events))),
            }
        })
        .await;
        say!("manual-rollback", "scenario took {}", elapsed(start));
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// 9. revertOnDeletion: the finalizer restores the target.

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn revert_on_deletion_restores_the_target() {
    let client = common::client().await;
    common::with_namespace(&client, "revert-delete", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let _controller = Process::controller(ns, &[]);
        bootstrap(
            &client,
            ns,
            "  provider: kubernetes\n  revertOnDeletion: true\n  service: {port: 9898}",
            "    interval: 2s\n    threshold: 2\n    iterations: 2",
        )
        .await;
        let canary = canary_object(&client, ns).await.expect("the Canary");
        assert!(
            canary.finalizers().iter().any(|f| f == "finalizer.flagger.app"),
            "{:?}",
            canary.finalizers()
        );
        wait_replicas(&client, ns, "podinfo", 0, "the target is scaled to zero").await;

        let canaries: Api<Canary> = Api::namespaced(client.clone(), ns);
        canaries.delete("podinfo", &DeleteParams::default()).await.expect("Canary deleted");
        let deleted = Instant::now();
        common::wait_for("the Canary to be gone", REACT, || async {
            match canary_object(&client, ns).await {
                None => Ok(()),
                Some(c) => Err(format!(
                    "finalizers {:?}, phase {:?}",
                    c.finalizers(),
                    c.status.as_ref().map(|s| s.phase)
                )),
            }
        })
        .await;
        say!("revert-delete", "delete → finalizer removed in {}", elapsed(deleted));
        assert_eq!(
            replicas(&client, ns, "podinfo").await,
            Some(2),
            "the target runs the primary's replicas again"
        );
        expect_event(&client, ns, "Normal", &format!("Terminating canary podinfo.{ns}")).await;
        expect_event(&client, ns, "Normal", &format!("Terminated canary podinfo.{ns}")).await;
        // The generated objects go with the Canary (owner references).
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        common::wait_for("the primary to be garbage collected", REACT, || async {
            match deployments.get_opt("podinfo-primary").await {
                Ok(None) => Ok(()),
                other => Err(format!("{:?}", other.map(|d| d.map(|d| d.name_any())))),
            }
        })
        .await;
        say!("revert-delete", "scenario took {}", elapsed(start));
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// 10. A DaemonSet target.

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn daemonset_target_initializes_and_promotes() {
    let client = common::client().await;
    common::with_namespace(&client, "daemonset", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let _controller = Process::controller(ns, &[]);
        apply_yaml(&client, ns, &podinfo_daemonset_yaml("podinfo-ds", OLD)).await;
        apply_yaml(
            &client,
            ns,
            r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  provider: kubernetes
  revertOnDeletion: true
  targetRef: {apiVersion: apps/v1, kind: DaemonSet, name: podinfo-ds}
  service: {port: 9898}
  analysis: {interval: 2s, threshold: 2, iterations: 2}
"#,
        )
        .await;
        wait_phase(&client, ns, "podinfo", Phase::Initialized, BOOT).await;
        let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
        let node_selector = async |name: &str| {
            let d = daemonsets.get(name).await.unwrap_or_else(|e| panic!("DaemonSet {name}: {e}"));
            d.spec.unwrap().template.spec.unwrap().node_selector.unwrap_or_default()
        };
        let ds_image = async |name: &str| {
            let d = daemonsets.get(name).await.unwrap_or_else(|e| panic!("DaemonSet {name}: {e}"));
            d.spec.unwrap().template.spec.unwrap().containers[0].image.clone().unwrap_or_default()
        };
        // Scaled to zero with a nodeSelector no node has (written just after the status).
        let scaled_to_zero = async |want: Option<&str>| {
            common::wait_for(&format!("the scale-to-zero nodeSelector to be {want:?}"), REACT, || async {
                let selector = node_selector("podinfo-ds").await;
                let value = selector.get("flagger.app/scale-to-zero").map(String::as_str);
                if value == want { Ok(()) } else { Err(format!("{selector:?}")) }
            })
            .await
        };
        scaled_to_zero(Some("true")).await;
        let primary = daemonsets.get("podinfo-ds-primary").await.expect("the primary DaemonSet");
        assert_eq!(
            primary.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap()["app"],
            "podinfo-ds-primary"
        );
        assert!(!node_selector("podinfo-ds-primary").await.contains_key("flagger.app/scale-to-zero"));
        assert_eq!(ds_image("podinfo-ds-primary").await, OLD);

        set_daemonset_image(&client, ns, "podinfo-ds", NEW).await;
        let run = Instant::now();
        let mut follow = Follow::new(&client, ns, Routing::None);
        follow.until("the first iteration", RUN, |s| s.iterations >= 1).await;
        scaled_to_zero(None).await; // the canary runs during the analysis
        follow.until("the promotion", RUN, |s| s.phase == Phase::Succeeded).await;
        say!("daemonset", "new revision → Succeeded in {}\n{}", elapsed(run), follow.describe());
        assert_eq!(ds_image("podinfo-ds-primary").await, NEW);
        scaled_to_zero(Some("true")).await;
        expect_event(&client, ns, "Normal", &format!("Promotion completed! Scaling down podinfo-ds.{ns}"))
            .await;

        // revertOnDeletion (as Flagger's test-daemonset.sh): the target runs on the nodes again.
        let canaries: Api<Canary> = Api::namespaced(client.clone(), ns);
        canaries.delete("podinfo", &DeleteParams::default()).await.expect("Canary deleted");
        common::wait_for("the Canary to be gone", REACT, || async {
            canary_object(&client, ns)
                .await
                .map_or(Ok(()), |c| Err(format!("finalizers {:?}", c.finalizers())))
        })
        .await;
        let selector = node_selector("podinfo-ds").await;
        assert!(!selector.contains_key("flagger.app/scale-to-zero"), "target reverted: {selector:?}");
        assert_eq!(ds_image("podinfo-ds").await, NEW);
        say!("daemonset", "scenario took {}", elapsed(start));
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// 11. Stalled Canaries: an unsupported provider, a missing target.

fn stalled(s: &CanaryStatus) -> Option<(String, String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone().unwrap_or_default()))
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn unsupported_provider_stalls_and_creates_nothing() {
    let client = common::client().await;
    common::with_namespace(&client, "unsupported", async |ns| {
        let ns = &ns.name;
        let _controller = Process::controller(ns, &[]);
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", OLD)).await;
        apply_yaml(
            &client,
            ns,
            &canary_yaml(
                "  provider: contour\n  service: {port: 9898}",
                "    interval: 2s\n    threshold: 2\n    stepWeight: 10",
            ),
        )
        .await;
        let start = Instant::now();
        let (state, reason, message) = common::wait_for("the Stalled condition", REACT, || async {
            let s = status(&client, ns, "podinfo").await;
            stalled(&s).ok_or_else(|| format!("{s:?}"))
        })
        .await;
        say!("unsupported", "Stalled after {}: {reason}: {message}", elapsed(start));
        assert_eq!((state.as_str(), reason.as_str()), ("True", "UnsupportedProvider"));
        assert!(message.contains("spec.provider") && message.contains("contour"), "{message}");
        expect_event(&client, ns, "Warning", &format!("Canary podinfo.{ns}: spec.provider")).await;

        // Nothing was created or changed.
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let names: Vec<String> = deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|d| d.name_any())
            .collect();
        assert_eq!(names, vec!["podinfo"]);
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        assert!(services.list(&ListParams::default()).await.unwrap().items.is_empty(), "no Services");
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        assert!(configmaps.get_opt("podinfo-config-primary").await.unwrap().is_none());
        assert_eq!(replicas(&client, ns, "podinfo").await, Some(2), "the target is not scaled down");
        let s = status(&client, ns, "podinfo").await;
        assert!(!matches!(s.phase, Phase::Initialized | Phase::Progressing), "{:?}", s.phase);

        // Fixing the provider lets it proceed.
        apply_yaml(
            &client,
            ns,
            &canary_yaml(
                "  provider: kubernetes\n  service: {port: 9898}",
                "    interval: 2s\n    threshold: 2\n    iterations: 2",
            ),
        )
        .await;
        let fixed = Instant::now();
        let s = wait_phase(&client, ns, "podinfo", Phase::Initialized, BOOT).await;
        say!("unsupported", "provider fixed → Initialized in {}", elapsed(fixed));
        assert_eq!(stalled(&s), None, "the Stalled condition is gone: {:?}", s.conditions);
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn missing_target_stalls_until_it_is_created() {
    let client = common::client().await;
    common::with_namespace(&client, "missing-target", async |ns| {
        let ns = &ns.name;
        let _controller = Process::controller(ns, &[]);
        apply_yaml(
            &client,
            ns,
            &canary_yaml(
                "  provider: kubernetes\n  service: {port: 9898}",
                "    interval: 2s\n    threshold: 2\n    iterations: 2",
            ),
        )
        .await;
        let (state, reason, message) = common::wait_for("the Stalled condition", REACT, || async {
            let s = status(&client, ns, "podinfo").await;
            stalled(&s).ok_or_else(|| format!("{s:?}"))
        })
        .await;
        assert_eq!((state.as_str(), reason.as_str()), ("True", "TargetNotFound"));
        assert!(message.starts_with(&format!("Deployment podinfo.{ns} not found")), "{message}");
        expect_event(&client, ns, "Warning", &format!("Deployment podinfo.{ns} not found")).await;
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        assert!(services.list(&ListParams::default()).await.unwrap().items.is_empty(), "no Services");

        apply_yaml(&client, ns, &podinfo_yaml("podinfo", OLD)).await;
        let created = Instant::now();
        let s = wait_phase(&client, ns, "podinfo", Phase::Initialized, BOOT).await;
        say!("missing-target", "target created → Initialized in {}", elapsed(created));
        assert_eq!(stalled(&s), None, "the Stalled condition is gone: {:?}", s.conditions);
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);
        wait_replicas(&client, ns, "podinfo", 0, "the target is scaled to zero").await;
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// 12. Leader election: one of two controllers writes; the other takes over when it dies.

/// `veer_api_writes_total` samples of a controller's /metrics, summed.
fn api_writes(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("veer_api_writes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

async fn lease_holder(client: &Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases.get_opt("veer-leader-election").await.ok()??.spec?.holder_identity
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn leader_election_one_writer_and_takeover() {
    let client = common::client().await;
    common::with_namespace(&client, "leader", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        let args = ["--enable-leader-election", "--leader-election-namespace", ns.as_str()];
        let mut a = Process::controller(ns, &args);
        let mut b = Process::controller(ns, &args);
        let ids = [format!("veer-{}", a.pid().unwrap()), format!("veer-{}", b.pid().unwrap())];
        let holder = common::wait_for("a Lease holder", REACT, || async {
            lease_holder(&client, ns).await.filter(|h| ids.contains(h)).ok_or("no holder yet".to_string())
        })
        .await;
        say!("leader", "leader {holder} elected after {}", elapsed(start));
        let (leader, follower) = if holder == ids[0] { (&mut a, &mut b) } else { (&mut b, &mut a) };
        let follower_id = if holder == ids[0] { ids[1].clone() } else { ids[0].clone() };

        bootstrap(
            &client,
            ns,
            "  provider: kubernetes\n  service: {port: 9898}",
            "    interval: 2s\n    threshold: 2\n    iterations: 2",
        )
        .await;
        set_image(&client, ns, "podinfo", NEW).await;
        wait_phase(&client, ns, "podinfo", Phase::Succeeded, RUN).await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        let (leader_writes, follower_writes) =
            (api_writes(&leader.metrics().await), api_writes(&follower.metrics().await));
        say!("leader", "API writes: leader {leader_writes}, follower {follower_writes}");
        assert!(leader_writes > 0.0, "the leader drove the Canary");
        assert_eq!(follower_writes, 0.0, "the follower never writes");
        assert_eq!(lease_holder(&client, ns).await.as_deref(), Some(holder.as_str()));

        // The leader dies; the follower takes the Lease and drives the next run.
        leader.kill();
        let killed = Instant::now();
        set_image(&client, ns, "podinfo", NEWER).await;
        common::wait_for("the follower to take the Lease", RUN, || async {
            let h = lease_holder(&client, ns).await;
            if h.as_deref() == Some(follower_id.as_str()) { Ok(()) } else { Err(format!("holder {h:?}")) }
        })
        .await;
        say!("leader", "leader killed → {follower_id} holds the Lease after {}", elapsed(killed));
        common::wait_for("the newer revision to be promoted", RUN, || async {
            let s = status(&client, ns, "podinfo").await;
            let img = image(&client, ns, "podinfo-primary").await;
            if s.phase == Phase::Succeeded && img == NEWER {
                Ok(())
            } else {
                Err(format!("{:?}, primary {img}", s.phase))
            }
        })
        .await;
        say!("leader", "leader killed → newer revision promoted after {}", elapsed(killed));
        assert!(api_writes(&follower.metrics().await) > 0.0, "the new leader writes");
        say!("leader", "scenario took {}", elapsed(start));
    })
    .await;
}
