//! Taking over Canaries that Flagger was managing: a status with Flagger's (unreproducible) hashes
//! and a primary that already runs the target's template is adopted without a new analysis; one
//! whose target changed while nobody watched starts a run.

mod common;

use std::time::{Duration, Instant};

use common::harness::*;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;
use veer::api::{Canary, Phase};

/// The Canary of both scenarios: Blue/Green with the kubernetes provider.
fn canary() -> String {
    canary_yaml(
        "  provider: kubernetes\n  service: {port: 9898}",
        "    interval: 2s\n    threshold: 1\n    iterations: 2",
    )
}

/// Rewrites the status as Flagger leaves it after a promotion: its own hash format, no Veer fields.
async fn flagger_status(client: &kube::Client, ns: &str) {
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    let status = status(client, ns, "podinfo").await;
    let patch = json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "status": {
            "phase": "Succeeded",
            "failedChecks": 0,
            "canaryWeight": 0,
            "iterations": 0,
            "lastAppliedSpec": "5f7d8c4b9f",
            "lastPromotedSpec": "5f7d8c4b9f",
            "trackedConfigs": status.tracked_configs,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "conditions": [{
                "type": "Promoted", "status": "True", "reason": "Succeeded",
                "message": "Canary analysis completed successfully, promotion finished.",
                "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]
        }
    });
    // Flagger's own field manager: Veer's later apply takes the fields over.
    api.patch_status("podinfo", &PatchParams::apply("flagger").force(), &Patch::Apply(&patch))
        .await
        .expect("status rewritten");
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn a_canary_promoted_by_flagger_is_adopted_without_a_run() {
    let client = common::client().await;
    common::with_namespace(&client, "adopt", async |ns| {
        let ns = &ns.name;
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", "ghcr.io/stefanprodan/podinfo:6.0.0")).await;
        apply_yaml(&client, ns, &canary()).await;
        // Bootstrap with Veer (the objects are the ones Flagger generates), then stop it and leave
        // the status as Flagger would have.
        let mut controller = Process::controller(ns, &[]);
        wait_phase(&client, ns, "podinfo", Phase::Initialized, Duration::from_secs(60)).await;
        controller.kill();
        flagger_status(&client, ns).await;

        let controller = Process::controller(ns, &[]);
        let adopted = wait_adopted(&client, ns, "podinfo", Duration::from_secs(30)).await;
        assert_eq!(adopted.phase, Phase::Succeeded);
        assert!(adopted.last_applied_spec.starts_with("v1-"), "{}", adopted.last_applied_spec);
        assert_eq!(adopted.last_applied_spec, adopted.last_promoted_spec);
        // No run starts afterwards.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(6) {
            let s = status(&client, ns, "podinfo").await;
            assert_eq!(s.phase, Phase::Succeeded, "an adopted Canary must not be re-analysed");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(!controller.logged("New revision detected"));
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn a_target_changed_while_nobody_watched_is_analysed() {
    let client = common::client().await;
    common::with_namespace(&client, "adopt-changed", async |ns| {
        let ns = &ns.name;
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", "ghcr.io/stefanprodan/podinfo:6.0.0")).await;
        apply_yaml(&client, ns, &canary()).await;
        let mut controller = Process::controller(ns, &[]);
        wait_phase(&client, ns, "podinfo", Phase::Initialized, Duration::from_secs(60)).await;
        controller.kill();
        flagger_status(&client, ns).await;
        set_image(&client, ns, "podinfo", "ghcr.io/stefanprodan/podinfo:6.0.1").await;

        let _controller = Process::controller(ns, &[]);
        common::wait_for("a run of the new revision", Duration::from_secs(60), || async {
            let s = status(&client, ns, "podinfo").await;
            if s.phase == Phase::Succeeded && s.last_promoted_spec.starts_with("v1-") {
                Ok(())
            } else {
                Err(format!("{:?}, promoted {}", s.phase, s.last_promoted_spec))
            }
        })
        .await;
        wait_event(
            &client,
            ns,
            "podinfo",
            None,
            Message::StartsWith("New revision detected! Scaling up podinfo."),
        )
        .await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, "ghcr.io/stefanprodan/podinfo:6.0.1");
    })
    .await;
}
