//! Installing Veer the GitOps way: the packaged chart is served from a Helm repository on 127.0.0.1
//! (`helm package` + `helm repo index`, served by this test), and Flux's source-controller and
//! helm-controller (started by e2e/up.sh with VEER_E2E_FLUX=1, the default of `make test`) install it
//! from a HelmRepository + HelmRelease, upgrade it when the HelmRelease's values change, and uninstall
//! it when the HelmRelease is deleted. Timings are printed, not asserted. Without Flux the test fails;
//! `VEER_E2E_FLUX=0 make test` leaves it out.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use common::helm::{Helm, chart};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

/// Serves the files of one directory (flat: index.yaml and the chart archives) over HTTP.
async fn serve_dir(dir: PathBuf) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    async fn file(State(dir): State<PathBuf>, Path(name): Path<String>) -> Result<Vec<u8>, StatusCode> {
        if name.contains('/') || name.starts_with('.') {
            return Err(StatusCode::NOT_FOUND);
        }
        tokio::fs::read(dir.join(name)).await.map_err(|_| StatusCode::NOT_FOUND)
    }
    let app = axum::Router::new().route("/{name}", get(file)).with_state(dir);
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the chart repository server");
    });
    (port, server)
}

async fn deployment_args(client: &Client, ns: &str, name: &str) -> Result<Vec<String>, String> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns).get(name).await.map_err(|e| e.to_string())?;
    let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    let args = d.spec.and_then(|s| s.template.spec).map(|s| s.containers[0].args.clone().unwrap_or_default());
    match args {
        Some(args) if ready >= 1 => Ok(args),
        other => Err(format!("ready replicas {ready}, args {other:?}")),
    }
}

/// The tests that need Flux: `VEER_E2E_FLUX=0 make test` leaves this module out (`--skip flux::`),
/// and they fail, saying how to start Flux, when it is not running.
mod flux {
    use super::*;

    #[tokio::test]
    #[ignore = "needs the local control plane with Flux (make test)"]
    async fn installs_upgrades_and_uninstalls_the_chart_from_a_helm_repository() {
        common::require_flux();
        let client = common::client().await;
        let helm = Helm::new();

        // The chart repository: package, index with this server's URL, serve.
        let repo = tempfile::tempdir().unwrap();
        let (port, server) = serve_dir(repo.path().to_owned()).await;
        let url = format!("http://127.0.0.1:{port}");
        let repo_dir = repo.path().to_str().unwrap();
        helm.ok(&["package", chart("veer").to_str().unwrap(), "-d", repo_dir]);
        helm.ok(&["repo", "index", repo_dir, "--url", &url]);

        common::with_namespace(&client, "flux", async |ns| {
            let ns = ns.name.as_str();
            let release = common::unique_name("veer-flux");
            let installed = common::flux::install(
                &client,
                ns,
                json!({"url": url, "interval": "10m"}),
                &release,
                "0.1.0",
                json!({"upgrade": {"timeout": "2m"}, "values": {"logLevel": "info"}}),
                Duration::from_secs(120),
            )
            .await;
            let releases = common::flux::releases(&client, ns);
            let args =
                deployment_args(&client, ns, &release).await.expect("the Deployment from the HelmRelease");
            assert!(args.contains(&"--log-level=info".to_owned()), "{args:?}");

            // New values in the HelmRelease: helm-controller upgrades the release.
            let t = Instant::now();
            let patch = json!({"spec": {"values": {"logLevel": "debug", "meshProvider": "nginx"}}});
            releases
                .patch("veer", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("patch the values");
            let args = common::wait_for("the upgraded Deployment", Duration::from_secs(120), || async {
                let args = deployment_args(&client, ns, &release).await?;
                if args.iter().any(|a| a == "--log-level=debug")
                    && args.iter().any(|a| a == "--mesh-provider=nginx")
                {
                    Ok(args)
                } else {
                    Err(format!("args {args:?}"))
                }
            })
            .await;
            common::wait_for(
                "HelmRelease veer Ready after the upgrade",
                Duration::from_secs(120),
                || async {
                    let hr = releases.get("veer").await.map_err(|e| e.to_string())?;
                    common::flux::ready(&hr)?;
                    match hr.data["status"]["history"][0]["version"].as_i64() {
                        Some(2) => Ok(()),
                        other => Err(format!("latest release version {other:?}")),
                    }
                },
            )
            .await;
            let upgraded = t.elapsed();
            assert!(args.contains(&"--enable-config-tracking=true".to_owned()), "{args:?}");

            // Deleting the HelmRelease uninstalls the release (helm-controller's finalizer), cluster-scoped
            // objects included. (Deleting only the namespace would not: the release Secret would go first.)
            let t = Instant::now();
            common::flux::uninstall(&client, ns).await;
            let uninstalled = t.elapsed();
            assert!(
                Api::<Deployment>::namespaced(client.clone(), ns).get_opt(&release).await.unwrap().is_none()
            );
            assert!(Api::<ClusterRole>::all(client.clone()).get_opt(&release).await.unwrap().is_none());
            println!(
                "Flux: Ready after {installed:?}, upgraded in {upgraded:?}, uninstalled in {uninstalled:?}"
            );
        })
        .await;
        server.abort();
    }
}
