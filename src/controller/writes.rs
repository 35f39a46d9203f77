//! Writes to the API server: server-side apply with Veer's field manager, skipped when the cached
//! object already has every field Veer would set; the status patch; Events.

use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
};
use serde::Serialize;
use serde_json::Value;

use super::{
    context::Context,
    error::Error,
    events::{EventType, Involved, Note},
};
use crate::{
    api::{Canary, CanaryStatus, CanaryWebhook, WebhookPayload},
    meta::FIELD_MANAGER,
};

/// Whether every field of `desired` is already present, with the same value, in `live`: then
/// applying `desired` would change nothing and the write is skipped.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| is_subset(v, lv)) || (v.is_null() && !l.contains_key(k))),
        // Lists are atomic or keyed by name in the APIs Veer writes; compare element-wise.
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| is_subset(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side applies `desired` (of `kind`). Every object Veer owns is written here, typed or not.
async fn apply_object(client: &Client, kind: &ApiResource, desired: &Value) -> Result<(), Error> {
    let ns = desired["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = desired["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, kind);
    api.patch(name, &params(), &Patch::Apply(desired)).await.map_err(|source| Error::Write {
        kind: kind.kind.clone(),
        name: format!("{name}.{ns}"),
        source,
    })?;
    Ok(())
}

/// Server-side applies the Canary's whole status on the status subresource, unless it is unchanged;
/// returns the resourceVersion it produced when it wrote.
///
/// The write is fenced: it carries the resourceVersion the decision was made on, so that a status
/// changed since (by another replica, or by anyone) is never overwritten from an older view; the
/// API server answers 409 and the Canary is decided again from the newer version.
pub async fn write_status(
    client: &Client,
    canary: &Canary,
    status: &CanaryStatus,
) -> Result<Option<String>, Error> {
    if canary.status.as_ref() == Some(status) {
        return Ok(None);
    }
    let ns = canary.namespace().unwrap_or_default();
    let name = format!("{}.{ns}", canary.name_any());
    let api: Api<Canary> = Api::namespaced(client.clone(), &ns);
    let mut patch = serde_json::json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "status": status,
    });
    if let Some(version) = canary.resource_version() {
        patch["metadata"] = serde_json::json!({"resourceVersion": version});
    }
    let written = api.patch_status(&canary.name_any(), &params(), &Patch::Apply(&patch)).await.map_err(
        |e| match e {
            kube::Error::Api(s) if s.code == 409 => {
                Error::Conflict { kind: "Canary".into(), name: name.clone() }
            }
            source => Error::Write { kind: "Canary status".into(), name: name.clone(), source },
        },
    )?;
    Ok(Some(written.resource_version().unwrap_or_default()))
}

impl Context {
    /// Server-side applies a typed object unless the cached copy already has every field it sets;
    /// returns whether it wrote.
    pub async fn apply<K>(&self, desired: &K, cached: Option<&K>) -> Result<bool, Error>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let json = |o: &K| serde_json::to_value(o).map_err(Error::Serialize);
        let cached = cached.map(json).transpose()?;
        self.apply_json(&ApiResource::erase::<K>(&()), &json(desired)?, cached.as_ref()).await
    }

    /// Server-side applies a router's object (see [`crate::router::Desired`]) unless the cached copy
    /// already has every field it sets; returns whether it wrote.
    pub async fn apply_desired(
        &self,
        desired: &crate::router::Desired,
        live: &dyn crate::router::Live,
    ) -> Result<bool, Error> {
        let cached = if desired.rewrite { None } else { live.get(&desired.kind, desired.name()) };
        self.apply_json(&desired.kind, &desired.object, cached.as_ref()).await
    }

    /// Server-side applies an object given as JSON unless `cached` already has every field it
    /// sets (see [`Context::apply`]).
    pub async fn apply_json(
        &self,
        kind: &ApiResource,
        desired: &Value,
        cached: Option<&Value>,
    ) -> Result<bool, Error> {
        let written = self
            .fenced(async {
                if cached.is_some_and(|live| is_subset(desired, live)) {
                    return Ok(false);
                }
                let _timer = self.metrics.time_write(&kind.kind);
                apply_object(&self.client, kind, desired).await.map(|()| true)
            })
            .await?;
        if written {
            self.metrics.count_write(&kind.kind);
        }
        Ok(written)
    }

    /// A JSON merge patch (for fields of user objects Veer changes without owning them, such as
    /// a target's replicas).
    pub async fn merge_patch(
        &self,
        kind: &ApiResource,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), Error> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, kind);
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        self.fenced(async {
            let _timer = self.metrics.time_write(&kind.kind);
            api.patch(name, &params, &Patch::Merge(patch)).await.map_err(|source| Error::Write {
                kind: kind.kind.clone(),
                name: format!("{name}.{ns}"),
                source,
            })
        })
        .await?;
        self.metrics.count_write(&kind.kind);
        Ok(())
    }

    /// Writes the Canary status (one patch per tick) when it changed; `canary` then holds the
    /// status and resourceVersion written, for the next write of the same reconcile.
    pub async fn write_status(&self, canary: &mut Canary, status: &CanaryStatus) -> Result<(), Error> {
        let written = self.fenced(async {
            if canary.status.as_ref() == Some(status) {
                return Ok(None);
            }
            let _timer = self.metrics.time_write("Canary/status");
            write_status(&self.client, canary, status).await
        });
        if let Some(new_version) = written.await? {
            self.metrics.count_write("Canary/status");
            let old_version = canary.resource_version().unwrap_or_default();
            if new_version != old_version {
                self.written.remember(canary, old_version);
            }
            canary.status = Some(status.clone());
            canary.metadata.resource_version = Some(new_version);
        }
        Ok(())
    }

    /// Removes the handled request (`veer.dev/request`) from the Canary as `canary` holds it. When
    /// the Canary changed since (a newer request, say), nothing is removed: the watch delivers the
    /// change and the next tick reads it.
    pub async fn clear_request(&self, canary: &mut Canary) -> Result<(), Error> {
        use crate::analysis::request::REQUEST_ANNOTATION;
        let version = canary.resource_version().unwrap_or_default();
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": version, "annotations": {REQUEST_ANNOTATION: null}}
        });
        let api: Api<Canary> = Api::namespaced(self.client.clone(), &canary.namespace().unwrap_or_default());
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        let name = canary.name_any();
        let written = self
            .fenced(async {
                let _timer = self.metrics.time_write("Canary");
                match api.patch(&name, &params, &Patch::Merge(&patch)).await {
                    Ok(c) => Ok(Some(c)),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
                    Err(source) => Err(Error::Write {
                        kind: "Canary".into(),
                        name: crate::router::display_name(canary),
                        source,
                    }),
                }
            })
            .await?;
        if let Some(written) = written {
            self.metrics.count_write("Canary");
            // The copy with the request is stale now, as after a status write.
            self.written.remember(canary, version);
            canary.metadata = written.metadata;
        }
        Ok(())
    }

    /// Logs an Event and queues it to be recorded on the Canary (reason `Synced`, as Flagger) and
    /// sent to the event webhooks; neither holds up the reconcile. The Event is recorded after
    /// the Events queued before it for the same Canary (see `events`), and not at all when this
    /// replica does not lead, or no longer does when the Event's turn comes.
    pub fn event(&self, canary: &Canary, warning: bool, message: &str, payload: &WebhookPayload) {
        let name = crate::router::display_name(canary);
        if warning {
            tracing::warn!(canary = %name, "{message}");
        } else {
            tracing::info!(canary = %name, "{message}");
        }
        if !self.is_leader() {
            tracing::debug!(canary = %name, "not the leader: no Event");
            return;
        }
        let now = k8s_openapi::jiff::Timestamp::now();
        // A full queue is counted and logged by the queue itself.
        let _ = self.events.send(Note {
            involved: Involved::of(canary),
            type_: EventType::of(warning),
            message: message.to_string(),
            at: now,
        });
        let millis = now.as_millisecond();
        let calls = self
            .event_webhooks(canary)
            .into_iter()
            .map(|hook| crate::webhook::EventCall {
                hook,
                payload: payload.clone(),
                message: message.to_string(),
                warning,
                unix_millis: millis,
            })
            .collect::<Vec<_>>();
        if !calls.is_empty()
            && let Err(e) = self.webhooks.queue_events(
                &format!("{}/{}", canary.namespace().unwrap_or_default(), canary.name_any()),
                calls,
            )
        {
            tracing::warn!(canary = %name, error = %e, "event webhook");
        }
    }

    /// `type: event` hooks of the Canary, or the global `--event-webhook` (named `events`, as in
    /// Flagger) when it has none.
    fn event_webhooks(&self, canary: &Canary) -> Vec<CanaryWebhook> {
        let hooks: Vec<CanaryWebhook> = canary
            .spec
            .analysis
            .as_ref()
            .and_then(|a| a.webhooks.as_ref())
            .into_iter()
            .flatten()
            .filter(|h| h.type_.as_deref() == Some("event"))
            .cloned()
            .collect();
        if !hooks.is_empty() {
            return hooks;
        }
        let global = self.config.event_webhook.as_ref();
        global
            .map(|url| CanaryWebhook { name: "events".into(), url: url.clone(), ..Default::default() })
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{Request, Response};
    use k8s_openapi::api::core::v1::Service;
    use kube::client::Body;
    use serde_json::json;

    use super::*;
    use crate::api::{CanarySpec, Phase};

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn mock() -> (Client, Handle) {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(svc, "default"), handle)
    }

    /// Answers the next request, checking it, with `reply` as JSON.
    async fn expect(handle: &mut Handle, method: &str, path_and_query: &str, reply: Value) -> Value {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .expect("a request")
            .expect("the client is alive");
        assert_eq!(req.method().as_str(), method);
        assert_eq!(req.uri().path_and_query().unwrap().as_str(), path_and_query);
        let body = req.into_body().collect_bytes().await.unwrap();
        send.send_response(
            Response::builder().body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap(),
        );
        serde_json::from_slice(&body).unwrap()
    }

    fn service(selector: &str) -> Service {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {"selector": {"app": selector}, "ports": [{"port": 9898}]}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn apply_skips_objects_the_cache_already_has() {
        let (client, mut handle) = mock();
        let (ctx, _caches, _events) = Context::test(client);
        let mut live = service("podinfo-primary");
        live.metadata.resource_version = Some("42".into());
        live.spec.as_mut().unwrap().cluster_ip = Some("10.0.0.1".into());
        assert!(!ctx.apply(&service("podinfo-primary"), Some(&live)).await.unwrap());
        // Nothing was sent: the next request the mock sees is the one below.
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "PATCH",
                "/api/v1/namespaces/test/services/podinfo?&force=true&fieldManager=veer",
                json!({}),
            )
            .await
        });
        assert!(ctx.apply(&service("podinfo"), Some(&live)).await.unwrap());
        let sent = server.await.unwrap();
        assert_eq!(sent["spec"]["selector"]["app"], "podinfo");
    }

    #[tokio::test]
    async fn status_is_written_once_and_only_when_it_changed() {
        let (client, mut handle) = mock();
        let mut canary = Canary::new("podinfo", CanarySpec::default());
        canary.metadata.namespace = Some("test".into());
        let status = CanaryStatus { phase: Phase::Progressing, canary_weight: 10, ..Default::default() };
        canary.status = Some(status.clone());
        assert!(write_status(&client, &canary, &status).await.unwrap().is_none());
        let next = CanaryStatus { canary_weight: 20, ..status };
        let reply = serde_json::to_value(&canary).unwrap();
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "PATCH",
                "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo/status?&force=true&fieldManager=veer",
                reply,
            )
            .await
        });
        assert!(write_status(&client, &canary, &next).await.unwrap().is_some());
        let sent = server.await.unwrap();
        assert_eq!(sent["status"]["canaryWeight"], 20);
        assert_eq!(sent["status"]["phase"], "Progressing");
        assert_eq!(sent["kind"], "Canary");
    }

    #[tokio::test]
    async fn status_writes_are_fenced_by_the_resource_version_they_decided_on() {
        let (client, mut handle) = mock();
        let mut canary = Canary::new("podinfo", CanarySpec::default());
        canary.metadata.namespace = Some("test".into());
        canary.metadata.resource_version = Some("41".into());
        let status = CanaryStatus { phase: Phase::Progressing, ..Default::default() };
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("a request");
            let body: Value =
                serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
            let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                "reason": "Conflict", "message": "the object has been modified"});
            send.send_response(
                Response::builder()
                    .status(409)
                    .body(Body::from(serde_json::to_vec(&conflict).unwrap()))
                    .unwrap(),
            );
            body
        });
        let e = write_status(&client, &canary, &status).await.unwrap_err();
        assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
        let sent = server.await.unwrap();
        assert_eq!(sent["metadata"]["resourceVersion"], "41");
    }

    /// The samples of `veer_api_write_duration_seconds` and `veer_api_writes_total` of `ctx`.
    fn write_samples(ctx: &Context) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("d", "", ctx.metrics.api_write_duration.clone());
        registry.register("w", "", ctx.metrics.api_writes.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[tokio::test]
    async fn writes_sent_are_timed_by_kind_and_skipped_or_refused_ones_are_not() {
        let (client, mut handle) = mock();
        let (ctx, _caches, _events) = Context::test(client);
        let live = service("podinfo");
        assert!(!ctx.apply(&service("podinfo"), Some(&live)).await.unwrap(), "skipped");
        let server = tokio::spawn(async move {
            let path = "/api/v1/namespaces/test/services/podinfo?&force=true&fieldManager=veer";
            expect(&mut handle, "PATCH", path, json!({})).await;
        });
        assert!(ctx.apply(&service("podinfo-primary"), Some(&live)).await.unwrap());
        server.await.unwrap();
        let text = write_samples(&ctx);
        assert!(text.contains("d_count{kind=\"Service\"} 1\n"), "{text}");
        assert!(text.contains("w_total{kind=\"Service\"} 1\n"), "the same kinds: {text}");
        assert!(text.contains("d_bucket{le=\"0.005\",kind=\"Service\"}"), "from 5 ms: {text}");
        assert!(text.contains("d_bucket{le=\"10.0\",kind=\"Service\"}"), "to 10 s: {text}");

        // A replica that does not lead sends nothing, and times nothing.
        let (client, _handle) = mock();
        let (follower, _caches, _events) = Context::test_led(client, super::super::Leadership::elected());
        let refused = follower.apply(&service("podinfo-primary"), None).await;
        assert!(matches!(refused, Err(Error::NotLeader)), "{refused:?}");
        let text = write_samples(&follower);
        assert!(!text.contains("d_count"), "{text}");
    }

    #[test]
    fn subset_comparison() {
        let live = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "replicas": 2}});
        assert!(is_subset(&json!({"metadata": {"labels": {"x": "1"}}}), &live));
        assert!(is_subset(&json!({"spec": {"ports": [{"port": 80}]}}), &live));
        assert!(!is_subset(&json!({"spec": {"ports": [{"port": 81}]}}), &live));
        assert!(!is_subset(&json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}}), &live));
        assert!(!is_subset(&json!({"metadata": {"labels": {"z": "1"}}}), &live));
        assert!(is_subset(&json!({"spec": {"replicas": 2.0}}), &live));
        assert!(is_subset(&json!({"spec": {"paused": null}}), &live), "an absent field equals null");
    }
}
