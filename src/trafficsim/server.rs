//! The HTTP face of the simulator: control API, `/metrics`, real traffic, `/healthz`.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Serialize;
use thiserror::Error;
use tokio::net::TcpListener;

use super::api::{ErrorBody, IstioSpec, NginxSpec};
use super::exposition::CONTENT_TYPE;
use super::sim::{Key, Sim, SimError};

/// Control bodies are three or four numbers; anything larger is a mistake.
pub const MAX_BODY_BYTES: usize = 1024;

type Shared = Arc<Mutex<Sim>>;

fn lock(sim: &Shared) -> MutexGuard<'_, Sim> {
    // A panic while holding the lock leaves plain numbers behind, still usable.
    sim.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The router over a fresh simulator exporting every shape.
pub fn router() -> Router {
    router_with(Sim::new())
}

/// The router over `sim` (say, one built with [`Sim::with_shapes`]).
pub fn router_with(sim: Sim) -> Router {
    let sim: Shared = Arc::new(Mutex::new(sim));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/istio", get(list_istio))
        .route("/api/istio/{namespace}/{workload}", get(get_istio).put(put_istio).delete(delete_istio))
        .route("/api/nginx", get(list_nginx))
        .route("/api/nginx/{namespace}/{ingress}", get(get_nginx).put(put_nginx).delete(delete_nginx))
        // A wildcard needs at least one character, hence the explicit trailing-slash routes.
        .route("/traffic/{namespace}/{workload}", any(istio_traffic))
        .route("/traffic/{namespace}/{workload}/", any(istio_traffic))
        .route("/traffic/{namespace}/{workload}/{*rest}", any(istio_traffic_suffix))
        .route("/traffic-nginx/{namespace}/{ingress}", any(nginx_traffic))
        .route("/traffic-nginx/{namespace}/{ingress}/", any(nginx_traffic))
        .route("/traffic-nginx/{namespace}/{ingress}/{*rest}", any(nginx_traffic_suffix))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(sim)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    sim: Sim,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router_with(sim)).with_graceful_shutdown(shutdown).await
}

/// Why a request was refused; rendered as `{"error": "..."}`.
#[derive(Debug, Error)]
enum ApiError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("invalid JSON body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{kind} {namespace}/{name} is not configured")]
    NotFound { kind: &'static str, namespace: String, name: String },
}

impl ApiError {
    fn not_found(kind: &'static str, key: &Key) -> Self {
        Self::NotFound { kind, namespace: key.namespace().to_owned(), name: key.name().to_owned() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Sim(SimError::BadName { .. }) | ApiError::Json(_) => StatusCode::BAD_REQUEST,
            ApiError::Sim(SimError::Spec(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Sim(SimError::Full { .. }) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
        };
        (status, axum::Json(ErrorBody { error: self.to_string() })).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn created_or_ok<T: Serialize>(created: bool, view: T) -> Response {
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    (status, axum::Json(view)).into_response()
}

async fn metrics(State(sim): State<Shared>) -> Response {
    let text = lock(&sim).scrape(Instant::now());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

async fn list_istio(State(sim): State<Shared>) -> Response {
    axum::Json(lock(&sim).list_istio(Instant::now())).into_response()
}

async fn get_istio(State(sim): State<Shared>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let key = Key::new(&ns, &name, "workload")?;
    let view = lock(&sim).get_istio(&key, Instant::now()).ok_or_else(|| ApiError::not_found(ISTIO, &key))?;
    Ok(axum::Json(view).into_response())
}

// The body is parsed here rather than by axum's `Json` so that every error has the same JSON shape.
async fn put_istio(
    State(sim): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let key = Key::new(&ns, &name, "workload")?;
    let spec: IstioSpec = serde_json::from_slice(&bytes)?;
    let (created, view) = lock(&sim).put_istio(key, &spec, Instant::now())?;
    Ok(created_or_ok(created, view))
}

async fn delete_istio(State(sim): State<Shared>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let key = Key::new(&ns, &name, "workload")?;
    if !lock(&sim).delete_istio(&key) {
        return Err(ApiError::not_found(ISTIO, &key));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_nginx(State(sim): State<Shared>) -> Response {
    axum::Json(lock(&sim).list_nginx(Instant::now())).into_response()
}

async fn get_nginx(State(sim): State<Shared>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let key = Key::new(&ns, &name, "ingress")?;
    let view = lock(&sim).get_nginx(&key, Instant::now()).ok_or_else(|| ApiError::not_found(NGINX, &key))?;
    Ok(axum::Json(view).into_response())
}

async fn put_nginx(
    State(sim): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let key = Key::new(&ns, &name, "ingress")?;
    let spec: NginxSpec = serde_json::from_slice(&bytes)?;
    let (created, view) = lock(&sim).put_nginx(key, &spec, Instant::now())?;
    Ok(created_or_ok(created, view))
}

async fn delete_nginx(State(sim): State<Shared>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let key = Key::new(&ns, &name, "ingress")?;
    if !lock(&sim).delete_nginx(&key) {
        return Err(ApiError::not_found(NGINX, &key));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

const ISTIO: &str = "Istio workload";
const NGINX: &str = "NGINX ingress";

#[derive(Clone, Copy)]
enum Mesh {
    Istio,
    Nginx,
}

/// Serves one real request: decide its outcome under the lock, sleep without it, then record it.
async fn real_request(sim: Shared, mesh: Mesh, ns: &str, name: &str) -> ApiResult {
    let (what, kind) = match mesh {
        Mesh::Istio => ("workload", ISTIO),
        Mesh::Nginx => ("ingress", NGINX),
    };
    let key = Key::new(ns, name, what)?;
    let ticket = match mesh {
        Mesh::Istio => lock(&sim).begin_istio_request(&key),
        Mesh::Nginx => lock(&sim).begin_nginx_request(&key),
    };
    let ticket = ticket.ok_or_else(|| ApiError::not_found(kind, &key))?;
    tokio::time::sleep(Duration::from_micros(ticket.request.latency_us)).await;
    match mesh {
        Mesh::Istio => lock(&sim).finish_istio_request(&key, ticket),
        Mesh::Nginx => lock(&sim).finish_nginx_request(&key, ticket),
    }
    Ok(if ticket.request.error {
        (StatusCode::INTERNAL_SERVER_ERROR, "simulated error\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    })
}

async fn istio_traffic(State(sim): State<Shared>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    real_request(sim, Mesh::Istio, &ns, &name).await
}

async fn istio_traffic_suffix(
    State(sim): State<Shared>,
    Path((ns, name, _)): Path<(String, String, String)>,
) -> ApiResult {
    real_request(sim, Mesh::Istio, &ns, &name).await
}

async fn nginx_traffic(State(sim): State<Shared>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    real_request(sim, Mesh::Nginx, &ns, &name).await
}

async fn nginx_traffic_suffix(
    State(sim): State<Shared>,
    Path((ns, name, _)): Path<(String, String, String)>,
) -> ApiResult {
    real_request(sim, Mesh::Nginx, &ns, &name).await
}
