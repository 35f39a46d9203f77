//! Gate state in a Kubernetes ConfigMap: `data[<key>] = "open"` for every open gate. Every call
//! reads the API server (no cache), so replicas of the load tester agree; writes are replace
//! calls carrying the `resourceVersion` that was read, retried on conflict (optimistic
//! concurrency), so two concurrent `/gate/open` calls cannot lose each other's update.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::{GateStore, GateStoreError};

/// The value stored for an open key.
const OPEN: &str = "open";
/// How often a write is tried when someone else keeps changing the ConfigMap in between.
const ATTEMPTS: u32 = 10;

/// A [`GateStore`] backed by one ConfigMap.
#[derive(Clone)]
pub struct ConfigMapGateStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    /// Writes from this process go one at a time; conflicts then only come from other replicas.
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

impl ConfigMapGateStore {
    /// Uses ConfigMap `namespace/name` and reads it once, so missing permissions or an
    /// unreachable API server fail at startup. The ConfigMap is created on the first open gate.
    pub async fn connect(client: Client, namespace: &str, name: &str) -> Result<Self, GateStoreError> {
        let store = Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            write_lock: Arc::default(),
        };
        store.read().await?;
        Ok(store)
    }

    fn kube_err(&self, action: &'static str, source: kube::Error) -> GateStoreError {
        GateStoreError::Kube {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            action,
            source: Box::new(source),
        }
    }

    async fn read(&self) -> Result<Option<ConfigMap>, GateStoreError> {
        self.api.get_opt(&self.name).await.map_err(|e| self.kube_err("reading", e))
    }

    fn open_in(cm: &ConfigMap) -> BTreeSet<String> {
        cm.data.iter().flatten().filter(|(_, v)| v.as_str() == OPEN).map(|(k, _)| k.clone()).collect()
    }

    async fn write(&self, key: &str, open: bool) -> Result<(), GateStoreError> {
        let _one_at_a_time = self.write_lock.lock().await;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let result = match self.read().await? {
                None if !open => return Ok(()),
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            namespace: Some(self.namespace.clone()),
                            labels: Some(BTreeMap::from([
                                ("app.kubernetes.io/name".to_owned(), "veer-loadtester".to_owned()),
                                ("app.kubernetes.io/component".to_owned(), "gates".to_owned()),
                            ])),
                            ..Default::default()
                        },
                        data: Some(BTreeMap::from([(key.to_owned(), OPEN.to_owned())])),
                        ..Default::default()
                    };
                    self.api.create(&PostParams::default(), &cm).await.map(drop)
                }
                Some(mut cm) => {
                    let is_open = cm.data.as_ref().and_then(|d| d.get(key)).is_some_and(|v| v == OPEN);
                    if is_open == open {
                        return Ok(());
                    }
                    let data = cm.data.get_or_insert_with(BTreeMap::new);
                    if open {
                        data.insert(key.to_owned(), OPEN.to_owned());
                    } else {
                        data.remove(key);
                    }
                    // `cm` still carries the resourceVersion we read: the API server rejects the
                    // replace with 409 if anyone wrote in between.
                    self.api.replace(&self.name, &PostParams::default(), &cm).await.map(drop)
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => continue,
                Err(e) => return Err(self.kube_err("updating", e)),
            }
        }
        Err(GateStoreError::Contended {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            attempts: ATTEMPTS,
        })
    }
}

/// 10 ms doubling per attempt up to 640 ms, plus up to as much again at random, so replicas that
/// collided do not collide again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let base = 10u64 << attempt.min(6);
    let jitter = RandomState::new().hash_one(attempt) % base;
    Duration::from_millis(base + jitter)
}

impl GateStore for ConfigMapGateStore {
    fn is_open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, GateStoreError>> {
        Box::pin(async move { Ok(self.read().await?.is_some_and(|cm| Self::open_in(&cm).contains(key))) })
    }

    fn set<'a>(&'a self, key: &'a str, open: bool) -> BoxFuture<'a, Result<(), GateStoreError>> {
        Box::pin(self.write(key, open))
    }

    fn open_keys(&self) -> BoxFuture<'_, Result<BTreeSet<String>, GateStoreError>> {
        Box::pin(async move { Ok(self.read().await?.map(|cm| Self::open_in(&cm)).unwrap_or_default()) })
    }

    fn describe(&self) -> String {
        format!("ConfigMap {}/{}", self.namespace, self.name)
    }
}
