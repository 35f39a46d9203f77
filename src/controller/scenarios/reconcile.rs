//! One reconcile of a Canary: what it writes, in which order, and what it writes nothing for.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::{controller::Action, reflector::ObjectRef};
use serde_json::json;

use super::{fixtures::*, verifier::*};
use crate::{
    api::Canary,
    controller::{Error, Leadership, context::TestCaches},
};

/// What a new podinfo Canary writes before its primary is ready: the primary, its Service and the
/// canary Service, then its first status.
fn initialization(canary: &Canary) -> Vec<Expect> {
    vec![
        apply(deployment_path("podinfo-primary")),
        apply(service_path("podinfo-primary")),
        apply(service_path("podinfo-canary")),
        status_write(canary),
        // "all the metrics providers are available!", as Flagger.
        event(),
    ]
}

/// The podinfo Canary and its target of two replicas, not reconciled yet.
fn new_canary() -> (Scenario, Canary) {
    let c = canary();
    (Scenario::of(&c, [target(2)]), c)
}

#[tokio::test]
async fn a_new_canary_writes_its_primary_and_services_then_its_status() {
    let (mut s, c) = new_canary();
    let (action, sent) = s.step(&c, initialization(&c)).await;

    let primary = &sent[0].body;
    assert_eq!(primary["metadata"]["name"], "podinfo-primary");
    assert_eq!(
        primary["metadata"]["ownerReferences"],
        json!([{"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
                "uid": "uid-canary-podinfo", "controller": true, "blockOwnerDeletion": true}]),
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
    let (mut s, c) = new_canary();
    let (_, sent) = s.step(&c, initialization(&c)).await;
    let c = feed_back(&sent, &mut s.caches, true).expect("a status was written");
    put(&mut s.caches.canaries, c.clone());

    let script = vec![
        apply(service_path("podinfo")),
        apply(istio_path("destinationrules", "podinfo-primary")),
        apply(istio_path("destinationrules", "podinfo-canary")),
        apply(istio_path("virtualservices", "podinfo")),
        status_write(&c),
        merge_patch(deployment_path("podinfo")),
        status_write(&c),
        event(),
    ];
    let (action, sent) = s.step(&c, script).await;

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
    assert!(is_merge_patch(&sent[5]), "{}", sent[5].query);
    assert_eq!(sent[5].body, json!({"spec": {"replicas": 0}}));
    // ... and the pending effects emptied once done; then the Event, recorded in the background.
    let done = &sent[6].body["status"];
    assert_eq!(done["phase"], "Initialized");
    assert!(done.get("pendingEffects").is_none(), "{done}");
    assert_eq!(sent[7].body["type"], "Normal");
    assert_eq!(sent[7].body["message"], "Initialization done! podinfo.test");
    assert_eq!(sent[7].body["involvedObject"]["kind"], "Canary");
    assert_eq!(action, Action::await_change());
}

/// A new podinfo Canary reconciled, every write fed back into the caches as the watches would
/// (the primary as it becomes ready), until a reconcile writes nothing; returns that Canary.
async fn settled() -> (Scenario, Canary) {
    let (mut s, mut c) = new_canary();
    for _ in 0..3 {
        s.api.record(serde_json::to_value(&c).unwrap());
        s.reconcile(&c).await.expect("reconciled");
        let sent = s.api.verify().await;
        if sent.is_empty() {
            return (s, c);
        }
        if let Some(written) = feed_back(&sent, &mut s.caches, true) {
            c = written;
            put(&mut s.caches.canaries, c.clone());
        }
    }
    panic!("the Canary still writes after three reconciles");
}

#[tokio::test]
async fn an_initialized_canary_at_rest_makes_no_request() {
    let (mut s, c) = settled().await;
    let status = c.status.as_ref().expect("a status");
    assert_eq!(status.phase.as_str(), "Initialized");
    assert!(status.pending_effects.is_empty());

    // The primary, the Services, the DestinationRules and the VirtualService are cached as written,
    // the target is unchanged: nothing to write, no Event.
    let (action, _) = s.step(&c, vec![]).await;
    assert_eq!(action, Action::await_change());

    // And again: a resync wakes it without anything having changed.
    s.step(&c, vec![]).await;
}

/// The Service `name` as cached.
fn cached_service(caches: &TestCaches, name: &str) -> k8s_openapi::api::core::v1::Service {
    let r = ObjectRef::new(name).within(NS);
    caches.services.as_reader().get(&r).expect("the Service is cached").as_ref().clone()
}

#[tokio::test]
async fn a_generated_object_changed_by_someone_else_is_written_back_alone() {
    let (mut s, c) = settled().await;
    // Someone points the canary Service elsewhere.
    let mut svc = cached_service(&s.caches, "podinfo-canary");
    svc.spec.as_mut().unwrap().selector = Some([("app".to_string(), "other".to_string())].into());
    put(&mut s.caches.services, svc);

    let (_, sent) = s.step(&c, vec![apply(service_path("podinfo-canary"))]).await;
    assert_eq!(sent[0].body["spec"]["selector"], json!({"app": "podinfo"}));
}

#[tokio::test]
async fn a_canary_whose_target_is_missing_stalls_with_target_not_found_and_a_warning() {
    let c = canary();
    let mut s = Scenario::of(&c, []);
    let (action, sent) = s.step(&c, vec![status_write(&c), event()]).await;

    let message = stalled(&sent, 0, "TargetNotFound");
    assert!(message.contains("Deployment podinfo.test not found"), "{message}");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

/// A Canary that cannot be reconciled as written stalls with `reason` before writing any object.
async fn stalls_before_any_object(c: Canary, reason: &str, mentions: &str) {
    let mut s = Scenario::of(&c, [ready(target(2))]);
    let (_, sent) = s.step(&c, vec![status_write(&c), event()]).await;
    let message = stalled(&sent, 0, reason);
    assert!(message.contains(mentions), "{message}");
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
    let c = canary();
    let mut s = Scenario::of(&c, []);
    let (_, sent) = s.step(&c, vec![status_write(&c), event()]).await;
    let c: Canary = from(sent[0].reply.clone());
    s.step(&c, vec![]).await;
}

#[tokio::test]
async fn a_write_the_api_server_rejects_is_reported_on_the_canary() {
    let (mut s, c) = new_canary();
    let rejected = apply(deployment_path("podinfo-primary")).reply(Reply::Fail(403, "Forbidden"));
    let (result, sent) = s.tick(&c, vec![rejected, status_write(&c), event()]).await;

    assert!(matches!(result, Err(Error::Write { .. })), "{result:?}");
    let message = stalled(&sent, 1, "WriteRejected");
    assert!(message.contains("Deployment podinfo-primary.test (HTTP 403 Forbidden)"), "{message}");
}

#[tokio::test]
async fn an_unavailable_api_server_is_reported_only_from_the_third_failure_in_a_row() {
    let (mut s, c) = new_canary();
    let failing = || apply(deployment_path("podinfo-primary")).reply(Reply::Fail(503, "ServiceUnavailable"));

    for _ in 0..2 {
        let (result, _) = s.tick(&c, vec![failing()]).await;
        assert!(result.is_err());
    }
    let (result, sent) = s.tick(&c, vec![failing(), status_write(&c), event()]).await;
    assert!(result.is_err());
    stalled(&sent, 1, "ApiUnavailable");
}

#[tokio::test]
async fn a_status_changed_since_it_was_read_is_decided_again_without_a_report() {
    let c = canary();
    let mut s = Scenario::of(&c, []);
    let conflict = apply(STATUS).reply(Reply::Fail(409, "Conflict"));
    let (result, _) = s.tick(&c, vec![conflict]).await;
    assert_eq!(result.expect("a conflict is not an error"), Action::requeue(Duration::from_secs(1)));
}

#[tokio::test]
async fn a_replica_that_does_not_lead_writes_nothing() {
    let c = canary();
    let mut s = Scenario::empty(Leadership::elected());
    put(&mut s.caches.canaries, c.clone());
    put(&mut s.caches.deployments, target(2));
    let (action, _) = s.step(&c, vec![]).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_suspended_canary_records_its_decision_and_touches_nothing_it_generated() {
    let (mut s, mut c) = settled().await;
    c.spec.suspend = Some(true);
    // Gone from the caches: a Canary that is not suspended writes them back.
    for name in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        let svc = cached_service(&s.caches, name);
        delete(&mut s.caches.services, svc);
    }

    let (_, sent) = s.step(&c, vec![status_write(&c), event()]).await;
    let skipping = "skipping canary run as object is suspended";
    assert_eq!(sent[0].body["status"]["phase"], "Initialized");
    assert_eq!(sent[0].body["status"]["decision"]["message"], skipping);
    assert_eq!((&sent[1].body["type"], &sent[1].body["message"]), (&json!("Normal"), &json!(skipping)));

    // One Event when it becomes suspended, not one every tick as Flagger (docs/compatibility.md,
    // quirk #14): the next tick writes nothing at all.
    let c: Canary = from(sent[0].reply.clone());
    s.step(&c, vec![]).await;
}

#[tokio::test]
async fn a_new_revision_of_the_target_starts_an_analysis_by_scaling_it_up() {
    let (mut s, c) = settled().await;
    // A new image for the target (at rest at zero replicas since its initialization).
    let mut t = cached_target(&s.caches);
    t.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image =
        Some("ghcr.io/stefanprodan/podinfo:6.0.1".into());
    t.metadata.generation = Some(2);
    put(&mut s.caches.deployments, t);

    let (action, sent) =
        s.step(&c, vec![status_write(&c), merge_patch(deployment_path("podinfo")), event()]).await;
    let status = &sent[0].body;
    assert_eq!(status["status"]["phase"], "Progressing");
    assert_eq!(condition(status, "Promoted")["reason"], "Progressing");
    assert_eq!(status["status"]["canaryWeight"], 0, "no traffic before the canary is ready");
    assert!(is_merge_patch(&sent[1]), "{}", sent[1].query);
    assert_eq!(sent[1].body, json!({"spec": {"replicas": 2}}), "the primary's replicas");
    assert_eq!(sent[2].body["message"], "New revision detected! Scaling up podinfo.test");
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));

    // Within the interval nothing more happens: it waits for the next step.
    let c = feed_back(&sent, &mut s.caches, false).expect("a status was written");
    let (action, _) = s.step(&c, vec![]).await;
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
    let c = canary();
    let mut s = Scenario::of(&c, [target_with_configs()]);
    put(
        &mut s.caches.configmaps,
        from(json!({"metadata": {"name": "podinfo-config", "namespace": NS, "resourceVersion": "3"},
                    "data": {"color": "blue"}})),
    );
    put(
        &mut s.caches.secrets,
        from(json!({"metadata": {"name": "podinfo-secret", "namespace": NS, "resourceVersion": "4"},
                    "data": {"token": "czNjcjN0"}})),
    );

    let mut script = vec![
        apply("/api/v1/namespaces/test/configmaps/podinfo-config-primary"),
        apply("/api/v1/namespaces/test/secrets/podinfo-secret-primary"),
    ];
    script.extend(initialization(&c));
    let (_, sent) = s.step(&c, script).await;
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
    let c = canary();
    let mut s = Scenario::of(&c, [target_with_configs()]);
    let (_, sent) = s.step(&c, vec![status_write(&c), event()]).await;
    let message = stalled(&sent, 0, "ConfigNotFound");
    assert!(message.contains("podinfo-config") || message.contains("podinfo-secret"), "{message}");
}

#[tokio::test]
async fn a_cached_canary_older_than_the_status_just_written_is_not_decided_again() {
    let (mut s, c) = new_canary();
    s.step(&c, initialization(&c)).await;

    // The watch has not delivered the status write yet: the same old copy comes back.
    let (action, _) = s.step(&c, vec![]).await;
    assert_eq!(action, Action::requeue(Duration::from_millis(50)));
}

/// `c` with `veer.dev/request: value`, as the watch delivers it after `kubectl annotate`.
fn requested(c: &Canary, value: &str) -> Canary {
    let mut c = c.clone();
    let annotations = c.metadata.annotations.get_or_insert_default();
    annotations.insert(crate::analysis::request::REQUEST_ANNOTATION.into(), value.into());
    c
}

#[tokio::test]
async fn a_handled_request_is_removed_last_and_only_from_the_canary_it_was_read_from() {
    let (mut s, c) = settled().await;
    // Nothing runs: refused (a Warning Event), and removed, fenced by the resourceVersion.
    let asked = requested(&c, "abort");
    let (action, sent) = s.step(&asked, vec![merge_patch(CANARY).reply(onto(&asked)), event()]).await;
    assert!(
        sent[1].body["message"].as_str().unwrap().contains("refused: nothing to abort"),
        "{}",
        sent[1].body
    );
    assert_eq!(sent[1].body["type"], "Warning");
    assert_eq!(
        sent[0].body,
        json!({"metadata": {
            "resourceVersion": asked.metadata.resource_version,
            "annotations": {"veer.dev/request": null}
        }})
    );
    assert_eq!(action, Action::await_change());

    // A newer request written in between: the removal is refused, and the tick still succeeds
    // (the watch delivers the newer request).
    let (mut s, c) = settled().await;
    let asked = requested(&c, "retry");
    let (action, _) =
        s.step(&asked, vec![merge_patch(CANARY).reply(Reply::Fail(409, "Conflict")), event()]).await;
    assert_eq!(action, Action::await_change());
}
