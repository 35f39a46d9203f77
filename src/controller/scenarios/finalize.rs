//! Deleting a Canary: the finalizer of `revertOnDeletion`, and what a deletion restores, in order.

use std::time::Duration;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::fixtures::*;
use crate::{api::Canary, meta::FINALIZER};

/// The podinfo Canary, initialized, with `revertOnDeletion`, being deleted.
fn deleted_canary() -> Canary {
    canary_with(json!({
        "metadata": {"deletionTimestamp": "2026-06-01T00:00:00Z", "finalizers": [FINALIZER]},
        "spec": {"revertOnDeletion": true},
        "status": {"phase": "Initialized"}
    }))
}

fn primary(replicas: i32) -> Deployment {
    let mut d = target_json(replicas);
    d["metadata"]["name"] = json!("podinfo-primary");
    d["metadata"]["uid"] = json!("uid-deployment-podinfo-primary");
    ready(from(d))
}

/// An apex Service the Canary adopted: the user's, not owned by the Canary, pointed at the
/// primary by Veer.
fn adopted_apex(annotations: Value) -> Service {
    from(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "podinfo", "namespace": NS, "resourceVersion": "5", "annotations": annotations},
        "spec": {"selector": {"app": "podinfo-primary"}, "ports": [{"port": 9898}]}
    }))
}

/// The deleted Canary with its target, a ready primary of `primary_replicas` and `apex` cached.
fn deleting(target: Deployment, primary_replicas: i32, apex: Service) -> (Scenario, Canary) {
    let c = deleted_canary();
    let mut s = Scenario::of(&c, [target, primary(primary_replicas)]);
    put(&mut s.caches.services, apex);
    (s, c)
}

#[tokio::test]
async fn deleting_a_canary_without_the_finalizer_writes_nothing() {
    let c = canary_with(json!({"metadata": {"deletionTimestamp": "2026-06-01T00:00:00Z"}}));
    let mut s = Scenario::of(&c, [target(0)]);
    let (action, _) = s.step(&c, vec![]).await;
    assert_eq!(action, Action::await_change(), "garbage collection removes what it generated");
}

#[tokio::test]
async fn revert_on_deletion_adds_the_finalizer_before_anything_else() {
    let c = canary_with(json!({"spec": {"revertOnDeletion": true}}));
    let mut s = Scenario::of(&c, [target(2)]);

    // 1. The finalizer alone: it changes the resourceVersion, so a status write fenced by the one
    //    read would be refused; the Canary is decided again from the version the watch delivers.
    let (action, sent) = s.step(&c, vec![finalizer_patch(&c)]).await;
    assert!(is_merge_patch(&sent[0]));
    assert_eq!(
        sent[0].body,
        json!({"metadata": {"finalizers": [FINALIZER], "resourceVersion": "1"}}),
        "the finalizer, conditioned on the version read"
    );
    assert_eq!(action, Action::requeue(Duration::from_millis(250)));

    // 2. With the finalizer, the Canary is reconciled as any other.
    let mut c = c;
    c.metadata.finalizers = Some(vec![FINALIZER.into()]);
    c.metadata.resource_version = Some("2".into());
    put(&mut s.caches.canaries, c.clone());
    let script = vec![
        apply(deployment_path("podinfo-primary")),
        apply(service_path("podinfo-primary")),
        apply(service_path("podinfo-canary")),
        status_write(&c),
        event(),
    ];
    let (_, sent) = s.step(&c, script).await;
    assert_eq!(sent[3].body["metadata"]["resourceVersion"], "2", "fenced by the version with the finalizer");
}

#[tokio::test]
async fn turning_revert_on_deletion_off_removes_the_finalizer() {
    let c = canary_with(json!({"metadata": {"finalizers": ["other.example.com/keep", FINALIZER]}}));
    let mut s = Scenario::of(&c, []);

    // The target is missing: the finalizer goes first all the same, then (from the version the
    // watch delivers) the stall.
    let (_, sent) = s.step(&c, vec![finalizer_patch(&c)]).await;
    assert_eq!(sent[0].body["metadata"]["finalizers"], json!(["other.example.com/keep"]), "only Veer's");
    let mut c = c;
    c.metadata.finalizers = Some(vec!["other.example.com/keep".into()]);
    put(&mut s.caches.canaries, c.clone());
    let (_, sent) = s.step(&c, vec![status_write(&c), event()]).await;
    stalled(&sent, 0, "TargetNotFound");
}

#[tokio::test]
async fn deleting_scales_the_target_back_up_waits_for_it_then_restores_the_apex_service_and_lets_go() {
    // Scaled to zero at the end of the last run, the Deployment controller not caught up yet (a
    // target at rest at zero: the test below).
    let (mut s, c) = deleting(rolling(target(0)), 3, adopted_apex(json!({})));

    // 1. Terminating, then the target back to the primary's replicas; the apex Service waits.
    let script = vec![status_write(&c), merge_patch(deployment_path("podinfo")), event()];
    let (action, sent) = s.step(&c, script).await;
    assert_eq!(sent[0].body["status"]["phase"], "Terminating");
    assert!(is_merge_patch(&sent[1]), "Veer does not own the target's replicas");
    assert_eq!(sent[1].body, json!({"spec": {"replicas": 3}}), "the primary's replicas");
    assert_eq!(sent[2].body["message"], "Terminating canary podinfo.test");
    assert_eq!(action, Action::requeue(Duration::from_secs(2)));
    let c: Canary = from(sent[0].reply.clone());

    // 2. The target scales up but does not serve yet: nothing is written.
    put(&mut s.caches.deployments, rolling(target(3)));
    let (action, _) = s.step(&c, vec![]).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(2)));

    // 3. The target serves: the adopted apex Service selects its pods again, then the finalizer
    // goes, the last write to the Canary.
    put(&mut s.caches.deployments, ready(target(3)));
    let script = vec![merge_patch(service_path("podinfo")), finalizer_patch(&c), event()];
    let (action, sent) = s.step(&c, script).await;
    assert!(is_merge_patch(&sent[0]));
    assert_eq!(sent[0].body, json!({"spec": {"selector": {"app": "podinfo"}}}), "the target's pods");
    assert_eq!(
        sent[1].body,
        json!({"metadata": {"finalizers": [], "resourceVersion": c.metadata.resource_version}})
    );
    assert_eq!(sent[2].body["message"], "Terminated canary podinfo.test");
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn deleting_restores_the_selector_an_adopted_apex_service_was_applied_with() {
    let applied = json!({"spec": {"selector": {"app.kubernetes.io/name": "podinfo"}}}).to_string();
    let apex = adopted_apex(json!({"kubectl.kubernetes.io/last-applied-configuration": applied}));
    let (mut s, c) = deleting(ready(target(2)), 2, apex);

    // The target serves already: nothing to scale, everything in one go.
    let script =
        vec![status_write(&c), merge_patch(service_path("podinfo")), finalizer_patch(&c), event(), event()];
    let (_, sent) = s.step(&c, script).await;
    assert_eq!(sent[1].body, json!({"spec": {"selector": {"app.kubernetes.io/name": "podinfo"}}}));
    assert_eq!(sent[2].body["metadata"]["finalizers"], json!([]));
    // The finalizer patch is conditioned on the status write just made.
    assert_eq!(sent[2].body["metadata"]["resourceVersion"], sent[0].reply["metadata"]["resourceVersion"]);
    // The Events, in the order they happened.
    assert_eq!(sent[3].body["message"], "Terminating canary podinfo.test");
    assert_eq!(sent[4].body["message"], "Terminated canary podinfo.test");
}

#[tokio::test]
async fn deleting_leaves_an_apex_service_the_canary_owns_to_garbage_collection() {
    let mut owned = adopted_apex(json!({}));
    owned.metadata.owner_references = Some(vec![crate::meta::owner_reference(&deleted_canary())]);
    let (mut s, c) = deleting(ready(target(2)), 2, owned);
    s.step(&c, vec![status_write(&c), finalizer_patch(&c), event(), event()]).await;
}

/// A target at rest at zero counts as ready for the canary role (0 of 0 replicas available), and
/// the cache still holds it so right after the scale-up: the reconcile that scales it up must not
/// also point the apex Service at it and let the Canary go (the primary would be garbage collected
/// before any target pod exists; `flagger-behaviour.md` §2.16).
#[tokio::test]
async fn deleting_waits_for_a_target_that_rested_at_zero_before_touching_the_apex_service() {
    let (mut s, c) = deleting(ready(target(0)), 3, adopted_apex(json!({})));
    let script = vec![status_write(&c), merge_patch(deployment_path("podinfo")), event()];
    let (action, _) = s.step(&c, script).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(2)));
}
