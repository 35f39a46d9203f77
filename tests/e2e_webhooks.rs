//! The controller with the real veer-loadtester: a confirm-promotion gate opened by hand, and a
//! rollout webhook whose `hey` run is the only traffic the simulator sees, so the metrics that
//! decide the canary come from real requests. Timings are printed, never asserted.

mod common;

use std::time::{Duration, Instant};

use common::harness::*;
use kube::Client;
use veer::{
    api::{CanaryStatus, CheckRecord, Phase},
    trafficsim::{Client as Sim, IstioSpec, exposition},
};

const OLD: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const NEW: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";

fn http() -> reqwest::Client {
    veer::http::client_builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap()
}

/// Starts a controller, creates podinfo and the Canary (`analysis` indented by four spaces),
/// waits for `Initialized` and starts a new revision.
async fn start_run(client: &Client, ns: &str, analysis: &str) -> (Process, Instant) {
    let controller = Process::controller(ns, &[]);
    apply_yaml(client, ns, &podinfo_yaml("podinfo", OLD)).await;
    apply_yaml(
        client,
        ns,
        &format!(
            r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo}}
spec:
  provider: istio
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  service: {{port: 9898}}
  analysis:
{analysis}"#
        ),
    )
    .await;
    wait_phase(client, ns, "podinfo", Phase::Initialized, Duration::from_secs(60)).await;
    set_image(client, ns, "podinfo", NEW).await;
    (controller, Instant::now())
}

fn record<'a>(s: &'a CanaryStatus, kind: &str, name: &str) -> &'a CheckRecord {
    s.checks
        .iter()
        .find(|c| c.kind == kind && c.name == name)
        .unwrap_or_else(|| panic!("no {kind} check {name}: {:#?}", s.checks))
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn confirm_promotion_gate_holds_the_promotion_until_opened() {
    let client = common::client().await;
    common::with_namespace(&client, "wh-gate", async |ns| {
        let ns = &ns.name;
        let loadtester = Process::loadtester(&format!("veer-loadtester-{ns}"), &[]);
        let lt = loadtester.url();
        let analysis = format!(
            r#"    interval: 2s
    threshold: 2
    maxWeight: 20
    stepWeight: 10
    webhooks:
    - {{name: approval, type: confirm-promotion, url: "{lt}/gate/check"}}
"#
        );
        let (_controller, t) = start_run(&client, ns, &analysis).await;
        let s = wait_phase(&client, ns, "podinfo", Phase::WaitingPromotion, Duration::from_secs(60)).await;
        println!("[{ns}] new revision → WaitingPromotion in {:?}", t.elapsed());
        assert_eq!(s.canary_weight, 20);
        let gate = record(&s, "webhook", "approval");
        assert_eq!(gate.result, "Failed");
        assert!(gate.message.contains("Forbidden"), "{gate:?}");

        // Closed gate: still waiting after several more intervals, nothing promoted.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let s = status(&client, ns, "podinfo").await;
        assert_eq!((s.phase, s.canary_weight), (Phase::WaitingPromotion, 20));
        assert_eq!(s.decision.clone().unwrap().reason, "WaitConfirmPromotion");
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);
        let halt = format!("Halt podinfo.{ns} advancement waiting for promotion approval approval");
        let seen = wait_event(&client, ns, "podinfo", None, Message::Is(&halt)).await;
        assert_eq!(seen.iter().filter(|e| e.message == halt).count(), 1, "{seen:#?}");

        let body = serde_json::json!({"name": "podinfo", "namespace": ns});
        let opened = Instant::now();
        let resp = http().post(format!("{lt}/gate/open")).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let s = wait_phase(&client, ns, "podinfo", Phase::Succeeded, Duration::from_secs(60)).await;
        println!("[{ns}] gate opened → Succeeded in {:?}", opened.elapsed());
        assert_eq!(record(&s, "webhook", "approval").result, "Passed");
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        for e in [
            "Confirm-promotion check approval passed".to_string(),
            format!("Promotion completed! Scaling down podinfo.{ns}"),
        ] {
            wait_event(&client, ns, "podinfo", None, Message::Is(&e)).await;
        }
    })
    .await;
}

/// `veer_loadtester_load_requests_total` of one Canary and outcome.
async fn load_requests(lt: &str, ns: &str, outcome: &str) -> f64 {
    let body = http().get(format!("{lt}/metrics")).send().await.unwrap().text().await.unwrap();
    exposition::parse(&body)
        .unwrap_or_else(|e| panic!("loadtester /metrics: {e}"))
        .iter()
        .filter(|s| {
            s.name == "veer_loadtester_load_requests_total"
                && s.label("namespace") == Some(ns)
                && s.label("name") == Some("podinfo")
                && s.label("outcome") == Some(outcome)
        })
        .map(|s| s.value)
        .sum()
}

fn load_test_analysis(lt: &str, ns: &str, threshold: u32) -> String {
    let target = format!("{}/traffic/{ns}/podinfo", common::env("TRAFFICSIM_URL").trim_end_matches('/'));
    format!(
        r#"    interval: 3s
    threshold: {threshold}
    maxWeight: 40
    stepWeight: 20
    metrics:
    - {{name: request-success-rate, thresholdRange: {{min: 99}}, interval: 15s}}
    webhooks:
    - name: load-test
      type: rollout
      url: "{lt}/"
      timeout: 5s
      metadata: {{type: cmd, cmd: "hey -z 20s -q 10 -c 2 {target}"}}
"#
    )
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn load_test_webhook_traffic_promotes_the_canary() {
    let client = common::client().await;
    common::with_namespace(&client, "wh-load", async |ns| {
        let ns = &ns.name;
        let sim = Sim::new(&common::env("TRAFFICSIM_URL")).unwrap();
        // No synthetic traffic: only real requests count.
        sim.put_istio(ns, "podinfo", &IstioSpec { rps: 0.0, error_rate: 0.0, latency_ms: 10.0 })
            .await
            .unwrap();
        let loadtester = Process::loadtester(&format!("veer-loadtester-{ns}"), &[]);
        let lt = loadtester.url();
        let (_controller, t) = start_run(&client, ns, &load_test_analysis(&lt, ns, 5)).await;
        let s = wait_phase(&client, ns, "podinfo", Phase::Succeeded, Duration::from_secs(90)).await;
        println!("[{ns}] new revision → Succeeded in {:?}", t.elapsed());

        let rate = record(&s, "metric", "request-success-rate");
        assert_eq!((rate.result.as_str(), rate.value), ("Passed", Some(100.0)));
        assert_eq!(record(&s, "webhook", "load-test").result, "Passed");
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        let view = sim.get_istio(ns, "podinfo").await.unwrap().expect("the simulator workload");
        println!("[{ns}] simulator: {} real requests, {} errors", view.real_requests, view.errors_total);
        assert!(view.real_requests > 0);
        assert_eq!(view.requests_total, view.real_requests as f64, "only real requests");
        assert_eq!(view.errors_total, 0.0);
        let sent = load_requests(&lt, ns, "success").await;
        println!("[{ns}] loadtester: {sent} successful requests so far");
        assert!(sent > 0.0);
        let events = events(&client, ns, "podinfo").await;
        let no_data = events.iter().filter(|e| e.starts_with("Halt advancement no values found")).count();
        println!("[{ns}] no-data Events before the load arrived: {no_data}");
        sim.delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn load_test_webhook_traffic_with_errors_rolls_the_canary_back() {
    let client = common::client().await;
    common::with_namespace(&client, "wh-load-bad", async |ns| {
        let ns = &ns.name;
        let sim = Sim::new(&common::env("TRAFFICSIM_URL")).unwrap();
        // Half of the real requests are answered 500.
        sim.put_istio(ns, "podinfo", &IstioSpec { rps: 0.0, error_rate: 0.5, latency_ms: 10.0 })
            .await
            .unwrap();
        let loadtester = Process::loadtester(&format!("veer-loadtester-{ns}"), &[]);
        let lt = loadtester.url();
        let (_controller, t) = start_run(&client, ns, &load_test_analysis(&lt, ns, 3)).await;
        let s = wait_phase(&client, ns, "podinfo", Phase::Failed, Duration::from_secs(90)).await;
        println!("[{ns}] new revision → Failed in {:?}", t.elapsed());

        let rate = record(&s, "metric", "request-success-rate");
        assert_eq!(rate.result, "Failed");
        let v = rate.value.expect("a measured value");
        assert!((40.0..=60.0).contains(&v), "success rate of the real requests: {v}");
        assert_eq!(image(&client, ns, "podinfo-primary").await, OLD);
        let view = sim.get_istio(ns, "podinfo").await.unwrap().expect("the simulator workload");
        assert!(view.errors_total > 0.0 && view.real_requests > 0);
        assert!(load_requests(&lt, ns, "http_error").await > 0.0);
        let halt = format!("Halt podinfo.{ns} advancement success rate ");
        wait_event(&client, ns, "podinfo", None, Message::StartsWith(&halt)).await;
        let rollback = format!("Rolling back podinfo.{ns} failed checks threshold reached 3");
        wait_event(&client, ns, "podinfo", None, Message::Is(&rollback)).await;
        sim.delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}
