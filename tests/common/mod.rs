//! Helpers for the tests that run against the local control plane (`make test` starts it with
//! `e2e/up.sh` and passes its settings through the environment, see `e2e/.run/env`).
//!
//! Those tests are `#[ignore = "needs the local control plane (make test)"]`, so a plain
//! `cargo test` runs only the unit tests.

// Each test binary compiles this module and uses a different subset of it.
#![allow(dead_code)]

pub mod corpus;
pub mod flux;
pub mod helm;
pub mod prometheus;
pub mod proxy;
pub mod webdriver;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

/// The value of an environment variable that `e2e/up.sh` provides; panics with instructions when
/// it is missing, so that running an ignored test by hand says what to do.
pub fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs the local control plane. Run `make test`, or \
             `e2e/up.sh && . e2e/.run/env` and then `cargo test -- --include-ignored`."
        ),
    }
}

/// Panics, saying how to start Flux or how to leave its tests out, unless `e2e/up.sh` started Flux's
/// controllers (`VEER_E2E_FLUX_RUNNING=1` in `e2e/.run/env`). The tests that call it live in a module
/// named `flux`, which `VEER_E2E_FLUX=0 make test` skips (`--skip flux::`).
pub fn require_flux() {
    let running = env("VEER_E2E_FLUX_RUNNING");
    assert!(
        running == "1",
        "Flux is not running (VEER_E2E_FLUX_RUNNING={running}): this test needs Flux's source-controller \
         and helm-controller. Start them with `make up` (or `VEER_E2E_FLUX=1 e2e/up.sh`), then \
         `. e2e/.run/env`; or leave the Flux tests out: `VEER_E2E_FLUX=0 make test` skips them, and so \
         does `cargo test -- --include-ignored --skip flux::`."
    );
}

/// A client for the local control plane, from `KUBECONFIG`.
pub async fn client() -> Client {
    veer::http::install_crypto_provider();
    let kubeconfig = env("KUBECONFIG");
    Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("cannot build a client from KUBECONFIG={kubeconfig}: {e}"))
}

/// The name of the fake node that kwok keeps Ready.
pub fn node_name() -> String {
    std::env::var("VEER_E2E_NODE").unwrap_or_else(|_| "kwok-node-0".to_owned())
}

/// A DNS-label name that no other test (in this or a concurrent process) uses: `PREFIX-<suffix>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}{:x}{n}", std::process::id(), nanos >> 8)
}

/// Polls `probe` every 250 ms until it returns `Ok`, and returns that value. `Err` carries a short
/// description of the state seen, which the panic shows when `timeout` passes first.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(state) => state,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A namespace made for one test, labelled so a person can find leftovers
/// (`kubectl get ns -l veer.e2e/test`).
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = unique_name(prefix);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "veer.e2e/test": prefix } }
        }))
        .expect("a valid Namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        TestNamespace { name, client: client.clone() }
    }

    /// Starts the deletion; an already deleted namespace is fine.
    pub async fn delete(&self) {
        match Api::<Namespace>::all(self.client.clone()).delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("cannot delete namespace {}: {e}", self.name),
        }
    }

    /// Deletes the namespace and waits until it is gone (the namespace controller has emptied it and
    /// kwok has confirmed its pods' deletion). Returns how long that took.
    pub async fn delete_and_wait(&self, timeout: Duration) -> Duration {
        let start = Instant::now();
        self.delete().await;
        let api = Api::<Namespace>::all(self.client.clone());
        wait_for(&format!("namespace {} to be deleted", self.name), timeout, || async {
            match api.get_opt(&self.name).await {
                Ok(None) => Ok(()),
                Ok(Some(ns)) => Err(format!("phase {:?}", ns.status.and_then(|s| s.phase))),
                Err(e) => Err(format!("get failed: {e}")),
            }
        })
        .await;
        start.elapsed()
    }
}

/// Runs `body` with a fresh namespace and deletes the namespace afterwards, also when `body` panics
/// (without waiting: the cluster is thrown away after the run).
pub async fn with_namespace<R>(
    client: &Client,
    prefix: &str,
    body: impl AsyncFnOnce(&TestNamespace) -> R,
) -> R {
    let ns = TestNamespace::create(client, prefix).await;
    let outcome = AssertUnwindSafe(body(&ns)).catch_unwind().await;
    ns.delete().await;
    match outcome {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
pub mod harness;
