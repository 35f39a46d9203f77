//! The local control plane does what the other end-to-end tests rely on: a Deployment gets scheduled
//! onto the fake node, its pods become Ready (kwok), the Deployment becomes Available (controller
//! manager), and deleting it and its namespace completes (garbage collector, namespace controller,
//! kwok's pod-delete stage). Timings are printed, not asserted.

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                // Never pulled: kwok only pretends to run containers.
                "spec": { "containers": [{ "name": "app", "image": "example.invalid/veer/smoke:1" }] }
            }
        }
    }))
    .expect("a valid Deployment")
}

fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn deployment_becomes_available_and_deletes_with_its_namespace() {
    let client = common::client().await;
    common::with_namespace(&client, "smoke", async |ns| {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        let start = Instant::now();
        deployments.create(&PostParams::default(), &deployment("web", 2)).await.expect("create Deployment");

        common::wait_for(
            "Deployment web Available with 2 ready replicas",
            Duration::from_secs(90),
            || async {
                let d = deployments.get("web").await.map_err(|e| e.to_string())?;
                let status = d.status.unwrap_or_default();
                let available = status
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Available" && c.status == "True");
                let ready = status.ready_replicas.unwrap_or(0);
                if available && ready == 2 {
                    Ok(())
                } else {
                    Err(format!("available={available} ready={ready}"))
                }
            },
        )
        .await;
        let available_after = start.elapsed();

        let listed = pods.list(&ListParams::default().labels("app=web")).await.expect("list pods");
        let node = common::node_name();
        assert_eq!(listed.items.len(), 2, "pods: {:?}", listed.items);
        for pod in &listed.items {
            assert!(is_ready(pod), "pod not Running and Ready: {:?}", pod.status);
            let on = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            assert_eq!(on, Some(node.as_str()), "pod scheduled onto {on:?}, not the kwok node");
        }

        // Foreground deletion: the Deployment disappears only after the garbage collector deleted its
        // ReplicaSet and pods, and a pod only disappears once kwok confirmed it (pod-delete stage).
        let start = Instant::now();
        deployments.delete("web", &DeleteParams::foreground()).await.expect("delete Deployment");
        common::wait_for("Deployment web and its pods to be gone", Duration::from_secs(60), || async {
            let left = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
            let deployment = deployments.get_opt("web").await.map_err(|e| e.to_string())?;
            if left == 0 && deployment.is_none() {
                Ok(())
            } else {
                Err(format!("{left} pods left, deployment present: {}", deployment.is_some()))
            }
        })
        .await;
        let deleted_after = start.elapsed();

        let ns_deleted_after = ns.delete_and_wait(Duration::from_secs(120)).await;
        eprintln!(
            "timings: Available with 2/2 Ready after {available_after:?}; Deployment and pods deleted after \
             {deleted_after:?}; namespace deleted after {ns_deleted_after:?}"
        );
    })
    .await;
}
