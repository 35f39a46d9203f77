//! Observing one Canary: everything is read from the caches, except the probes the decision asks
//! for (webhooks and metric queries), which go over the network.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment},
        core::v1::{PodSpec, Secret},
    },
    jiff::Timestamp,
};
use kube::{ResourceExt, api::ApiResource};
use sha2::{Digest, Sha256};

use super::{
    context::{Context, cached},
    error::Stall,
};
use crate::{
    analysis::{
        HookResult, MetricResult, Observations, Params, Primary, Probe, Reason, Routes, Target, TargetKind,
    },
    api::{Canary, CanaryStatus, MetricTemplate, WebhookPayload},
    meta::{self, NameRule},
    metrics::MetricQuery,
    router::{self, Provider, Router, RouterConfig, ServiceNames},
    workload::{self, ConfigId, Role, Selector, TemplateMapping, TrackedConfigs, Workload, WorkloadSettings},
};

/// The target workload, owned.
#[derive(Clone, Debug)]
pub enum TargetObject {
    Deployment(Arc<Deployment>),
    DaemonSet(Arc<DaemonSet>),
}

/// Deployment and DaemonSet differ here, and only here, in the controller.
impl TargetObject {
    pub fn view(&self) -> Workload<'_> {
        match self {
            TargetObject::Deployment(d) => Workload::Deployment(d),
            TargetObject::DaemonSet(d) => Workload::DaemonSet(d),
        }
    }

    /// The API coordinates of the kind, for writes.
    pub fn kind(&self) -> ApiResource {
        match self {
            TargetObject::Deployment(_) => ApiResource::erase::<Deployment>(&()),
            TargetObject::DaemonSet(_) => ApiResource::erase::<DaemonSet>(&()),
        }
    }

    pub fn as_deployment(&self) -> Option<&Deployment> {
        match self {
            TargetObject::Deployment(d) => Some(d),
            TargetObject::DaemonSet(_) => None,
        }
    }

    /// Whether the workload serves, as `role` of `canary`.
    pub fn readiness(&self, canary: &Canary, role: Role, now: Timestamp) -> crate::analysis::Readiness {
        match self.view() {
            Workload::Deployment(d) => workload::deployment_readiness(canary, role, d, now),
            Workload::DaemonSet(d) => workload::daemon_set_readiness(canary, role, d, now),
        }
    }

    /// The primary built from this target (see [`workload::primary_deployment`]), as JSON to apply.
    pub fn desired_primary(
        &self,
        existing: Option<&TargetObject>,
        pctx: &workload::PrimaryContext<'_>,
    ) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            TargetObject::Deployment(t) => {
                let existing = existing.and_then(TargetObject::as_deployment);
                serde_json::to_value(workload::primary_deployment(t, existing, pctx))
            }
            TargetObject::DaemonSet(t) => serde_json::to_value(workload::primary_daemon_set(t, pctx)),
        }
    }

    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            TargetObject::Deployment(d) => serde_json::to_value(d.as_ref()),
            TargetObject::DaemonSet(d) => serde_json::to_value(d.as_ref()),
        }
    }

    pub fn pod_spec(&self) -> Option<&PodSpec> {
        self.view().template().and_then(|t| t.spec.as_ref())
    }
}

/// What routing a Canary needs, resolved from its spec alone: this is enough to move its traffic,
/// even when its target is gone.
pub struct Routing {
    pub canary: Arc<Canary>,
    pub namespace: String,
    pub router: Router,
    pub params: Params,
    pub names: ServiceNames,
}

/// Everything about a Canary that the caches know, resolved once per reconcile: its routing (see
/// [`Routing`], reached through `Deref`) and its workloads.
pub struct Resolved {
    pub routing: Routing,
    pub target: TargetObject,
    pub primary: Option<TargetObject>,
    pub selector: Selector,
    pub tracked: TrackedConfigs,
    pub tracked_ids: BTreeSet<ConfigId>,
    pub workload_settings: WorkloadSettings,
}

impl std::ops::Deref for Resolved {
    type Target = Routing;

    fn deref(&self) -> &Routing {
        &self.routing
    }
}

impl Routing {
    /// Resolves the routing of a Canary from its spec and the caches, or says what is wrong.
    pub fn new(canary: Arc<Canary>, ctx: &Context) -> Result<Routing, Stall> {
        let namespace = canary.namespace().unwrap_or_default();
        let display = router::display_name(&canary);
        let params = Params::new(&canary.spec, &ctx.config.settings).map_err(|e| {
            Stall::new(Reason::InvalidSpec, crate::analysis::invalid_spec_message(&canary, &e))
        })?;
        if ctx.config.no_cross_namespace_refs
            && let Some(problem) = crate::analysis::cross_namespace_ref(&canary.spec, &namespace)
        {
            return Err(Stall::new(
                Reason::CrossNamespaceRef,
                format!(
                    "Canary {display}: {problem} (--no-cross-namespace-refs); use an object of the Canary's namespace"
                ),
            ));
        }
        if canary.spec.service.is_none() {
            return Err(Stall::new(
                Reason::ServiceMissing,
                format!(
                    "Canary {display}: spec.service is missing; set spec.service.port to the port the target serves on"
                ),
            ));
        }
        let provider = Provider::of(&canary, &ctx.config.settings.mesh_provider);
        let config =
            RouterConfig { ingress_annotations_prefix: ctx.config.ingress_annotations_prefix.clone() };
        let router = Router::resolve(&provider, &canary, &ctx.stores.live(&namespace), &config)?;
        let names = router::service_names(&canary);
        for (what, name) in
            [("Service", &names.apex), ("Service", &names.primary), ("Service", &names.canary)]
        {
            if let Some(problem) = meta::name_problem(NameRule::Service, what, name) {
                return Err(Stall::new(
                    Reason::NameTooLong,
                    format!(
                        "Canary {display}: {problem}; shorten spec.service.name (or spec.targetRef.name)"
                    ),
                ));
            }
        }
        Ok(Routing { names, canary, namespace, router, params })
    }
}

impl Resolved {
    /// Resolves a Canary from the caches, or says what is missing.
    pub fn new(canary: Arc<Canary>, ctx: &Context) -> Result<Resolved, Stall> {
        let routing = Routing::new(canary.clone(), ctx)?;
        let namespace = routing.namespace.clone();
        let display = routing.display();
        let t = &canary.spec.target_ref;
        let target = match TargetKind::parse(&t.kind) {
            Ok(TargetKind::DaemonSet) => {
                cached(&ctx.stores.daemonsets, &namespace, &t.name).map(TargetObject::DaemonSet)
            }
            Ok(TargetKind::Deployment) => {
                cached(&ctx.stores.deployments, &namespace, &t.name).map(TargetObject::Deployment)
            }
            Err(other) => {
                return Err(Stall::new(
                    Reason::UnsupportedTarget,
                    format!(
                        "Canary {display}: spec.targetRef.kind {other} is not supported by Veer yet; use a Deployment or a DaemonSet"
                    ),
                ));
            }
        };
        let Some(target) = target else {
            return Err(Stall::new(
                Reason::TargetNotFound,
                format!(
                    "{} {}.{namespace} not found: create it, or fix spec.targetRef of Canary {display}",
                    crate::analysis::target_kind(&canary),
                    t.name
                ),
            ));
        };
        // Two Canaries rolling out one workload would fight over its primary and its scale: the
        // older one keeps it (Flagger only logs this).
        let kind = crate::analysis::target_kind(&canary);
        let key = |c: &Canary| (c.creation_timestamp().map(|t| t.0), c.name_any());
        // A pass over every cached Canary at each tick: the cheapest tests first, no allocation.
        if let Some(first) = ctx.stores.canaries.find(|c| {
            c.spec.target_ref.name == t.name
                && c.metadata.namespace.as_deref() == Some(namespace.as_str())
                && c.metadata.uid != canary.metadata.uid
                && crate::analysis::target_kind(c) == kind
                && key(c) < key(&canary)
        }) {
            return Err(Stall::new(
                Reason::TargetShared,
                format!(
                    "Canary {display}: {} {}.{namespace} is already the target of Canary {}.{namespace}; two Canaries \
                     cannot roll out one workload: delete one of them, or point spec.targetRef at another workload",
                    kind,
                    t.name,
                    first.name_any()
                ),
            ));
        }
        let workload_settings = WorkloadSettings {
            selector_labels: ctx.config.selector_labels.clone(),
            include_label_prefixes: ctx.config.label_prefixes.clone(),
            config_tracking: ctx.config.config_tracking,
        };
        let selector = workload::selector(target.view(), &workload_settings.selector_labels)
            .map_err(|e| Stall::new(Reason::SelectorLabelMissing, e.to_string()))?;
        let tracked = workload::track_configs(
            target.view(),
            workload_settings.config_tracking,
            |name| cached(&ctx.stores.configmaps, &namespace, name),
            |name| cached(&ctx.stores.secrets, &namespace, name),
        )
        .map_err(|e| Stall::new(Reason::ConfigNotFound, e.to_string()))?;
        let hpa = workload::hpa_ref(&canary)
            .map_err(|e| Stall::new(Reason::UnsupportedAutoscaler, e.to_string()))?;
        let primary_name = workload::primary_name(&t.name);
        let mut generated = vec![
            (NameRule::Object, "primary workload", primary_name.clone(), "spec.targetRef.name"),
            (
                NameRule::LabelValue,
                "primary selector label value",
                selector.primary_value(),
                "the target's selector label",
            ),
        ];
        generated.extend(hpa.map(|h| {
            (
                NameRule::Object,
                "primary autoscaler",
                workload::primary_name(&h.name),
                "spec.autoscalerRef.name",
            )
        }));
        let tracked_ids = tracked.ids();
        for id in &tracked_ids {
            generated.push((
                NameRule::Object,
                "config copy",
                workload::primary_name(&id.name),
                "the config's name",
            ));
        }
        for (rule, what, name, fix) in generated {
            if let Some(problem) = meta::name_problem(rule, what, &name) {
                return Err(Stall::new(
                    Reason::NameTooLong,
                    format!("Canary {display}: {problem}; shorten {fix}"),
                ));
            }
        }
        let primary = match &target {
            TargetObject::Deployment(_) => {
                cached(&ctx.stores.deployments, &namespace, &primary_name).map(TargetObject::Deployment)
            }
            TargetObject::DaemonSet(_) => {
                cached(&ctx.stores.daemonsets, &namespace, &primary_name).map(TargetObject::DaemonSet)
            }
        };
        Ok(Resolved { routing, target, primary, selector, tracked_ids, tracked, workload_settings })
    }

    /// The minimum replicas of the target's autoscaler (1 when it is not cached), if it has one.
    pub fn autoscaler_min(&self, ctx: &Context) -> Option<i32> {
        let aref = self.canary.spec.autoscaler_ref.as_ref()?;
        let hpa = cached(&ctx.stores.hpas, &self.namespace, &aref.name);
        Some(hpa.map(|h| workload::hpa_min_replicas(&h)).unwrap_or(1))
    }

    pub fn mapping(&self) -> TemplateMapping<'_> {
        TemplateMapping {
            target_name: &self.canary.spec.target_ref.name,
            selector: &self.selector,
            selector_label_keys: &self.workload_settings.selector_labels,
            tracked: &self.tracked_ids,
        }
    }

    /// The observations the decision starts from.
    pub fn observations(&self, ctx: &Context, now: Timestamp) -> Observations {
        let target = Target {
            revision: workload::target_revision(self.target.view()),
            configs: self.tracked.checksums(),
            readiness: self.target.readiness(&self.canary, Role::Canary, now),
            scaled_up: workload::is_scaled_up(self.target.view()),
        };
        let primary = self.primary.as_ref().map(|p| Primary {
            revision: workload::primary_revision(p.view(), &self.mapping()),
            readiness: p.readiness(&self.canary, Role::Primary, now),
        });
        Observations {
            target,
            primary,
            routes: self.routes(ctx),
            hooks: BTreeMap::new(),
            metrics: BTreeMap::new(),
            metrics_providers: None,
        }
    }
}

impl Routing {
    pub fn display(&self) -> String {
        router::display_name(&self.canary)
    }

    pub fn status(&self) -> CanaryStatus {
        self.canary.status.clone().unwrap_or_default()
    }

    /// The routes in place, read back from the router.
    pub fn routes(&self, ctx: &Context) -> Result<Routes, String> {
        let live = ctx.stores.live(&self.namespace);
        self.router.read_routes(&self.canary, &self.status(), &self.params, &live)
    }

    /// The webhook payload for this Canary.
    pub fn payload(&self, phase: &str, metadata: Option<BTreeMap<String, String>>) -> WebhookPayload {
        WebhookPayload {
            name: self.canary.name_any(),
            namespace: self.namespace.clone(),
            phase: phase.to_string(),
            checksum: checksum(&self.status()),
            metadata: metadata.filter(|m| !m.is_empty()),
        }
    }

    /// Runs the probes the decision asked for and adds their results to `obs`.
    pub async fn probe(&self, ctx: &Context, probes: Vec<Probe>, obs: &mut Observations) {
        let analysis = self.canary.spec.analysis.clone().unwrap_or_default();
        let hooks = analysis.webhooks.unwrap_or_default();
        let metrics = analysis.metrics.unwrap_or_default();
        let mut queries = Vec::new();
        for probe in probes {
            match probe {
                // Hooks run one after the other, in the order asked.
                Probe::Hook { index, phase } => {
                    let hook = &hooks[index];
                    let payload = self.payload(phase.as_str(), hook.metadata.clone());
                    tracing::debug!(canary = %self.display(), hook = %hook.name, "calling webhook");
                    let result = ctx.webhooks.call(hook, &payload).await;
                    match &result {
                        HookResult::Failed(e) => {
                            tracing::debug!(canary = %self.display(), hook = %hook.name, error = %e, "webhook did not pass")
                        }
                        HookResult::Passed => {
                            tracing::debug!(canary = %self.display(), hook = %hook.name, "webhook passed")
                        }
                    }
                    obs.hooks.insert(index, result);
                }
                Probe::Metric { index } => queries.push(index),
                Probe::MetricsProviders => {
                    let q: Vec<_> = metrics.iter().map(|m| self.metric_query(ctx, m)).collect();
                    let queries = q.iter().map(|(m, t, s)| MetricQuery {
                        canary: &self.canary,
                        metric: m,
                        template: t.as_deref(),
                        secret: s.as_deref(),
                    });
                    obs.metrics_providers = Some(ctx.queries.check_providers(queries).await);
                }
            }
        }
        // Queries have no side effects: run them together.
        let results = futures::future::join_all(queries.iter().map(|&i| self.query(ctx, &metrics[i]))).await;
        for (index, result) in queries.into_iter().zip(results) {
            if let MetricResult::Value(v) = &result {
                ctx.metrics
                    .metric_analysis
                    .get_or_create(&crate::telemetry::MetricLabels {
                        // The target's name, as Flagger's and as flagger_canary_status's.
                        name: self.canary.spec.target_ref.name.clone(),
                        namespace: self.namespace.clone(),
                        metric: metrics[index].name.clone(),
                    })
                    .set(gauge_value(&metrics[index], *v));
            }
            obs.metrics.insert(index, result);
        }
    }

    /// A metric with its MetricTemplate and the template's Secret, from the caches.
    fn metric_query<'m>(
        &self,
        ctx: &Context,
        metric: &'m crate::api::CanaryMetric,
    ) -> (&'m crate::api::CanaryMetric, Option<Arc<MetricTemplate>>, Option<Arc<Secret>>) {
        let template: Option<Arc<MetricTemplate>> = metric
            .template_ref
            .as_ref()
            .and_then(|r| cached(&ctx.stores.metric_templates, r.namespace_or(&self.namespace), &r.name));
        let secret: Option<Arc<Secret>> = template.as_ref().and_then(|t| {
            let name = &t.spec.provider.secret_ref.as_ref()?.name;
            cached(&ctx.stores.secrets, &t.namespace().unwrap_or_default(), name)
        });
        (metric, template, secret)
    }

    async fn query(&self, ctx: &Context, metric: &crate::api::CanaryMetric) -> MetricResult {
        let (metric, template, secret) = self.metric_query(ctx, metric);
        let q = MetricQuery {
            canary: &self.canary,
            metric,
            template: template.as_deref(),
            secret: secret.as_deref(),
        };
        let observation = ctx.queries.observe(&q).await;
        for w in &observation.warnings {
            tracing::warn!(canary = %self.display(), metric = %metric.name, "{w}");
        }
        tracing::debug!(canary = %self.display(), metric = %metric.name, query = ?observation.query, result = ?observation.result, "metric");
        observation.result
    }
}

/// The value `flagger_canary_metric_analysis` records: as measured, except the built-in
/// `request-duration` (milliseconds), which Flagger records in seconds (`time.Duration.Seconds()`),
/// so that dashboards built for Flagger read it right.
fn gauge_value(metric: &crate::api::CanaryMetric, value: f64) -> f64 {
    let builtin = crate::analysis::MetricSource::of(metric) == crate::analysis::MetricSource::Builtin;
    if builtin && metric.name == crate::analysis::REQUEST_DURATION { value / 1000.0 } else { value }
}

/// The webhook `checksum`: identifies the revision and tracked configs under analysis.
pub fn checksum(status: &CanaryStatus) -> String {
    let mut h = Sha256::new();
    h.update(status.last_applied_spec.as_bytes());
    for (k, v) in &status.tracked_configs {
        h.update(b"\n");
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::gauge_value;
    use crate::api::CanaryMetric;

    fn metric(json: &str) -> CanaryMetric {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_builtin_duration_gauge_is_in_seconds_like_flaggers() {
        assert_eq!(gauge_value(&metric(r#"{"name": "request-duration"}"#), 800.0), 0.8);
        assert_eq!(gauge_value(&metric(r#"{"name": "request-success-rate"}"#), 99.5), 99.5);
        // A template or an inline query named request-duration records what it returned.
        let template = r#"{"name": "request-duration", "templateRef": {"name": "latency"}}"#;
        assert_eq!(gauge_value(&metric(template), 800.0), 800.0);
        let query = r#"{"name": "request-duration", "query": "vector(800)"}"#;
        assert_eq!(gauge_value(&metric(query), 800.0), 800.0);
        assert_eq!(gauge_value(&metric(r#"{"name": "my-latency"}"#), 800.0), 800.0);
    }
}
