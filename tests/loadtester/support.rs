//! A local HTTP target for load runs.

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
