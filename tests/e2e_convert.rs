//! `veer convert`'s output on the real local control plane: the API server accepts every object
//! converted from Argo Rollouts' examples (server-side dry run, strict field validation), and Veer
//! runs converted Canaries: a Blue/Green Rollout with manual promotion initializes, holds its
//! promotion at the load tester gate its `autoPromotionEnabled: false` became, promotes once the
//! gate is opened and closes the gate again; an Istio canary initializes with the hosts and
//! gateways of the Argo VirtualService.

mod common;

use std::{path::Path, time::Duration};

use common::harness::*;
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams, ValidationDirective},
    discovery::pinned_kind,
};
use serde_json::{Value, json};
use veer::{
    api::{Canary, Phase},
    convert::{Options, convert_with},
};

const BOOT: Duration = Duration::from_secs(120);
const RUN: Duration = Duration::from_secs(180);

fn fixture(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/convert/argo").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Server-side applies `doc` in `ns` (the namespace of the output is replaced by the test's), with
/// strict field validation; `dry_run` leaves nothing behind.
async fn apply(client: &Client, ns: &str, mut doc: Value, dry_run: bool) -> Result<(), String> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let (ar, caps) = pinned_kind(client, &GroupVersionKind::gvk(group, version, &kind))
        .await
        .map_err(|e| format!("unknown kind {kind}: {e}"))?;
    let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        doc["metadata"]["namespace"] = json!(ns);
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    let mut params = PatchParams::apply("veer-e2e").force();
    params.dry_run = dry_run;
    params.field_validation = Some(ValidationDirective::Strict);
    api.patch(&name, &params, &Patch::Apply(&doc))
        .await
        .map(|_| ())
        .map_err(|e| format!("{kind} {name}: {e}"))
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn the_api_server_accepts_every_converted_example() {
    let client = common::client().await;
    common::with_namespace(&client, "convert-dry-run", async |ns| {
        let mut kinds: Vec<String> = Vec::new();
        let mut failures = Vec::new();
        for name in [
            "rollout-canary.yaml",
            "rollout-bluegreen.yaml",
            "bluegreen-active-preview.yaml",
            "rollout-analysis-step.yaml",
            "rollout-background-analysis.yaml",
            "rollout-experiment-step.yaml",
            "rollout-bg-analysis-with-args.yaml",
            "docs-background-analysis.yaml",
            "docs-prometheus.yaml",
            "workload-ref.yaml",
            "istio-subset-split.yaml",
            "istio-host-split.yaml",
            "istio-mirror.yaml",
            "nginx.yaml",
            "rollout-smi-experiment.yaml",
        ] {
            let c = convert_with(fixture(name), &Options::default());
            for o in &c.objects {
                let v = o.to_value();
                kinds.push(v["kind"].as_str().unwrap_or_default().to_string());
                if let Err(e) = apply(&client, &ns.name, v, true).await {
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
        assert!(failures.is_empty(), "the API server refused:\n{}", failures.join("\n"));
        kinds.sort();
        kinds.dedup();
        println!("accepted kinds: {kinds:?}");
        for kind in ["Canary", "MetricTemplate", "Deployment"] {
            assert!(kinds.iter().any(|k| k == kind), "no {kind} was tried");
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn a_converted_blue_green_rollout_waits_at_the_gate_and_promotes() {
    let client = common::client().await;
    common::with_namespace(&client, "convert-bluegreen", async |ns| {
        let ns = &ns.name;
        let loadtester = Process::loadtester(&format!("loadtester-{ns}"), &[]);
        let options = Options { loadtester_url: Some(loadtester.url()), namespace: Some(ns.clone()) };
        let c = convert_with(fixture("rollout-bluegreen.yaml"), &options);
        assert!(c.complete(), "{:?}", c.report);
        let _controller = Process::controller(ns, &[]);
        for o in &c.objects {
            let mut v = o.to_value();
            if v["kind"] == "Canary" {
                // Argo's manual promotion has no interval; Flagger's default (1m) is shortened
                // so that the test does not wait minutes for an iteration.
                v["spec"]["analysis"]["interval"] = json!("2s");
            }
            apply(&client, ns, v, false).await.unwrap();
        }
        let name = "rollout-bluegreen";
        wait_phase(&client, ns, name, Phase::Initialized, BOOT).await;
        let canary: Canary = Api::namespaced(client.clone(), ns).get(name).await.unwrap();
        assert_eq!(canary.spec.provider.as_deref(), Some("kubernetes"));
        // The Argo activeService is the apex; Veer generated it and its two siblings.
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        for svc in [
            "rollout-bluegreen-active",
            "rollout-bluegreen-active-primary",
            "rollout-bluegreen-active-canary",
        ] {
            let s = services.get(svc).await.unwrap_or_else(|e| panic!("Service {svc}: {e}"));
            let port = &s.spec.unwrap().ports.unwrap()[0];
            assert_eq!(port.port, 80, "{svc}");
        }
        assert_eq!(image(&client, ns, "rollout-bluegreen-primary").await, "argoproj/rollouts-demo:blue");

        // A new revision is analysed, then waits at the gate, as Argo waited for `promote`.
        set_image(&client, ns, name, "argoproj/rollouts-demo:green").await;
        wait_phase(&client, ns, name, Phase::WaitingPromotion, RUN).await;
        wait_event(
            &client,
            ns,
            name,
            Some("Warning"),
            Message::StartsWith(&format!(
                "Halt {name}.{ns} advancement waiting for promotion approval approve-promotion"
            )),
        )
        .await;
        assert_eq!(image(&client, ns, "rollout-bluegreen-primary").await, "argoproj/rollouts-demo:blue");
        assert_eq!(loadtester_post(&loadtester, "/gate/open", name, ns).await, 202);
        wait_phase(&client, ns, name, Phase::Succeeded, RUN).await;
        assert_eq!(image(&client, ns, "rollout-bluegreen-primary").await, "argoproj/rollouts-demo:green");
        // The post-rollout webhook closed the gate: the next release waits again.
        common::wait_for("the gate closed by the post-rollout webhook", Duration::from_secs(30), || async {
            match loadtester_post(&loadtester, "/gate/check", name, ns).await {
                403 => Ok(()),
                other => Err(format!("/gate/check answers {other}")),
            }
        })
        .await;
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn a_converted_istio_canary_initializes_with_the_argo_hosts() {
    let client = common::client().await;
    common::with_namespace(&client, "convert-istio", async |ns| {
        let ns = &ns.name;
        let c = convert_with(fixture("docs-background-analysis.yaml"), &Options::default());
        // The stable Service as Argo Rollouts left it: its selector has the stable ReplicaSet's
        // hash, written by another field manager than Veer's.
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        let argo_service: Service = serde_json::from_value(json!({
            "metadata": {"name": "guestbook-svc"},
            "spec": {
                "selector": {"app": "guestbook", "rollouts-pod-template-hash": "5b6f5f8c7d"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}]
            }
        }))
        .unwrap();
        services.create(&Default::default(), &argo_service).await.unwrap();
        let _controller = Process::controller(ns, &[]);
        for o in &c.objects {
            apply(&client, ns, o.to_value(), false).await.unwrap();
        }
        wait_phase(&client, ns, "guestbook", Phase::Initialized, BOOT).await;
        // Veer took the Service over: the selector (an atomic map) is Veer's alone, Argo's hash is
        // gone, and clients of guestbook-svc reach the primary.
        let selector =
            services.get("guestbook-svc").await.unwrap().spec.and_then(|s| s.selector).unwrap_or_default();
        assert_eq!(
            selector.into_iter().collect::<Vec<_>>(),
            [("app".to_string(), "guestbook-primary".to_string())]
        );
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &veer::router::istio::resource(veer::router::istio::VIRTUAL_SERVICE),
        );
        let vs = api.get("guestbook-svc").await.expect("Veer's VirtualService guestbook-svc");
        assert_eq!(vs.data["spec"]["hosts"], json!(["istio-rollout.dev.argoproj.io", "guestbook-svc"]));
        assert_eq!(vs.data["spec"]["gateways"], json!(["istio-rollout-gateway"]));
        let hosts: Vec<&str> = vs.data["spec"]["http"][0]["route"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["destination"]["host"].as_str().unwrap())
            .collect();
        assert_eq!(hosts, ["guestbook-svc-primary", "guestbook-svc-canary"]);
        // The MetricTemplate is where the Canary looks for it.
        let mt: Api<veer::api::MetricTemplate> = Api::namespaced(client.clone(), ns);
        assert!(mt.get("success-rate").await.is_ok());
    })
    .await;
}

/// The switch-over of `docs/migrate-from-argo-rollouts.md` on a namespace as Argo Rollouts leaves
/// it after `kubectl delete rollout --cascade=orphan`: the stable ReplicaSet (orphaned) still runs
/// the pods, the Services select them by Argo's hash. With the ReplicaSet's selector label removed
/// (the guide's step), the converted Deployment does not adopt (and scale down) those pods, and the
/// Service Veer takes over sends traffic to the primary only once the primary has ready pods.
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn the_switch_over_keeps_the_argo_pods_until_the_primary_serves() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    let client = common::client().await;
    common::with_namespace(&client, "convert-switch", async |ns| {
        let ns = &ns.name;
        let hash = "5b6f5f8c7d";
        let argo = format!(
            r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: guestbook-{hash}
  labels: {{app: guestbook, rollouts-pod-template-hash: "{hash}"}}
spec:
  replicas: 4
  selector: {{matchLabels: {{app: guestbook, rollouts-pod-template-hash: "{hash}"}}}}
  template:
    metadata: {{labels: {{app: guestbook, rollouts-pod-template-hash: "{hash}"}}}}
    spec: {{containers: [{{name: guestbook, image: "argoproj/rollouts-demo:blue"}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: guestbook-svc}}
spec:
  selector: {{app: guestbook, rollouts-pod-template-hash: "{hash}"}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
        );
        for doc in serde_saphyr::from_multiple::<Value>(&argo).unwrap() {
            apply(&client, ns, doc, false).await.unwrap();
        }
        let kubectl = |args: &[&str]| {
            let out = std::process::Command::new(common::env("VEER_E2E_KUBECTL"))
                .args(["-n", ns])
                .args(args)
                .output()
                .expect("kubectl runs");
            assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        // The guide's step: the ReplicaSet loses its selector label.
        kubectl(&["label", "replicaset", "-l", "rollouts-pod-template-hash", "app-"]);

        let _controller = Process::controller(ns, &[]);
        let c = convert_with(fixture("docs-background-analysis.yaml"), &Options::default());
        for o in &c.objects {
            apply(&client, ns, o.to_value(), false).await.unwrap();
        }
        // Follow the Service's selector and the primary's readiness until the Canary is ready.
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let canaries: Api<Canary> = Api::namespaced(client.clone(), ns);
        let mut samples = Vec::new();
        let deadline = std::time::Instant::now() + BOOT;
        loop {
            let selector = services.get("guestbook-svc").await.unwrap().spec.and_then(|s| s.selector);
            let app = selector.and_then(|s| s.get("app").cloned()).unwrap_or_default();
            let ready = deployments
                .get_opt("guestbook-primary")
                .await
                .unwrap()
                .and_then(|d| d.status)
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            samples.push((app.clone(), ready));
            let phase = canaries.get("guestbook").await.unwrap().status.map(|s| s.phase);
            if phase == Some(Phase::Initialized) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not Initialized: {samples:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        samples.dedup();
        println!("(Service app selector, ready primary pods): {samples:?}");
        assert!(
            samples.iter().all(|(app, ready)| app != "guestbook-primary" || *ready > 0),
            "the Service pointed at the primary before it had a ready pod: {samples:?}"
        );
        let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
        let old = rs.get(&format!("guestbook-{hash}")).await.unwrap();
        assert_eq!(old.metadata.owner_references, None, "not adopted by the Deployment");
        assert_eq!(old.spec.unwrap().replicas, Some(4), "the Argo pods kept running");
        // The guide's last step.
        kubectl(&["delete", "replicaset", "-l", "rollouts-pod-template-hash"]);
    })
    .await;
}
