//! The controller: kube-runtime's `Controller` over Canaries, fed by the watches of everything a
//! Canary depends on, reconciling each with the pure decision core.

mod alerts;
mod context;
mod events;
mod finalize;
mod observe;
mod reconcile;
mod watches;
mod writes;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Client,
    runtime::controller::{self, Action},
};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use context::{Config, Context, Stores};
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
    #[error("cannot serialize an object: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("cannot update the finalizer of {name}: {source}")]
    Finalizer {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Write { .. } => "write",
            Error::Serialize(_) => "serialize",
            Error::Finalizer { .. } => "finalizer",
        }
    }
}

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
    #[error("leader election failed: {0}")]
    Lease(String),
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

    let (leader, lease_task) = if args.enable_leader_election {
        let (rx, task) = elect(&client, &args).await?;
        (rx, Some(task))
    } else {
        let (tx, rx) = watch::channel(true);
        std::mem::forget(tx); // always the leader
        (rx, None)
    };

    let (controller, stores) = watches::build(&client, &args.namespace).await;
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
        leader: leader.clone(),
        written: Default::default(),
        synced: admin.ready_flag(),
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
        tokio::spawn(async move {
            if wait_synced(&stores).await {
                tracing::info!("caches synced");
                admin.set_ready(true);
            }
        });
    }

    // A replica that becomes the leader reconciles every Canary at once.
    let became_leader = futures::stream::unfold(leader.clone(), |mut rx| async move {
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
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reconcile event");
            }
        });
    tracing::info!(namespace = %args.namespace, provider = %args.mesh_provider, "veer controller started");
    match lease_task {
        Some(task) => {
            tokio::select! {
                _ = run => {}
                r = task => return Err(StartError::Lease(format!("the lease task ended: {r:?}"))),
            }
        }
        None => run.await,
    }
    shutdown.trigger();
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
    tracing::warn!(canary = %name, error = %error, "reconcile failed; retrying");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::telemetry::ErrorLabels { kind: error.kind().into() })
        .inc();
    Action::requeue(Duration::from_secs(5))
}

async fn wait_synced(stores: &Stores) -> bool {
    let results = futures::join!(
        store_ready(&stores.canaries),
        store_ready(&stores.deployments),
        store_ready(&stores.daemonsets),
        store_ready(&stores.services),
        store_ready(&stores.configmaps),
        store_ready(&stores.secrets),
        store_ready(&stores.hpas),
        store_ready(&stores.ingresses),
        store_ready(&stores.metric_templates),
        store_ready(&stores.alert_providers),
    );
    let istio_ok = match &stores.istio {
        Some(i) => store_ready(&i.virtual_services).await && store_ready(&i.destination_rules).await,
        None => true,
    };
    let (a, b, c, d, e, f, g, h, i, j) = results;
    istio_ok && [a, b, c, d, e, f, g, h, i, j].into_iter().all(|ok| ok)
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

async fn elect(
    client: &Client,
    args: &ControllerArgs,
) -> Result<
    (
        watch::Receiver<bool>,
        tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
    ),
    StartError,
> {
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("veer-{}", std::process::id()));
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), "veer-leader-election")
        .with_namespace(args.lease_namespace())
        .with_field_manager(lease_field_manager(&identity))
        .with_identity(identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .map_err(|e| StartError::Lease(e.to_string()))?;
    Ok(manager.watch().await)
}

/// The field manager of one replica's Lease writes. It must differ between replicas: the lease
/// manager takes a free Lease with a server-side apply of `holderIdentity` (without force), and only a
/// different field manager makes a second replica's apply conflict. With one shared manager, two
/// replicas starting together (or taking over an expired Lease together) both became leaders until
/// the next renewal.
fn lease_field_manager(identity: &str) -> String {
    // The API server limits field manager names to 128 characters.
    format!("{}-lease-{identity}", crate::meta::FIELD_MANAGER).chars().take(128).collect()
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

    #[test]
    fn each_replica_writes_the_lease_as_its_own_field_manager() {
        assert_eq!(lease_field_manager("veer-6d9f-abcde"), "veer-lease-veer-6d9f-abcde");
        assert_ne!(lease_field_manager("veer-1"), lease_field_manager("veer-2"));
        assert_eq!(lease_field_manager(&"x".repeat(300)).len(), 128);
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
