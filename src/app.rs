//! The composition root of `veer controller`: turns the flags into configuration, checks what the
//! controller needs before it starts, and wires the parts together (client, self-metrics and admin
//! server, leader election, watches, the reconcile context). What runs, and in which order, is
//! read here; what each part does is in its module.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use k8s_openapi::{
    api::coordination::v1::Lease,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{Api, Client, api::ListParams};
use prometheus_client::registry::Registry;

use crate::{
    analysis::Settings,
    api::Canary,
    cli::ControllerArgs,
    controller::{self, CacheHealth, Config, Context, EventQueue, Leadership},
    metrics::MetricsConfig,
    notify::GlobalAlerts,
    signal::Shutdown,
    telemetry::{Admin, ControllerMetrics, InfoLabels},
    webhook::WebhookClient,
};

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
    Metrics(#[source] crate::metrics::ClientError),
    #[error("{0}")]
    Notifier(#[from] crate::notify::ClientError),
    #[error("admin server on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl From<&ControllerArgs> for Config {
    fn from(args: &ControllerArgs) -> Config {
        Config {
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
        }
    }
}

impl From<&ControllerArgs> for MetricsConfig {
    fn from(args: &ControllerArgs) -> MetricsConfig {
        MetricsConfig {
            default_server: args.metrics_server.clone(),
            mesh_provider: args.mesh_provider.clone(),
            ..Default::default()
        }
    }
}

impl From<&ControllerArgs> for GlobalAlerts {
    fn from(a: &ControllerArgs) -> GlobalAlerts {
        GlobalAlerts {
            slack_url: a.slack_url.clone(),
            slack_token: a.slack_token.clone(),
            slack_proxy: a.slack_proxy_url.clone(),
            slack_user: a.slack_user.clone(),
            slack_channel: a.slack_channel.clone(),
            msteams_url: a.msteams_url.clone(),
            msteams_proxy: a.msteams_proxy_url.clone(),
            cluster_name: a.cluster_name.clone(),
        }
    }
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(args: ControllerArgs) -> Result<(), StartError> {
    crate::http::install_crypto_provider();
    let client = Client::try_default().await.map_err(StartError::Client)?;
    check_crds(&client).await?;

    // Self-metrics and the admin server (/metrics, /healthz, /readyz).
    let mut registry = Registry::default();
    let metrics = ControllerMetrics::register(&mut registry);
    let info =
        InfoLabels { version: env!("CARGO_PKG_VERSION").into(), mesh_provider: args.mesh_provider.clone() };
    metrics.info.get_or_create(&info).set(1);
    let admin = Admin::new(registry);
    let shutdown = Shutdown::on_signals();
    let addr = SocketAddr::new(args.listen_address, args.port);
    let admin_task = tokio::spawn({
        let admin = admin.clone();
        let stop = shutdown.clone();
        async move { admin.serve(addr, stop.wait()).await }
    });

    // Leader election: a replica writes only while it holds the Lease.
    let leadership = if args.enable_leader_election { Leadership::elected() } else { Leadership::always() };
    // Events are recorded in the background, while this replica leads.
    let (events, event_worker) = EventQueue::new(
        controller::EventRecorder::new(client.clone(), "veer"),
        leadership.clone(),
        &metrics,
        Default::default(),
    );
    tokio::spawn(event_worker.run());
    let lease_task = args.enable_leader_election.then(|| {
        let api: Api<Lease> = Api::namespaced(client.clone(), &args.lease_namespace());
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("veer-{}", std::process::id()));
        tracing::info!(identity = %identity, namespace = %args.lease_namespace(), "leader election on");
        // On shutdown the queued Events are recorded first (for a bounded time), while the
        // Lease is still held; then it is released.
        let stop = {
            let (shutdown, events) = (shutdown.clone(), events.clone());
            async move {
                shutdown.wait().await;
                events.drain(controller::EVENT_DRAIN).await;
            }
        };
        tokio::spawn(controller::lead(api, LEASE_NAME.into(), identity, leadership.clone(), stop))
    });

    let (watched, stores) = controller::watch(&client, &args.namespace).await;
    let canaries = stores.canaries.clone();
    metrics.canary_total.count_with(Box::new(move || {
        let mut counts = std::collections::BTreeMap::new();
        for c in canaries.state() {
            *counts.entry(kube::ResourceExt::namespace(&*c).unwrap_or_default()).or_insert(0) += 1;
        }
        counts
    }));
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: Config::from(&args),
        stores,
        events: events.clone(),
        webhooks: WebhookClient::new()?
            .with_token_file(args.webhook_token_file.as_deref(), &args.webhook_token_hosts)
            .await?,
        queries: crate::metrics::MetricQueries::new(MetricsConfig::from(&args))
            .map_err(StartError::Metrics)?,
        notifier: crate::notify::Notifier::new(GlobalAlerts::from(&args)).map_err(StartError::Notifier)?,
        metrics,
        leadership,
        written: Default::default(),
        retries: Default::default(),
        wakes: Default::default(),
        synced: admin.ready_flag(),
        caches: Arc::new(CacheHealth::default()),
    });

    tracing::info!(namespace = %args.namespace, provider = %args.mesh_provider, "veer controller started");
    controller::run(watched, ctx, args.concurrency, shutdown.clone()).await;
    shutdown.trigger();
    // Without leader election (with it, the lease task has drained the queue already and no
    // longer leads): the Events of the last reconciles, for a bounded time.
    events.drain(controller::EVENT_DRAIN).await;
    if let Some(task) = lease_task {
        // The lease task releases the Lease on shutdown, so that another replica takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    match admin_task.await {
        Ok(Err(source)) => Err(StartError::Admin { addr, source }),
        _ => Ok(()),
    }
}

/// Fails fast with a clear message when the CRDs are missing, and refuses to run on Flagger's
/// Canary CRD: the API server would prune `status.lastStepTime` (and the other fields Veer
/// remembers runs in), and steps would no longer be spaced by the interval.
async fn check_crds(client: &Client) -> Result<(), StartError> {
    let canaries: Api<Canary> = Api::all(client.clone());
    canaries.list(&ListParams::default().limit(1)).await.map_err(StartError::Crds)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    match api.get("canaries.flagger.app").await {
        Ok(crd) if is_veer_crd(&crd) => Ok(()),
        Ok(_) => Err(StartError::ForeignCrd),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the canaries.flagger.app CRD; make sure Veer's CRDs are installed");
            Ok(())
        }
    }
}

fn is_veer_crd(crd: &CustomResourceDefinition) -> bool {
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

#[cfg(test)]
mod tests {
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
    fn flags_become_the_controller_configuration() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: ControllerArgs,
        }
        let cli = Cli::parse_from([
            "veer",
            "--mesh-provider=nginx",
            "--event-webhook=",
            "--slack-url=https://hooks.example/x",
            "--no-cross-namespace-refs",
        ]);
        let config = Config::from(&cli.args);
        assert_eq!(config.settings.mesh_provider, "nginx");
        assert_eq!(config.event_webhook, None, "an empty --event-webhook is none");
        assert!(config.no_cross_namespace_refs);
        assert_eq!(MetricsConfig::from(&cli.args).mesh_provider, "nginx");
        assert_eq!(GlobalAlerts::from(&cli.args).slack_url, "https://hooks.example/x");
    }
}
