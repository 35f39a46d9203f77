//! One reconcile of one Canary: resolve it from the caches, keep its generated objects in place,
//! observe, decide (the pure core), write the status once, then carry out the effects.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Instant};

use futures::FutureExt;

use k8s_openapi::{
    api::{autoscaling::v2::HorizontalPodAutoscaler, core::v1::Service},
    jiff::Timestamp,
};
use kube::{ResourceExt, runtime::controller::Action};
use sha2::{Digest, Sha256};

use super::{
    context::{CacheHealth, Context, cached},
    error::{Error, Stall},
    finalize,
    observe::{Resolved, Routing, TargetObject},
};
use crate::{
    analysis::{self, Effect, Readiness, Reason, Routes, RunResult, Step, decide},
    api::{Canary, CanaryStatus, Phase},
    failpoint, router,
    telemetry::{CanaryLabels, RunLabels, WorkloadLabels},
    workload::{self, PrimaryContext, Role},
};

/// The reconcile function given to kube-runtime's Controller: one tick of one Canary, contained.
///
/// A panic inside the tick (a bug, or an input no bound foresaw) must not end the process, which
/// would freeze every Canary of the cluster at its current traffic split and crash again on
/// restart: it is caught here, reported on that Canary (a `Stalled` condition with reason
/// `InternalError` and a Warning Event), counted (`veer_reconcile_errors_total{kind="panic"}`), and
/// retried with backoff while the other Canaries go on. Infrastructure errors are reported on the
/// Canary too (see [`report`]).
pub async fn reconcile(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Action, Error> {
    if let Some(late) = ctx.wakes.arrived(&canary, Instant::now()) {
        ctx.metrics.wake_lag.observe(late.as_secs_f64());
    }
    // The Canary as this reconcile last wrote it (its status and resourceVersion).
    let mut latest = (*canary).clone();
    let result = match AssertUnwindSafe(tick(canary.clone(), &ctx, &mut latest)).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(Error::Panic(panic_message(panic.as_ref()))),
    };
    match result {
        Ok(action) => {
            ctx.retries.succeeded(&canary);
            Ok(action)
        }
        Err(Error::NotLeader) => {
            tracing::info!(canary = %canary.name_any(), "no longer the leader: stopped before writing");
            Ok(Action::await_change())
        }
        Err(Error::Conflict { .. }) => {
            // Another writer (a user, or a replica that took over) changed the Canary since it was
            // read: decide again from the version the watch delivers.
            Ok(Action::requeue(std::time::Duration::from_secs(1)))
        }
        Err(e) => {
            let failures = ctx.retries.failed(&canary);
            if e.is_reported_after(failures) {
                report(&latest, &ctx, &e).await;
            }
            Err(e)
        }
    }
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Shows a failed reconcile on the Canary: a `Stalled` condition whose reason says which kind of
/// failure it is and whose message names the object, the API server's answer and the fix, and a
/// Warning Event when that is new. The next tick that gets through clears it.
async fn report(latest: &Canary, ctx: &Context, e: &Error) {
    let name = crate::router::display_name(latest);
    let outcome = analysis::stalled(latest, e.reason(), &e.advice(&name), Timestamp::now());
    let mut current = latest.clone();
    if let Err(write) = ctx.write_status(&mut current, &outcome.status).await {
        tracing::warn!(canary = %name, error = %write, "cannot report the failure on the Canary");
    }
    send_events(&current, ctx, &outcome);
}

/// One tick: resolve, keep the generated objects in place, observe, decide (the pure core), write
/// the status once, then carry out the effects. `latest` follows the status writes.
async fn tick(canary: Arc<Canary>, ctx: &Context, latest: &mut Canary) -> Result<Action, Error> {
    if !ctx.is_leader() {
        // Becoming the leader reconciles every Canary (reconcile_all_on); until then, never write.
        return Ok(Action::await_change());
    }
    if ctx.written.is_stale(&canary) {
        // The watch has not delivered our last status write yet; decide on the current status.
        return Ok(Action::requeue(std::time::Duration::from_millis(50)));
    }
    if !ctx.is_synced() {
        // kube-runtime starts reconciling once the Canary cache is complete, while the other caches
        // may still be listing (with 1,000 Canaries, for seconds). Deciding now would take objects
        // that are not cached yet for missing: a TargetNotFound or ConfigNotFound stall until the
        // 5-minute safety requeue, or writes of Services that exist. Wait for every cache instead,
        // and say so on the Canary when that lasts (a kind the controller may not list, say).
        let name = crate::router::display_name(&canary);
        if let Some(message) = ctx.caches.problem(&name, CacheHealth::PATIENCE) {
            let stall = Stall { reason: Reason::CachesIncomplete, message };
            stalled(&canary, ctx, latest, stall, Timestamp::now()).await?;
            return Ok(Action::requeue(std::time::Duration::from_secs(5)));
        }
        return Ok(Action::requeue(std::time::Duration::from_millis(250)));
    }
    failpoint::hit(&format!("reconcile/{}", canary.name_any()));
    if canary.metadata.deletion_timestamp.is_some() {
        ctx.wakes.forget(&canary);
        return finalize::finalize(&canary, ctx).await;
    }
    if finalize::sync_finalizer(&canary, ctx).await? {
        // The finalizer patch changed the resourceVersion: a status write fenced by the one read
        // would be refused. Decide from the version the watch delivers.
        return Ok(Action::requeue(std::time::Duration::from_millis(250)));
    }
    let now = Timestamp::now();
    let resolved = match Resolved::new(canary.clone(), ctx) {
        Ok(r) => r,
        Err(s) => return stalled(&canary, ctx, latest, s, now).await,
    };
    // A suspended Canary is left exactly as it is: nothing generated is touched either.
    if !canary.spec.suspend.unwrap_or(false) {
        match ensure_objects(&resolved, ctx, now).await {
            Ok(()) => {}
            Err(Error::Stalled(s)) => return stalled(&canary, ctx, latest, s, now).await,
            Err(e) => return Err(e),
        }
    }

    let started = Instant::now();
    let mut obs = resolved.observations(ctx, now);
    let mut probed = false;
    let outcome = loop {
        match decide(&canary, &obs, &ctx.config.settings, now) {
            Step::Observe(probes) => {
                // Analysis steps are timed; the metrics providers' check at initialization is not.
                probed |= probes.iter().any(|p| !matches!(p, analysis::Probe::MetricsProviders));
                resolved.probe(ctx, probes, &mut obs).await;
            }
            Step::Done(outcome) => break outcome,
        }
    };
    if probed {
        let labels =
            CanaryLabels { name: canary.spec.target_ref.name.clone(), namespace: resolved.namespace.clone() };
        ctx.metrics.canary_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    }
    // Every interval-spaced step counts, also those of analyses without webhooks or metrics.
    if is_step(&canary, &outcome.status) {
        record_step_lag(&canary, ctx, now, &resolved.params);
    }
    let routes =
        carry_out(&resolved, Some(&resolved), ctx, latest, &outcome, obs.routes.clone().ok()).await?;
    update_gauges(&resolved, ctx, &outcome.status, routes);
    Ok(match outcome.requeue {
        Some(d) => {
            let ended = Instant::now();
            ctx.wakes.expect(&canary, ended + d, ended);
            Action::requeue(d)
        }
        None => {
            ctx.wakes.forget(&canary);
            Action::await_change()
        }
    })
}

/// Writes the status (first: it is the memory that lets a restarted controller finish what was
/// decided), carries out the effects in order, and, when the tick ended a run, empties
/// `status.pendingEffects` once they are all done. Returns the routes in place afterwards.
///
/// Without `workloads` (the target is gone) effects on the workloads are skipped.
async fn carry_out(
    routing: &Routing,
    workloads: Option<&Resolved>,
    ctx: &Context,
    latest: &mut Canary,
    outcome: &analysis::Outcome,
    mut routes: Option<Routes>,
) -> Result<Option<Routes>, Error> {
    ctx.write_status(latest, &outcome.status).await?;
    let run_end = !outcome.status.pending_effects.is_empty();
    let phase = outcome.status.phase;
    if run_end {
        failpoint::hit(&format!("run-end/{phase}/0"));
    }
    for (i, effect) in outcome.effects.iter().enumerate() {
        apply_effect(routing, workloads, ctx, &outcome.status, effect, &mut routes).await?;
        if run_end {
            failpoint::hit(&format!("run-end/{phase}/{}", i + 1));
        }
    }
    if run_end {
        failpoint::hit(&format!("run-end/{phase}/done"));
        let done = CanaryStatus { pending_effects: Vec::new(), ..outcome.status.clone() };
        ctx.write_status(latest, &done).await?;
    }
    // Last: the request is removed once what it decided is written and done.
    if outcome.effects.iter().any(|e| matches!(e, Effect::ClearRequest { .. })) {
        ctx.clear_request(latest).await?;
    }
    Ok(routes)
}

/// Marks a Canary stalled (condition, Event once) and waits for a change. A Canary whose target
/// disappeared during a run gets its traffic back on the primary first (never left on an empty
/// canary Service), and the run ends as failed.
async fn stalled(
    canary: &Canary,
    ctx: &Context,
    latest: &mut Canary,
    s: Stall,
    now: Timestamp,
) -> Result<Action, Error> {
    let running = canary.status.as_ref().is_some_and(|st| st.phase.is_running());
    if s.reason == Reason::TargetNotFound
        && running
        && let Ok(routing) = Routing::new(Arc::new(canary.clone()), ctx)
    {
        let outcome = analysis::target_lost(canary, &s.message, &ctx.config.settings, now);
        let routes = routing.routes(ctx).ok();
        carry_out(&routing, None, ctx, latest, &outcome, routes).await?;
        return Ok(Action::requeue(std::time::Duration::from_secs(300)));
    }
    let outcome = analysis::stalled(canary, s.reason, &s.message, now);
    ctx.write_status(latest, &outcome.status).await?;
    send_events(latest, ctx, &outcome);
    // The watches wake the Canary when the missing object appears; the requeue is a safety net.
    Ok(Action::requeue(std::time::Duration::from_secs(300)))
}

/// Sends the Events of an outcome that has no other effects (a stall).
fn send_events(canary: &Canary, ctx: &Context, outcome: &analysis::Outcome) {
    for e in &outcome.effects {
        if let Effect::Event { warning, message, phase } = e {
            let payload = crate::api::WebhookPayload {
                name: canary.name_any(),
                namespace: canary.namespace().unwrap_or_default(),
                phase: phase.to_string(),
                ..Default::default()
            };
            ctx.event(canary, *warning, message, &payload);
        }
    }
}

/// Keeps the generated objects in place: the primary (created once; updated only by promotions),
/// its config copies and autoscaler, the Services, and the routing objects with the current
/// weights. Writes only what differs from the caches.
async fn ensure_objects(r: &Resolved, ctx: &Context, now: Timestamp) -> Result<(), Error> {
    let status = r.status();
    if r.primary.is_none() {
        let id = flagger_id(&r.canary, &format!("init/{}", workload::target_revision(r.target.view())));
        write_primary(r, ctx, &id).await?;
    }
    ensure_primary_hpa(r, ctx, false).await?;
    // Until the primary serves, the apex Service and the routes stay as they are: switching them
    // earlier would send traffic to pods that do not exist yet.
    let initializing = matches!(status.phase, Phase::Empty | Phase::Initializing);
    let primary_ready =
        r.primary.as_ref().is_some_and(|p| p.readiness(&r.canary, Role::Primary, now) == Readiness::Ready);
    let serving = !initializing || primary_ready || r.params.skip_analysis;

    let svc = |name: &str| cached(&ctx.stores.services, &r.namespace, name);
    let existing = [svc(&r.names.apex), svc(&r.names.primary), svc(&r.names.canary)];
    let desired = router::services::desired_services(
        &r.canary,
        &r.selector.key,
        &r.selector.value,
        r.target.pod_spec(),
        [existing[0].as_deref(), existing[1].as_deref(), existing[2].as_deref()],
    )
    .map_err(|e| Stall::new(Reason::InvalidService, e))?;
    for (i, (want, live)) in desired.iter().zip(&existing).enumerate() {
        if i == 0 && !serving {
            continue;
        }
        ctx.apply::<Service>(want, live.as_deref()).await?;
    }
    if !serving {
        return Ok(());
    }
    // Routing objects keep the weights in place (or start at all-primary).
    let routes = r.routes(ctx).unwrap_or(Routes::PRIMARY);
    write_routes(r, ctx, routes, &status).await
}

/// Writes the routing objects for `routes`.
async fn write_routes(
    r: &Routing,
    ctx: &Context,
    routes: Routes,
    status: &CanaryStatus,
) -> Result<(), Error> {
    let live = ctx.stores.live(&r.namespace);
    let desired = r.router.desired(&r.canary, routes, status, &r.params, &live).map_err(Stall::from)?;
    for object in &desired {
        ctx.apply_desired(object, &live).await?;
    }
    Ok(())
}

/// Writes the primary workload and its config copies from the target's current template.
async fn write_primary(r: &Resolved, ctx: &Context, flagger_id: &str) -> Result<(), Error> {
    let prefixes = &ctx.config.label_prefixes;
    for cm in r.tracked.config_maps.values() {
        let existing = cached(&ctx.stores.configmaps, &r.namespace, &workload::primary_name(&cm.name_any()));
        let copy = workload::primary_config_map(cm, existing.as_deref(), &r.canary, prefixes);
        ctx.apply(&copy, existing.as_deref()).await?;
    }
    for s in r.tracked.secrets.values() {
        let existing = cached(&ctx.stores.secrets, &r.namespace, &workload::primary_name(&s.name_any()));
        let copy = workload::primary_secret(s, existing.as_deref(), &r.canary, prefixes);
        ctx.apply(&copy, existing.as_deref()).await?;
    }
    let pctx = PrimaryContext {
        canary: &r.canary,
        selector: &r.selector,
        tracked: &r.tracked_ids,
        settings: &r.workload_settings,
        flagger_id,
    };
    let primary = r.target.desired_primary(r.primary.as_ref(), &pctx).map_err(Error::Serialize)?;
    let existing = r.primary.as_ref().map(TargetObject::to_json).transpose().map_err(Error::Serialize)?;
    ctx.apply_json(&r.target.kind(), &primary, existing.as_ref()).await?;
    Ok(())
}

/// Creates the primary HPA when missing; `update` also refreshes it from the target's HPA (at
/// promotion: a change to the target's HPA reaches the primary only with a promotion).
async fn ensure_primary_hpa(r: &Resolved, ctx: &Context, update: bool) -> Result<(), Error> {
    let Some(aref) =
        workload::hpa_ref(&r.canary).map_err(|e| Stall::new(Reason::UnsupportedAutoscaler, e))?
    else {
        return Ok(());
    };
    let Some(hpa) = cached(&ctx.stores.hpas, &r.namespace, &aref.name) else {
        return Err(Error::Stalled(Stall::new(
            Reason::AutoscalerNotFound,
            format!(
                "HorizontalPodAutoscaler {}.{} not found: create it, or fix spec.autoscalerRef of Canary {}",
                aref.name,
                r.namespace,
                r.display()
            ),
        )));
    };
    let existing = cached(&ctx.stores.hpas, &r.namespace, &workload::primary_name(&aref.name));
    if existing.is_some() && !update {
        return Ok(());
    }
    let primary = workload::primary_hpa(&hpa, &r.canary);
    ctx.apply::<HorizontalPodAutoscaler>(&primary, existing.as_deref()).await?;
    Ok(())
}

async fn apply_effect(
    routing: &Routing,
    workloads: Option<&Resolved>,
    ctx: &Context,
    status: &CanaryStatus,
    effect: &Effect,
    routes: &mut Option<Routes>,
) -> Result<(), Error> {
    if !ctx.is_leader() {
        // Deposed while carrying out a decision: its successor decides again from the status.
        return Err(Error::NotLeader);
    }
    match (effect, workloads) {
        (Effect::ScaleCanary { up }, Some(r)) => scale_canary(r, ctx, *up).await,
        (Effect::Promote, Some(r)) => promote(r, ctx, status).await,
        (Effect::ScaleCanary { .. } | Effect::Promote, None) => {
            tracing::debug!(canary = %routing.display(), ?effect, "skipped: the target is gone");
            Ok(())
        }
        _ => apply_routing_effect(routing, ctx, status, effect, routes).await,
    }
}

/// Scales the target (the canary) up from zero, or down to zero.
async fn scale_canary(r: &Resolved, ctx: &Context, up: bool) -> Result<(), Error> {
    let patch = if up {
        let primary = r.primary.as_ref().and_then(TargetObject::as_deployment);
        workload::scale_up_patch(r.target.view(), primary, r.autoscaler_min(ctx))
    } else {
        workload::scale_to_zero_patch(r.target.view())
    };
    ctx.merge_patch(&r.target.kind(), &r.namespace, &r.canary.spec.target_ref.name, &patch).await
}

/// Copies the target's template (and tracked configs, and autoscaler) to the primary.
async fn promote(r: &Resolved, ctx: &Context, status: &CanaryStatus) -> Result<(), Error> {
    let id =
        flagger_id(&r.canary, &format!("promote/{}/{:?}", status.last_applied_spec, status.last_step_time));
    for result in [write_primary(r, ctx, &id).await, ensure_primary_hpa(r, ctx, true).await] {
        match result {
            Ok(()) => {}
            Err(Error::Stalled(s)) => tracing::warn!(canary = %r.display(), "promotion: {}", s.message),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Carries out an effect that needs only the Canary's routing (not its workloads).
async fn apply_routing_effect(
    r: &Routing,
    ctx: &Context,
    status: &CanaryStatus,
    effect: &Effect,
    routes: &mut Option<Routes>,
) -> Result<(), Error> {
    let canary = &r.canary;
    match effect {
        Effect::SetRoutes(to) => {
            write_routes(r, ctx, *to, status).await?;
            *routes = Some(*to);
        }
        Effect::PostRolloutHooks { phase } => post_rollout(r, ctx, *phase).await,
        Effect::Event { warning, message, phase } => {
            ctx.event(canary, *warning, message, &r.payload(phase.as_str(), None));
        }
        Effect::Alert { severity, message, details } => {
            for problem in super::alerts::send(r, ctx, *severity, message, *details) {
                ctx.event(
                    canary,
                    true,
                    &format!("Alert not sent: {problem}"),
                    &r.payload(status.phase.as_str(), None),
                );
            }
        }
        Effect::RunFinished { strategy, result } => {
            let labels = RunLabels {
                name: canary.spec.target_ref.name.clone(),
                namespace: r.namespace.clone(),
                deployment_strategy: strategy.as_str().into(),
                analysis_status: if *result == RunResult::Skipped { "skipped" } else { "completed" }.into(),
            };
            let counter =
                if *result == RunResult::Failed { &ctx.metrics.failures } else { &ctx.metrics.successes };
            counter.get_or_create(&labels).inc();
        }
        Effect::ScaleCanary { .. } | Effect::Promote => {} // see apply_effect
        Effect::ClearRequest { .. } => {}                  // see carry_out
    }
    Ok(())
}

/// Calls the post-rollout hooks; their failures only produce Events.
async fn post_rollout(r: &Routing, ctx: &Context, phase: Phase) {
    let hooks = r.canary.spec.analysis.as_ref().and_then(|a| a.webhooks.clone()).unwrap_or_default();
    for hook in hooks.iter().filter(|h| analysis::HookType::of(h) == Some(analysis::HookType::PostRollout)) {
        let payload = r.payload(phase.as_str(), hook.metadata.clone());
        let message = match ctx.webhooks.call(hook, &payload).await {
            analysis::HookResult::Passed => (false, format!("Post-rollout check {} passed", hook.name)),
            analysis::HookResult::Failed(e) => (true, format!("Post-rollout hook {} failed {e}", hook.name)),
        };
        ctx.event(&r.canary, message.0, &message.1, &r.payload(phase.as_str(), None));
    }
}

/// A `flagger-id` for the primary's pod template, derived from the promotion so that applying the
/// same promotion twice writes the same object (and rolls the primary once).
fn flagger_id(canary: &Canary, salt: &str) -> String {
    let d = Sha256::digest(format!("{}/{salt}", canary.uid().unwrap_or_default()).as_bytes());
    let h: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Whether this tick took an analysis step that waited for the interval: a running Canary whose
/// `lastStepTime` moved, except a restart on a new revision (which does not wait).
fn is_step(canary: &Canary, new: &CanaryStatus) -> bool {
    let Some(old) = canary.status.as_ref() else { return false };
    old.phase.is_running()
        && old.last_step_time.is_some()
        && new.last_step_time != old.last_step_time
        && new.decision.as_ref().is_none_or(|d| d.reason != Reason::Restarted)
}

fn record_step_lag(canary: &Canary, ctx: &Context, now: Timestamp, params: &analysis::Params) {
    let Some(last) = canary.status.as_ref().and_then(|s| s.last_step_time) else { return };
    let due = analysis::after(last, params.interval);
    let lag = due.duration_until(now).as_secs_f64();
    if lag >= 0.0 {
        ctx.metrics.step_lag.observe(lag);
    }
}

/// Flagger's gauges for one Canary.
fn update_gauges(r: &Resolved, ctx: &Context, status: &CanaryStatus, routes: Option<Routes>) {
    let target = r.canary.spec.target_ref.name.clone();
    let ns = r.namespace.clone();
    let code = match status.phase {
        Phase::Progressing => 0,
        Phase::Failed => 2,
        _ => 1,
    };
    ctx.metrics
        .canary_status
        .get_or_create(&CanaryLabels { name: target.clone(), namespace: ns.clone() })
        .set(code);
    if let Some(routes) = routes {
        let weight = |w: String, v: i32| {
            ctx.metrics
                .canary_weight
                .get_or_create(&WorkloadLabels { workload: w, namespace: ns.clone() })
                .set(v as i64)
        };
        weight(workload::primary_name(&target), routes.primary);
        weight(target, routes.canary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CanarySpec, Decision};

    fn status(phase: Phase, step: Option<i64>, reason: &str) -> CanaryStatus {
        CanaryStatus {
            phase,
            last_step_time: step.map(|s| Timestamp::from_second(s).unwrap()),
            decision: Some(Decision {
                time: Timestamp::UNIX_EPOCH,
                reason: reason.into(),
                message: String::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn steps_are_interval_spaced_moves_of_a_running_canary() {
        let mut canary = Canary::new("podinfo", CanarySpec::default());
        // (old phase and step time, new phase, step time and reason, is a step)
        let cases = [
            ((Phase::Progressing, Some(10)), (Phase::Progressing, Some(20), "AdvanceIteration"), true),
            ((Phase::Promoting, Some(10)), (Phase::Finalising, Some(20), "RouteToPrimary"), true),
            ((Phase::Progressing, Some(10)), (Phase::Progressing, Some(10), "WaitCanaryReady"), false),
            ((Phase::Progressing, Some(10)), (Phase::Progressing, Some(20), "Restarted"), false),
            ((Phase::Succeeded, Some(10)), (Phase::Progressing, Some(20), "Started"), false),
            ((Phase::Initializing, None), (Phase::Initialized, None, "Initialized"), false),
        ];
        for ((old_phase, old_step), (phase, step, reason), expected) in cases {
            canary.status = Some(status(old_phase, old_step, "Started"));
            let new = status(phase, step, reason);
            assert_eq!(is_step(&canary, &new), expected, "{old_phase:?} -> {phase:?} {reason}");
        }
    }
}
