//! The world the scenarios start from: the e2e tests' podinfo Canary and its target, as the API
//! server would return them, and a test [`Context`] whose caches hold them.

use std::sync::Arc;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kube::{
    Client, Resource,
    api::DynamicObject,
    runtime::{controller::Action, reflector::ObjectRef, watcher},
};
use serde_json::{Value, json};

use super::verifier::{ApiServer, Expect, Recorded, Reply, expect, mock};
use crate::{
    api::Canary,
    controller::{
        Error, Leadership,
        context::{Context, TestCaches},
        events::EventWorker,
        reconcile,
    },
};

pub const NS: &str = "test";
pub const STATUS: &str = "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo/status";
pub const CANARY: &str = "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo";
pub const EVENTS: &str = "/api/v1/namespaces/test/events";

pub fn deployment_path(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/test/deployments/{name}")
}

pub fn service_path(name: &str) -> String {
    format!("/api/v1/namespaces/test/services/{name}")
}

pub fn istio_path(plural: &str, name: &str) -> String {
    format!("/apis/networking.istio.io/v1beta1/namespaces/test/{plural}/{name}")
}

/// An object `podinfo` of `kind` in [`NS`] with `spec`, as the API server returns it: with a uid,
/// a resourceVersion and a generation.
fn podinfo(api_version: &str, kind: &str, spec: Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": "podinfo", "namespace": NS, "uid": format!("uid-{}-podinfo", kind.to_lowercase()),
            "resourceVersion": "1", "generation": 1
        },
        "spec": spec
    })
}

/// The podinfo Canary of the e2e tests (provider istio, no webhooks, no metrics: nothing but the
/// mock API server is called), as the API server returns it: with a uid and a resourceVersion.
pub fn canary_json() -> Value {
    let mut c = podinfo(
        "flagger.app/v1beta1",
        "Canary",
        json!({
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {"interval": "15s", "threshold": 2, "maxWeight": 50, "stepWeight": 10}
        }),
    );
    c["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    c
}

pub fn canary() -> Canary {
    from(canary_json())
}

/// The Canary with `patch` merged onto it (RFC 7386).
pub fn canary_with(patch: Value) -> Canary {
    let mut c = canary_json();
    super::verifier::merge(&mut c, &patch);
    from(c)
}

/// The target: Deployment `podinfo`, selector `app: podinfo`, two replicas, not rolled out yet.
pub fn target_json(replicas: i32) -> Value {
    let mut d = podinfo(
        "apps/v1",
        "Deployment",
        json!({
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{
                    "name": "podinfod",
                    "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                    "ports": [{"name": "http", "containerPort": 9898}]
                }]}
            }
        }),
    );
    d["metadata"]["labels"] = json!({"app": "podinfo"});
    d
}

pub fn target(replicas: i32) -> Deployment {
    from(target_json(replicas))
}

/// `d` rolled out: its generation observed and all `spec.replicas` updated and available (what
/// `workload::deployment_readiness` calls ready).
pub fn ready(mut d: Deployment) -> Deployment {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    d.status = Some(from(json!({
        "observedGeneration": d.metadata.generation.unwrap_or(1),
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas
    })));
    d
}

/// `d` with its new generation not observed yet (a rollout the Deployment controller has not
/// started).
pub fn rolling(mut d: Deployment) -> Deployment {
    let generation = d.metadata.generation.unwrap_or(1);
    d.metadata.generation = Some(generation + 1);
    d.status = Some(from(json!({"observedGeneration": generation})));
    d
}

pub fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid fixture")
}

/// A mock API server, a test Context over it and the Context's caches: the stage of a scenario.
pub struct Scenario {
    pub api: ApiServer,
    pub ctx: Arc<Context>,
    pub caches: TestCaches,
    /// Records the Context's queued Events when [`Scenario::reconcile`] says so.
    events: EventWorker,
}

impl Scenario {
    /// Nothing cached, for a replica whose leadership is `leadership`.
    pub fn empty(leadership: Arc<Leadership>) -> Scenario {
        let (client, api): (Client, ApiServer) = mock();
        let (ctx, caches, events) = Context::test_led(client, leadership);
        Scenario { api, ctx: Arc::new(ctx), caches, events }
    }

    /// `canary` and the `deployments` cached, as the watches would have delivered them.
    pub fn of(canary: &Canary, deployments: impl IntoIterator<Item = Deployment>) -> Scenario {
        let mut s = Scenario::empty(Leadership::always());
        put(&mut s.caches.canaries, canary.clone());
        for d in deployments {
            put(&mut s.caches.deployments, d);
        }
        s
    }

    /// Reconciles `canary` once, then records the Events it queued: the API server sees the
    /// reconcile's writes, then its Events in order (in the controller the Events are recorded in
    /// the background, beside the next reconciles).
    pub async fn reconcile(&mut self, canary: &Canary) -> Result<Action, Error> {
        let result = reconcile(canary, &self.ctx).await;
        self.events.run_until_idle().await;
        result
    }

    /// Reconciles `canary` once against `script` (each request expected in order, nothing else;
    /// the Events last): what the reconcile returned and the requests it sent.
    pub async fn tick(
        &mut self,
        canary: &Canary,
        script: Vec<Expect>,
    ) -> (Result<Action, Error>, Vec<Recorded>) {
        self.api.script(script);
        let result = self.reconcile(canary).await;
        (result, self.api.verify().await)
    }

    /// [`Scenario::tick`] for a reconcile that must succeed.
    pub async fn step(&mut self, canary: &Canary, script: Vec<Expect>) -> (Action, Vec<Recorded>) {
        let (result, sent) = self.tick(canary, script).await;
        (result.expect("reconciled"), sent)
    }
}

/// A server-side apply of `path`.
pub fn apply(path: impl Into<String>) -> Expect {
    expect("PATCH", path).query("force=true")
}

/// A merge patch of `path` (the query is not compared).
pub fn merge_patch(path: impl Into<String>) -> Expect {
    expect("PATCH", path)
}

/// Whether `r` was a merge patch rather than a server-side apply.
pub fn is_merge_patch(r: &Recorded) -> bool {
    !r.query.contains("force=true")
}

/// The Canary as the API server answers a write to it: `canary` with the write merged on.
pub fn onto(canary: &Canary) -> Reply {
    Reply::Onto(serde_json::to_value(canary).expect("a Canary as JSON"))
}

/// The status of `canary` applied.
pub fn status_write(canary: &Canary) -> Expect {
    apply(STATUS).reply(onto(canary))
}

/// The finalizers of `canary` patched.
pub fn finalizer_patch(canary: &Canary) -> Expect {
    merge_patch(CANARY).reply(onto(canary))
}

/// An Event created.
pub fn event() -> Expect {
    expect("POST", EVENTS)
}

/// Puts `obj` in a cache, as the watch would.
pub fn put<K>(writer: &mut kube::runtime::reflector::store::Writer<K>, obj: K)
where
    K: Resource + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Apply(obj));
}

/// Removes `obj` from a cache, as the watch would.
pub fn delete<K>(writer: &mut kube::runtime::reflector::store::Writer<K>, obj: K)
where
    K: Resource + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Delete(obj));
}

/// Reconciles `canary` once; its Events stay queued (see [`Scenario::reconcile`]).
async fn reconcile(canary: &Canary, ctx: &Arc<Context>) -> Result<Action, Error> {
    reconcile::reconcile(Arc::new(canary.clone()), ctx.clone()).await
}

/// Feeds what a reconcile wrote back into the caches, as the watches would deliver it (the
/// objects as answered, with their resourceVersion); returns the Canary as last written, if its
/// status was. Primaries are put in the cache as `ready` when `ready_primary`.
pub fn feed_back(recorded: &[Recorded], caches: &mut TestCaches, ready_primary: bool) -> Option<Canary> {
    let mut canary = None;
    for r in recorded.iter().filter(|r| r.method == "PATCH") {
        let obj = r.reply.clone();
        if r.path.contains("/canaries/") {
            canary = Some(from::<Canary>(obj));
        } else if r.path.contains("/deployments/") && !r.query.contains("force=true") {
            // A merge patch (the target's scale): onto the cached object, as the server does.
            let name = r.path.rsplit('/').next().unwrap_or_default();
            let cached = caches.deployments.as_reader().get(&ObjectRef::new(name).within(NS));
            let mut d = serde_json::to_value(cached.expect("a patched Deployment is cached").as_ref())
                .expect("a Deployment as JSON");
            super::verifier::merge(&mut d, &r.body);
            d["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"].clone();
            put(&mut caches.deployments, from::<Deployment>(d));
        } else if r.path.contains("/deployments/") {
            let d: Deployment = from(obj);
            let d = if ready_primary && d.metadata.name.as_deref().is_some_and(|n| n.ends_with("-primary")) {
                ready(d)
            } else {
                d
            };
            put(&mut caches.deployments, d);
        } else if r.path.contains("/services/") {
            put(&mut caches.services, from::<Service>(obj));
        } else if r.path.contains("/virtualservices/") {
            put(&mut caches.virtual_services, from::<DynamicObject>(obj));
        } else if r.path.contains("/destinationrules/") {
            put(&mut caches.destination_rules, from::<DynamicObject>(obj));
        } else {
            panic!("a write the fixture does not know how to cache: {}", r.line());
        }
    }
    canary
}

/// The Canary's status condition `type_`, as written in a status patch body.
pub fn condition<'a>(status_patch: &'a Value, type_: &str) -> &'a Value {
    status_patch["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status_patch}"))
}

/// `sent[at]` writes a `Stalled` condition with `reason`, and `sent[at + 1]` is the Warning Event
/// that says the same; returns the message.
pub fn stalled(sent: &[Recorded], at: usize, reason: &str) -> String {
    let condition = condition(&sent[at].body, "Stalled");
    assert_eq!(condition["status"], "True", "{condition}");
    assert_eq!(condition["reason"], reason, "{condition}");
    let message = condition["message"].as_str().expect("a message").to_string();
    let event = &sent[at + 1];
    assert_eq!(event.line(), format!("POST {EVENTS}"));
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["message"], message.as_str(), "the Event says what the condition says");
    message
}
