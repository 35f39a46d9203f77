//! The controller authenticating to veer-loadtester with its own ServiceAccount token, on the
//! local control plane: real tokens minted by the API server (`kubectl create token`), verified by
//! the load tester with real TokenReviews, which it sends as its chart's ServiceAccount with exactly
//! the chart's RBAC (impersonated, as the controller runs as the veer chart's). Timings are
//! printed, never asserted.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::harness::*;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use veer::api::Phase;

const OLD: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const NEW: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const AUDIENCE: &str = "veer-loadtester";

/// A token of ServiceAccount `account` in `ns` from the API server, for `audience` (`None`: the
/// API server's own audience, like the token mounted in every pod).
fn create_token(ns: &str, account: &str, audience: Option<&str>) -> String {
    let mut kubectl = Command::new(common::env("VEER_E2E_KUBECTL"));
    kubectl.args(["create", "token", account, "-n", ns, "--duration", "10m"]);
    if let Some(audience) = audience {
        kubectl.args(["--audience", audience]);
    }
    let out = kubectl.output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl create token: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("a token is ASCII").trim().to_owned()
}

/// POSTs a payload for Canary podinfo to the load tester; returns (status, body).
async fn post(url: &str, ns: &str, token: Option<&str>) -> (u16, String) {
    let http = veer::http::client_builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let mut request = http.post(url).json(&json!({"name": "podinfo", "namespace": ns}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn the_controller_passes_a_gate_with_its_service_account_token() {
    let client = common::client().await;
    common::with_namespace(&client, "lt-auth", async |ns| {
        let ns = &ns.name;
        // The controller's ServiceAccount (veer-<ns>, from the veer chart) and the load tester's
        // (flagger-loadtester, from its chart, allowed to create TokenReviews).
        chart_identity(ns);
        let controller = format!("system:serviceaccount:{ns}:veer-{ns}");
        let (lt_kubeconfig, lt_user) =
            loadtester_chart_identity(ns, &[format!("tokenReview.allowedServiceAccounts[0]={controller}")]);
        let dir = tempfile::tempdir().unwrap();
        let static_token = dir.path().join("static-token");
        std::fs::write(&static_token, "ci-s3cret\n").unwrap();
        let gate_store = format!("configmap:{ns}/flagger-loadtester-gates");
        let loadtester = Process::loadtester_as(
            &format!("veer-loadtester-{ns}"),
            &[
                "--allowed-service-account",
                &controller,
                "--token-file",
                static_token.to_str().unwrap(),
                "--gate-store",
                &gate_store,
                "--log-level",
                "info,veer=debug",
            ],
            &lt_kubeconfig,
        );
        let lt = loadtester.url();
        let check = format!("{lt}/gate/check");
        common::wait_for("the load tester to answer", Duration::from_secs(20), || async {
            let http = veer::http::client_builder().no_proxy().build().map_err(|e| e.to_string())?;
            http.get(format!("{lt}/healthz")).send().await.map(|_| ()).map_err(|e| e.to_string())
        })
        .await;

        // Callers the load tester must refuse, with real tokens from the API server.
        let (status, body) = post(&check, ns, None).await;
        assert_eq!(status, 401, "no token: {body}");
        let intruder: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "intruder"}})).unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &intruder)
            .await
            .unwrap();
        let t = Instant::now();
        let (status, body) = post(&check, ns, Some(&create_token(ns, "intruder", Some(AUDIENCE)))).await;
        println!("[{ns}] first TokenReview (another account's token) answered in {:?}", t.elapsed());
        assert_eq!(status, 403, "another ServiceAccount: {body}");
        assert!(body.contains(&format!("system:serviceaccount:{ns}:intruder may not use")), "{body}");
        let api_server_token = create_token(ns, &format!("veer-{ns}"), None);
        let (status, body) = post(&check, ns, Some(&api_server_token)).await;
        assert_eq!(status, 401, "the controller's token for the API server's audience: {body}");
        assert!(body.contains("does not accept it for audience"), "{body}");
        // The controller's token for the load tester's audience passes authentication: the gate
        // itself answers (closed).
        let controller_token = create_token(ns, &format!("veer-{ns}"), Some(AUDIENCE));
        assert_eq!(post(&check, ns, Some(&controller_token)).await, (403, "Forbidden".into()));
        assert_eq!(post(&check, ns, Some("ci-s3cret")).await, (403, "Forbidden".into()));

        // The controller, reading that token from a file and sending it to the load tester only.
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, &controller_token).unwrap();
        let host = lt.trim_start_matches("http://").to_owned();
        let _controller = Process::controller(
            ns,
            &["--webhook-token-file", token_file.to_str().unwrap(), "--webhook-token-hosts", &host],
        );
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", OLD)).await;
        let analysis = format!(
            r#"    interval: 2s
    threshold: 2
    maxWeight: 20
    stepWeight: 10
    webhooks:
    - {{name: approval, type: confirm-promotion, url: "{check}"}}
"#
        );
        apply_yaml(&client, ns, &canary_yaml("  provider: istio\n  service: {port: 9898}", &analysis)).await;
        wait_phase(&client, ns, "podinfo", Phase::Initialized, Duration::from_secs(60)).await;
        set_image(&client, ns, "podinfo", NEW).await;
        let t = Instant::now();
        let s = wait_phase(&client, ns, "podinfo", Phase::WaitingPromotion, Duration::from_secs(60)).await;
        println!("[{ns}] new revision → WaitingPromotion in {:?}", t.elapsed());
        let gate = s.checks.iter().find(|c| c.name == "approval").expect("the approval check");
        // Authenticated (a 401 would say "bearer token"); the gate is simply closed.
        assert_eq!(gate.result, "Failed");
        assert!(gate.message.contains("403") && gate.message.contains("Forbidden"), "{gate:?}");
        assert!(!gate.message.contains("bearer token"), "{gate:?}");

        // Open the gate as CI would, with the static token: the controller's next check passes.
        assert_eq!(post(&format!("{lt}/gate/open"), ns, Some("ci-s3cret")).await.0, 202);
        let t = Instant::now();
        let s = wait_phase(&client, ns, "podinfo", Phase::Succeeded, Duration::from_secs(60)).await;
        println!("[{ns}] gate opened → Succeeded in {:?}", t.elapsed());
        assert_eq!(s.checks.iter().find(|c| c.name == "approval").unwrap().result, "Passed");
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        // The test's own call with the token, and at least one of the controller's.
        let log = std::fs::read_to_string(&loadtester.log).unwrap();
        let authenticated = log.matches("ServiceAccount authenticated").count();
        println!("[{ns}] requests authenticated with the controller's ServiceAccount token: {authenticated}");
        assert!(authenticated >= 2, "{authenticated}");
        println!("[{ns}] load tester ran as {lt_user}");

        // The chart's cluster-scoped RBAC outlives the namespace: remove it.
        let name = format!("flagger-loadtester-{ns}-tokenreview");
        let _ = Api::<ClusterRoleBinding>::all(client.clone()).delete(&name, &DeleteParams::default()).await;
        let _ = Api::<ClusterRole>::all(client.clone()).delete(&name, &DeleteParams::default()).await;
    })
    .await;
}
