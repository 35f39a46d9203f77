//! One reconcile of a Canary: what it writes, in which order, and what it writes nothing for.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::{controller::Action, reflector::ObjectRef};
use serde_json::json;

use super::{fixtures::*, verifier::*};
use crate::{
    api::Canary,
    controller::{
        Error, Leadership,
        context::{Context, TestCaches},
    },
};

fn apply(path: impl Into<String>) -> Expect {
    expect("PATCH", path).query("force=true")
}

fn status_write(canary: &Canary) -> Expect {
    apply(STATUS).reply(Reply::Onto(serde_json::to_value(canary).unwrap()))
}

fn event() -> Expect {
    expect("POST", EVENTS)
}

/// What a new podinfo Canary writes before its primary is ready: the primary, its Service and the
/// canary Service, then its first status.
fn initialization(canary: &Canary) -> Vec<Expect> {
    vec![
        apply(deployment_path("podinfo-primary")),
        apply(service_path("podinfo-primary")),
        apply(service_path("podinfo-canary")),
        status_write(canary),
    ]
}

#[tokio::test]
async fn a_new_canary_writes_its_primary_and_services_then_its_status() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = canary();
    put(&mut caches.canaries, c.clone());
    put(&mut caches.deployments, target(2));

    api.script(initialization(&c));
    let action = reconcile(&c, &ctx).await.expect("reconciled");
    let sent = api.verify().await;

    let primary = &sent[0].body;
    assert_eq!(primary["metadata"]["name"], "podinfo-primary");
    assert_eq!(
        primary["metadata"]["ownerReferences"],
        json!([{"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
                "uid": "uid-canary-podinfo", "controller": true}]),
        "owned by the Canary, garbage collected with it"
    );
    assert_eq!(primary["spec"]["selector"]["matchLabels"], json!({"app": "podinfo-primary"}));
    assert_eq!(primary["spec"]["replicas"], 2, "the target's replicas");
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/stefanprodan/podinfo:6.0.0"
    );
    assert_eq!(sent[1].body["spec"]["selector"], json!({"app": "podinfo-primary"}));
    assert_eq!(sent[2].body["spec"]["selector"], json!({"app": "podinfo"}));
    assert_eq!(sent[2].body["spec"]["ports"][0]["port"], 9898);
    // The apex Service and the routes wait for the primary to serve (not written above).
    let status = &sent[3].body;
    assert_eq!(status["status"]["phase"], "Initializing");
    assert_eq!(condition(status, "Promoted")["reason"], "Initializing");
    assert_eq!(status["metadata"]["resourceVersion"], "1", "fenced by the version decided on");
    assert_eq!(action, Action::requeue(Duration::from_secs(15)), "the analysis interval");
}

#[tokio::test]
async fn once_the_primary_serves_the_apex_service_and_routes_follow_and_the_target_is_scaled_to_zero() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = canary();
    put(&mut caches.canaries, c.clone());
    put(&mut caches.deployments, target(2));
    api.script(initialization(&c));
    reconcile(&c, &ctx).await.expect("reconciled");
    let sent = api.verify().await;
    let c = feed_back(&sent, &mut caches, true).expect("a status was written");
    put(&mut caches.canaries, c.clone());

    api.script(vec![
        apply(service_path("podinfo")),
        apply(istio_path("destinationrules", "podinfo-primary")),
        apply(istio_path("destinationrules", "podinfo-canary")),
        apply(istio_path("virtualservices", "podinfo")),
        status_write(&c),
        expect("PATCH", deployment_path("podinfo")),
        event(),
        status_write(&c),
    ]);
    let action = reconcile(&c, &ctx).await.expect("reconciled");
    let sent = api.verify().await;

    assert_eq!(sent[0].body["spec"]["selector"], json!({"app": "podinfo-primary"}), "apex on the primary");
    assert_eq!(
        sent[3].body["spec"]["http"][0]["route"],
        json!([{"destination": {"host": "podinfo-primary"}, "weight": 100},
               {"destination": {"host": "podinfo-canary"}, "weight": 0}])
    );
    // The decision is written before it is carried out, with what remains to do ...
    let decided = &sent[4].body["status"];
    assert_eq!(decided["phase"], "Initialized");
    assert!(!decided["pendingEffects"].as_array().unwrap().is_empty(), "{decided}");
    // ... the target scaled to zero with a merge patch (Veer does not own its replicas) ...
    assert!(!sent[5].query.contains("force=true"), "a merge patch: {}", sent[5].query);
    assert_eq!(sent[5].body, json!({"spec": {"replicas": 0}}));
    assert_eq!(sent[6].body["type"], "Normal");
    assert_eq!(sent[6].body["message"], "Initialization done! podinfo.test");
    assert_eq!(sent[6].body["involvedObject"]["kind"], "Canary");
    // ... and the pending effects emptied once done.
    let done = &sent[7].body["status"];
    assert_eq!(done["phase"], "Initialized");
    assert!(done.get("pendingEffects").is_none(), "{done}");
    assert_eq!(action, Action::await_change());
}

/// Reconciles a new podinfo Canary, feeding every write back into the caches as the watches would
/// (the primary as it becomes ready), until a reconcile writes nothing; returns that Canary.
async fn settle(api: &mut ApiServer, ctx: &Arc<Context>, caches: &mut TestCaches) -> Canary {
    let mut c = canary();
    put(&mut caches.canaries, c.clone());
    put(&mut caches.deployments, target(2));
    for _ in 0..3 {
        api.record(serde_json::to_value(&c).unwrap());
        reconcile(&c, ctx).await.expect("reconciled");
        let sent = api.verify().await;
        if sent.is_empty() {
            return c;
        }
        if let Some(written) = feed_back(&sent, caches, true) {
            c = written;
            put(&mut caches.canaries, c.clone());
        }
    }
    panic!("the Canary still writes after three reconciles");
}

#[tokio::test]
async fn an_initialized_canary_at_rest_makes_no_request() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = settle(&mut api, &ctx, &mut caches).await;
    let status = c.status.as_ref().expect("a status");
    assert_eq!(status.phase.as_str(), "Initialized");
    assert!(status.pending_effects.is_empty());

    // The primary, the Services, the DestinationRules and the VirtualService are cached as written,
    // the target is unchanged: nothing to write, no Event.
    api.script(vec![]);
    let action = reconcile(&c, &ctx).await.expect("reconciled");
    assert!(api.verify().await.is_empty());
    assert_eq!(action, Action::await_change());

    // And again: a resync wakes it without anything having changed.
    api.script(vec![]);
    reconcile(&c, &ctx).await.expect("reconciled");
    api.verify().await;
}

#[tokio::test]
async fn a_generated_object_changed_by_someone_else_is_written_back_alone() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = settle(&mut api, &ctx, &mut caches).await;
    // Someone points the canary Service elsewhere.
    let svc = caches
        .services
        .as_reader()
        .state()
        .into_iter()
        .find(|s| s.metadata.name.as_deref() == Some("podinfo-canary"));
    let mut svc = svc.expect("the canary Service is cached").as_ref().clone();
    svc.spec.as_mut().unwrap().selector = Some([("app".to_string(), "other".to_string())].into());
    put(&mut caches.services, svc);

    api.script(vec![apply(service_path("podinfo-canary"))]);
    reconcile(&c, &ctx).await.expect("reconciled");
    let sent = api.verify().await;
    assert_eq!(sent[0].body["spec"]["selector"], json!({"app": "podinfo"}));
}

#[tokio::test]
async fn a_canary_whose_target_is_missing_stalls_with_target_not_found_and_a_warning() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = canary();
    put(&mut caches.canaries, c.clone());

    api.script(vec![status_write(&c), event()]);
    let action = reconcile(&c, &ctx).await.expect("a stall is not an error");
    let sent = api.verify().await;

    let stalled = condition(&sent[0].body, "Stalled");
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "TargetNotFound");
    let message = stalled["message"].as_str().unwrap();
    assert!(message.contains("Deployment podinfo.test not found"), "{message}");
    assert_eq!(sent[1].body["type"], "Warning");
    assert_eq!(sent[1].body["message"], message, "the Event says what the condition says");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

/// A Canary that cannot be reconciled as written stalls with `reason` before writing any object.
async fn stalls_before_any_object(c: Canary, reason: &str, mentions: &str) {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    put(&mut caches.canaries, c.clone());
    put(&mut caches.deployments, ready(target(2)));

    api.script(vec![status_write(&c), event()]);
    reconcile(&c, &ctx).await.expect("a stall is not an error");
    let sent = api.verify().await;

    let stalled = condition(&sent[0].body, "Stalled");
    assert_eq!(stalled["reason"], reason);
    let message = stalled["message"].as_str().unwrap();
    assert!(message.contains(mentions), "{message}");
    assert_eq!(sent[1].body["type"], "Warning");
}

#[tokio::test]
async fn an_unsupported_provider_stalls_before_any_object_is_written() {
    let c = canary_with(json!({"spec": {"provider": "appmesh"}}));
    stalls_before_any_object(c, "UnsupportedProvider", "appmesh").await;
}

#[tokio::test]
async fn an_analysis_interval_over_the_bound_stalls_as_an_invalid_spec() {
    let c = canary_with(json!({"spec": {"analysis": {"interval": "25h"}}}));
    stalls_before_any_object(c, "InvalidSpec", "analysis.interval").await;
}

#[tokio::test]
async fn a_canary_without_a_service_stalls_before_any_object_is_written() {
    let c = canary_with(json!({"spec": {"service": null}}));
    stalls_before_any_object(c, "ServiceMissing", "spec.service").await;
}

#[tokio::test]
async fn a_stall_already_shown_is_not_written_again() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = canary();
    put(&mut caches.canaries, c.clone());
    api.script(vec![status_write(&c), event()]);
    reconcile(&c, &ctx).await.expect("a stall is not an error");
    let sent = api.verify().await;
    let c: Canary = from(sent[0].reply.clone());

    api.script(vec![]);
    reconcile(&c, &ctx).await.expect("a stall is not an error");
    api.verify().await;
}

#[tokio::test]
async fn a_write_the_api_server_rejects_is_reported_on_the_canary() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = canary();
    put(&mut caches.canaries, c.clone());
    put(&mut caches.deployments, target(2));

    api.script(vec![
        apply(deployment_path("podinfo-primary")).reply(Reply::Fail(403, "Forbidden")),
        status_write(&c),
        event(),
    ]);
    let result = reconcile(&c, &ctx).await;
    let sent = api.verify().await;

    assert!(matches!(result, Err(Error::Write { .. })), "{result:?}");
    let stalled = condition(&sent[1].body, "Stalled");
    assert_eq!(stalled["reason"], "WriteRejected");
    let message = stalled["message"].as_str().unwrap();
    assert!(message.contains("Deployment podinfo-primary.test (HTTP 403 Forbidden)"), "{message}");
    assert_eq!(sent[2].body["type"], "Warning");
}

#[tokio::test]
async fn an_unavailable_api_server_is_reported_only_from_the_third_failure_in_a_row() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = canary();
    put(&mut caches.canaries, c.clone());
    put(&mut caches.deployments, target(2));
    let failing = || apply(deployment_path("podinfo-primary")).reply(Reply::Fail(503, "ServiceUnavailable"));

    for _ in 0..2 {
        api.script(vec![failing()]);
        assert!(reconcile(&c, &ctx).await.is_err());
        api.verify().await;
    }
    api.script(vec![failing(), status_write(&c), event()]);
    assert!(reconcile(&c, &ctx).await.is_err());
    let sent = api.verify().await;
    assert_eq!(condition(&sent[1].body, "Stalled")["reason"], "ApiUnavailable");
}

#[tokio::test]
async fn a_status_changed_since_it_was_read_is_decided_again_without_a_report() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = canary();
    put(&mut caches.canaries, c.clone());

    api.script(vec![apply(STATUS).reply(Reply::Fail(409, "Conflict"))]);
    let action = reconcile(&c, &ctx).await.expect("a conflict is not an error");
    api.verify().await;
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
}

#[tokio::test]
async fn a_replica_that_does_not_lead_writes_nothing() {
    let (client, mut api) = mock();
    let (mut ctx, mut caches) = Context::test(client);
    ctx.leadership = Leadership::elected();
    let ctx = Arc::new(ctx);
    let c = canary();
    put(&mut caches.canaries, c.clone());
    put(&mut caches.deployments, target(2));

    api.script(vec![]);
    let action = reconcile(&c, &ctx).await.expect("not leading is not an error");
    api.verify().await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_suspended_canary_records_its_decision_and_touches_nothing_it_generated() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let mut c = settle(&mut api, &ctx, &mut caches).await;
    c.spec.suspend = Some(true);
    // Gone from the caches: a Canary that is not suspended writes them back.
    for name in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        let svc = caches
            .services
            .as_reader()
            .state()
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some(name));
        delete(&mut caches.services, svc.expect("cached").as_ref().clone());
    }

    api.script(vec![status_write(&c), event()]);
    reconcile(&c, &ctx).await.expect("reconciled");
    let sent = api.verify().await;
    let skipping = "skipping canary run as object is suspended";
    assert_eq!(sent[0].body["status"]["phase"], "Initialized");
    assert_eq!(sent[0].body["status"]["decision"]["message"], skipping);
    assert_eq!((&sent[1].body["type"], &sent[1].body["message"]), (&json!("Normal"), &json!(skipping)));

    // One Event when it becomes suspended, not one every tick as Flagger (docs/compatibility.md,
    // quirk #14): the next tick writes nothing at all.
    let c: Canary = from(sent[0].reply.clone());
    api.script(vec![]);
    reconcile(&c, &ctx).await.expect("reconciled");
    api.verify().await;
}

#[tokio::test]
async fn a_new_revision_of_the_target_starts_an_analysis_by_scaling_it_up() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = settle(&mut api, &ctx, &mut caches).await;
    // A new image for the target (at rest at zero replicas since its initialization).
    let mut t = cached_target(&caches);
    t.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image =
        Some("ghcr.io/stefanprodan/podinfo:6.0.1".into());
    t.metadata.generation = Some(2);
    put(&mut caches.deployments, t);

    api.script(vec![status_write(&c), event(), expect("PATCH", deployment_path("podinfo"))]);
    let action = reconcile(&c, &ctx).await.expect("reconciled");
    let sent = api.verify().await;
    let status = &sent[0].body;
    assert_eq!(status["status"]["phase"], "Progressing");
    assert_eq!(condition(status, "Promoted")["reason"], "Progressing");
    assert_eq!(status["status"]["canaryWeight"], 0, "no traffic before the canary is ready");
    assert_eq!(sent[1].body["message"], "New revision detected! Scaling up podinfo.test");
    assert!(!sent[2].query.contains("force=true"), "a merge patch: {}", sent[2].query);
    assert_eq!(sent[2].body, json!({"spec": {"replicas": 2}}), "the primary's replicas");
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));

    // Within the interval nothing more happens: it waits for the next step.
    let c = feed_back(&sent, &mut caches, false).expect("a status was written");
    api.script(vec![]);
    let action = reconcile(&c, &ctx).await.expect("reconciled");
    api.verify().await;
    assert_ne!(action, Action::await_change(), "{action:?}");
}

fn cached_target(caches: &TestCaches) -> Deployment {
    let r = ObjectRef::new("podinfo").within(NS);
    caches.deployments.as_reader().get(&r).expect("the target is cached").as_ref().clone()
}

/// The target of the e2e tests: it reads ConfigMap `podinfo-config` (a volume) and Secret
/// `podinfo-secret` (envFrom).
fn target_with_configs() -> Deployment {
    let mut t = target_json(2);
    let spec = &mut t["spec"]["template"]["spec"];
    spec["containers"][0]["envFrom"] = json!([{"secretRef": {"name": "podinfo-secret"}}]);
    spec["containers"][0]["volumeMounts"] = json!([{"name": "config", "mountPath": "/etc/podinfo"}]);
    spec["volumes"] = json!([{"name": "config", "configMap": {"name": "podinfo-config"}}]);
    from(t)
}

#[tokio::test]
async fn the_configs_a_target_uses_are_copied_before_its_primary() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = canary();
    put(&mut caches.canaries, c.clone());
    put(&mut caches.deployments, target_with_configs());
    put(
        &mut caches.configmaps,
        from(json!({"metadata": {"name": "podinfo-config", "namespace": NS, "resourceVersion": "3"},
                    "data": {"color": "blue"}})),
    );
    put(
        &mut caches.secrets,
        from(json!({"metadata": {"name": "podinfo-secret", "namespace": NS, "resourceVersion": "4"},
                    "data": {"token": "czNjcjN0"}})),
    );

    let mut script = vec![
        apply("/api/v1/namespaces/test/configmaps/podinfo-config-primary"),
        apply("/api/v1/namespaces/test/secrets/podinfo-secret-primary"),
    ];
    script.extend(initialization(&c));
    api.script(script);
    reconcile(&c, &ctx).await.expect("reconciled");
    let sent = api.verify().await;
    assert_eq!(sent[0].body["data"], json!({"color": "blue"}));
    assert_eq!(sent[1].body["data"], json!({"token": "czNjcjN0"}));
    for copy in &sent[..2] {
        assert_eq!(copy.body["metadata"]["ownerReferences"][0]["name"], "podinfo", "owned by the Canary");
    }
    // The primary reads the copies.
    let pod = &sent[2].body["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["envFrom"][0]["secretRef"]["name"], "podinfo-secret-primary");
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "podinfo-config-primary");
}

#[tokio::test]
async fn a_config_the_target_uses_that_does_not_exist_stalls_before_any_object_is_written() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = canary();
    put(&mut caches.canaries, c.clone());
    put(&mut caches.deployments, target_with_configs());

    api.script(vec![status_write(&c), event()]);
    reconcile(&c, &ctx).await.expect("a stall is not an error");
    let sent = api.verify().await;
    let stalled = condition(&sent[0].body, "Stalled");
    assert_eq!(stalled["reason"], "ConfigNotFound");
    let message = stalled["message"].as_str().unwrap();
    assert!(message.contains("podinfo-config") || message.contains("podinfo-secret"), "{message}");
}

#[tokio::test]
async fn a_cached_canary_older_than_the_status_just_written_is_not_decided_again() {
    let (client, mut api) = mock();
    let (ctx, mut caches) = world(client);
    let c = canary();
    put(&mut caches.canaries, c.clone());
    put(&mut caches.deployments, target(2));
    api.script(initialization(&c));
    reconcile(&c, &ctx).await.expect("reconciled");
    api.verify().await;

    // The watch has not delivered the status write yet: the same old copy comes back.
    api.script(vec![]);
    let action = reconcile(&c, &ctx).await.expect("reconciled");
    api.verify().await;
    assert_eq!(action, Action::requeue(Duration::from_millis(50)));
}
