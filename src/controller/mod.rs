//! The controller: kube-runtime's `Controller` over Canaries, fed by the watches of everything a
//! Canary depends on, reconciling each with the pure decision core.

mod alerts;
mod context;
mod error;
mod events;
mod finalize;
mod index;
mod leader;
mod observe;
mod reconcile;
mod watches;
mod writes;

#[cfg(test)]
mod scenarios;

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use kube::runtime::{
    Controller,
    controller::{self, Action},
};

pub use context::{CacheHealth, Config, Context, Stores};
pub use error::Error;
pub use events::{DRAIN as EVENT_DRAIN, EventQueue, EventRecorder};
pub use leader::{Leadership, run as lead};
pub use watches::build as watch;
pub use writes::is_subset;

use crate::{api::Canary, signal::Shutdown};

/// Runs the Canary controller until `shutdown`: every Canary reconciled on each change of it or
/// of what it depends on (see `watches`), `concurrency` at a time; all of them again when this
/// replica becomes the leader. `/readyz` turns ready once every cache holds a first complete list.
pub async fn run(watched: Controller<Canary>, ctx: Arc<Context>, concurrency: u16, shutdown: Shutdown) {
    tokio::spawn({
        let ctx = ctx.clone();
        async move {
            if wait_synced(&ctx.stores, &ctx.caches).await {
                tracing::info!("caches synced");
                ctx.synced.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    // A replica that becomes the leader reconciles every Canary at once.
    let became_leader = futures::stream::unfold(ctx.leadership.subscribe(), |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow() {
                return Some(((), rx));
            }
        }
    });
    let caches = ctx.caches.clone();
    watched
        .with_config(
            controller::Config::default().concurrency(concurrency).debounce(Duration::from_millis(50)),
        )
        .reconcile_all_on(became_leader)
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(move |r| {
            if let Err(e) = r {
                if let controller::Error::QueueError(watch) = &e {
                    caches.watch_failed(watch.to_string());
                }
                tracing::debug!(error = %e, "reconcile event");
            }
            futures::future::ready(())
        })
        .await;
}

fn error_policy(canary: Arc<Canary>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = crate::router::display_name(&canary);
    let delay = ctx.retries.delay(&canary);
    tracing::warn!(canary = %name, error = %error, retry_in = ?delay, "reconcile failed; retrying");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::telemetry::KindLabels { kind: error.kind().into() })
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
        K: kube::Resource + Clone + Send + Sync + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    {
        health.filling(kind);
        let ready = store_ready(store).await;
        if ready {
            health.synced(kind);
        }
        ready
    }
    let mut caches: Vec<futures::future::BoxFuture<'_, bool>> = vec![
        Box::pin(track(&stores.canaries, "Canaries", health)),
        Box::pin(track(&stores.deployments, "Deployments", health)),
        Box::pin(track(&stores.daemonsets, "DaemonSets", health)),
        Box::pin(track(&stores.services, "Services", health)),
        Box::pin(track(&stores.configmaps, "ConfigMaps", health)),
        Box::pin(track(&stores.secrets, "Secrets", health)),
        Box::pin(track(&stores.hpas, "HorizontalPodAutoscalers", health)),
        Box::pin(track(&stores.ingresses, "Ingresses", health)),
        Box::pin(track(&stores.metric_templates, "MetricTemplates", health)),
        Box::pin(track(&stores.alert_providers, "AlertProviders", health)),
    ];
    if let Some(istio) = &stores.istio {
        caches.push(Box::pin(track(&istio.virtual_services, "VirtualServices", health)));
        caches.push(Box::pin(track(&istio.destination_rules, "DestinationRules", health)));
    }
    if let Some(g) = &stores.gateway_api {
        caches.push(Box::pin(track(&g.store, "HTTPRoutes", health)));
    }
    if let Some(smi) = &stores.smi {
        caches.push(Box::pin(track(&smi.store, "TrafficSplits", health)));
    }
    futures::future::join_all(caches).await.into_iter().all(|ready| ready)
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{reflector, watcher};

    use super::*;

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
