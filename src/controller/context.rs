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

/// The Canaries whose cached copy is older than a status this controller wrote: reconciling one of
/// them from the cache would decide again what was decided already (repeating a step's webhooks and
/// Events). Keyed by uid, with the resourceVersion that is stale and when the write happened.
#[derive(Default)]
pub struct WrittenStatuses(std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>);

impl WrittenStatuses {
    /// How long a stale cache is waited for; a watch event normally arrives within milliseconds.
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

    /// Records that the status of `canary` (as cached, at `stale_version`) was overwritten.
    pub fn remember(&self, canary: &Canary, stale_version: String) {
        let uid = canary.metadata.uid.clone().unwrap_or_default();
        self.0.lock().expect("written statuses lock").insert(uid, (stale_version, std::time::Instant::now()));
    }

    /// Whether `canary` is the cached copy from before this controller's last status write.
    pub fn is_stale(&self, canary: &Canary) -> bool {
        let uid = canary.metadata.uid.clone().unwrap_or_default();
        let mut map = self.0.lock().expect("written statuses lock");
        match map.get(&uid) {
            Some((version, at)) if canary.metadata.resource_version.as_ref() == Some(version) => {
                at.elapsed() < Self::PATIENCE
            }
            Some(_) => {
                map.remove(&uid);
                false
            }
            None => false,
        }
    }
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
    /// Status writes the cache has not seen yet.
    pub written: WrittenStatuses,
    /// Whether this replica leads; a replica that does not lead never writes.
    pub leader: watch::Receiver<bool>,
    /// Whether every cache holds its first complete list: the flag `/readyz` answers from.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CanarySpec;

    fn canary(version: &str) -> Canary {
        let mut c = Canary::new("podinfo", CanarySpec::default());
        c.metadata.uid = Some("uid-1".into());
        c.metadata.resource_version = Some(version.into());
        c
    }

    #[test]
    fn a_cache_older_than_our_write_is_stale_until_it_catches_up() {
        let written = WrittenStatuses::default();
        assert!(!written.is_stale(&canary("7")));
        written.remember(&canary("7"), "7".into());
        assert!(written.is_stale(&canary("7")), "the copy we overwrote");
        assert!(!written.is_stale(&canary("8")), "the watch delivered our write");
        assert!(!written.is_stale(&canary("7")), "forgotten once caught up");
    }
}
