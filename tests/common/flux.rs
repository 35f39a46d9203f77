//! Veer's chart installed through Flux (source-controller and helm-controller, started by
//! `e2e/up.sh`): a HelmRepository `veer` and a HelmRelease `veer` of the chart `veer`, as the Flux
//! tests of `tests/e2e_flux.rs` (an HTTP Helm repository) and `tests/e2e_artifacts.rs` (an OCI
//! registry) use them.

use std::time::{Duration, Instant};

use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams},
};
use serde_json::{Value, json};

/// The HelmRepositories of `ns`.
pub fn repositories(client: &Client, ns: &str) -> Api<DynamicObject> {
    api(client, ns, "source.toolkit.fluxcd.io", "v1", "HelmRepository", "helmrepositories")
}

/// The HelmReleases of `ns`.
pub fn releases(client: &Client, ns: &str) -> Api<DynamicObject> {
    api(client, ns, "helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases")
}

fn api(
    client: &Client,
    ns: &str,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// `Ready=True` for the object's current generation, else a description of what is there.
pub fn ready(obj: &DynamicObject) -> Result<(), String> {
    let status = obj.data.get("status").cloned().unwrap_or(Value::Null);
    let generation = obj.metadata.generation.unwrap_or(0);
    let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
    let condition = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    if condition["status"] == "True" && observed == generation {
        Ok(())
    } else {
        Err(format!("generation {generation}, observed {observed}, Ready: {condition}"))
    }
}

/// Creates the HelmRepository `veer` with `repository` as its spec, then the HelmRelease `veer` of
/// the chart `veer` at `version` from it, released as `release`, with `extra` (`values`, `upgrade`,
/// ...) added to its spec; waits up to `timeout` for the HelmRelease to be Ready. Returns how long
/// that took from the HelmRelease's creation.
pub async fn install(
    client: &Client,
    ns: &str,
    repository: Value,
    release: &str,
    version: &str,
    extra: Value,
    timeout: Duration,
) -> Duration {
    let repository: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": "veer"},
        "spec": repository
    }))
    .unwrap();
    repositories(client, ns)
        .create(&PostParams::default(), &repository)
        .await
        .expect("create the HelmRepository");
    let mut spec = json!({
        "interval": "10m",
        "releaseName": release,
        "chart": {"spec": {"chart": "veer", "version": version,
                           "sourceRef": {"kind": "HelmRepository", "name": "veer"}}},
        "install": {"timeout": "2m"},
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    let helm_release: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "veer"},
        "spec": spec
    }))
    .unwrap();
    let releases = releases(client, ns);
    let t = Instant::now();
    releases.create(&PostParams::default(), &helm_release).await.expect("create the HelmRelease");
    super::wait_for("HelmRelease veer Ready", timeout, || async {
        ready(&releases.get("veer").await.map_err(|e| e.to_string())?)
    })
    .await;
    t.elapsed()
}

/// Deletes the HelmRelease `veer`, which uninstalls the release (helm-controller's finalizer,
/// cluster-scoped objects included), and waits until it is gone.
pub async fn uninstall(client: &Client, ns: &str) {
    let releases = releases(client, ns);
    releases.delete("veer", &DeleteParams::default()).await.expect("delete the HelmRelease");
    super::wait_for("the HelmRelease to be gone", Duration::from_secs(120), || async {
        match releases.get_opt("veer").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}
