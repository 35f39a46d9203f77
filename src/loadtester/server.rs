//! The HTTP API, answering as Flagger's load tester does (status codes and bodies) so Canaries
//! written for it work unchanged:
//!
//! | path | answer |
//! |---|---|
//! | `/` (any other path) | run the task in `metadata`: 202 (background), 200/500 (blocking) |
//! | `/gate/approve` | 200 `OK` |
//! | `/gate/halt` | 403 `Forbidden` |
//! | `/gate/check`, `/rollback/check` | 200 `Approved` if open, else 403 `Forbidden` |
//! | `/gate/open`, `/gate/close`, `/rollback/open`, `/rollback/close` | 202 |
//! | `/healthz` | 200 `OK`, never authenticated |
//! | `/metrics` | Prometheus text format |
//!
//! With authentication on ([`super::auth`]), a request without an acceptable token gets 401, one
//! with the token of a ServiceAccount that is not allowed 403, and 503 when the API server
//! cannot verify a ServiceAccount token.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::auth::{Authenticator, Caller, Decision, TokenReviewer};
use super::config::{Config, DEFAULT_READ_TIMEOUT};
use super::gates::{BadName, GateKind, GateStore, GateStoreError, check_canary, gate_key};
use super::metrics::Metrics;
use super::tasks::{self, TaskError, TaskRunner};
use crate::api::WebhookPayload;

/// A request the API answers with an error.
#[derive(Debug, Error)]
enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    AuthUnavailable(String),
    #[error("request body is larger than {0} bytes (--max-body-bytes); send only the webhook payload")]
    TooLarge(usize),
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {0:?} (--read-timeout)")]
    BodyTimeout(Duration),
    #[error(
        "invalid payload: {0}; send the webhook JSON, e.g. {{\"name\":\"podinfo\",\"namespace\":\"test\",\"metadata\":{{...}}}}"
    )]
    BadPayload(serde_json::Error),
    #[error(
        "Forbidden: namespace {namespace:?} does not match --namespace-regexp {pattern:?} (the whole namespace must match)"
    )]
    Namespace { namespace: String, pattern: String },
    #[error(transparent)]
    BadName(#[from] BadName),
    #[error("could not use the gate store: {0}")]
    Store(#[from] GateStoreError),
    #[error(transparent)]
    Task(#[from] TaskError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotAllowed(_) => StatusCode::FORBIDDEN,
            Self::AuthUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::BodyRead(_) | Self::BadPayload(_) | Self::BadName(_) => StatusCode::BAD_REQUEST,
            Self::Namespace { .. } => StatusCode::FORBIDDEN,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Task(e) => e.status(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, format!("{self}\n")).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
struct AppState {
    config: Arc<Config>,
    gates: Arc<dyn GateStore>,
    tasks: TaskRunner,
    metrics: Arc<Metrics>,
    auth: Arc<Authenticator>,
}

/// Builds the API with its own metrics registry and task runner. ServiceAccount tokens
/// (`config.token_review`) need [`router_with_reviewer`]; here they get 503.
pub fn router(config: Config, gates: Arc<dyn GateStore>) -> Router {
    build(config, gates, None)
}

/// [`router`], checking ServiceAccount tokens with `reviewer`.
pub fn router_with_reviewer(
    config: Config,
    gates: Arc<dyn GateStore>,
    reviewer: Arc<dyn TokenReviewer>,
) -> Router {
    build(config, gates, Some(reviewer))
}

fn build(config: Config, gates: Arc<dyn GateStore>, reviewer: Option<Arc<dyn TokenReviewer>>) -> Router {
    let metrics = Arc::new(Metrics::new());
    let tasks = TaskRunner::new(&config, metrics.clone());
    let auth = Arc::new(Authenticator::new(
        config.token.clone(),
        config.token_review.clone(),
        reviewer,
        config.unauthenticated_metrics,
    ));
    let state = AppState { config: Arc::new(config), gates, tasks, metrics, auth };
    Router::new()
        .route("/healthz", get(|| async { "OK" }))
        .route("/metrics", get(metrics_handler))
        .route("/gate/approve", any(gate_approve))
        .route("/gate/halt", any(gate_halt))
        .route("/gate/check", any(|s: State<AppState>, b: Body| check(s, b, GateKind::Gate)))
        .route("/gate/open", any(|s: State<AppState>, b: Body| set(s, b, GateKind::Gate, true)))
        .route("/gate/close", any(|s: State<AppState>, b: Body| set(s, b, GateKind::Gate, false)))
        .route("/rollback/check", any(|s: State<AppState>, b: Body| check(s, b, GateKind::Rollback)))
        .route("/rollback/open", any(|s: State<AppState>, b: Body| set(s, b, GateKind::Rollback, true)))
        .route("/rollback/close", any(|s: State<AppState>, b: Body| set(s, b, GateKind::Rollback, false)))
        // Flagger's load tester runs a task for any path it does not know.
        .fallback(run_task)
        // `layer`, not `route_layer`: the fallback (the task endpoint) must be covered too.
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, with the default read timeout.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, router, shutdown, DEFAULT_READ_TIMEOUT).await
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for the requests in
/// progress. HTTP/1.1, one request per connection: a connection that has not delivered its
/// request headers within `read_timeout` is closed, so slow or idle clients cannot pile up
/// connections; and with no keep-alive no idle connection is ever closed under a client that is
/// about to reuse it.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    read_timeout: Duration,
) -> io::Result<()> {
    // Dropping `stop` tells every connection to finish; `finished` closes when all have.
    let (stop, stopping) = watch::channel(());
    let (finished, running) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, for example: wait instead of spinning.
                    warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stopping = stopping.clone();
        let running = running.clone();
        tokio::spawn(async move {
            let _running = running;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(read_timeout).keep_alive(false);
            let mut conn = pin!(http.serve_connection(TokioIo::new(stream), service));
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    drop(stop);
    drop(running);
    finished.closed().await;
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let path = req.uri().path();
    let error = match state.auth.check(path, header).await {
        Decision::Allow(caller) => {
            if let Caller::ServiceAccount(user) = &caller {
                tracing::debug!(path, user, "ServiceAccount authenticated");
            }
            return next.run(req).await;
        }
        Decision::Unauthorized(why) => ApiError::Unauthorized(why),
        Decision::Forbidden(why) => ApiError::NotAllowed(why),
        Decision::Unavailable(why) => ApiError::AuthUnavailable(why),
    };
    warn!(path, "request refused: {error}");
    error.into_response()
}

async fn read_body(state: &AppState, body: Body) -> Result<Vec<u8>, ApiError> {
    let limit = state.config.max_body_bytes;
    let timeout = state.config.read_timeout;
    let read = tokio::time::timeout(timeout, to_bytes(body, limit)).await.map_err(|_| {
        warn!("request body not received within {timeout:?}");
        ApiError::BodyTimeout(timeout)
    })?;
    read.map(|b| b.to_vec()).map_err(|e| {
        // axum reports an over-limit body as an error whose source chain says "length limit".
        let too_large = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .any(|e| e.to_string().contains("length limit"));
        if too_large { ApiError::TooLarge(limit) } else { ApiError::BodyRead(e.to_string()) }
    })
}

/// Reads and parses the payload and applies --namespace-regexp.
async fn payload(state: &AppState, body: Body) -> Result<WebhookPayload, ApiError> {
    let bytes = read_body(state, body).await?;
    let payload: WebhookPayload = serde_json::from_slice(&bytes).map_err(ApiError::BadPayload)?;
    authorize_namespace(state, &payload.namespace)?;
    Ok(payload)
}

fn authorize_namespace(state: &AppState, namespace: &str) -> Result<(), ApiError> {
    match &state.config.namespaces {
        Some(filter) if !filter.allows(namespace) => {
            warn!(namespace, "payload namespace refused by --namespace-regexp");
            Err(ApiError::Namespace { namespace: namespace.to_owned(), pattern: filter.pattern().to_owned() })
        }
        _ => Ok(()),
    }
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// Flagger answers these without reading the body; with --namespace-regexp set the payload is
/// needed to know the namespace, so it is read and checked.
async fn namespace_only(state: &AppState, body: Body) -> Result<(), ApiError> {
    if state.config.namespaces.is_some() {
        payload(state, body).await?;
    }
    Ok(())
}

async fn gate_approve(State(state): State<AppState>, body: Body) -> Result<&'static str, ApiError> {
    namespace_only(&state, body).await?;
    Ok("OK")
}

async fn gate_halt(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, &'static str), ApiError> {
    namespace_only(&state, body).await?;
    Ok((StatusCode::FORBIDDEN, "Forbidden"))
}

async fn check(
    state: State<AppState>,
    body: Body,
    kind: GateKind,
) -> Result<(StatusCode, &'static str), ApiError> {
    let State(state) = state;
    let p = payload(&state, body).await?;
    let key = gate_key(kind, &p.name, &p.namespace)?;
    let open = state.gates.is_open(&key).await?;
    info!(key, open, "{} check", kind_name(kind));
    Ok(if open { (StatusCode::OK, "Approved") } else { (StatusCode::FORBIDDEN, "Forbidden") })
}

async fn set(
    state: State<AppState>,
    body: Body,
    kind: GateKind,
    open: bool,
) -> Result<(StatusCode, String), ApiError> {
    let State(state) = state;
    let p = payload(&state, body).await?;
    let key = gate_key(kind, &p.name, &p.namespace)?;
    state.gates.set(&key, open).await?;
    let verb = if open { "opened" } else { "closed" };
    info!(key, "{} {verb}", kind_name(kind));
    Ok((StatusCode::ACCEPTED, format!("{} {key} {verb}\n", kind_name(kind))))
}

fn kind_name(kind: GateKind) -> &'static str {
    match kind {
        GateKind::Gate => "gate",
        GateKind::Rollback => "rollback",
    }
}

async fn run_task(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let p = payload(&state, body).await?;
    let task_type = tasks::task_type(&p);
    // The name and namespace become metric labels and log fields: Kubernetes names only.
    if let Err(e) = check_canary(&p.name, &p.namespace) {
        state.metrics.task(&task_type, "invalid");
        return Err(e.into());
    }
    let plan = match tasks::plan(&p, &state.config) {
        Ok(plan) => plan,
        Err(e) => {
            let result = if e.status() == StatusCode::FORBIDDEN { "refused" } else { "invalid" };
            state.metrics.task(&task_type, result);
            warn!(canary = %format!("{}.{}", p.name, p.namespace), "task not run: {e}");
            return Err(e.into());
        }
    };
    let resp = state.tasks.submit(&p, plan).await;
    Ok((resp.status, resp.body).into_response())
}
