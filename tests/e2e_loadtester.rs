//! veer-loadtester's ConfigMap gate store against a real API server (the local control plane;
//! `KUBECONFIG` from the environment). Each test works in a namespace of its own and deletes it.
//! Timings are printed, not asserted.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use veer::loadtester::gates::{ConfigMapGateStore, GateKind, GateStore, gate_key};
use veer::loadtester::{Config, GateStoreSpec, router, serve};

const GATES: &str = "veer-loadtester-gates";

async fn client() -> Client {
    veer::http::install_crypto_provider();
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
    assert!(
        !kubeconfig.is_empty(),
        "KUBECONFIG is not set: this test needs the local control plane. Run `make test`, or start it \
         and run `cargo test --test e2e_loadtester -- --include-ignored`."
    );
    Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("cannot build a client from KUBECONFIG={kubeconfig}: {e}"))
}

/// Runs `body` in a fresh namespace and deletes the namespace afterwards, pass or fail.
async fn in_namespace(client: &Client, body: impl AsyncFnOnce(String)) {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let name = format!("veer-lt-{:x}{:x}", std::process::id(), nanos);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"veer.e2e/test": "loadtester"}}
    }))
    .unwrap();
    namespaces.create(&PostParams::default(), &ns).await.expect("create the test namespace");
    let result = AssertUnwindSafe(body(name.clone())).catch_unwind().await;
    let _ = namespaces.delete(&name, &DeleteParams::default()).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn key(name: &str, namespace: &str) -> String {
    gate_key(GateKind::Gate, name, namespace).unwrap()
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn configmap_store_keeps_gates_in_the_configmap() {
    let client = client().await;
    in_namespace(&client, async |ns| {
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let store = ConfigMapGateStore::connect(client.clone(), &ns, GATES).await.unwrap();
        let gate = key("podinfo", "test");
        let rollback = gate_key(GateKind::Rollback, "podinfo", "test").unwrap();

        // No ConfigMap yet: everything closed, and closing creates nothing.
        assert!(!store.is_open(&gate).await.unwrap());
        store.set(&gate, false).await.unwrap();
        assert!(configmaps.get_opt(GATES).await.unwrap().is_none());

        let t = Instant::now();
        store.set(&gate, true).await.unwrap();
        println!("first open (creates the ConfigMap): {:?}", t.elapsed());
        let cm = configmaps.get(GATES).await.unwrap();
        assert_eq!(cm.data.unwrap().get(&gate).map(String::as_str), Some("open"));
        assert_eq!(
            cm.metadata.labels.unwrap().get("app.kubernetes.io/name").map(String::as_str),
            Some("veer-loadtester")
        );

        store.set(&rollback, true).await.unwrap();
        // A restarted load tester is a new store on the same ConfigMap.
        let restarted = ConfigMapGateStore::connect(client.clone(), &ns, GATES).await.unwrap();
        assert!(restarted.is_open(&gate).await.unwrap());
        assert_eq!(restarted.open_keys().await.unwrap(), BTreeSet::from([gate.clone(), rollback.clone()]));

        let t = Instant::now();
        restarted.set(&gate, false).await.unwrap();
        println!("close (replace with resourceVersion): {:?}", t.elapsed());
        assert!(!store.is_open(&gate).await.unwrap(), "the first store must see the close");
        assert!(store.is_open(&rollback).await.unwrap());
        let data = configmaps.get(GATES).await.unwrap().data.unwrap_or_default();
        assert_eq!(data.keys().collect::<Vec<_>>(), [&rollback]);
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn concurrent_writers_lose_no_update() {
    let client = client().await;
    in_namespace(&client, async |ns| {
        // Three replicas (three stores) opening 24 gates at once: their replaces race each other,
        // and the resourceVersion check plus retry must keep every update.
        let mut stores = Vec::new();
        for _ in 0..3 {
            stores.push(Arc::new(ConfigMapGateStore::connect(client.clone(), &ns, GATES).await.unwrap()));
        }
        let (a, b) = (stores[0].clone(), stores[1].clone());
        let keys: Vec<String> = (0..24).map(|i| key(&format!("app{i}"), "test")).collect();
        let t = Instant::now();
        let writes = keys.iter().enumerate().map(|(i, k)| {
            let store = stores[i % 3].clone();
            let k = k.clone();
            async move { store.set(&k, true).await }
        });
        for result in futures::future::join_all(writes).await {
            result.expect("a concurrent open failed");
        }
        println!("24 concurrent opens from 3 stores: {:?}", t.elapsed());
        assert_eq!(a.open_keys().await.unwrap(), keys.iter().cloned().collect::<BTreeSet<_>>());

        let closes = keys.iter().enumerate().map(|(i, k)| {
            let store = stores[(i + 1) % 3].clone();
            let k = k.clone();
            async move { store.set(&k, false).await }
        });
        for result in futures::future::join_all(closes).await {
            result.expect("a concurrent close failed");
        }
        assert!(b.open_keys().await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn an_approved_gate_survives_a_load_tester_restart() {
    let client = client().await;
    in_namespace(&client, async |ns| {
        let spec: GateStoreSpec = format!("configmap:{ns}/{GATES}").parse().unwrap();
        let body = r#"{"name":"podinfo","namespace":"test"}"#;
        let http = veer::http::client_builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();

        // First load tester: open the gate.
        let (base, stop, done) = start(spec.open().await.unwrap()).await;
        let resp = http.post(format!("{base}/gate/open")).body(body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let _ = stop.send(());
        done.await.unwrap();

        // Second load tester on the same ConfigMap: still approved.
        let (base, stop, done) = start(spec.open().await.unwrap()).await;
        let resp = http.post(format!("{base}/gate/check")).body(body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.text().await.unwrap(), "Approved");
        let resp = http.post(format!("{base}/gate/close")).body(body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let resp = http.post(format!("{base}/gate/check")).body(body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 403);
        let _ = stop.send(());
        done.await.unwrap();
    })
    .await;
}

async fn start(gates: Arc<dyn GateStore>) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        serve(listener, router(Config::default(), gates), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (base, stop, done)
}
