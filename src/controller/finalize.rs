//! `revertOnDeletion`: the finalizer, and what deleting such a Canary restores — the target scaled
//! back up, an adopted apex Service pointing at the target's pods again, an adopted
//! VirtualService back to its original spec. Without `revertOnDeletion` the generated objects are
//! garbage collected through their owner references and the target stays as it is.

use std::time::Duration;

use k8s_openapi::{api::core::v1::Service, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::{Value, json};

use super::{
    context::{Context, cached},
    error::Error,
    observe::{Resolved, TargetObject},
};
use crate::{
    analysis::Readiness,
    api::{Canary, Phase},
    meta::{FIELD_MANAGER, FINALIZER, LAST_APPLIED},
    workload::{self, Role},
};

/// How long a deletion waits for the restored target to become ready before finishing anyway.
const REVERT_WAIT: Duration = Duration::from_secs(60);

fn has_finalizer(canary: &Canary) -> bool {
    canary.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer when `revertOnDeletion` is set and removes it when it is not; returns
/// whether it wrote (the Canary then has a new resourceVersion, which the watch delivers).
pub async fn sync_finalizer(canary: &Canary, ctx: &Context) -> Result<bool, Error> {
    let wanted = canary.spec.revert_on_deletion.unwrap_or(false);
    if wanted == has_finalizer(canary) {
        return Ok(false);
    }
    set_finalizer(canary, ctx, wanted).await?;
    Ok(true)
}

async fn set_finalizer(canary: &Canary, ctx: &Context, present: bool) -> Result<(), Error> {
    let mut finalizers: Vec<String> =
        canary.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if present {
        finalizers.push(FINALIZER.to_string());
    }
    // The resourceVersion makes the patch fail instead of overwriting a concurrent change.
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": canary.resource_version()}});
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &canary.namespace().unwrap_or_default());
    ctx.fenced(async {
        api.patch(
            &canary.name_any(),
            &PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() },
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| Error::Finalizer { name: canary.name_any(), source })
    })
    .await?;
    Ok(())
}

/// A Canary being deleted: revert what it changed, then let it go.
pub async fn finalize(canary: &std::sync::Arc<Canary>, ctx: &Context) -> Result<Action, Error> {
    if !has_finalizer(canary) {
        return Ok(Action::await_change());
    }
    let display = crate::router::display_name(canary);
    let mut status = canary.status.clone().unwrap_or_default();
    let payload = crate::api::WebhookPayload {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        phase: Phase::Terminating.to_string(),
        ..Default::default()
    };
    let mut current = canary.as_ref().clone();
    if status.phase != Phase::Terminating {
        status.phase = Phase::Terminating;
        status.last_transition_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
        ctx.write_status(&mut current, &status).await?;
        ctx.event(canary, false, &format!("Terminating canary {display}"), &payload);
    }
    let started = status.last_transition_time.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now);
    // When the target or its selector cannot be resolved there is nothing to restore.
    if let Ok(r) = Resolved::new(canary.clone(), ctx) {
        if revert_target(&r, ctx).await? {
            // The cached target is from before its scale-up (a Deployment at 0 replicas counts as
            // ready): ask again once the watch has delivered the change.
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        let ready = r.target.readiness(canary, Role::Canary, Timestamp::now());
        let waited = started.duration_until(Timestamp::now()).as_secs_f64();
        if ready != Readiness::Ready && waited < REVERT_WAIT.as_secs_f64() {
            // The target must serve before the apex Service points at it again.
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        revert_apex_service(&r, ctx).await?;
        let live = ctx.stores.live(&r.namespace);
        for original in r.router.reverted(canary, &live) {
            ctx.apply_desired(&original, &live).await?;
        }
    }
    // With the resourceVersion of the status just written, if any.
    set_finalizer(&current, ctx, false).await?;
    ctx.event(canary, false, &format!("Terminated canary {display}"), &payload);
    Ok(Action::await_change())
}

/// Scales the target back up when it is scaled to zero; returns whether it did.
async fn revert_target(r: &Resolved, ctx: &Context) -> Result<bool, Error> {
    if workload::is_scaled_up(r.target.view()) {
        return Ok(false);
    }
    let primary = r.primary.as_ref().and_then(TargetObject::as_deployment);
    let patch = workload::revert_patch(r.target.view(), primary, r.autoscaler_min(ctx));
    ctx.merge_patch(&r.target.kind(), &r.namespace, &r.canary.spec.target_ref.name, &patch).await?;
    Ok(true)
}

/// An apex Service the Canary adopted (not controlled by it) selects the target's pods again: the
/// selector from its last-applied configuration, or the target's selector label.
async fn revert_apex_service(r: &Resolved, ctx: &Context) -> Result<(), Error> {
    let Some(svc) = cached(&ctx.stores.services, &r.namespace, &r.names.apex) else { return Ok(()) };
    if crate::router::controlling_canary(svc.owner_references()).is_some() {
        return Ok(());
    }
    let selector = svc
        .annotations()
        .get(LAST_APPLIED)
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
        .and_then(|v| v.pointer("/spec/selector").cloned())
        .unwrap_or_else(|| json!({ r.selector.key.clone(): r.selector.value.clone() }));
    let patch = json!({"spec": {"selector": selector}});
    ctx.merge_patch(&ApiResource::erase::<Service>(&()), &r.namespace, &r.names.apex, &patch).await
}
