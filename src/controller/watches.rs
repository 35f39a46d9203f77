//! The watches: one reflector cache per kind the reconciler reads, each also waking the Canaries
//! the changed object belongs to. A change to a target's pod template or to a ConfigMap/Secret it
//! uses reaches its Canary at once, whatever the analysis interval.

use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{ConfigMap, Secret, Service},
    networking::v1::Ingress,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::{
        Controller, WatchStreamExt, reflector,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;

use super::{
    context::{IstioStores, Stores, VersionedStore},
    index::{CanaryIndex, Role},
};
use crate::{
    analysis::TargetKind,
    api::{AlertProvider, Canary, MetricTemplate},
    workload::{self, ConfigId},
};

/// Objects per page of a watch's list (kube's default is 500). Each listed page is held whole while
/// it is decoded, managedFields included, before they are dropped: smaller pages lower the peak
/// the process keeps as resident memory, for a few more list requests at start.
const LIST_PAGE: u32 = 100;

/// Secrets Veer never needs (large, and never referenced as application config).
const SECRET_FIELD_SELECTOR: &str = "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token";

fn api<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    if namespace.is_empty() { Api::all(client.clone()) } else { Api::namespaced(client.clone(), namespace) }
}

/// Adds a cached watch of `K` to the controller; `map` names the Canaries an object wakes.
fn watch<K, F, I>(
    controller: Controller<Canary>,
    api: Api<K>,
    config: watcher::Config,
    map: F,
) -> (Controller<Canary>, Store<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    F: Fn(K) -> I + Sync + Send + 'static,
    I: IntoIterator<Item = ObjectRef<Canary>> + 'static,
    I::IntoIter: Send,
{
    let (store, writer) = reflector::store();
    let stream = reflected(api, config, writer).touched_objects();
    (controller.watches_stream(stream, map), store)
}

/// A watch of `api` listing in pages of [`LIST_PAGE`], its objects cached by `writer` without
/// their managedFields (the largest part of most objects, never read).
fn reflected<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    watcher(api, config.page_size(LIST_PAGE))
        .default_backoff()
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .reflect(writer)
}

/// Canaries owning an object through a controller ownerReference.
pub(super) fn owners<K: Resource>(obj: &K) -> Option<ObjectRef<Canary>> {
    let ns = obj.meta().namespace.clone()?;
    crate::router::controlling_canary(obj.owner_references()).map(|o| ObjectRef::new(&o.name).within(&ns))
}

/// The Canaries that name `obj` in `role`, and the Canary that owns it.
pub(super) fn referring<K: Resource>(index: &CanaryIndex, obj: &K, role: Role) -> Vec<ObjectRef<Canary>> {
    let mut refs = index.referring(&obj.namespace().unwrap_or_default(), &obj.name_any(), role);
    refs.extend(owners(obj));
    refs
}

/// Canaries whose target (or its primary) is the workload `name` of `kind` (an empty
/// `targetRef.kind` is a Deployment, as when resolving).
pub(super) fn target_canaries(
    index: &CanaryIndex,
    ns: &str,
    kind: TargetKind,
    name: &str,
) -> Vec<ObjectRef<Canary>> {
    let mut refs = index.referring(ns, name, Role::Target(kind));
    if let Some(target) = name.strip_suffix("-primary") {
        refs.extend(index.referring(ns, target, Role::Target(kind)));
    }
    refs
}

/// Canaries whose target uses the ConfigMap or Secret `config`: a pass over the namespace's
/// Canaries, looking at each target's pod spec (an application's configs change seldom; the
/// copies Veer writes for primaries wake their owner without it, see below).
pub(super) fn config_canaries(stores: &PartialStores, ns: &str, config: &ConfigId) -> Vec<ObjectRef<Canary>> {
    let uses = |spec: Option<&k8s_openapi::api::core::v1::PodSpec>| {
        spec.is_some_and(|s| workload::config_refs(s).iter().any(|r| r.id == *config))
    };
    let mut refs = stores.index.targets(ns);
    refs.retain(|(_, kind, name)| match kind {
        TargetKind::DaemonSet => super::context::cached(&stores.daemonsets, ns, name)
            .is_some_and(|d| uses(d.spec.as_ref().and_then(|s| s.template.spec.as_ref()))),
        TargetKind::Deployment => super::context::cached(&stores.deployments, ns, name)
            .is_some_and(|d| uses(d.spec.as_ref().and_then(|s| s.template.spec.as_ref()))),
    });
    refs.into_iter().map(|(c, _, _)| c).collect()
}

/// The Canaries a ConfigMap or Secret event wakes: the owner of a primary copy Veer generated
/// (which no target uses: looking for its users would cost a pass over every Canary of the
/// namespace for each of Veer's own writes), or else the Canaries whose target uses it.
pub(super) fn config_or_copy_canaries<K: Resource>(
    stores: &PartialStores,
    obj: &K,
    id: ConfigId,
) -> Vec<ObjectRef<Canary>> {
    match owners(obj) {
        Some(owner) => vec![owner],
        None => config_canaries(stores, &obj.namespace().unwrap_or_default(), &id),
    }
}

/// The caches a config mapper needs (filled in as the watches are built).
#[derive(Clone)]
pub(super) struct PartialStores {
    pub(super) index: Arc<CanaryIndex>,
    pub(super) deployments: Store<Deployment>,
    pub(super) daemonsets: Store<DaemonSet>,
}

/// Builds the Canary controller with every watch it needs, and the caches they fill.
pub async fn build(client: &Client, namespace: &str) -> (Controller<Canary>, Stores) {
    let wc = watcher::Config::default();
    // The Canaries' own watch, cached like the others (Veer's status applies make their
    // managedFields large); the index of what each Canary names is fed the events the cache is.
    let (canaries, writer) = reflector::store();
    let index = Arc::new(CanaryIndex::default());
    let canary_stream = reflected(api::<Canary>(client, namespace), wc.clone(), writer)
        .inspect_ok({
            let index = index.clone();
            move |event| index.apply(event)
        })
        .applied_objects();
    let controller = Controller::for_stream(canary_stream, canaries.clone());

    let i = index.clone();
    let (controller, deployments) =
        watch(controller, api::<Deployment>(client, namespace), wc.clone(), move |d: Deployment| {
            target_canaries(&i, &d.namespace().unwrap_or_default(), TargetKind::Deployment, &d.name_any())
        });
    let i = index.clone();
    let (controller, daemonsets) =
        watch(controller, api::<DaemonSet>(client, namespace), wc.clone(), move |d: DaemonSet| {
            target_canaries(&i, &d.namespace().unwrap_or_default(), TargetKind::DaemonSet, &d.name_any())
        });
    let partial = PartialStores {
        index: index.clone(),
        deployments: deployments.clone(),
        daemonsets: daemonsets.clone(),
    };
    let p = partial.clone();
    let (controller, configmaps) =
        watch(controller, api::<ConfigMap>(client, namespace), wc.clone(), move |cm: ConfigMap| {
            config_or_copy_canaries(&p, &cm, ConfigId::config_map(cm.name_any()))
        });
    let p = partial.clone();
    let (controller, secrets) = watch(
        controller,
        api::<Secret>(client, namespace),
        wc.clone().fields(SECRET_FIELD_SELECTOR),
        move |s: Secret| config_or_copy_canaries(&p, &s, ConfigId::secret(s.name_any())),
    );
    let (controller, services) =
        watch(controller, api::<Service>(client, namespace), wc.clone(), |s: Service| owners(&s));
    let i = index.clone();
    let (controller, hpas) = watch(
        controller,
        api::<HorizontalPodAutoscaler>(client, namespace),
        wc.clone(),
        move |h: HorizontalPodAutoscaler| referring(&i, &h, Role::Autoscaler),
    );
    let (controller, ingresses) =
        watch(controller, api::<Ingress>(client, namespace), wc.clone(), move |i: Ingress| {
            referring(&index, &i, Role::Ingress)
        });
    let (controller, metric_templates) =
        watch(controller, api::<MetricTemplate>(client, namespace), wc.clone(), |_: MetricTemplate| None);
    let (controller, alert_providers) =
        watch(controller, api::<AlertProvider>(client, namespace), wc.clone(), |_: AlertProvider| None);

    let (controller, istio) = match istio_installed(client).await {
        true => {
            let istio = crate::router::istio::resource;
            let (controller, virtual_services) =
                watch_dynamic(controller, client, namespace, istio(crate::router::istio::VIRTUAL_SERVICE));
            let (controller, destination_rules) =
                watch_dynamic(controller, client, namespace, istio(crate::router::istio::DESTINATION_RULE));
            (controller, Some(IstioStores { virtual_services, destination_rules }))
        }
        false => {
            tracing::info!("Istio CRDs not installed: Canaries with provider istio will report it");
            (controller, None)
        }
    };
    use crate::router::{gatewayapi, smi};
    let (controller, gateway_api) = watch_versioned(
        controller,
        client,
        namespace,
        gatewayapi::GROUP,
        gatewayapi::HTTP_ROUTE,
        &["v1", "v1beta1"],
    )
    .await;
    if gateway_api.is_none() {
        tracing::info!("Gateway API CRDs not installed: Canaries with provider gatewayapi:* will report it");
    }
    let (controller, smi) = watch_versioned(
        controller,
        client,
        namespace,
        smi::GROUP,
        smi::TRAFFIC_SPLIT,
        &["v1alpha2", "v1alpha3", "v1alpha1"],
    )
    .await;
    if smi.is_none() {
        tracing::info!(
            "SMI TrafficSplit CRD not installed: Canaries with provider linkerd, osm or smi:* will report it"
        );
    }
    let stores = Stores {
        canaries,
        deployments,
        daemonsets,
        services,
        configmaps,
        secrets,
        hpas,
        ingresses,
        metric_templates,
        alert_providers,
        istio,
        gateway_api,
        smi,
    };
    (controller, stores)
}

async fn istio_installed(client: &Client) -> bool {
    let vs = crate::router::istio::resource(crate::router::istio::VIRTUAL_SERVICE);
    let gvk = GroupVersionKind::gvk(&vs.group, &vs.version, &vs.kind);
    kube::discovery::pinned_kind(client, &gvk).await.is_ok()
}

/// Watches a kind served in several versions, in the first of `versions` (in order of preference)
/// the API server serves; `None` when it serves none of them (the CRD is not installed).
async fn watch_versioned(
    controller: Controller<Canary>,
    client: &Client,
    namespace: &str,
    group: &str,
    kind: &str,
    versions: &[&str],
) -> (Controller<Canary>, Option<VersionedStore>) {
    let mut served = Vec::new();
    for version in versions {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        if kube::discovery::pinned_kind(client, &gvk).await.is_ok() {
            served.push(version.to_string());
        }
    }
    let Some(first) = served.first() else { return (controller, None) };
    let watched = ApiResource::from_gvk(&GroupVersionKind::gvk(group, first, kind));
    let (controller, store) = watch_dynamic(controller, client, namespace, watched.clone());
    (controller, Some(VersionedStore { store, watched, served }))
}

fn watch_dynamic(
    controller: Controller<Canary>,
    client: &Client,
    namespace: &str,
    ar: ApiResource,
) -> (Controller<Canary>, Store<DynamicObject>) {
    let api: Api<DynamicObject> = if namespace.is_empty() {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), namespace, &ar)
    };
    let writer = reflector::store::Writer::new(ar.clone());
    let store = writer.as_reader();
    let stream = reflected(api, watcher::Config::default(), writer).touched_objects();
    let controller = controller.watches_stream_with(stream, |o: DynamicObject| owners(&o), ar);
    (controller, store)
}
