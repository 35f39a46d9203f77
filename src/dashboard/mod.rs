//! `veer dashboard`: a web dashboard on the user's machine, with the user's own kubeconfig
//! credentials, bound to loopback unless told otherwise (see docs/dashboard.md).
//!
//! - `store`: what two watches (Canaries, and the Events about Canaries) deliver, and a bounded
//!   history per Canary recorded while the dashboard runs; pure.
//! - `view`: what the pages and JSON endpoints show: summaries, a Canary's timeline and metric
//!   series, and which buttons [`crate::analysis::request::admit`] allows; pure.
//! - `html`: the pages, rendered on the server; every value from the cluster escaped.
//! - `guard`: the `Host` check on every request, and the `Origin` and token checks on POSTs.
//!
//! The pages are served from the watch caches: a page view reads nothing from the cluster, except
//! the revision of a Canary's target (for its buttons), read once per change of the Canary. The
//! buttons call [`crate::actions::send`], as `veer promote|abort|retry|pause|resume` do.

mod guard;
mod html;
mod store;
mod view;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt;
use k8s_openapi::{api::core::v1::Event, jiff::Timestamp};
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use serde::Serialize;

use self::{
    guard::Guard,
    store::{Key, Store, Watch},
    view::{Control, Detail, Summary, TargetRevision},
};
use crate::{
    actions::{self, ActionError},
    api::Canary,
    workload::template_revision,
};

/// Flags of `veer dashboard`.
#[derive(clap::Args, Clone, Debug)]
pub struct DashboardArgs {
    /// Address to listen on. Keep it on loopback: whoever reaches the dashboard acts on the
    /// cluster with your credentials. Port 0 picks a free port (the URL is printed).
    #[arg(long, default_value = "127.0.0.1:3100")]
    pub address: SocketAddr,
    /// Namespace of the Canaries (default: the kubeconfig's).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// How long a button waits for Veer's answer.
    #[arg(long, default_value = "60s", value_parser = |s: &str| crate::duration::parse(s).map_err(|e| e.to_string()))]
    pub timeout: Duration,
}

/// Why `veer dashboard` stopped.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("cannot connect to Kubernetes (set KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("the web server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Random(#[from] guard::NoRandom),
}

/// Which Canaries the dashboard shows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    Namespace(String),
    All,
}

impl Scope {
    fn describe(&self) -> String {
        match self {
            Scope::Namespace(ns) => format!("namespace {ns}"),
            Scope::All => "all namespaces".into(),
        }
    }
}

/// How long a page waits for the target's revision before showing the buttons disabled.
const TARGET_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Targets' revisions remembered (per Canary, for its current resource version).
const TARGETS_REMEMBERED: usize = 4096;

/// What the handlers share.
#[derive(Clone)]
struct App {
    store: Arc<Mutex<Store>>,
    client: Client,
    guard: Arc<Guard>,
    scope: Arc<Scope>,
    timeout: Duration,
    /// The target revision of each Canary, for the resource version of the Canary it was read at.
    targets: Arc<Mutex<HashMap<Key, (String, TargetRevision)>>>,
}

/// The lock of shared state; a panic while holding it leaves the data as usable as before.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `veer dashboard` until SIGINT or SIGTERM.
pub async fn run(args: DashboardArgs) -> Result<(), DashboardError> {
    crate::http::install_crypto_provider();
    let client = Client::try_default().await.map_err(DashboardError::Client)?;
    let scope = match (args.all_namespaces, args.namespace) {
        (true, _) => Scope::All,
        (false, Some(ns)) => Scope::Namespace(ns),
        (false, None) => Scope::Namespace(client.default_namespace().to_string()),
    };
    let listener = tokio::net::TcpListener::bind(args.address)
        .await
        .map_err(|source| DashboardError::Listen { address: args.address, source })?;
    let address =
        listener.local_addr().map_err(|source| DashboardError::Listen { address: args.address, source })?;
    if !address.ip().is_loopback() {
        eprintln!(
            "veer dashboard: WARNING: listening on {address}, not on loopback: whoever reaches it sees your \
             Canaries and acts on them with your credentials"
        );
    }
    let (canaries, events): (Api<Canary>, Api<Event>) = match &scope {
        Scope::Namespace(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        Scope::All => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let store = Arc::new(Mutex::new(Store::default()));
    let watches = [
        tokio::spawn(watch_canaries(canaries, store.clone())),
        tokio::spawn(watch_events(events, store.clone())),
    ];
    let app = App {
        store,
        client,
        guard: Arc::new(Guard::new(address, guard::random_token()?)),
        scope: Arc::new(scope.clone()),
        timeout: args.timeout,
        targets: Arc::default(),
    };
    println!("Veer dashboard for {}: http://{address}/ (Ctrl-C stops it)", scope.describe());
    let shutdown = crate::signal::Shutdown::on_signals();
    let served = axum::serve(listener, router(app)).with_graceful_shutdown(shutdown.wait()).await;
    for w in watches {
        w.abort();
    }
    served.map_err(DashboardError::Serve)
}

/// Follows the Canaries into the store.
async fn watch_canaries(api: Api<Canary>, store: Arc<Mutex<Store>>) {
    let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(item) = stream.next().await {
        let now = Timestamp::now();
        let mut s = lock(&store);
        match item {
            Ok(watcher::Event::Init) => s.listing_started(),
            Ok(watcher::Event::InitApply(c)) => s.listed(c, now),
            Ok(watcher::Event::InitDone) => s.listing_done(now),
            Ok(watcher::Event::Apply(c)) => s.apply_canary(c, now),
            Ok(watcher::Event::Delete(c)) => s.delete_canary(&c, now),
            Err(e) => s.watch_failed(Watch::Canaries, watch_error(&e), now),
        }
    }
}

/// Follows the Events about Canaries into the store.
async fn watch_events(api: Api<Event>, store: Arc<Mutex<Store>>) {
    let config = watcher::Config::default().fields("involvedObject.kind=Canary");
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(item) = stream.next().await {
        let now = Timestamp::now();
        let mut s = lock(&store);
        match item {
            Ok(watcher::Event::Init | watcher::Event::Delete(_)) => {}
            Ok(watcher::Event::InitApply(e) | watcher::Event::Apply(e)) => s.apply_event(&e, now),
            Ok(watcher::Event::InitDone) => s.events_listed(),
            Err(e) => s.watch_failed(Watch::Events, watch_error(&e), now),
        }
    }
}

/// A watch's error in words: the API server's message when it refused (RBAC, say).
fn watch_error(e: &watcher::Error) -> String {
    use watcher::Error as W;
    let status = match e {
        W::InitialListFailed(kube::Error::Api(s))
        | W::WatchStartFailed(kube::Error::Api(s))
        | W::WatchFailed(kube::Error::Api(s))
        | W::WatchError(s) => s,
        W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e) => {
            return format!("cannot reach the API server: {e}");
        }
        W::NoResourceVersion => return e.to_string(),
    };
    match status.reason.as_str() {
        "" => format!("{} (HTTP {})", status.message, status.code),
        reason => format!("{reason}: {}", status.message),
    }
}

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

/// The routes, behind the `Host` check and with the security headers on every answer.
fn router(app: App) -> Router {
    Router::new()
        .route("/", get(overview_page))
        .route("/canaries/{namespace}/{name}", get(canary_page))
        .route(
            "/assets/dashboard.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }),
        )
        .route(
            "/assets/dashboard.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], JS) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/state", get(api_state))
        .route("/api/canaries", get(api_canaries))
        .route("/api/canaries/{namespace}/{name}", get(api_canary))
        .route("/api/canaries/{namespace}/{name}/{control}", post(api_control))
        .layer(middleware::from_fn_with_state(app.clone(), check_host))
        .layer(middleware::map_response(security_headers))
        .with_state(app)
}

/// Turns away requests for another host name (DNS rebinding).
async fn check_host(State(app): State<App>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok());
    match app.guard.check_host(host) {
        Ok(()) => next.run(request).await,
        Err(e) => (StatusCode::FORBIDDEN, e.to_string()).into_response(),
    }
}

/// No framing (clickjacking), no scripts or styles but the dashboard's own, no caching of pages
/// that hold the token.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl App {
    /// A page around `body`, with the store's state.
    fn page(&self, store: &Store, title: &str, body: &str, now: Timestamp) -> String {
        let frame = html::Frame {
            title,
            scope: &self.scope.describe(),
            token: self.guard.token(),
            generation: store.generation(),
            canaries: store.health(Watch::Canaries),
            events: store.health(Watch::Events),
            now,
        };
        html::page(&frame, body)
    }

    /// The revision the Canary's target holds, read once per resource version of the Canary (the
    /// controller updates the Canary when its target changes). Errors are not remembered.
    async fn target_revision(&self, key: &Key, canary: &Canary) -> TargetRevision {
        let version = canary.resource_version().unwrap_or_default();
        if let Some((v, t)) = lock(&self.targets).get(key)
            && *v == version
        {
            return t.clone();
        }
        let read = crate::wait::target_template(&self.client, &key.namespace, canary);
        let target = match tokio::time::timeout(TARGET_READ_TIMEOUT, read).await {
            Ok(Ok(template)) => {
                TargetRevision::Known(template.map(|t| template_revision(&t)).unwrap_or_default())
            }
            Ok(Err(e)) => return TargetRevision::Unreadable(e.to_string()),
            Err(_) => {
                return TargetRevision::Unreadable(format!(
                    "cannot read the target of {key}: no answer within {TARGET_READ_TIMEOUT:?}"
                ));
            }
        };
        let mut targets = lock(&self.targets);
        if targets.len() >= TARGETS_REMEMBERED {
            targets.clear();
        }
        targets.insert(key.clone(), (version, target.clone()));
        target
    }

    /// A Canary's page model; `None` when the dashboard knows nothing of it.
    async fn detail(&self, key: &Key) -> Option<Detail> {
        let canary = lock(&self.store).get(key).and_then(|t| t.canary.clone());
        let target = match &canary {
            Some(c) => self.target_revision(key, c).await,
            None => TargetRevision::Known(String::new()),
        };
        let store = lock(&self.store);
        store.get(key).map(|tracked| Detail::of(key, tracked, &target, Timestamp::now()))
    }

    fn summaries(&self, store: &Store, now: Timestamp) -> Vec<Summary> {
        store.live().map(|c| Summary::of(c, now)).collect()
    }
}

async fn overview_page(State(app): State<App>) -> Response {
    let now = Timestamp::now();
    let store = lock(&app.store);
    let body = html::overview(&app.summaries(&store, now), &app.scope.describe());
    Html(app.page(&store, "Canaries", &body, now)).into_response()
}

async fn canary_page(State(app): State<App>, Path((namespace, name)): Path<(String, String)>) -> Response {
    let key = Key::new(&namespace, &name);
    let detail = app.detail(&key).await;
    let now = Timestamp::now();
    let store = lock(&app.store);
    let title = key.to_string();
    match detail {
        Some(d) => Html(app.page(&store, &title, &html::canary(&d, now), now)).into_response(),
        None => {
            let body = html::unknown(&namespace, &name, &app.scope.describe());
            (StatusCode::NOT_FOUND, Html(app.page(&store, &title, &body, now))).into_response()
        }
    }
}

/// `GET /api/state`: what the pages poll.
#[derive(Serialize)]
struct StateView<'a> {
    /// Moves at every change the dashboard saw.
    generation: u64,
    canaries: &'a store::WatchHealth,
    events: &'a store::WatchHealth,
}

async fn api_state(State(app): State<App>) -> Response {
    let store = lock(&app.store);
    Json(StateView {
        generation: store.generation(),
        canaries: store.health(Watch::Canaries),
        events: store.health(Watch::Events),
    })
    .into_response()
}

async fn api_canaries(State(app): State<App>) -> Response {
    let store = lock(&app.store);
    Json(app.summaries(&store, Timestamp::now())).into_response()
}

/// What a POST answers: whether it was done, and Veer's answer or the refusal, in words.
#[derive(Debug, Serialize)]
struct Answer {
    ok: bool,
    message: String,
}

fn answer(status: StatusCode, ok: bool, message: String) -> Response {
    (status, Json(Answer { ok, message })).into_response()
}

async fn api_canary(State(app): State<App>, Path((namespace, name)): Path<(String, String)>) -> Response {
    let key = Key::new(&namespace, &name);
    match app.detail(&key).await {
        Some(d) => Json(d).into_response(),
        None => answer(StatusCode::NOT_FOUND, false, format!("no Canary {key} in {}", app.scope.describe())),
    }
}

async fn api_control(
    State(app): State<App>,
    Path((namespace, name, control)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = app.guard.check_post(&headers) {
        return answer(StatusCode::FORBIDDEN, false, e.to_string());
    }
    let Some(control) = Control::parse(&control) else {
        return answer(StatusCode::NOT_FOUND, false, format!("no action {control:?}"));
    };
    let key = Key::new(&namespace, &name);
    // Only the Canaries on show: the dashboard acts on nothing else.
    if lock(&app.store).get(&key).is_none_or(|t| t.canary.is_none()) {
        return answer(StatusCode::NOT_FOUND, false, format!("no Canary {key} in {}", app.scope.describe()));
    }
    match actions::send(&app.client, &namespace, &name, control.operation(), app.timeout).await {
        Ok(message) => answer(StatusCode::OK, true, message),
        Err(e) => answer(status_of(&e), false, e.to_string()),
    }
}

/// The HTTP status of a failed action.
fn status_of(e: &ActionError) -> StatusCode {
    match e {
        ActionError::NotFound(_) => StatusCode::NOT_FOUND,
        ActionError::Refused { .. } | ActionError::Pending { .. } | ActionError::RefusedByVeer { .. } => {
            StatusCode::CONFLICT
        }
        ActionError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        ActionError::Write { source: kube::Error::Api(s), .. } if s.code == 403 => StatusCode::FORBIDDEN,
        ActionError::Read(r) if matches!(&r.source, kube::Error::Api(s) if s.code == 403) => {
            StatusCode::FORBIDDEN
        }
        ActionError::Client(_) | ActionError::Read(_) | ActionError::Write { .. } => StatusCode::BAD_GATEWAY,
    }
}

#[cfg(test)]
mod tests;
