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
        let _controller = Process::controller(ns, &[]);
        for o in &c.objects {
            apply(&client, ns, o.to_value(), false).await.unwrap();
        }
        wait_phase(&client, ns, "guestbook", Phase::Initialized, BOOT).await;
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
