//! The controller: kube-runtime's `Controller` over Canaries, fed by the watches of everything a
//! Canary depends on, reconciling each with the pure decision core.

mod alerts;
mod context;
mod events;
mod finalize;
mod leader;
mod observe;
mod reconcile;
mod watches;
mod writes;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Client,
    runtime::controller::{self, Action},
};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use context::{CacheHealth, Config, Context, Stores};
pub use watches::istio_resource;
pub use writes::is_subset;

use crate::{
    analysis::Settings,
    api::Canary,
    cli::ControllerArgs,
    telemetry::{Admin, InfoLabels, Metrics},
    webhook::WebhookClient,
};

/// Infrastructure failures of a reconcile. Analysis failures are not errors: they are data in the
/// Canary status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {kind} {name}: {source}")]
    Write {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The object changed since it was read (a resourceVersion precondition failed): not a fault.
    #[error("{kind} {name} changed since it was read")]
    Conflict { kind: String, name: String },
    #[error("cannot serialize an object: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("cannot update the finalizer of {name}: {source}")]
    Finalizer {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Something the user must fix, found while carrying out a decision (e.g. a VirtualService
    /// whose routes cannot be rewritten).
    #[error("{message}")]
    Invalid { reason: &'static str, message: String },
    /// A panic inside the reconcile, caught.
    #[error("internal error: {0}")]
    Panic(String),
    /// This replica does not lead (any more): it must not write.
    #[error("not the leader")]
    NotLeader,
    /// The API server did not answer a write in time.
    #[error("the API server did not answer a write within {0:?}")]
    TimedOut(Duration),
}

/// Longest API server message quoted on a Canary.
const MAX_QUOTED: usize = 512;

impl Error {
    /// A stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Write { .. } => "write",
            Error::Conflict { .. } => "conflict",
            Error::Serialize(_) => "serialize",
            Error::Finalizer { .. } => "finalizer",
            Error::Invalid { .. } => "invalid",
            Error::Panic(_) => "panic",
            Error::NotLeader => "not-leader",
            Error::TimedOut(_) => "timeout",
        }
    }

    fn api_error(&self) -> Option<&kube::Error> {
        match self {
            Error::Write { source, .. } | Error::Finalizer { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the API server refused the request for good (4xx other than 409 and 429): an RBAC
    /// rule, a quota, an admission policy or an invalid object. Retrying alone will not help.
    fn is_rejection(&self) -> bool {
        matches!(self.api_error(), Some(kube::Error::Api(s)) if (400..500).contains(&s.code) && s.code != 409 && s.code != 429)
    }

    /// The reason of the `Stalled` condition that shows this failure on the Canary.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Invalid { reason, .. } => reason,
            Error::Panic(_) | Error::Serialize(_) => "InternalError",
            _ if self.is_rejection() => "WriteRejected",
            _ => "ApiUnavailable",
        }
    }

    /// After how many failures in a row this kind of failure is shown on the Canary: at once when
    /// retrying alone cannot fix it, after three tries for what is usually transient (a restarting
    /// or overloaded API server).
    pub fn is_reported_after(&self, failures: u32) -> bool {
        match self {
            Error::Conflict { .. } | Error::NotLeader => false,
            Error::Write { .. } | Error::Finalizer { .. } | Error::TimedOut(_) if !self.is_rejection() => {
                failures >= 3
            }
            _ => true,
        }
    }

    /// What the Canary says about the failure: what failed, the API server's answer, what to do.
    pub fn advice(&self, canary: &str) -> String {
        let quoted = |s: &str| match s.char_indices().nth(MAX_QUOTED) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s.to_string(),
        };
        match self {
            Error::Panic(message) => format!(
                "Canary {canary}: internal error while reconciling: {}. The other Canaries are not \
                 affected and this one is retried with backoff; please report this as a bug, with the \
                 controller's log",
                quoted(message)
            ),
            Error::Invalid { message, .. } => quoted(message),
            Error::Write { source, .. } | Error::Finalizer { source, .. } if self.is_rejection() => {
                let what = match self {
                    Error::Write { kind, name, .. } => format!("{kind} {name}"),
                    _ => "the finalizer of the Canary".to_string(),
                };
                let (code, reason, message) = match source {
                    kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
                    other => (0, String::new(), other.to_string()),
                };
                let fix = match code {
                    403 => {
                        "grant it to the controller's ServiceAccount (see the Helm chart's RBAC), \
                            or raise the quota or relax the admission policy that denied it"
                    }
                    404 => "create what is missing (the namespace, or the object Veer patches)",
                    _ => {
                        "fix the Canary, or the object it generates from, so that the object is valid \
                          (or relax the admission policy that denied it)"
                    }
                };
                format!(
                    "Canary {canary}: the API server rejected the write of {what} (HTTP {code} {reason}): {}; \
                     {fix}. Veer retries with backoff",
                    quoted(&message)
                )
            }
            other => format!(
                "Canary {canary}: {}; the API server is unavailable or overloaded, Veer retries with backoff",
                quoted(&other.to_string())
            ),
        }
    }
}

/// The name of the leader election Lease (in `--leader-election-namespace`).
pub const LEASE_NAME: &str = "veer-leader-election";

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to Kubernetes (set KUBECONFIG or run in a cluster): {0}")]
    Client(#[source] kube::Error),
    #[error("the flagger.app CRDs are not installed (apply crds/crds.yaml or install the Helm chart): {0}")]
    Crds(#[source] kube::Error),
    #[error(
        "the installed canaries.flagger.app CRD is not Veer's (Flagger's lacks the status fields Veer needs, \
         and the API server would drop them): apply Veer's CRDs first, e.g. `veer crds | kubectl apply --server-side -f -`"
    )]
    ForeignCrd,
    #[error("{0}")]
    Http(#[from] crate::webhook::ClientError),
    #[error("cannot build the metrics client: {0}")]
    Metrics(String),
    #[error("cannot build the alert client: {0}")]
    Notifier(String),
    #[error("admin server on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(args: ControllerArgs) -> Result<(), StartError> {
    crate::http::install_crypto_provider();
    let client = Client::try_default().await.map_err(StartError::Client)?;
    // Fail fast with a clear message when the CRDs are missing.
    let canaries: kube::Api<Canary> = kube::Api::all(client.clone());
    canaries.list(&kube::api::ListParams::default().limit(1)).await.map_err(StartError::Crds)?;
    check_crd(&client).await?;

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    metrics
        .info
        .get_or_create(&InfoLabels {
            version: env!("CARGO_PKG_VERSION").into(),
            mesh_provider: args.mesh_provider.clone(),
        })
        .set(1);
    let admin = Admin::new(registry);
    let shutdown = shutdown_signal();

    let leadership = if args.enable_leader_election {
        leader::Leadership::elected()
    } else {
        leader::Leadership::always()
    };
    let lease_task = args.enable_leader_election.then(|| {
        let api: kube::Api<Lease> = kube::Api::namespaced(client.clone(), &args.lease_namespace());
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("veer-{}", std::process::id()));
        tracing::info!(identity = %identity, namespace = %args.lease_namespace(), "leader election on");
        let stop = shutdown.clone();
        tokio::spawn(leader::run(api, LEASE_NAME.into(), identity, leadership.clone(), async move {
            stop.wait().await
        }))
    });

    let (controller, stores) = watches::build(&client, &args.namespace).await;
    let caches = Arc::new(CacheHealth::default());
    let config = Config {
        settings: Settings {
            mesh_provider: args.mesh_provider.clone(),
            min_interval: args.min_analysis_interval,
        },
        metrics_server: args.metrics_server.clone(),
        selector_labels: args.selector_labels.clone(),
        label_prefixes: args.label_prefixes(),
        ingress_annotations_prefix: args.ingress_annotations_prefix.clone(),
        config_tracking: args.enable_config_tracking,
        event_webhook: Some(args.event_webhook.clone()).filter(|s| !s.is_empty()),
        cluster_name: args.cluster_name.clone(),
        no_cross_namespace_refs: args.no_cross_namespace_refs,
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        config,
        stores: stores.clone(),
        recorder: events::EventRecorder::new(client.clone(), "veer"),
        webhooks: WebhookClient::new()?
            .with_token_file(args.webhook_token_file.as_deref(), &args.webhook_token_hosts)
            .await?,
        queries: crate::metrics::Metrics::new(crate::metrics::MetricsConfig {
            default_server: args.metrics_server.clone(),
            mesh_provider: args.mesh_provider.clone(),
            ..Default::default()
        })
        .map_err(|e| StartError::Metrics(e.to_string()))?,
        notifier: crate::notify::Notifier::new(crate::notify::GlobalAlerts::from(&args))
            .map_err(|e| StartError::Notifier(e.to_string()))?,
        metrics,
        leadership: leadership.clone(),
        written: Default::default(),
        retries: Default::default(),
        synced: admin.ready_flag(),
        caches: caches.clone(),
    });

    let addr = SocketAddr::new(args.listen_address, args.port);
    let admin_task = {
        let admin = admin.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { admin.serve(addr, async move { shutdown.wait().await }).await })
    };
    // Ready once every cache holds a first complete list.
    {
        let admin = admin.clone();
        let stores = stores.clone();
        let caches = caches.clone();
        tokio::spawn(async move {
            if wait_synced(&stores, &caches).await {
                tracing::info!("caches synced");
                admin.set_ready(true);
            }
        });
    }

    // A replica that becomes the leader reconciles every Canary at once.
    let became_leader = futures::stream::unfold(leadership.subscribe(), |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow() {
                return Some(((), rx));
            }
        }
    });
    let stop = shutdown.clone();
    let run = controller
        .with_config(
            controller::Config::default().concurrency(args.concurrency).debounce(Duration::from_millis(50)),
        )
        .reconcile_all_on(became_leader)
        .graceful_shutdown_on(async move { stop.wait().await })
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(move |r| {
            if let Err(e) = r {
                if let controller::Error::QueueError(watch) = &e {
                    caches.watch_failed(watch.to_string());
                }
                tracing::debug!(error = %e, "reconcile event");
            }
            futures::future::ready(())
        });
    tracing::info!(namespace = %args.namespace, provider = %args.mesh_provider, "veer controller started");
    run.await;
    shutdown.trigger();
    if let Some(task) = lease_task {
        // The lease task releases the Lease on shutdown, so that another replica takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    match admin_task.await {
        Ok(Err(source)) => Err(StartError::Admin { addr, source }),
        _ => Ok(()),
    }
}

/// Refuses to run on Flagger's Canary CRD: the API server would prune `status.lastStepTime` (and
/// the other fields Veer remembers runs in), and steps would no longer be spaced by the interval.
async fn check_crd(client: &Client) -> Result<(), StartError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    match api.get("canaries.flagger.app").await {
        Ok(crd) if is_veer_crd(&crd) => Ok(()),
        Ok(_) => Err(StartError::ForeignCrd),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the canaries.flagger.app CRD; make sure Veer's CRDs are installed");
            Ok(())
        }
    }
}

fn is_veer_crd(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> bool {
    crd.spec.versions.iter().filter(|v| v.name == crate::api::VERSION).any(|v| {
        let status = v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| s.properties.as_ref())
            .and_then(|p| p.get("status"))
            .and_then(|s| s.properties.as_ref());
        status.is_some_and(|p| p.contains_key("lastStepTime"))
    })
}

fn error_policy(canary: Arc<Canary>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = format!(
        "{}.{}",
        canary.metadata.name.as_deref().unwrap_or(""),
        canary.metadata.namespace.as_deref().unwrap_or("")
    );
    let delay = ctx.retries.delay(&canary);
    tracing::warn!(canary = %name, error = %error, retry_in = ?delay, "reconcile failed; retrying");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::telemetry::ErrorLabels { kind: error.kind().into() })
        .inc();
    Action::requeue(delay)
}

/// Waits until every cache holds a first complete list, marking each in `health` as it does.
async fn wait_synced(stores: &Stores, health: &CacheHealth) -> bool {
    async fn track<K>(
        store: &kube::runtime::reflector::Store<K>,
        kind: &'static str,
        health: &CacheHealth,
    ) -> bool
    where
        K: kube::Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        health.filling(kind);
        let ready = store_ready(store).await;
        if ready {
            health.synced(kind);
        }
        ready
    }
    let istio = async {
        match &stores.istio {
            Some(i) => {
                let (v, d) = futures::join!(
                    track(&i.virtual_services, "VirtualServices", health),
                    track(&i.destination_rules, "DestinationRules", health)
                );
                v && d
            }
            None => true,
        }
    };
    let ready = futures::join!(
        track(&stores.canaries, "Canaries", health),
        track(&stores.deployments, "Deployments", health),
        track(&stores.daemonsets, "DaemonSets", health),
        track(&stores.services, "Services", health),
        track(&stores.configmaps, "ConfigMaps", health),
        track(&stores.secrets, "Secrets", health),
        track(&stores.hpas, "HorizontalPodAutoscalers", health),
        track(&stores.ingresses, "Ingresses", health),
        track(&stores.metric_templates, "MetricTemplates", health),
        track(&stores.alert_providers, "AlertProviders", health),
        istio,
    );
    let (a, b, c, d, e, f, g, h, i, j, k) = ready;
    [a, b, c, d, e, f, g, h, i, j, k].into_iter().all(|ok| ok)
}

/// Whether the store got its first complete list (false: its writer is gone).
///
/// `Store::wait_until_ready` wakes only the last of several concurrent waiters (kube-runtime's
/// `DelayedInit` keeps a single waker), and the Controller's applier waits on the Canary store as
/// well; a readiness task that relied on its wake-up could sleep forever and /readyz stay 503. So
/// ask again every 100 ms: once the store is ready, the next poll returns at once.
async fn store_ready<K>(store: &kube::runtime::reflector::Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(result) = tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await {
            return result.is_ok();
        }
    }
}

/// Fires once on SIGTERM or SIGINT; cheap to clone.
#[derive(Clone)]
struct Shutdown(watch::Receiver<bool>, Arc<watch::Sender<bool>>);

fn shutdown_signal() -> Shutdown {
    let (tx, rx) = watch::channel(false);
    let tx = Arc::new(tx);
    let signal_tx = tx.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = signal_tx.send(true);
    });
    Shutdown(rx, tx)
}

impl Shutdown {
    async fn wait(mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }

    fn trigger(&self) {
        let _ = self.1.send(true);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{reflector, watcher};

    use super::*;

    #[test]
    fn veer_crds_are_recognised() {
        let crds = crate::api::schema::crds();
        assert!(is_veer_crd(&crds[0]));
        let mut flaggers = crds[0].clone();
        let schema = flaggers.spec.versions[0].schema.as_mut().unwrap().open_api_v3_schema.as_mut().unwrap();
        let status = schema.properties.as_mut().unwrap().get_mut("status").unwrap();
        status.properties.as_mut().unwrap().remove("lastStepTime");
        assert!(!is_veer_crd(&flaggers));
    }

    /// kube-runtime's Controller waits on the Canary store too (before its first reconcile). Its
    /// `DelayedInit` keeps one waker, so the readiness task must not depend on being woken.
    #[tokio::test]
    async fn readiness_survives_a_second_waiter() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let ours = tokio::spawn({
            let store = store.clone();
            async move { store_ready(&store).await }
        });
        tokio::task::yield_now().await; // the readiness task waits first ...
        let mut other = Box::pin(store.wait_until_ready()); // ... then the Controller's applier
        assert!(futures::poll!(&mut other).is_pending());
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let done = tokio::time::timeout(Duration::from_secs(5), ours).await;
        assert!(matches!(done, Ok(Ok(true))), "the readiness task never woke up: {done:?}");
    }
}
