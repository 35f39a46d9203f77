//! Metric analysis end to end: the controller queries a real Prometheus that scrapes the traffic
//! simulator, judges the values, and promotes or rolls back. Each test runs its own controller for
//! its own namespace; the simulator's workloads are keyed by namespace, so the tests run in
//! parallel. Timings are printed, never asserted.

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::harness::*;
use k8s_openapi::api::networking::v1::Ingress;
use kube::{Api, Client, api::DynamicObject};
use serde_json::{Value, json};
use veer::{
    api::{CanaryStatus, CheckRecord, Phase},
    trafficsim::{Client as Sim, IstioSpec, NginxSpec, exposition::Sample},
};

const OLD: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const NEW: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";

fn sim() -> Sim {
    Sim::new(&common::env("TRAFFICSIM_URL")).expect("a simulator client")
}

fn istio(rps: f64, error_rate: f64, latency_ms: f64) -> IstioSpec {
    IstioSpec { rps, error_rate, latency_ms }
}

/// A Canary `podinfo` for the podinfo Deployment with `provider` (and what goes with it, indented
/// by two spaces) and the `analysis` lines (indented by four).
fn canary(provider: &str, analysis: &str) -> String {
    canary_yaml(&format!("{provider}\n  service: {{port: 9898, targetPort: http}}"), analysis)
}

/// An Istio Canary stepping 10, 20, 30 every `interval`, with the given metrics (YAML list items,
/// indented by four spaces).
fn istio_canary(interval: &str, threshold: u32, metrics: &str) -> String {
    canary(
        "  provider: istio",
        &format!(
            r#"    interval: {interval}
    threshold: {threshold}
    maxWeight: 30
    stepWeight: 10
    metrics:
{metrics}"#
        ),
    )
}

const SUCCESS_RATE_99: &str =
    "    - {name: request-success-rate, thresholdRange: {min: 99}, interval: 30s}\n";
const DURATION_500: &str = "    - {name: request-duration, thresholdRange: {max: 500}, interval: 30s}\n";

/// Starts a controller, creates podinfo and the Canary, waits for `Initialized` and starts a new
/// revision. Returns the controller and the time the new revision was made.
async fn start_run(client: &Client, ns: &str, canary: &str, extra: &[&str]) -> (Process, Instant) {
    let controller = Process::controller(ns, extra);
    apply_yaml(client, ns, &podinfo_yaml("podinfo", OLD)).await;
    apply_yaml(client, ns, canary).await;
    let t = Instant::now();
    wait_phase(client, ns, "podinfo", Phase::Initialized, Duration::from_secs(60)).await;
    println!("[{ns}] Initialized after {:?}", t.elapsed());
    set_image(client, ns, "podinfo", NEW).await;
    (controller, Instant::now())
}

fn check<'a>(s: &'a CanaryStatus, name: &str) -> &'a CheckRecord {
    s.checks
        .iter()
        .find(|c| c.kind == "metric" && c.name == name)
        .unwrap_or_else(|| panic!("no check record for {name}: {:#?}", s.checks))
}

fn assert_close(actual: Option<f64>, expected: f64, what: &str) {
    let v = actual.unwrap_or_else(|| panic!("{what}: no value"));
    assert!((v - expected).abs() < 1e-6, "{what}: {v}, expected {expected}");
}

/// Waits until each of `expected` is the message of an Event on podinfo (the Events follow the
/// status that the test waited for, see [`wait_event`]).
async fn assert_events(client: &Client, ns: &str, expected: &[String]) {
    for e in expected {
        wait_event(client, ns, "podinfo", None, Message::Is(e)).await;
    }
}

/// Waits until the VirtualService sends all traffic to the primary: the routes of a rollback follow
/// its status.
async fn wait_all_on_primary(client: &Client, ns: &str) {
    common::wait_for("the VirtualService back on the primary", AFTER_STATUS, || async {
        match vs_weights(client, ns).await {
            (100, 0) => Ok(()),
            other => Err(format!("(primary, canary) weights {other:?}")),
        }
    })
    .await;
}

/// The canary's VirtualService route weights (primary, canary).
async fn vs_weights(client: &Client, ns: &str) -> (i64, i64) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &veer::router::istio::resource(veer::router::istio::VIRTUAL_SERVICE),
    );
    let vs = api.get("podinfo").await.expect("the VirtualService");
    let route = &vs.data["spec"]["http"][0]["route"];
    let weight = |host: &str| {
        route
            .as_array()
            .and_then(|r| r.iter().find(|d| d["destination"]["host"] == host))
            .and_then(|d| d["weight"].as_i64())
            .unwrap_or(0)
    };
    (weight("podinfo-primary"), weight("podinfo-canary"))
}

/// Polls the Canary until it reaches `phase`, recording every canary weight seen on the way.
async fn watch_until(client: &Client, ns: &str, phase: Phase, timeout: Duration) -> (CanaryStatus, Vec<i32>) {
    let deadline = Instant::now() + timeout;
    let mut weights = Vec::new();
    loop {
        let s = status(client, ns, "podinfo").await;
        if weights.last() != Some(&s.canary_weight) {
            weights.push(s.canary_weight);
        }
        if s.phase == phase {
            return (s, weights);
        }
        assert!(
            Instant::now() < deadline,
            "Canary podinfo.{ns} not {phase} after {timeout:?}: {:?}, weight {}, failed checks {}, decision {:?}",
            s.phase,
            s.canary_weight,
            s.failed_checks,
            s.decision
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ------------------------------------------------------------------------------ the controller's /metrics

async fn scrape(port: u16) -> Vec<Sample> {
    let http = veer::http::client_builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let body = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("the controller's /metrics")
        .text()
        .await
        .unwrap();
    veer::trafficsim::exposition::parse(&body)
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{body}"))
}

/// Scrapes the controller's `/metrics` until `done` holds for the samples (the run counters and
/// gauges of a tick follow its status), and returns them.
async fn scrape_until(port: u16, what: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    common::wait_for(what, AFTER_STATUS, || async {
        let m = scrape(port).await;
        if done(&m) {
            Ok(m)
        } else {
            let flagger: Vec<String> =
                m.iter().filter(|s| s.name.starts_with("flagger_")).map(|s| format!("{s:?}")).collect();
            Err(format!("{flagger:#?}"))
        }
    })
    .await
}

/// The value of the one sample named `name` whose labels include `labels`.
fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .collect();
    assert!(found.len() <= 1, "several {name}{labels:?} series: {found:#?}");
    found.first().map(|s| s.value)
}

// ------------------------------------------------------------------------------ Istio: rollback on values

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn istio_canary_with_20_percent_errors_is_rolled_back() {
    let client = common::client().await;
    common::with_namespace(&client, "an-errors", async |ns| {
        let ns = &ns.name;
        sim().put_istio(ns, "podinfo", &istio(20.0, 0.2, 20.0)).await.unwrap();
        let (controller, t) = start_run(&client, ns, &istio_canary("2s", 2, SUCCESS_RATE_99), &[]).await;
        let (s, weights) = watch_until(&client, ns, Phase::Failed, Duration::from_secs(90)).await;
        println!("[{ns}] new revision → Failed in {:?}; weights seen {weights:?}", t.elapsed());

        // Every check failed, so the canary never went past the first step.
        assert!(weights.iter().all(|w| *w <= 10), "weights {weights:?}");
        let rate = check(&s, "request-success-rate");
        assert_eq!(rate.result, "Failed");
        assert_close(rate.value, 80.0, "measured success rate");
        assert_eq!((rate.min, rate.max), (Some(99.0), None));
        let halt = format!("Halt podinfo.{ns} advancement success rate 80.00% < 99%");
        assert_eq!(rate.message, halt);
        let decision = s.decision.clone().expect("a decision");
        assert_eq!(decision.reason, "RolledBack");
        assert_eq!(decision.message, format!("rolled back podinfo.{ns}: failed checks threshold reached 2"));
        assert_eq!((s.canary_weight, s.failed_checks), (0, 0));
        assert_events(
            &client,
            ns,
            &[
                halt,
                format!("Rolling back podinfo.{ns} failed checks threshold reached 2"),
                format!("Canary failed! Scaling down podinfo.{ns}"),
            ],
        )
        .await;
        wait_all_on_primary(&client, ns).await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);
        wait_replicas(&client, ns, "podinfo", 0, "the canary is scaled down").await;

        // The controller's own metrics tell the same story, once the rollback's tick has ended.
        let canary = [("name", "podinfo"), ("namespace", ns.as_str())];
        let run = [canary[0], canary[1], ("deployment_strategy", "canary"), ("analysis_status", "completed")];
        let m = scrape_until(controller.port, "the failed run counted", |m| {
            sample(m, "flagger_canary_failures_total", &run) == Some(1.0)
                && sample(m, "flagger_canary_weight", &[("workload", "podinfo"), canary[1]]) == Some(0.0)
        })
        .await;
        assert_eq!(sample(&m, "flagger_canary_status", &canary), Some(2.0));
        assert_close(
            sample(&m, "flagger_canary_metric_analysis", &[("metric", "request-success-rate"), canary[1]]),
            80.0,
            "flagger_canary_metric_analysis",
        );
        assert_eq!(sample(&m, "flagger_canary_failures_total", &run), Some(1.0));
        assert_eq!(sample(&m, "flagger_canary_successes_total", &run).unwrap_or(0.0), 0.0);
        assert_eq!(sample(&m, "flagger_canary_weight", &[("workload", "podinfo"), canary[1]]), Some(0.0));
        assert_eq!(
            sample(&m, "flagger_canary_weight", &[("workload", "podinfo-primary"), canary[1]]),
            Some(100.0)
        );
        sim().delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn istio_canary_slower_than_max_duration_is_rolled_back() {
    let client = common::client().await;
    common::with_namespace(&client, "an-latency", async |ns| {
        let ns = &ns.name;
        sim().put_istio(ns, "podinfo", &istio(20.0, 0.0, 800.0)).await.unwrap();
        let metrics = format!("{SUCCESS_RATE_99}{DURATION_500}");
        let (_controller, t) = start_run(&client, ns, &istio_canary("2s", 2, &metrics), &[]).await;
        let (s, _) = watch_until(&client, ns, Phase::Failed, Duration::from_secs(90)).await;
        println!("[{ns}] new revision → Failed in {:?}", t.elapsed());

        let rate = check(&s, "request-success-rate");
        assert_eq!(rate.result, "Passed");
        assert_close(rate.value, 100.0, "success rate");
        let duration = check(&s, "request-duration");
        assert_eq!(duration.result, "Failed");
        assert_close(duration.value, 800.0, "p99 in ms");
        assert_eq!((duration.min, duration.max), (None, Some(500.0)));
        let halt = format!("Halt podinfo.{ns} advancement request duration 800ms > 500ms");
        assert_eq!(duration.message, halt);
        assert_events(
            &client,
            ns,
            &[halt, format!("Rolling back podinfo.{ns} failed checks threshold reached 2")],
        )
        .await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);
        sim().delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn istio_canary_without_traffic_is_never_promoted() {
    let client = common::client().await;
    common::with_namespace(&client, "an-notraffic", async |ns| {
        let ns = &ns.name;
        // No simulator workload for this namespace: the queries find no series at all.
        let (_controller, t) = start_run(&client, ns, &istio_canary("2s", 3, SUCCESS_RATE_99), &[]).await;
        let (s, weights) = watch_until(&client, ns, Phase::Failed, Duration::from_secs(90)).await;
        println!("[{ns}] new revision → Failed in {:?}; weights seen {weights:?}", t.elapsed());

        assert!(weights.iter().all(|w| *w <= 10), "weights {weights:?}");
        let rate = check(&s, "request-success-rate");
        assert_eq!((rate.result.as_str(), rate.value), ("NoData", None));
        let halt = format!(
            "Halt advancement no values found for istio metric request-success-rate probably podinfo.{ns} is not receiving traffic"
        );
        assert_eq!(rate.message, halt);
        assert_eq!(s.decision.clone().unwrap().reason, "RolledBack");
        assert_events(&client, ns, &[halt, format!("Rolling back podinfo.{ns} failed checks threshold reached 3")])
            .await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);
        wait_all_on_primary(&client, ns).await;
    })
    .await;
}

// ------------------------------------------------------------------------------ MetricTemplate

/// Creates a MetricTemplate `name` in `ns` with this PromQL, querying the local Prometheus.
async fn metric_template(client: &Client, ns: &str, name: &str, query: &str) {
    let template = json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": name},
        "spec": {"provider": {"type": "prometheus", "address": common::env("PROMETHEUS_URL")}, "query": query},
    });
    apply_yaml(client, ns, &template.to_string()).await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn metric_template_with_variables_drives_a_promotion() {
    let client = common::client().await;
    common::with_namespace(&client, "an-template", async |ns| {
        let ns = &ns.name;
        sim().put_istio(ns, "podinfo", &istio(20.0, 0.0, 20.0)).await.unwrap();
        // The simulator exports only reporter="destination": the query finds data only when the
        // variable is rendered into it.
        let query = r#"
            sum(rate(istio_requests_total{
                reporter="{{ variables.reporter }}",
                destination_workload_namespace="{{ namespace }}",
                destination_workload=~"{{ target }}",
                response_code!~"5.*"
            }[{{ interval }}]))
            /
            sum(rate(istio_requests_total{
                reporter="{{ variables.reporter }}",
                destination_workload_namespace="{{ namespace }}",
                destination_workload=~"{{ target }}"
            }[{{ interval }}])) * 100"#;
        metric_template(&client, ns, "success-rate", query).await;
        let metrics = r#"    - name: success-by-reporter
      templateRef: {name: success-rate}
      templateVariables: {reporter: destination}
      thresholdRange: {min: 99}
      interval: 30s
"#;
        let (_controller, t) = start_run(&client, ns, &istio_canary("2s", 2, metrics), &[]).await;
        let (s, weights) = watch_until(&client, ns, Phase::Succeeded, Duration::from_secs(120)).await;
        println!("[{ns}] new revision → Succeeded in {:?}; weights seen {weights:?}", t.elapsed());

        let record = check(&s, "success-by-reporter");
        assert_eq!(record.result, "Passed");
        assert_close(record.value, 100.0, "template value");
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        assert_events(
            &client,
            ns,
            &[
                format!("Advance podinfo.{ns} canary weight 30"),
                format!("Copying podinfo.{ns} template spec to podinfo-primary.{ns}"),
                format!("Promotion completed! Scaling down podinfo.{ns}"),
            ],
        )
        .await;
        sim().delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}

// ------------------------------------------------------------------------------ Linkerd

/// The backends of the TrafficSplit `podinfo` in `version`.
async fn split_backends(
    client: &Client,
    ns: &str,
    version: veer::router::smi::Version,
) -> Result<Value, String> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &veer::router::smi::resource(version));
    let split = api.get("podinfo").await.map_err(|e| format!("the TrafficSplit: {e}"))?;
    Ok(serde_json::to_value(split).unwrap()["spec"]["backends"].clone())
}

/// Waits until the TrafficSplit `podinfo` in `version` has exactly these backends.
async fn wait_split(client: &Client, ns: &str, version: veer::router::smi::Version, want: Value) {
    common::wait_for("the TrafficSplit back on the primary", AFTER_STATUS, || async {
        let backends = split_backends(client, ns, version).await?;
        if backends == want { Ok(()) } else { Err(format!("backends {backends}")) }
    })
    .await;
}

/// Flagger's `test/linkerd/test-steps.sh`: a Linkerd (SMI) Canary through `stepWeights`, promoted
/// on Linkerd's built-in checks (`response_total`, `response_latency_ms`).
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn linkerd_canary_in_step_weights_is_promoted_on_linkerd_metrics() {
    let client = common::client().await;
    common::with_namespace(&client, "an-linkerd-steps", async |ns| {
        let ns = &ns.name;
        sim().put_istio(ns, "podinfo", &istio(20.0, 0.0, 40.0)).await.unwrap();
        let canary = canary(
            "  provider: linkerd",
            &format!("    interval: 2s\n    threshold: 2\n    stepWeights: [10, 20, 30, 40, 50, 60]\n    metrics:\n{SUCCESS_RATE_99}{DURATION_500}"),
        );
        let (_controller, t) = start_run(&client, ns, &canary, &[]).await;
        let (s, weights) = watch_until(&client, ns, Phase::Succeeded, Duration::from_secs(150)).await;
        println!("[{ns}] new revision → Succeeded in {:?}; weights seen {weights:?}", t.elapsed());

        for step in [10, 20, 30, 40, 50, 60] {
            assert!(weights.contains(&step), "step {step} not seen: {weights:?}");
        }
        let rate = check(&s, "request-success-rate");
        assert_eq!(rate.result, "Passed");
        assert_close(rate.value, 100.0, "Linkerd success rate");
        let duration = check(&s, "request-duration");
        assert_eq!(duration.result, "Passed");
        assert_close(duration.value, 40.0, "Linkerd p99 in ms");
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        assert_events(&client, ns, &[format!("Advance podinfo.{ns} canary weight 60")]).await;
        // v1alpha1 writes weights as quantities.
        let want = json!([{"service": "podinfo-canary", "weight": "0"}, {"service": "podinfo-primary", "weight": "100"}]);
        wait_split(&client, ns, veer::router::smi::Version::V1alpha1, want).await;
        sim().delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}

/// An Open Service Mesh Canary (SMI TrafficSplit v1alpha2) rolled back on OSM's built-in
/// success rate (`osm_request_total`).
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn osm_canary_with_errors_is_rolled_back() {
    let client = common::client().await;
    common::with_namespace(&client, "an-osm", async |ns| {
        let ns = &ns.name;
        sim().put_istio(ns, "podinfo", &istio(20.0, 0.25, 40.0)).await.unwrap();
        let canary = canary(
            "  provider: osm",
            &format!("    interval: 2s\n    threshold: 2\n    maxWeight: 30\n    stepWeight: 10\n    metrics:\n{SUCCESS_RATE_99}{DURATION_500}"),
        );
        let (_controller, t) = start_run(&client, ns, &canary, &[]).await;
        let (s, weights) = watch_until(&client, ns, Phase::Failed, Duration::from_secs(90)).await;
        println!("[{ns}] new revision → Failed in {:?}; weights seen {weights:?}", t.elapsed());

        assert!(weights.iter().all(|w| *w <= 10), "weights {weights:?}");
        let rate = check(&s, "request-success-rate");
        assert_eq!(rate.result, "Failed");
        assert_close(rate.value, 75.0, "OSM success rate");
        assert_eq!(rate.message, format!("Halt podinfo.{ns} advancement success rate 75.00% < 99%"));
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);
        let want = json!([{"service": "podinfo-canary", "weight": 0}, {"service": "podinfo-primary", "weight": 100}]);
        wait_split(&client, ns, veer::router::smi::Version::V1alpha2, want).await;
        sim().delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}

/// Flagger's `test/linkerd/test-canary.sh`: Linkerd through the Gateway API (GAMMA: the HTTPRoute's
/// parent is the Service), Linkerd queries as MetricTemplates with `variables.direction`; a canary
/// answering 500s is rolled back.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn linkerd_gamma_canary_with_errors_is_rolled_back() {
    let client = common::client().await;
    common::with_namespace(&client, "an-linkerd-gamma", async |ns| {
        let ns = &ns.name;
        sim().put_istio(ns, "podinfo", &istio(20.0, 0.4, 40.0)).await.unwrap();
        let success_rate = r#"
            sum(rate(response_total{namespace="{{ namespace }}", deployment=~"{{ target }}",
                classification!="failure", direction="{{ variables.direction }}"}[{{ interval }}]))
            /
            sum(rate(response_total{namespace="{{ namespace }}", deployment=~"{{ target }}",
                direction="{{ variables.direction }}"}[{{ interval }}])) * 100"#;
        let latency = r#"
            histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{namespace="{{ namespace }}",
                deployment=~"{{ target }}", direction="{{ variables.direction }}"}[{{ interval }}])) by (le))"#;
        metric_template(&client, ns, "success-rate", success_rate).await;
        metric_template(&client, ns, "latency", latency).await;
        let canary = canary_yaml(
            &format!(
                "  provider: gatewayapi:v1\n  progressDeadlineSeconds: 60\n  service:\n    port: 80\n    \
                 targetPort: 9898\n    gatewayRefs: [{{name: podinfo, namespace: {ns}, group: core, kind: Service, port: 80}}]"
            ),
            r#"    interval: 2s
    threshold: 3
    maxWeight: 50
    stepWeight: 10
    metrics:
    - name: success-rate
      templateRef: {name: success-rate}
      thresholdRange: {min: 99}
      interval: 30s
      templateVariables: {direction: inbound}
    - name: latency
      templateRef: {name: latency}
      threshold: 500
      interval: 30s
      templateVariables: {direction: inbound}
"#,
        );
        let (_controller, t) = start_run(&client, ns, &canary, &[]).await;
        let (s, weights) = watch_until(&client, ns, Phase::Failed, Duration::from_secs(90)).await;
        println!("[{ns}] new revision → Failed in {:?}; weights seen {weights:?}", t.elapsed());

        assert!(weights.iter().all(|w| *w <= 10), "weights {weights:?}");
        let rate = check(&s, "success-rate");
        assert_eq!(rate.result, "Failed");
        assert_close(rate.value, 60.0, "Linkerd success rate from the template");
        let halt = format!("Halt podinfo.{ns} advancement success-rate 60.00 < 99");
        assert_eq!(rate.message, halt);
        assert_events(
            &client,
            ns,
            &[halt, format!("Rolling back podinfo.{ns} failed checks threshold reached 3")],
        )
        .await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);
        // The HTTPRoute attached to the Service (GAMMA), back on the primary.
        let ar = veer::router::gatewayapi::resource(veer::router::gatewayapi::Version::V1);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        common::wait_for("the HTTPRoute back on the primary", AFTER_STATUS, || async {
            let route = serde_json::to_value(api.get("podinfo").await.map_err(|e| e.to_string())?).unwrap();
            let parent = &route["spec"]["parentRefs"][0];
            assert_eq!((parent["kind"].as_str(), parent["name"].as_str()), (Some("Service"), Some("podinfo")));
            let weights: Vec<i64> = route["spec"]["rules"][0]["backendRefs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| b["weight"].as_i64())
                .collect();
            if weights == [100, 0] { Ok(()) } else { Err(format!("weights {weights:?}")) }
        })
        .await;
        sim().delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}

// ------------------------------------------------------------------------------ NGINX

const USER_INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: podinfo, labels: {app: podinfo}}
spec:
  ingressClassName: nginx
  rules:
  - host: app.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: podinfo, port: {number: 9898}}}
"#;

fn nginx_canary() -> String {
    canary(
        "  provider: nginx\n  ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: podinfo}",
        r#"    interval: 2s
    threshold: 2
    maxWeight: 40
    stepWeight: 20
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}, interval: 30s}
    - {name: request-duration, thresholdRange: {max: 500}, interval: 30s}
"#,
    )
}

/// `(canary, canary-weight)` annotations of the generated canary Ingress.
async fn canary_ingress(client: &Client, ns: &str) -> (Option<String>, Option<String>) {
    let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
    let ingress = api.get("podinfo-canary").await.expect("the canary Ingress");
    let a = ingress.metadata.annotations.unwrap_or_default();
    (
        a.get("nginx.ingress.kubernetes.io/canary").cloned(),
        a.get("nginx.ingress.kubernetes.io/canary-weight").cloned(),
    )
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn nginx_canary_is_promoted_on_healthy_ingress_metrics() {
    let client = common::client().await;
    common::with_namespace(&client, "an-nginx-ok", async |ns| {
        let ns = &ns.name;
        let spec = NginxSpec { rps: 20.0, error_rate: 0.0, latency_ms: 20.0, primary_rps: 50.0 };
        sim().put_nginx(ns, "podinfo", &spec).await.unwrap();
        apply_yaml(&client, ns, USER_INGRESS).await;
        let (_controller, t) = start_run(&client, ns, &nginx_canary(), &[]).await;
        let (s, weights) = watch_until(&client, ns, Phase::Succeeded, Duration::from_secs(120)).await;
        println!("[{ns}] new revision → Succeeded in {:?}; weights seen {weights:?}", t.elapsed());

        let rate = check(&s, "request-success-rate");
        assert_eq!(rate.result, "Passed");
        assert_close(rate.value, 100.0, "success rate");
        let duration = check(&s, "request-duration");
        assert_eq!(duration.result, "Passed");
        // NGINX's built-in duration is the mean, which the simulator keeps at the latency.
        assert_close(duration.value, 20.0, "mean duration in ms");
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        assert_events(&client, ns, &[format!("Advance podinfo.{ns} canary weight 40")]).await;
        assert_eq!(canary_ingress(&client, ns).await, (Some("true".into()), Some("0".into())));
        sim().delete_nginx(ns, "podinfo").await.ok();
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn nginx_canary_with_errors_is_rolled_back() {
    let client = common::client().await;
    common::with_namespace(&client, "an-nginx-bad", async |ns| {
        let ns = &ns.name;
        // The primary's requests never fail; the built-in query must leave them out (canary!="").
        let spec = NginxSpec { rps: 20.0, error_rate: 0.3, latency_ms: 20.0, primary_rps: 50.0 };
        sim().put_nginx(ns, "podinfo", &spec).await.unwrap();
        apply_yaml(&client, ns, USER_INGRESS).await;
        let (_controller, t) = start_run(&client, ns, &nginx_canary(), &[]).await;
        let (s, weights) = watch_until(&client, ns, Phase::Failed, Duration::from_secs(90)).await;
        println!("[{ns}] new revision → Failed in {:?}; weights seen {weights:?}", t.elapsed());

        let rate = check(&s, "request-success-rate");
        assert_eq!(rate.result, "Failed");
        assert_close(rate.value, 70.0, "success rate of canary-served requests");
        let halt = format!("Halt podinfo.{ns} advancement success rate 70.00% < 99%");
        assert_events(&client, ns, &[halt, format!("Canary failed! Scaling down podinfo.{ns}")]).await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);
        // The rollback's routes follow its status.
        common::wait_for("the canary Ingress back at weight 0", AFTER_STATUS, || async {
            match canary_ingress(&client, ns).await {
                (Some(c), Some(w)) if c == "true" && w == "0" => Ok(()),
                other => Err(format!("(canary, canary-weight) {other:?}")),
            }
        })
        .await;
        sim().delete_nginx(ns, "podinfo").await.ok();
    })
    .await;
}

// ------------------------------------------------------------------------------ Prometheus outage

/// A Prometheus of this test's own, scraping the simulator every second, stopped and started by
/// pid. Killed when dropped.
struct OwnPrometheus {
    child: Option<Child>,
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPrometheus {
    async fn start() -> OwnPrometheus {
        let binary = prometheus_binary();
        let dir = tempfile::Builder::new().prefix("veer-e2e-prometheus-").tempdir().unwrap();
        let sim = common::env("TRAFFICSIM_URL");
        let target = sim.trim_start_matches("http://").trim_end_matches('/');
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global: {{scrape_interval: 5s, evaluation_interval: 5s}}\n\
                 scrape_configs:\n\
                 - job_name: trafficsim\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  \
                 static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )
        .unwrap();
        let mut p = OwnPrometheus { child: None, binary, dir, port: free_port() };
        p.resume().await;
        p
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process (same port, same data) and waits until it is ready.
    async fn resume(&mut self) {
        assert!(self.child.is_none(), "Prometheus is already running");
        let log = std::fs::File::create(self.dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(&self.binary)
            .arg(format!("--config.file={}", self.dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", self.dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        println!("own Prometheus started: pid {}, {}", child.id(), self.url());
        self.child = Some(child);
        let http = veer::http::client_builder().no_proxy().timeout(Duration::from_secs(2)).build().unwrap();
        let ready = format!("{}/-/ready", self.url());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("Prometheus exited ({status}): {}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "Prometheus not ready in 60 s: {}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops the process by pid: SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        for _ in 0..100 {
            if matches!(c.try_wait(), Ok(Some(_))) {
                println!("own Prometheus (pid {}) stopped", c.id());
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for OwnPrometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Prometheus that e2e/build-tools.sh unpacked (`<cache>/prometheus-<key>/root/usr/bin/prometheus`).
fn prometheus_binary() -> PathBuf {
    let cache = std::env::var("VEER_E2E_CACHE").map(PathBuf::from).unwrap_or_else(|_| {
        let base = std::env::var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(common::env("HOME")).join(".cache"));
        base.join("veer-e2e")
    });
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}; run e2e/up.sh first", cache.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("prometheus-"))
        .map(|e| e.path().join("root/usr/bin/prometheus"))
        .filter(|p| p.is_file())
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.pop().unwrap_or_else(|| panic!("no prometheus-*/root/usr/bin/prometheus in {}", cache.display()))
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn prometheus_outage_fails_checks_and_the_canary_promotes_once_it_is_back() {
    let client = common::client().await;
    common::with_namespace(&client, "an-outage", async |ns| {
        let ns = &ns.name;
        sim().put_istio(ns, "podinfo", &istio(20.0, 0.0, 20.0)).await.unwrap();
        let mut prometheus = OwnPrometheus::start().await;
        let url = prometheus.url();
        // A threshold far above the failed checks of the outage; enough steps that the one check
        // that may pass between seeing weight 20 and stopping Prometheus cannot promote.
        let analysis = r#"    interval: 2s
    threshold: 20
    maxWeight: 50
    stepWeight: 10
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}, interval: 30s}
"#;
        let (_controller, t) =
            start_run(&client, ns, &canary("  provider: istio", analysis), &["--metrics-server", &url]).await;
        // Weight 20 needs one passed check (the first step runs no metrics).
        let before = common::wait_for("weight 20", Duration::from_secs(60), || async {
            let s = status(&client, ns, "podinfo").await;
            if s.canary_weight >= 20 { Ok(s) } else { Err(format!("{:?} at {}", s.phase, s.canary_weight)) }
        })
        .await;
        assert_eq!(check(&before, "request-success-rate").result, "Passed");
        prometheus.stop();
        let outage = Instant::now();
        let stopped_at = status(&client, ns, "podinfo").await.canary_weight;

        let during = common::wait_for("3 failed checks", Duration::from_secs(60), || async {
            let s = status(&client, ns, "podinfo").await;
            if s.failed_checks >= 3 { Ok(s) } else { Err(format!("{} failed checks", s.failed_checks)) }
        })
        .await;
        println!("[{ns}] 3 failed checks {:?} after stopping Prometheus", outage.elapsed());
        assert_eq!(during.phase, Phase::Progressing);
        assert_eq!(during.canary_weight, stopped_at, "no step without metrics");
        let rate = check(&during, "request-success-rate");
        assert_eq!(rate.result, "Error");
        let failed = format!("Prometheus query failed: cannot reach Prometheus at {url}: ");
        assert!(rate.message.starts_with(&failed), "{}", rate.message);
        // The server is named once; the request URL with its query is left out.
        assert!(!rate.message.contains("query="), "{}", rate.message);
        assert_eq!(during.decision.clone().unwrap().reason, "MetricError");
        wait_event(&client, ns, "podinfo", None, Message::Is(&rate.message)).await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);

        prometheus.resume().await;
        println!("[{ns}] Prometheus back after an outage of {:?}", outage.elapsed());
        let (s, weights) = watch_until(&client, ns, Phase::Succeeded, Duration::from_secs(120)).await;
        println!(
            "[{ns}] new revision → Succeeded in {:?}; weights after the outage {weights:?}",
            t.elapsed()
        );
        assert_eq!(check(&s, "request-success-rate").result, "Passed");
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        sim().delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}

// ------------------------------------------------------------------------------ the controller's /metrics

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn controller_metrics_follow_the_canary() {
    let client = common::client().await;
    common::with_namespace(&client, "an-metrics", async |ns| {
        let ns = ns.name.as_str();
        sim().put_istio(ns, "podinfo", &istio(20.0, 0.0, 20.0)).await.unwrap();
        let metrics = format!("{SUCCESS_RATE_99}{DURATION_500}");
        let (controller, _) = start_run(&client, ns, &istio_canary("3s", 2, &metrics), &[]).await;
        let canary = [("name", "podinfo"), ("namespace", ns)];
        let weight =
            |m: &[Sample], w: &str| sample(m, "flagger_canary_weight", &[("workload", w), ("namespace", ns)]);

        // During the analysis: status 0 and the weights of the status, once both metrics ran.
        let (s, m) =
            common::wait_for("a step with both metrics checked", Duration::from_secs(60), || async {
                let before = status(&client, ns, "podinfo").await;
                let m = scrape(controller.port).await;
                let after = status(&client, ns, "podinfo").await;
                if before != after || after.phase != Phase::Progressing || after.checks.len() < 2 {
                    return Err(format!(
                        "{:?} at {}, {} checks",
                        after.phase,
                        after.canary_weight,
                        after.checks.len()
                    ));
                }
                Ok((after, m))
            })
            .await;
        assert_eq!(sample(&m, "flagger_canary_status", &canary), Some(0.0));
        assert_eq!(weight(&m, "podinfo"), Some(s.canary_weight as f64));
        assert_eq!(weight(&m, "podinfo-primary"), Some(100.0 - s.canary_weight as f64));
        let analysis = |m: &[Sample], metric: &str| {
            sample(m, "flagger_canary_metric_analysis", &[("metric", metric), ("namespace", ns)])
        };
        assert_close(analysis(&m, "request-success-rate"), 100.0, "success rate gauge");
        // Flagger records durations in seconds (20 ms → 0.02).
        assert_close(analysis(&m, "request-duration"), 0.02, "duration gauge");
        assert_eq!(sample(&m, "flagger_canary_total", &[("namespace", ns)]), Some(1.0));
        let info: Vec<&Sample> = m.iter().filter(|s| s.name == "flagger_info").collect();
        assert_eq!(info.len(), 1, "{info:?}");
        assert_eq!((info[0].label("mesh_provider"), info[0].value), (Some("istio"), 1.0));
        assert_eq!(info[0].label("version"), Some(env!("CARGO_PKG_VERSION")));

        wait_phase(&client, ns, "podinfo", Phase::Succeeded, Duration::from_secs(90)).await;
        // The run is counted after the Succeeded status is written.
        let run = [canary[0], canary[1], ("deployment_strategy", "canary"), ("analysis_status", "completed")];
        let m = scrape_until(controller.port, "the promotion counted", |m| {
            sample(m, "flagger_canary_successes_total", &run) == Some(1.0)
        })
        .await;
        assert_eq!(sample(&m, "flagger_canary_status", &canary), Some(1.0));
        assert_eq!((weight(&m, "podinfo"), weight(&m, "podinfo-primary")), (Some(0.0), Some(100.0)));
        assert_eq!(sample(&m, "flagger_canary_successes_total", &run), Some(1.0));
        assert_eq!(sample(&m, "flagger_canary_failures_total", &run).unwrap_or(0.0), 0.0);
        // One observation per tick that queried metrics: at weights 10, 20 and 30.
        assert_eq!(sample(&m, "flagger_canary_duration_seconds_count", &canary), Some(3.0));
        sim().delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}
