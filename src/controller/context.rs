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
use kube::{
    Client, Resource,
    api::{ApiResource, DynamicObject},
    runtime::reflector::{ObjectRef, Store},
};

use crate::{
    analysis::Settings,
    api::{AlertProvider, Canary, MetricTemplate},
    telemetry::ControllerMetrics,
    webhook::WebhookClient,
};

/// The longest a single write to the API server may take.
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    /// `--no-cross-namespace-refs`.
    pub no_cross_namespace_refs: bool,
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
    /// HTTPRoutes; `None` when the Gateway API CRDs are not installed.
    pub gateway_api: Option<VersionedStore>,
    /// SMI TrafficSplits; `None` when their CRD is not installed.
    pub smi: Option<VersionedStore>,
}

/// The cache of a kind served in several versions (HTTPRoute, TrafficSplit), watched in one of
/// them; the API server serves the same objects in every version it lists.
#[derive(Clone)]
pub struct VersionedStore {
    pub store: Store<DynamicObject>,
    /// The version watched.
    pub watched: ApiResource,
    /// Every version of the kind the API server serves.
    pub served: Vec<String>,
}

impl VersionedStore {
    /// The cache, if `kind` is this kind in a version the API server serves.
    fn serving(&self, kind: &ApiResource) -> Option<(&Store<DynamicObject>, ApiResource)> {
        let same = kind.group == self.watched.group && kind.kind == self.watched.kind;
        (same && self.served.contains(&kind.version)).then(|| (&self.store, self.watched.clone()))
    }
}

/// Caches of Istio objects (no typed Rust API exists for them).
#[derive(Clone)]
pub struct IstioStores {
    pub virtual_services: Store<DynamicObject>,
    pub destination_rules: Store<DynamicObject>,
}

impl Stores {
    /// The cache of a dynamic kind (Istio's, Gateway API's, SMI's) and the coordinates it is
    /// watched with, if the controller watches it in a version that serves `kind`.
    fn dynamic(&self, kind: &ApiResource) -> Option<(&Store<DynamicObject>, ApiResource)> {
        if let Some(found) =
            [&self.gateway_api, &self.smi].into_iter().flatten().find_map(|v| v.serving(kind))
        {
            return Some(found);
        }
        let istio = self.istio.as_ref().filter(|_| kind.group == "networking.istio.io")?;
        let store = match kind.kind.as_str() {
            crate::router::istio::VIRTUAL_SERVICE => &istio.virtual_services,
            crate::router::istio::DESTINATION_RULE => &istio.destination_rules,
            _ => return None,
        };
        Some((store, kind.clone()))
    }

    /// The cached objects of one namespace, as the routers read them.
    pub fn live<'a>(&'a self, namespace: &'a str) -> Live<'a> {
        Live { stores: self, namespace }
    }
}

/// The caches of one namespace, as the routers read them ([`crate::router::Live`]).
pub struct Live<'a> {
    stores: &'a Stores,
    namespace: &'a str,
}

impl crate::router::Live for Live<'_> {
    fn get(&self, kind: &ApiResource, name: &str) -> Option<serde_json::Value> {
        if kind.group == "networking.k8s.io" && kind.kind == "Ingress" {
            let ingress = cached(&self.stores.ingresses, self.namespace, name)?;
            return serde_json::to_value(ingress.as_ref()).ok();
        }
        let (store, watched) = self.stores.dynamic(kind)?;
        let object = store.get(&ObjectRef::new_with(name, watched).within(self.namespace))?;
        let mut object = serde_json::to_value(object.as_ref()).ok()?;
        // Watched in another version of the same schema: as the caller would read it.
        object["apiVersion"] = serde_json::json!(kind.api_version);
        Some(object)
    }

    fn serves(&self, kind: &ApiResource) -> bool {
        self.stores.dynamic(kind).is_some() || (kind.group == "networking.k8s.io" && kind.kind == "Ingress")
    }
}

/// Looks an object up in a store by namespace and name.
pub fn cached<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

/// The Canaries whose cached copy is older than a status this controller wrote: reconciling one of
/// them from the cache would decide again what was decided already (repeating a step's webhooks and
/// Events). Keyed by uid: the resourceVersions that are stale (a reconcile may write twice: its
/// decision, then the end of its pending effects) and when the last write happened.
#[derive(Default)]
pub struct WrittenStatuses(
    std::sync::Mutex<std::collections::HashMap<String, (Vec<String>, std::time::Instant)>>,
);

impl WrittenStatuses {
    /// How long a stale cache is waited for; a watch event normally arrives within milliseconds.
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

    /// Records that the status of `canary` (as cached, at `stale_version`) was overwritten.
    pub fn remember(&self, canary: &Canary, stale_version: String) {
        let uid = canary.metadata.uid.clone().unwrap_or_default();
        let mut map = self.0.lock().expect("written statuses lock");
        let entry = map.entry(uid).or_insert_with(|| (Vec::new(), std::time::Instant::now()));
        if entry.0.len() >= 8 {
            entry.0.remove(0);
        }
        entry.0.push(stale_version);
        entry.1 = std::time::Instant::now();
    }

    /// Whether `canary` is a cached copy from before this controller's last status write.
    pub fn is_stale(&self, canary: &Canary) -> bool {
        let uid = canary.metadata.uid.clone().unwrap_or_default();
        let mut map = self.0.lock().expect("written statuses lock");
        let version = canary.metadata.resource_version.clone().unwrap_or_default();
        match map.get(&uid) {
            Some((versions, at)) if versions.contains(&version) => at.elapsed() < Self::PATIENCE,
            Some(_) => {
                map.remove(&uid);
                false
            }
            None => false,
        }
    }
}

/// When each Canary's next scheduled tick is due (the decision core's requeue), to measure how late
/// its reconcile starts: Veer's own share of a step's lateness (the controller's queue, its
/// concurrency limit, a starved CPU), apart from the API server's (`veer_api_write_duration_seconds`).
/// Keyed by uid; an entry goes when its tick starts, with its Canary, or (a Canary deleted without
/// a last reconcile) once it is [`Wakes::STALE`] past due.
#[derive(Default)]
pub struct Wakes(std::sync::Mutex<WakeMap>);

#[derive(Default)]
struct WakeMap {
    due: std::collections::HashMap<String, std::time::Instant>,
    pruned: Option<std::time::Instant>,
}

impl Wakes {
    /// How long past due an entry is kept when no tick came for it.
    const STALE: std::time::Duration = std::time::Duration::from_secs(600);

    /// Records that the reconcile of `canary` ending `now` asked to run again at `due`.
    pub fn expect(&self, canary: &Canary, due: std::time::Instant, now: std::time::Instant) {
        let uid = canary.metadata.uid.clone().unwrap_or_default();
        let mut map = self.0.lock().expect("wakes lock");
        // At most once per STALE, a pass that drops what no tick will ever collect.
        if map.pruned.is_none_or(|at| now.duration_since(at) >= Self::STALE) {
            map.due.retain(|_, due| now.saturating_duration_since(*due) < Self::STALE);
            map.pruned = Some(now);
        }
        map.due.insert(uid, due);
    }

    /// A reconcile of `canary` starts at `now`: how late it is, if it is the tick that was due (a
    /// watch event may wake a Canary before that; its schedule then stands).
    pub fn arrived(&self, canary: &Canary, now: std::time::Instant) -> Option<std::time::Duration> {
        // Every reconcile asks: the uid is borrowed, not copied.
        let uid = canary.metadata.uid.as_deref().unwrap_or_default();
        let mut map = self.0.lock().expect("wakes lock");
        let due = *map.due.get(uid)?;
        (now >= due).then(|| {
            map.due.remove(uid);
            now - due
        })
    }

    /// Forgets a Canary that is going away.
    pub fn forget(&self, canary: &Canary) {
        let uid = canary.metadata.uid.as_deref().unwrap_or_default();
        self.0.lock().expect("wakes lock").due.remove(uid);
    }

    /// How many Canaries have an entry.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().expect("wakes lock").due.len()
    }
}

/// The watch caches that do not hold a first complete list yet, and the last error a watch
/// returned. Until every cache is complete nothing is decided (an object not cached yet would look
/// missing); when that lasts, for instance because the controller may not list one kind, every
/// Canary says so instead of waiting in silence.
pub struct CacheHealth {
    pending: std::sync::Mutex<std::collections::BTreeSet<&'static str>>,
    last_error: std::sync::Mutex<Option<String>>,
    since: std::time::Instant,
}

/// No cache followed yet; the patience starts now.
impl Default for CacheHealth {
    fn default() -> CacheHealth {
        CacheHealth {
            pending: std::sync::Mutex::new(Default::default()),
            last_error: std::sync::Mutex::new(None),
            since: std::time::Instant::now(),
        }
    }
}

impl CacheHealth {
    /// How long caches may take to fill before the Canaries report it.
    pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

    /// The cache of `kind` (plural, as users know it: `VirtualServices`) is filling.
    pub fn filling(&self, kind: &'static str) {
        self.pending.lock().expect("cache health lock").insert(kind);
    }

    /// The cache of `kind` holds a first complete list.
    pub fn synced(&self, kind: &str) {
        self.pending.lock().expect("cache health lock").remove(kind);
    }

    /// A watch failed (it is retried with backoff).
    pub fn watch_failed(&self, error: String) {
        *self.last_error.lock().expect("cache health lock") = Some(error);
    }

    /// What a Canary says once the caches have taken longer than `patience`; `None` before, or
    /// when they are complete.
    pub fn problem(&self, canary: &str, patience: std::time::Duration) -> Option<String> {
        self.problem_at(canary, self.since.elapsed(), patience)
    }

    fn problem_at(
        &self,
        canary: &str,
        waited: std::time::Duration,
        patience: std::time::Duration,
    ) -> Option<String> {
        let pending = self.pending.lock().expect("cache health lock");
        if pending.is_empty() || waited < patience {
            return None;
        }
        let kinds: Vec<&str> = pending.iter().copied().collect();
        let error = self.last_error.lock().expect("cache health lock").clone();
        let error =
            error.map(|e| format!(" (the last watch error: {})", e.chars().take(512).collect::<String>()));
        Some(format!(
            "Canary {canary}: Veer decides nothing until it has read the cluster, and after {}s its cache of {} \
             is still incomplete{}; check that the controller's ServiceAccount may list and watch them (the \
             Helm chart's ClusterRole grants it) and that the API server answers",
            // The bound, not the time waited: the message must not change at every retry (each
            // change would be another status write and another Warning Event).
            patience.as_secs(),
            kinds.join(", "),
            error.unwrap_or_default()
        ))
    }
}

/// Per-Canary state of failed reconciles: how many failed in a row, and the backoff before the
/// next try (exponential from 1 s to 5 min, with jitter, so that a thousand Canaries failing on a
/// struggling API server do not retry in lockstep). Forgotten at the first success.
#[derive(Default)]
pub struct Retries(std::sync::Mutex<std::collections::HashMap<String, Retry>>);

struct Retry {
    failures: u32,
    backoff: kube::runtime::watcher::ExponentialBackoff,
}

impl Retries {
    const FIRST: std::time::Duration = std::time::Duration::from_secs(1);
    const MAX: std::time::Duration = std::time::Duration::from_secs(300);

    fn key(canary: &Canary) -> String {
        canary.metadata.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                canary.metadata.namespace.as_deref().unwrap_or(""),
                canary.metadata.name.as_deref().unwrap_or("")
            )
        })
    }

    /// Records a failed reconcile; returns how many failed in a row.
    pub fn failed(&self, canary: &Canary) -> u32 {
        let mut map = self.0.lock().expect("retries lock");
        let retry = map.entry(Self::key(canary)).or_insert_with(|| Retry {
            failures: 0,
            backoff: backon::ExponentialBuilder::default()
                .with_min_delay(Self::FIRST)
                .with_max_delay(Self::MAX)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .into(),
        });
        retry.failures = retry.failures.saturating_add(1);
        retry.failures
    }

    /// How long to wait before retrying a failed reconcile.
    pub fn delay(&self, canary: &Canary) -> std::time::Duration {
        let mut map = self.0.lock().expect("retries lock");
        map.get_mut(&Self::key(canary)).and_then(|r| r.backoff.next()).unwrap_or(Self::FIRST).min(Self::MAX)
    }

    /// Forgets the failures of a Canary that reconciled.
    pub fn succeeded(&self, canary: &Canary) {
        self.0.lock().expect("retries lock").remove(&Self::key(canary));
    }
}

/// Shared state of the reconciler.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub stores: Stores,
    /// Events on Canaries, recorded in the background (`events`).
    pub events: super::events::EventQueue,
    pub webhooks: WebhookClient,
    /// Metric queries (Prometheus).
    pub queries: crate::metrics::MetricQueries,
    /// Alert delivery.
    pub notifier: crate::notify::Notifier,
    /// The controller's own metrics.
    pub metrics: ControllerMetrics,
    /// Status writes the cache has not seen yet.
    pub written: WrittenStatuses,
    /// Failed reconciles per Canary, for backoff and for reporting on the Canary.
    pub retries: Retries,
    /// When each Canary's next tick is due (`veer_wake_lag_seconds`).
    pub wakes: Wakes,
    /// Whether this replica leads, and until when: a replica that does not lead never writes.
    pub leadership: Arc<super::leader::Leadership>,
    /// Whether every cache holds its first complete list: the flag `/readyz` answers from.
    pub synced: Arc<AtomicBool>,
    /// Which caches are still incomplete, and why, when that lasts.
    pub caches: Arc<CacheHealth>,
}

impl Context {
    pub fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    /// Runs a write while this replica leads: refused when it does not, and cancelled when its
    /// leadership runs out before the API server answers (see `leader`). Without leader election a
    /// write still gets at most [`WRITE_TIMEOUT`], so that a hung API server cannot hold a reconcile
    /// (and its slot) for the client's default of five minutes.
    pub async fn fenced<T>(
        &self,
        write: impl std::future::Future<Output = Result<T, super::error::Error>>,
    ) -> Result<T, super::error::Error> {
        super::leader::fenced(&self.leadership, WRITE_TIMEOUT, write).await
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }
}

/// Declares [`TestCaches`] from one list of cached kinds.
#[cfg(test)]
macro_rules! test_caches {
    ($($kind:ident: $ty:ty),* $(,)?) => {
        /// The writers of a test [`Context`]'s caches: what a test puts in them, the reconcile
        /// reads. Every cache starts empty and complete.
        pub struct TestCaches {
            $(pub $kind: kube::runtime::reflector::store::Writer<$ty>,)*
            pub virtual_services: kube::runtime::reflector::store::Writer<DynamicObject>,
            pub destination_rules: kube::runtime::reflector::store::Writer<DynamicObject>,
            pub http_routes: kube::runtime::reflector::store::Writer<DynamicObject>,
            pub traffic_splits: kube::runtime::reflector::store::Writer<DynamicObject>,
        }

        impl TestCaches {
            fn new() -> TestCaches {
                use kube::runtime::{reflector::store::Writer, watcher::Event};
                fn complete<K>(mut writer: Writer<K>) -> Writer<K>
                where
                    K: Resource + Clone + 'static,
                    K::DynamicType: Eq + std::hash::Hash + Clone,
                {
                    writer.apply_watcher_event(&Event::InitDone);
                    writer
                }
                let istio = |kind| complete(Writer::new(crate::router::istio::resource(kind)));
                TestCaches {
                    $($kind: complete(Writer::default()),)*
                    virtual_services: istio(crate::router::istio::VIRTUAL_SERVICE),
                    destination_rules: istio(crate::router::istio::DESTINATION_RULE),
                    http_routes: complete(Writer::new(crate::router::gatewayapi::resource(
                        crate::analysis::GatewayApiVersion::V1,
                    ))),
                    traffic_splits: complete(Writer::new(crate::router::smi::resource(
                        crate::analysis::SmiVersion::V1alpha2,
                    ))),
                }
            }

            /// The caches these writers fill.
            fn stores(&self) -> Stores {
                Stores {
                    $($kind: self.$kind.as_reader(),)*
                    istio: Some(IstioStores {
                        virtual_services: self.virtual_services.as_reader(),
                        destination_rules: self.destination_rules.as_reader(),
                    }),
                    gateway_api: Some(VersionedStore {
                        store: self.http_routes.as_reader(),
                        watched: crate::router::gatewayapi::resource(crate::analysis::GatewayApiVersion::V1),
                        served: vec!["v1".into(), "v1beta1".into()],
                    }),
                    smi: Some(VersionedStore {
                        store: self.traffic_splits.as_reader(),
                        watched: crate::router::smi::resource(crate::analysis::SmiVersion::V1alpha2),
                        served: vec!["v1alpha1".into(), "v1alpha2".into(), "v1alpha3".into()],
                    }),
                }
            }
        }
    };
}

#[cfg(test)]
test_caches! {
    canaries: Canary, deployments: Deployment, daemonsets: DaemonSet, services: Service,
    configmaps: ConfigMap, secrets: Secret, hpas: HorizontalPodAutoscaler, ingresses: Ingress,
    metric_templates: MetricTemplate, alert_providers: AlertProvider,
}

#[cfg(test)]
impl Context {
    /// A Context over `client` (e.g. kube's mock client from `tower_test`) whose caches are empty,
    /// complete, and filled through the returned writers; this replica leads; default settings
    /// (provider istio, Istio installed). Its Events wait in the queue until the test runs the
    /// returned worker ([`super::events::EventWorker::run_until_idle`]).
    pub fn test(client: Client) -> (Context, TestCaches, super::events::EventWorker) {
        Context::test_led(client, super::leader::Leadership::always())
    }

    /// [`Context::test`] for a replica whose leadership is `leadership`.
    pub fn test_led(
        client: Client,
        leadership: Arc<super::leader::Leadership>,
    ) -> (Context, TestCaches, super::events::EventWorker) {
        let caches = TestCaches::new();
        let config = Config {
            settings: Settings::default(),
            metrics_server: "http://127.0.0.1:9".into(),
            selector_labels: vec!["app".into(), "name".into(), "app.kubernetes.io/name".into()],
            label_prefixes: Vec::new(),
            ingress_annotations_prefix: "nginx.ingress.kubernetes.io".into(),
            config_tracking: true,
            event_webhook: None,
            cluster_name: String::new(),
            no_cross_namespace_refs: false,
        };
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ControllerMetrics::register(&mut registry);
        let (events, worker) = super::events::EventQueue::new(
            super::events::EventRecorder::new(client.clone(), "veer"),
            leadership.clone(),
            &metrics,
            Default::default(),
        );
        let ctx = Context {
            events,
            client,
            config,
            stores: caches.stores(),
            webhooks: WebhookClient::new().expect("webhook client"),
            queries: crate::metrics::MetricQueries::new(Default::default()).expect("metrics client"),
            notifier: crate::notify::Notifier::new(Default::default()).expect("alert client"),
            metrics,
            written: Default::default(),
            retries: Default::default(),
            wakes: Default::default(),
            leadership,
            synced: Arc::new(AtomicBool::new(true)),
            caches: Default::default(),
        };
        (ctx, caches, worker)
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

    #[test]
    fn a_scheduled_tick_is_late_by_the_time_past_its_due_and_only_once() {
        let wakes = Wakes::default();
        let c = canary("1");
        let t0 = std::time::Instant::now();
        let s = std::time::Duration::from_secs;
        assert_eq!(wakes.arrived(&c, t0), None, "nothing scheduled");
        wakes.expect(&c, t0 + s(10), t0);
        assert_eq!(wakes.arrived(&c, t0 + s(3)), None, "woken early by a watch event");
        assert_eq!(wakes.arrived(&c, t0 + s(12)), Some(s(2)), "the schedule stood");
        assert_eq!(wakes.arrived(&c, t0 + s(13)), None, "counted once");
        wakes.expect(&c, t0 + s(20), t0 + s(13));
        wakes.forget(&c);
        assert_eq!(wakes.arrived(&c, t0 + s(30)), None, "forgotten with its Canary");
    }

    #[test]
    fn wakes_of_canaries_deleted_without_a_last_tick_do_not_pile_up() {
        let wakes = Wakes::default();
        let t0 = std::time::Instant::now();
        let ten = std::time::Duration::from_secs(10);
        for i in 0..100 {
            let mut c = canary("1");
            c.metadata.uid = Some(format!("gone-{i}"));
            wakes.expect(&c, t0 + ten, t0);
        }
        let live = canary("1");
        wakes.expect(&live, t0 + Wakes::STALE, t0 + Wakes::STALE - ten);
        assert_eq!(wakes.len(), 101, "at most one pass per STALE: none since the first, at t0");
        let later = t0 + Wakes::STALE * 2;
        wakes.expect(&live, later + ten, later);
        assert_eq!(wakes.len(), 1, "the next pass dropped the 100 long past due and kept the live one");
    }

    #[test]
    fn failed_reconciles_back_off_exponentially_up_to_five_minutes() {
        let retries = Retries::default();
        let c = canary("1");
        let counts: Vec<u32> = (0..12).map(|_| retries.failed(&c)).collect();
        assert_eq!(counts, (1..=12).collect::<Vec<u32>>(), "failures in a row");
        let delays: Vec<std::time::Duration> = (0..12).map(|_| retries.delay(&c)).collect();
        assert!(delays.iter().all(|d| *d >= Retries::FIRST && *d <= Retries::MAX), "{delays:?}");
        assert!(delays[8] > delays[0] * 4, "grows: {delays:?}");
        assert!(delays[11] >= Retries::MAX / 2, "reaches the cap (with jitter): {delays:?}");
        retries.succeeded(&c);
        assert_eq!(retries.failed(&c), 1, "forgotten after a success");
    }

    #[test]
    fn incomplete_caches_are_reported_after_a_while_naming_the_kinds_and_the_error() {
        let health = CacheHealth::default();
        for kind in ["Canaries", "VirtualServices", "HorizontalPodAutoscalers"] {
            health.filling(kind);
        }
        let patience = std::time::Duration::from_secs(30);
        let early = std::time::Duration::from_secs(5);
        health.synced("Canaries");
        assert_eq!(health.problem_at("podinfo.test", early, patience), None, "patience first");
        let late = std::time::Duration::from_secs(31);
        let message = health.problem_at("podinfo.test", late, patience).unwrap();
        assert!(
            message.contains("cache of HorizontalPodAutoscalers, VirtualServices is still incomplete"),
            "{message}"
        );
        health.watch_failed("horizontalpodautoscalers is forbidden".into());
        let message = health.problem_at("podinfo.test", late, patience).unwrap();
        assert!(
            message.contains("(the last watch error: horizontalpodautoscalers is forbidden)"),
            "{message}"
        );
        let later = health.problem_at("podinfo.test", std::time::Duration::from_secs(300), patience).unwrap();
        assert_eq!(later, message, "the same message at every retry: one status write, one Event");
        health.synced("VirtualServices");
        health.synced("HorizontalPodAutoscalers");
        assert_eq!(health.problem_at("podinfo.test", late, patience), None, "complete");
    }

    #[test]
    fn every_version_before_the_last_of_two_writes_is_stale() {
        let written = WrittenStatuses::default();
        written.remember(&canary("7"), "7".into()); // the decision: 7 -> 8
        written.remember(&canary("8"), "8".into()); // the pending effects done: 8 -> 9
        assert!(written.is_stale(&canary("7")));
        assert!(written.is_stale(&canary("8")));
        assert!(!written.is_stale(&canary("9")));
    }
}
