//! The controller on the real local control plane: bootstrap objects, an Istio canary promotion
//! driven by metrics from the traffic simulator through Prometheus, and how fast a new revision is
//! noticed. Each test runs its own controller process restricted to its own namespace.

mod common;

use std::time::{Duration, Instant};

use common::harness::*;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kube::{Api, ResourceExt, api::DynamicObject};
use veer::{
    api::Phase,
    trafficsim::{Client as Sim, IstioSpec},
};

fn istio_canary(interval: &str) -> String {
    canary_yaml(
        r#"  provider: istio
  service:
    port: 9898
    targetPort: http
    apex: {labels: {team: web}, annotations: {owner: web-team}}"#,
        &format!(
            r#"    interval: {interval}
    threshold: 2
    maxWeight: 30
    stepWeight: 10
    metrics:
    - name: request-success-rate
      thresholdRange: {{min: 99}}
      interval: 30s"#
        ),
    )
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn istio_canary_bootstraps_and_promotes_on_healthy_metrics() {
    let client = common::client().await;
    common::with_namespace(&client, "istio-promote", async |ns| {
        let ns = &ns.name;
        let sim = Sim::new(&common::env("TRAFFICSIM_URL")).unwrap();
        sim.put_istio(ns, "podinfo", &IstioSpec { rps: 20.0, error_rate: 0.0, latency_ms: 20.0 })
            .await
            .unwrap();
        let _controller = Process::controller(ns, &[]);
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", "ghcr.io/stefanprodan/podinfo:6.0.0")).await;
        apply_yaml(&client, ns, &istio_canary("2s")).await;
        wait_phase(&client, ns, "podinfo", Phase::Initialized, Duration::from_secs(60)).await;

        // Bootstrap: primary, Services, routing, target scaled to zero.
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let primary = deployments.get("podinfo-primary").await.expect("the primary");
        let owner = &primary.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("Canary", "podinfo", Some(true))
        );
        let spec = primary.spec.clone().unwrap();
        assert_eq!(spec.selector.match_labels.unwrap()["app"], "podinfo-primary");
        let pod_spec = spec.template.spec.unwrap();
        assert_eq!(
            pod_spec.containers[0].env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap().name,
            "podinfo-secret-primary"
        );
        assert_eq!(pod_spec.volumes.unwrap()[0].config_map.as_ref().unwrap().name, "podinfo-config-primary");
        assert!(spec.template.metadata.unwrap().annotations.unwrap().contains_key("flagger-id"));
        wait_replicas(&client, ns, "podinfo", 0, "the canary is scaled down").await;
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        for (name, selector) in [
            ("podinfo", "podinfo-primary"),
            ("podinfo-primary", "podinfo-primary"),
            ("podinfo-canary", "podinfo"),
        ] {
            let svc = services.get(name).await.unwrap_or_else(|e| panic!("Service {name}: {e}"));
            assert_eq!(svc.spec.clone().unwrap().selector.unwrap()["app"], selector, "selector of {name}");
            assert_eq!(svc.annotations()["kustomize.toolkit.fluxcd.io/reconcile"], "disabled");
        }
        let apex = services.get("podinfo").await.unwrap();
        assert_eq!(apex.labels()["team"], "web");
        assert_eq!(apex.annotations()["owner"], "web-team");
        let vs_api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &veer::router::istio::resource(veer::router::istio::VIRTUAL_SERVICE),
        );
        let vs = vs_api.get("podinfo").await.expect("the VirtualService");
        assert_eq!(vs.data["spec"]["http"][0]["route"][0]["weight"], 100);

        // A new revision is promoted step by step: 10, 20, 30, then the primary runs it.
        set_image(&client, ns, "podinfo", "ghcr.io/stefanprodan/podinfo:6.0.1").await;
        let mut weights = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = status(&client, ns, "podinfo").await;
            if weights.last() != Some(&s.canary_weight) && s.phase == Phase::Progressing {
                weights.push(s.canary_weight);
            }
            if s.phase == Phase::Succeeded {
                break;
            }
            assert!(Instant::now() < deadline, "no promotion in 120s: {:?} at {}", s.phase, s.canary_weight);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(image(&client, ns, "podinfo-primary").await, "ghcr.io/stefanprodan/podinfo:6.0.1");
        assert!(weights.windows(2).all(|w| w[1] > w[0]), "weights only grow: {weights:?}");
        assert!(weights.iter().all(|w| *w <= 30), "never above maxWeight: {weights:?}");
        // The Succeeded tick's Event and scaling follow its status.
        for expected in [
            "New revision detected! Scaling up podinfo.",
            "Advance podinfo.",
            "Copying podinfo.",
            "Promotion completed! Scaling down podinfo.",
        ] {
            wait_event(&client, ns, "podinfo", None, Message::StartsWith(expected)).await;
        }
        let s = status(&client, ns, "podinfo").await;
        let check = s.checks.iter().find(|c| c.name == "request-success-rate").expect("a check record");
        assert_eq!((check.result.as_str(), check.value), ("Passed", Some(100.0)));
        wait_replicas(&client, ns, "podinfo", 0, "the canary is scaled down").await;
        sim.delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn a_new_revision_is_noticed_long_before_one_interval() {
    let client = common::client().await;
    common::with_namespace(&client, "detect", async |ns| {
        let ns = &ns.name;
        let _controller = Process::controller(ns, &[]);
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", "ghcr.io/stefanprodan/podinfo:6.0.0")).await;
        apply_yaml(
            &client,
            ns,
            &canary_yaml(
                "  provider: kubernetes\n  service: {port: 9898}",
                "    interval: 1m\n    threshold: 1\n    iterations: 2",
            ),
        )
        .await;
        wait_phase(&client, ns, "podinfo", Phase::Initialized, Duration::from_secs(60)).await;
        let start = Instant::now();
        set_image(&client, ns, "podinfo", "ghcr.io/stefanprodan/podinfo:6.0.1").await;
        wait_phase(&client, ns, "podinfo", Phase::Progressing, Duration::from_secs(10)).await;
        let took = start.elapsed();
        println!("new revision → Progressing in {took:?} (interval 1m)");
        assert!(took < Duration::from_secs(10));
    })
    .await;
}
