//! Kubernetes Events on Canaries, as Flagger records them: core/v1 Events with reason `Synced`,
//! one Event object per distinct message (a repeat within ten minutes increments its count), so
//! that `kubectl describe canary` lists every step of a run.
//!
//! kube-runtime's recorder aggregates events.k8s.io Events by reason and action only, which would
//! fold a whole run into one line that shows the latest message.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use k8s_openapi::{
    api::core::v1::{Event, EventSource, ObjectReference},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::{api::Canary, meta::FIELD_MANAGER};

/// How long a repeated message updates the same Event instead of creating a new one.
const SERIES_WINDOW: Duration = Duration::from_secs(600);
/// Most Events remembered for aggregation.
const MAX_REMEMBERED: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    warning: bool,
    message: String,
}

#[derive(Clone, Debug)]
struct Series {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Records Events; cheap to share.
pub struct EventRecorder {
    client: Client,
    component: String,
    series: Mutex<HashMap<Key, Series>>,
}

impl EventRecorder {
    pub fn new(client: Client, component: &str) -> EventRecorder {
        EventRecorder { client, component: component.into(), series: Mutex::new(HashMap::new()) }
    }

    /// Records `message` on the Canary.
    pub async fn record(&self, canary: &Canary, warning: bool, message: &str) -> Result<(), kube::Error> {
        let ns = canary.namespace().unwrap_or_default();
        let now = Timestamp::now();
        let key = Key { uid: canary.uid().unwrap_or_default(), warning, message: message.to_string() };
        let previous = {
            let series = self.series.lock().expect("event series lock");
            series.get(&key).cloned()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Some(s) =
            previous.filter(|s| s.last.duration_until(now).as_secs_f64() < SERIES_WINDOW.as_secs_f64())
        {
            let count = s.count + 1;
            let patch = json!({"count": count, "lastTimestamp": Time(now)});
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
            if api.patch(&s.name, &params, &Patch::Merge(&patch)).await.is_ok() {
                self.remember(key, Series { count, last: now, ..s });
                return Ok(());
            }
            // The Event expired or was deleted: record a new one.
        }
        let name = format!("{}.{:x}", canary.name_any(), now.as_nanosecond() as u128 & 0xffff_ffff_ffff_ffff);
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(Canary::api_version(&()).into_owned()),
                kind: Some(Canary::kind(&()).into_owned()),
                name: canary.metadata.name.clone(),
                namespace: Some(ns.clone()),
                uid: canary.uid(),
                resource_version: canary.resource_version(),
                field_path: None,
            },
            reason: Some("Synced".into()),
            message: Some(message.chars().take(1024).collect()),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            source: Some(EventSource { component: Some(self.component.clone()), host: None }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: std::env::var("POD_NAME").ok(),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        self.remember(key, Series { name, count: 1, last: now });
        Ok(())
    }

    fn remember(&self, key: Key, series: Series) {
        let mut all = self.series.lock().expect("event series lock");
        if all.len() >= MAX_REMEMBERED {
            // Forget the oldest half; at worst a repeat becomes a new Event.
            let mut by_age: Vec<(Key, Timestamp)> = all.iter().map(|(k, s)| (k.clone(), s.last)).collect();
            by_age.sort_by_key(|(_, t)| *t);
            for (k, _) in by_age.into_iter().take(MAX_REMEMBERED / 2) {
                all.remove(&k);
            }
        }
        all.insert(key, series);
    }
}
