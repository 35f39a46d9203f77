//! A local HTTP target for load runs and a helper that serves the load tester's API.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use veer::loadtester::auth::TokenReviewer;
use veer::loadtester::gates::GateStore;
use veer::loadtester::{Config, router, router_with_reviewer};

/// One request as the target saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A server on 127.0.0.1:0 that counts what it is sent: `/ok` 200, `/fail` 500, `/slow` 200
/// after 3 s, `/echo` 200 and records the request.
pub struct Target {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

impl Target {
    pub async fn start() -> Self {
        let hits = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (h1, h2, h3, h4) = (hits.clone(), hits.clone(), hits.clone(), hits.clone());
        let s = seen.clone();
        let app = Router::new()
            .route(
                "/ok",
                any(move || async move {
                    h1.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }),
            )
            .route(
                "/fail",
                any(move || async move {
                    h2.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::INTERNAL_SERVER_ERROR, "boom")
                }),
            )
            .route(
                "/slow",
                any(move || async move {
                    h3.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "late"
                }),
            )
            .route(
                "/echo",
                any(move |method: Method, headers: HeaderMap, body: Bytes| async move {
                    h4.fetch_add(1, Ordering::SeqCst);
                    s.lock().unwrap().push(Seen { method, headers, body });
                    "seen"
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self { addr, hits, seen, _stop: stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The load tester's API served on 127.0.0.1:0 until dropped (or [`Api::stop`]).
pub struct Api {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Api {
    pub async fn start(config: Config, gates: Arc<dyn GateStore>) -> Self {
        let read_timeout = config.read_timeout;
        Self::serve(router(config, gates), read_timeout).await
    }

    /// Like [`Api::start`], checking ServiceAccount tokens with `reviewer`.
    pub async fn start_with_reviewer(
        config: Config,
        gates: Arc<dyn GateStore>,
        reviewer: Arc<dyn TokenReviewer>,
    ) -> Self {
        let read_timeout = config.read_timeout;
        Self::serve(router_with_reviewer(config, gates, reviewer), read_timeout).await
    }

    async fn serve(app: axum::Router, read_timeout: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            let stopped = async {
                let _ = rx.await;
            };
            veer::loadtester::serve_with(listener, app, stopped, read_timeout).await.unwrap();
        });
        Self { base, stop: Some(stop), done: Some(done) }
    }

    /// Shuts the server down and waits until it has stopped.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.done.take().unwrap())
            .await
            .expect("server did not stop within 10 s")
            .unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub fn client() -> reqwest::Client {
    veer::http::client_builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

/// POSTs `body` and returns (status, body text).
pub async fn post(url: &str, body: &str) -> (u16, String) {
    post_with(url, body, None).await
}

pub async fn post_with(url: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut req = client().post(url).header("content-type", "application/json").body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

pub async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// A webhook payload for Canary podinfo in `namespace` with `metadata`.
pub fn payload(namespace: &str, metadata: &[(&str, &str)]) -> String {
    let meta: serde_json::Map<String, serde_json::Value> =
        metadata.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect();
    let mut p = serde_json::json!({"name": "podinfo", "namespace": namespace, "phase": "Progressing", "checksum": "abc"});
    if !meta.is_empty() {
        p["metadata"] = serde_json::Value::Object(meta);
    }
    p.to_string()
}

/// Polls `cond` every 50 ms for at most `limit`; true if it became true.
pub async fn eventually(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
