//! What every reconcile shares: the client, the caches, the settings, the recorders.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{ConfigMap, Secret, Service},
    networking::v1::Ingress,
};
use kube::{Client, Resource, api::DynamicObject, runtime::reflector::Store};
use tokio::sync::watch;

use crate::{
    analysis::Settings,
    api::{AlertProvider, Canary, MetricTemplate},
    telemetry::Metrics,
    webhook::WebhookClient,
};

/// Controller-wide configuration derived from the flags.
#[derive(Clone, Debug)]
pub struct Config {
    pub settings: Settings,
    pub metrics_server: String,
    pub selector_labels: Vec<String>,
    pub label_prefixes: Vec<String>,
    pub ingress_annotations_prefix: String,
    pub config_tracking: bool,
    pub event_webhook: Option<String>,
    pub cluster_name: String,
}

/// The reflector caches every reconcile reads from; nothing is fetched per tick.
#[derive(Clone)]
pub struct Stores {
    pub canaries: Store<Canary>,
    pub deployments: Store<Deployment>,
    pub daemonsets: Store<DaemonSet>,
    pub services: Store<Service>,
    pub configmaps: Store<ConfigMap>,
    pub secrets: Store<Secret>,
    pub hpas: Store<HorizontalPodAutoscaler>,
    pub ingresses: Store<Ingress>,
    pub metric_templates: Store<MetricTemplate>,
    pub alert_providers: Store<AlertProvider>,
    /// Istio objects; `None` when the Istio CRDs are not installed.
    pub istio: Option<IstioStores>,
}

/// Caches of Istio objects (no typed Rust API exists for them).
#[derive(Clone)]
pub struct IstioStores {
    pub virtual_services: Store<DynamicObject>,
    pub destination_rules: Store<DynamicObject>,
}

/// Looks an object up in a store by namespace and name.
pub fn cached<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    store.get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))
}

/// Looks up a dynamic object (Istio) by namespace and name.
pub fn cached_dynamic(
    store: &Store<DynamicObject>,
    ar: &kube::api::ApiResource,
    namespace: &str,
    name: &str,
) -> Option<Arc<DynamicObject>> {
    store.get(&kube::runtime::reflector::ObjectRef::new_with(name, ar.clone()).within(namespace))
}

/// Shared state of the reconciler.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub stores: Stores,
    pub recorder: super::events::EventRecorder,
    pub webhooks: WebhookClient,
    /// Metric queries (Prometheus).
    pub queries: crate::metrics::Metrics,
    /// Alert delivery.
    pub notifier: crate::notify::Notifier,
    /// The controller's own metrics.
    pub metrics: Metrics,
    /// Whether this replica leads; a replica that does not lead never writes.
    pub leader: watch::Receiver<bool>,
    /// Whether every cache holds its first complete list (set once, by the readiness task).
    pub synced: Arc<AtomicBool>,
}

impl Context {
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }
}
