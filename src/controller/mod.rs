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

#[cfg(test)]
mod scenarios;

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use kube::runtime::{
    Controller,
    controller::{self, Action},
};

pub use context::{CacheHealth, Config, Context, Stores};
pub use events::EventRecorder;
pub use leader::{Leadership, run as lead};
pub use watches::build as watch;
pub use writes::is_subset;

use crate::{api::Canary, signal::Shutdown};

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
    /// Something the user must fix (e.g. a missing target, or a VirtualService whose routes cannot
    /// be rewritten): shown on the Canary as a `Stalled` condition.
    #[error(transparent)]
    Stalled(#[from] observe::Stall),
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
            Error::Stalled(_) => "invalid",
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
    pub fn reason(&self) -> crate::analysis::Reason {
        use crate::analysis::Reason;
        match self {
            Error::Stalled(stall) => stall.reason,
            Error::Panic(_) | Error::Serialize(_) => Reason::InternalError,
            _ if self.is_rejection() => Reason::WriteRejected,
            _ => Reason::ApiUnavailable,
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
            Error::Stalled(stall) => quoted(&stall.message),
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
