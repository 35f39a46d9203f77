//! `veer dashboard` in a real headless Chromium (driven through chromedriver's WebDriver API),
//! against a real controller on the local control plane: the overview lists the Canary, the
//! Canary's page follows a run by itself, and its buttons abort, retry and promote it. The
//! dashboard runs with only the RBAC docs/dashboard.md lists.
//!
//! Needs chromium and chromedriver on PATH (`e2e/install-chromium.sh`). Screenshots go to a
//! temporary directory, and to docs/images with `VEER_UPDATE_SCREENSHOTS=1`.

mod common;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use common::{harness::*, webdriver::Browser};
use veer::{
    api::Phase,
    trafficsim::{Client as Sim, IstioSpec},
};

const OLD: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const NEW: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";

const BOOT: Duration = Duration::from_secs(120);
const RUN: Duration = Duration::from_secs(240);
const REACT: Duration = Duration::from_secs(60);

/// The ServiceAccount the dashboard acts as, with the Role docs/dashboard.md gives for one namespace.
fn rbac(ns: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: dashboard-user}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: veer-dashboard}}
rules:
- apiGroups: [flagger.app]
  resources: [canaries]
  verbs: [get, list, watch, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [list, watch]
- apiGroups: [apps]
  resources: [deployments, daemonsets]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: veer-dashboard}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: veer-dashboard}}
subjects: [{{kind: ServiceAccount, name: dashboard-user, namespace: {ns}}}]
"#
    )
}

/// A kubeconfig that impersonates the ServiceAccount `dashboard-user` of `ns`; `server`, when
/// given, replaces the API server's URL.
fn dashboard_kubeconfig(ns: &str, server: Option<&str>) -> PathBuf {
    let admin = std::fs::read_to_string(common::env("KUBECONFIG")).expect("the admin kubeconfig");
    let mut config: serde_json::Value = serde_saphyr::from_str(&admin).expect("a kubeconfig");
    for user in config["users"].as_array_mut().expect("users") {
        user["user"]["as"] = serde_json::json!(format!("system:serviceaccount:{ns}:dashboard-user"));
    }
    if let Some(server) = server {
        for cluster in config["clusters"].as_array_mut().expect("clusters") {
            cluster["cluster"]["server"] = serde_json::json!(server);
        }
    }
    let file = format!("veer-dashboard-{ns}-{}.kubeconfig", server.map_or(0, |_| 1));
    let path = std::env::temp_dir().join(file);
    std::fs::write(&path, serde_json::to_string(&config).expect("JSON is YAML")).expect("kubeconfig written");
    path
}

/// Starts `veer dashboard -n ns` on a free loopback port with `kubeconfig`; returns the process
/// and the URL it printed.
async fn start_dashboard(ns: &str, kubeconfig: &std::path::Path, name: &str) -> (Process, String) {
    let args: Vec<String> =
        ["dashboard", "-n", ns, "--address", "127.0.0.1:0"].iter().map(|s| s.to_string()).collect();
    let dashboard = Process::veer_with_env(
        &format!("veer-dashboard-{name}"),
        &args,
        0,
        &[("KUBECONFIG", kubeconfig.as_os_str())],
    );
    let url = common::wait_for("the dashboard's URL", Duration::from_secs(30), || async {
        let log = std::fs::read_to_string(&dashboard.log).unwrap_or_default();
        log.split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .map(str::to_string)
            .ok_or_else(|| format!("log: {log}"))
    })
    .await;
    (dashboard, url)
}

/// An Istio Canary stepping 5 by 5 up to 50 every 4 s, with the built-in metrics: a run long
/// enough to look at and to abort.
fn canary() -> String {
    canary_yaml(
        "  provider: istio\n  service: {port: 9898, targetPort: http}",
        "    interval: 4s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 5\n    metrics:\n    \
         - {name: request-success-rate, thresholdRange: {min: 99}, interval: 30s}\n    \
         - {name: request-duration, thresholdRange: {max: 500}, interval: 30s}",
    )
}

/// Where screenshots go: always a temporary directory; also docs/images when asked.
struct Screenshots {
    dirs: Vec<PathBuf>,
}

impl Screenshots {
    fn new() -> Screenshots {
        let mut dirs = vec![std::env::temp_dir().join("veer-dashboard-screenshots")];
        if std::env::var("VEER_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/images"));
        }
        Screenshots { dirs }
    }

    async fn take(&self, browser: &Browser, file: &str) {
        for dir in &self.dirs {
            let path = browser.save_page_screenshot(dir, file).await;
            println!("[dashboard] screenshot {}", path.display());
        }
    }
}

#[tokio::test]
#[ignore = "needs the local control plane (make test) and chromium (e2e/install-chromium.sh)"]
async fn the_dashboard_follows_a_run_and_its_buttons_abort_retry_and_promote_it() {
    let client = common::client().await;
    common::with_namespace(&client, "dashboard", async |ns| {
        let ns = &ns.name;
        let start = Instant::now();
        // First: without Chromium the test fails here, naming the script that installs it.
        let browser = Browser::start(ns).await;
        let shots = Screenshots::new();
        let sim = Sim::new(&common::env("TRAFFICSIM_URL")).expect("a simulator client");
        sim.put_istio(ns, "podinfo", &IstioSpec { rps: 20.0, error_rate: 0.0, latency_ms: 40.0 })
            .await
            .unwrap();
        let controller = Process::controller(ns, &[]);
        apply_yaml(&client, ns, &rbac(ns)).await;
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", OLD)).await;
        apply_yaml(&client, ns, &canary()).await;
        wait_phase(&client, ns, "podinfo", Phase::Initialized, BOOT).await;

        let (dashboard, url) = start_dashboard(ns, &dashboard_kubeconfig(ns, None), ns).await;
        println!("[dashboard] {url}");
        let health = veer::http::client_builder().build().unwrap().get(format!("{url}healthz")).send().await;
        assert_eq!(health.expect("/healthz answers").status(), 200);

        // The overview lists the Canary with its phase.
        browser.goto(&url).await;
        let row = format!(r#"tr[data-canary="{ns}/podinfo"]"#);
        let text = browser.wait_text(&row, REACT, |t| t.contains("Initialized")).await;
        println!("[dashboard] overview row: {text}");

        // The Canary's page, opened once: it follows the run without being reloaded.
        let page = format!("{url}canaries/{ns}/podinfo");
        browser.goto(&page).await;
        browser.wait_text("#phase", REACT, |t| t == "Initialized").await;
        assert_eq!(browser.enabled("#btn-abort").await, Ok(false), "nothing to abort yet");
        assert_eq!(browser.enabled("#btn-pause").await, Ok(true));
        set_image(&client, ns, "podinfo", NEW).await;
        let changed = Instant::now();
        let (in_api, on_page) = tokio::join!(
            async {
                wait_phase(&client, ns, "podinfo", Phase::Progressing, REACT).await;
                changed.elapsed()
            },
            async {
                browser.wait_text("#phase", REACT, |t| t == "Progressing").await;
                changed.elapsed()
            },
        );
        println!("[dashboard] new image → Progressing in the API after {in_api:.1?}, on the page after {on_page:.1?}");
        let weight = browser.wait_text(".summary .weight", RUN, |t| !matches!(t, "0%" | "5%")).await;
        println!("[dashboard] Progressing at canary weight {weight} after {:?}", start.elapsed());
        browser.wait_text("table.checks", REACT, |t| t.contains("request-success-rate")).await;
        browser
            .wait_text("#timeline", REACT, |t| {
                t.contains(&format!("New revision detected! Scaling up podinfo.{ns}"))
            })
            .await;
        assert_eq!(browser.enabled("#btn-abort").await, Ok(true), "a run to abort");
        assert_eq!(browser.enabled("#btn-retry").await, Ok(false), "nothing failed");
        shots.take(&browser, "dashboard-canary.png").await;

        browser.goto(&url).await;
        browser.wait_text(&row, REACT, |t| t.contains("Progressing")).await;
        shots.take(&browser, "dashboard-overview.png").await;

        // A page of another origin (the controller's admin port) cannot make the dashboard act.
        browser.goto(&format!("http://127.0.0.1:{}/healthz", controller.port)).await;
        let script = "const done = arguments[arguments.length - 1];\
                      fetch(arguments[0], {method: 'POST', mode: 'no-cors', body: 'x'})\
                        .then(r => done('sent: ' + r.type), e => done('error: ' + e));";
        let forged = browser
            .execute_async(script, serde_json::json!([format!("{url}api/canaries/{ns}/podinfo/abort")]))
            .await;
        println!("[dashboard] cross-site POST: {forged}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let canary =
            kube::Api::<veer::api::Canary>::namespaced(client.clone(), ns).get("podinfo").await.unwrap();
        assert!(
            !kube::ResourceExt::annotations(&canary).contains_key("veer.dev/request"),
            "a cross-site POST wrote a request"
        );
        assert_eq!(status(&client, ns, "podinfo").await.phase, Phase::Progressing);

        // Abort (a second click confirms): rolled back, and the page shows Veer's answer.
        browser.goto(&page).await;
        browser.wait_text("#phase", REACT, |t| t == "Progressing").await;
        browser.click("#btn-abort").await;
        browser.wait_text("#btn-abort", REACT, |t| t.starts_with("Click again")).await;
        let clicked = Instant::now();
        browser.click("#btn-abort").await;
        let answer = browser.wait_text("#answer", REACT, |t| !t.contains("sending")).await;
        println!("[dashboard] abort answered after {:.1?}: {answer}", clicked.elapsed());
        assert!(answer.contains(&format!("podinfo.{ns}: Failed at canary weight 0: Aborted")), "{answer}");
        wait_phase(&client, ns, "podinfo", Phase::Failed, REACT).await;
        browser.wait_text("#phase", REACT, |t| t == "Failed").await;
        browser
            .wait_text("#timeline", REACT, |t| {
                t.contains(&format!("Rolling back podinfo.{ns}: abort requested"))
            })
            .await;
        common::wait_for("Retry enabled, Abort disabled", REACT, || async {
            match (browser.enabled("#btn-retry").await, browser.enabled("#btn-abort").await) {
                (Ok(true), Ok(false)) => Ok(()),
                other => Err(format!("(retry, abort) enabled: {other:?}")),
            }
        })
        .await;
        shots.take(&browser, "dashboard-abort.png").await;

        // Retry: the failed revision is analysed again.
        browser.click("#btn-retry").await;
        let answer = browser.wait_text("#answer", REACT, |t| !t.contains("sending")).await;
        println!("[dashboard] retry: {answer}");
        assert!(answer.contains("Progressing at canary weight 0: Retried"), "{answer}");
        browser.wait_text("#phase", REACT, |t| t == "Progressing").await;

        // Promote: the next step now, promoted as its checks pass.
        common::wait_for("Promote enabled", REACT, || async {
            match browser.enabled("#btn-promote").await {
                Ok(true) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        browser.click("#btn-promote").await;
        let answer = browser.wait_text("#answer", REACT, |t| !t.contains("sending")).await;
        println!("[dashboard] promote: {answer}");
        assert!(answer.starts_with(&format!("podinfo.{ns}: ")) && !answer.contains("refused"), "{answer}");
        wait_phase(&client, ns, "podinfo", Phase::Succeeded, RUN).await;
        browser.wait_text("#phase", REACT, |t| t == "Succeeded").await;
        assert_eq!(image(&client, ns, "podinfo-primary").await, NEW);
        let status = std::fs::read_to_string(format!("/proc/{}/status", dashboard.pid().unwrap_or(0)));
        let rss = status.unwrap_or_default().lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string);
        println!("[dashboard] scenario took {:.1?}; the dashboard's {rss:?}", start.elapsed());
    })
    .await;
}

/// A cluster that cannot be reached and watches that RBAC refuses show on the pages and in
/// `/api/state`, and the dashboard keeps serving (no browser needed).
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn an_unreachable_cluster_and_refused_watches_show_on_the_pages() {
    let client = common::client().await;
    common::with_namespace(&client, "dashboard-errors", async |ns| {
        let ns = &ns.name;
        // The ServiceAccount exists, without any right in the namespace.
        apply_yaml(&client, ns, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: dashboard-user}\n")
            .await;
        let nowhere = format!("https://127.0.0.1:{}", free_port());
        let http = veer::http::client_builder().build().unwrap();
        for (case, server, error) in
            [("forbidden", None, "forbidden"), ("unreachable", Some(nowhere.as_str()), "")]
        {
            let (mut dashboard, url) =
                start_dashboard(ns, &dashboard_kubeconfig(ns, server), &format!("{ns}-{case}")).await;
            let state =
                common::wait_for(&format!("{case}: the watch errors in /api/state"), REACT, || async {
                    let state: serde_json::Value = http
                        .get(format!("{url}api/state"))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?
                        .json()
                        .await
                        .map_err(|e| e.to_string())?;
                    let failed = |w: &str| state[w]["error"].as_str().is_some_and(|e| e.contains(error));
                    if failed("canaries") && failed("events") { Ok(state) } else { Err(state.to_string()) }
                })
                .await;
            println!("[dashboard-errors] {case}: {state}");
            let overview = http.get(&url).send().await.unwrap();
            assert_eq!(overview.status(), 200);
            let html = overview.text().await.unwrap();
            assert!(html.contains(r#"<div class="banner error">Cannot watch Canaries"#), "{case}: {html}");
            assert!(html.contains(r#"<div class="banner error">Cannot watch Events"#), "{case}: {html}");
            let page = http.get(format!("{url}canaries/{ns}/podinfo")).send().await.unwrap();
            assert_eq!(page.status(), 404);
            assert!(page.text().await.unwrap().contains("Cannot watch Canaries"));
            assert_eq!(dashboard.exited(Duration::from_millis(200)).await, None, "{case}: still serving");
        }
    })
    .await;
}
