//! `revertOnDeletion`: the finalizer, and what deleting such a Canary restores — the target scaled
//! back up, an adopted apex Service pointing at the target's pods again, an adopted
//! VirtualService back to its original spec. Without `revertOnDeletion` the generated objects are
//! garbage collected through their owner references and the target stays as it is.

use std::time::Duration;

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment},
        core::v1::Service,
    },
    jiff::Timestamp,
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::{Value, json};

use super::{
    Error,
    context::{Context, cached},
    observe::{Resolved, TargetObject},
    watches::istio_resource,
};
use crate::{
    analysis::Readiness,
    api::{Canary, Phase},
    meta::{FIELD_MANAGER, FINALIZER, LAST_APPLIED},
    workload::{self, Role, Workload},
};

/// How long a deletion waits for the restored target to become ready before finishing anyway.
const REVERT_WAIT: Duration = Duration::from_secs(60);

fn has_finalizer(canary: &Canary) -> bool {
    canary.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer when `revertOnDeletion` is set and removes it when it is not.
pub async fn sync_finalizer(canary: &Canary, ctx: &Context) -> Result<(), Error> {
    let wanted = canary.spec.revert_on_deletion.unwrap_or(false);
    if wanted == has_finalizer(canary) {
        return Ok(());
    }
    set_finalizer(canary, ctx, wanted).await
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
    let display = format!("{}.{}", canary.name_any(), canary.namespace().unwrap_or_default());
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
        ctx.event(canary, false, &format!("Terminating canary {display}"), &payload).await;
    }
    let started = status.last_transition_time.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now);
    // When the target or its selector cannot be resolved there is nothing to restore.
    if let Ok(r) = Resolved::new(canary.clone(), ctx) {
        revert_target(&r, ctx).await?;
        let ready = match r.target.view() {
            Workload::Deployment(d) => {
                workload::deployment_readiness(canary, Role::Canary, d, Timestamp::now())
            }
            Workload::DaemonSet(d) => {
                workload::daemon_set_readiness(canary, Role::Canary, d, Timestamp::now())
            }
        };
        let waited = started.duration_until(Timestamp::now()).as_secs_f64();
        if ready != Readiness::Ready && waited < REVERT_WAIT.as_secs_f64() {
            // The target must serve before the apex Service points at it again.
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        revert_apex_service(&r, ctx).await?;
        revert_virtual_service(&r, ctx).await?;
    }
    // With the resourceVersion of the status just written, if any.
    set_finalizer(&current, ctx, false).await?;
    ctx.event(canary, false, &format!("Terminated canary {display}"), &payload).await;
    Ok(Action::await_change())
}

async fn revert_target(r: &Resolved, ctx: &Context) -> Result<(), Error> {
    let primary = match &r.primary {
        Some(TargetObject::Deployment(p)) => Some(p.as_ref()),
        _ => None,
    };
    let autoscaler_min = r.canary.spec.autoscaler_ref.as_ref().map(|a| {
        cached(&ctx.stores.hpas, &r.namespace, &a.name).map(|h| workload::hpa_min_replicas(&h)).unwrap_or(1)
    });
    let patch = workload::revert_patch(r.target.view(), primary, autoscaler_min);
    let name = &r.canary.spec.target_ref.name;
    if workload::is_scaled_up(r.target.view()) {
        return Ok(());
    }
    match &r.target {
        TargetObject::Deployment(_) => ctx.merge_patch::<Deployment>(&r.namespace, name, &patch).await,
        TargetObject::DaemonSet(_) => ctx.merge_patch::<DaemonSet>(&r.namespace, name, &patch).await,
    }
}

/// An apex Service the Canary adopted (not controlled by it) selects the target's pods again: the
/// selector from its last-applied configuration, or the target's selector label.
async fn revert_apex_service(r: &Resolved, ctx: &Context) -> Result<(), Error> {
    let Some(svc) = cached(&ctx.stores.services, &r.namespace, &r.names.apex) else { return Ok(()) };
    let owned = svc.owner_references().iter().any(|o| o.controller == Some(true) && o.kind == "Canary");
    if owned {
        return Ok(());
    }
    let selector = svc
        .annotations()
        .get(LAST_APPLIED)
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
        .and_then(|v| v.pointer("/spec/selector").cloned())
        .unwrap_or_else(|| json!({ r.selector.key.clone(): r.selector.value.clone() }));
    ctx.merge_patch::<Service>(&r.namespace, &r.names.apex, &json!({"spec": {"selector": selector}})).await
}

/// An adopted VirtualService gets its original spec back.
async fn revert_virtual_service(r: &Resolved, ctx: &Context) -> Result<(), Error> {
    let Some(vs) = r.virtual_service(ctx) else { return Ok(()) };
    let owned = vs.owner_references().iter().any(|o| o.controller == Some(true) && o.kind == "Canary");
    if owned {
        return Ok(());
    }
    let json = serde_json::to_value(vs.as_ref()).map_err(Error::Serialize)?;
    if let Some(original) = crate::router::istio::reverted_virtual_service(&json) {
        ctx.apply_dynamic(&istio_resource("VirtualService"), &original, None).await?;
    }
    Ok(())
}
