//! A Rollout to a Deployment and a Canary: the target, the Services, the traffic routing, the
//! steps (weights, pauses, gates) or the Blue/Green settings, and the analysis.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::PodTemplateSpec,
    },
    apimachinery::pkg::{
        apis::meta::v1::LabelSelector, apis::meta::v1::ObjectMeta, util::intstr::IntOrString,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::{
    Ctx, Doc, DocKind, Object,
    analysis::{self, ArgoService, Use},
    json::{array_at, at, dropped_paths, flagger_duration, int, is_empty, str_at},
    report::{Entry, Feature, Gate, GeneratedService, IntervalSource, Reason, ServiceRole},
};
use crate::{
    api::{
        AutoscalerReference, Canary, CanaryAnalysis, CanaryService, CanarySpec, CanaryWebhook,
        IngressReference, LocalObjectReference, limits,
    },
    metrics::template::{TemplateContext, render},
    workload::WorkloadSettings,
};

/// What converting one Rollout gives.
#[derive(Default)]
pub(crate) struct RolloutOutput {
    pub objects: Vec<Object>,
    pub report: Vec<Entry>,
    /// Input documents the Canary replaces (Services, VirtualServices, ...): left out.
    pub consumed: Vec<usize>,
    /// Input documents written with changes (the `workloadRef` Deployment, HPAs).
    pub replaced: Vec<(usize, Value)>,
    /// The ClusterAnalysisTemplates the Rollout uses.
    pub cluster_templates: Vec<String>,
}

/// Flagger's analysis interval when none is set.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Veer's default `--min-analysis-interval`.
const MIN_INTERVAL: Duration = Duration::from_secs(10);

static NULL: Value = Value::Null;

pub(crate) fn convert(ctx: &Ctx<'_>, doc: &Doc) -> RolloutOutput {
    let mut c =
        Conv { ctx, doc, spec: doc.value.get("spec").unwrap_or(&NULL), out: RolloutOutput::default() };
    c.run();
    c.out
}

/// The workload the Canary targets.
struct Target {
    name: String,
    pod_template: Option<Value>,
    match_labels: Option<Value>,
}

/// The Services, provider and routing settings of the Canary.
struct Routing {
    provider: Option<String>,
    service: CanaryService,
    ingress_ref: Option<IngressReference>,
    services: Vec<ArgoService>,
}

/// What the steps of a canary strategy say.
#[derive(Default)]
struct Steps {
    weights: Vec<i32>,
    /// (weight, time held at it, whether an indefinite pause holds it too).
    dwell: Vec<(i64, Duration, bool)>,
    gates: Vec<Gate>,
    uses: Vec<String>,
}

/// A VirtualService of `trafficRouting.istio`.
struct VsRef<'v> {
    name: String,
    namespace: Option<String>,
    /// The routes Argo weighted.
    routes: Vec<String>,
    /// Its path under `trafficRouting`.
    path: String,
    /// The reference itself.
    argo: &'v Value,
}

enum Strategy<'a> {
    Canary(&'a Value),
    BlueGreen(&'a Value),
}

struct Conv<'a> {
    ctx: &'a Ctx<'a>,
    doc: &'a Doc,
    spec: &'a Value,
    out: RolloutOutput,
}

impl<'a> Conv<'a> {
    fn report(&mut self, path: impl Into<String>, reason: Reason) {
        self.out.report.push(self.doc.entry(path, reason));
    }

    fn namespace(&self) -> Option<&'a str> {
        self.doc.namespace.as_deref()
    }

    /// Leaves the input document `kind`/`name` out of the output, if it is there.
    fn consume(&mut self, kind: DocKind, name: &str) -> Option<&'a Doc> {
        let d = self.ctx.find(kind, self.namespace(), name)?;
        self.out.consumed.push(d.index);
        Some(d)
    }

    fn run(&mut self) {
        let strategy =
            match (at(self.spec, &["strategy", "canary"]), at(self.spec, &["strategy", "blueGreen"])) {
                (None, Some(b)) => Strategy::BlueGreen(b),
                (Some(c), _) => Strategy::Canary(c),
                (None, None) => Strategy::Canary(&NULL),
            };
        let target = self.target(&strategy);
        self.check_selector(&target);
        let routing = match strategy {
            Strategy::Canary(c) => self.canary_routing(c, &target),
            Strategy::BlueGreen(b) => self.blue_green_services(b, &target),
        };
        let (analysis, metrics) = match strategy {
            Strategy::Canary(c) => self.canary_analysis(c, &routing),
            Strategy::BlueGreen(b) => self.blue_green_analysis(b, &routing),
        };
        let autoscaler_ref = self.autoscaler(&target.name);
        self.rollout_fields();

        let progress_deadline_seconds = at(self.spec, &["progressDeadlineSeconds"])
            .and_then(int)
            .map(|s| s.clamp(0, i64::from(limits::MAX_PROGRESS_DEADLINE_SECONDS)) as i32);
        let mut canary = Canary::new(
            &self.doc.name,
            CanarySpec {
                provider: routing.provider,
                target_ref: LocalObjectReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: target.name,
                },
                autoscaler_ref,
                ingress_ref: routing.ingress_ref,
                service: Some(routing.service),
                analysis: Some(analysis),
                progress_deadline_seconds,
                suspend: at(self.spec, &["paused"]).and_then(Value::as_bool).filter(|p| *p),
                ..Default::default()
            },
        );
        canary.metadata.namespace = self.doc.namespace.clone();
        canary.metadata.labels = labels(&self.doc.value);
        self.check_queries(&mut canary, &metrics);
        self.out.objects.push(Object::Canary(Box::new(canary)));
    }

    // -------------------------------------------------------------------------------- target

    fn target(&mut self, strategy: &Strategy<'_>) -> Target {
        let Some(w) = at(self.spec, &["workloadRef"]) else { return self.deployment(strategy) };
        let name = str_at(w, &["name"]).unwrap_or(&self.doc.name).to_string();
        if let Some(kind) = str_at(w, &["kind"]).filter(|k| *k != "Deployment") {
            self.report("spec.workloadRef.kind", Reason::WorkloadRefKind { kind: kind.into() });
        }
        if str_at(w, &["scaleDown"]).is_some() {
            self.report("spec.workloadRef.scaleDown", Reason::NoEquivalent(Feature::WorkloadRefScaleDown));
        }
        let replicas = at(self.spec, &["replicas"]).and_then(int);
        let Some(d) = self.ctx.find(DocKind::Deployment, self.namespace(), &name) else {
            let reason = Reason::WorkloadRefNotInInput { deployment: name.clone(), replicas };
            self.report("spec.workloadRef", reason);
            return Target {
                name,
                pod_template: None,
                match_labels: at(self.spec, &["selector", "matchLabels"]).cloned(),
            };
        };
        let mut v = d.value.clone();
        if let Some(n) = replicas
            && at(&v, &["spec", "replicas"]).and_then(int) != Some(n)
            && let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("replicas".into(), json!(n));
            self.out.replaced.push((d.index, v.clone()));
            self.report(
                "spec.workloadRef",
                Reason::WorkloadRefScaled { deployment: name.clone(), replicas: n },
            );
        }
        Target {
            name,
            pod_template: at(&v, &["spec", "template"]).cloned(),
            match_labels: at(&v, &["spec", "selector", "matchLabels"]).cloned(),
        }
    }

    /// The Deployment made from `spec.template`.
    fn deployment(&mut self, strategy: &Strategy<'_>) -> Target {
        let name = self.doc.name.clone();
        let Some(template) = at(self.spec, &["template"]) else {
            self.report("spec", Reason::NoPodTemplate);
            return Target { name, pod_template: None, match_labels: None };
        };
        let Some(pod_template) = self.typed::<PodTemplateSpec>(template, "spec.template") else {
            return Target { name, pod_template: Some(template.clone()), match_labels: None };
        };
        let selector = match at(self.spec, &["selector"])
            .and_then(|s| self.typed::<LabelSelector>(s, "spec.selector"))
        {
            Some(s) => s,
            None => {
                self.report("spec.selector", Reason::NoSelector);
                LabelSelector {
                    match_labels: pod_template.metadata.as_ref().and_then(|m| m.labels.clone()),
                    ..Default::default()
                }
            }
        };
        let match_labels = serde_json::to_value(&selector.match_labels).ok();
        let (path, s) = match strategy {
            Strategy::Canary(c) => ("spec.strategy.canary", *c),
            Strategy::BlueGreen(b) => ("spec.strategy.blueGreen", *b),
        };
        let int_or_string = |v: Option<&Value>| -> Option<IntOrString> {
            match v? {
                Value::Number(n) => n.as_i64().map(|i| IntOrString::Int(i as i32)),
                Value::String(s) => Some(IntOrString::String(s.clone())),
                _ => None,
            }
        };
        let max_surge =
            int_or_string(at(s, &["maxSurge"])).filter(|_| matches!(strategy, Strategy::Canary(_)));
        let max_unavailable = int_or_string(at(s, &["maxUnavailable"]));
        let rolling = max_surge.is_some() || max_unavailable.is_some();
        if rolling {
            let field = if max_surge.is_some() { "maxSurge" } else { "maxUnavailable" };
            self.report(format!("{path}.{field}"), Reason::RollingUpdateParameters);
        }
        let to_i32 =
            |key: &str| at(self.spec, &[key]).and_then(int).map(|n| n.clamp(0, i64::from(i32::MAX)) as i32);
        let deployment = Deployment {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.doc.namespace.clone(),
                labels: labels(&self.doc.value),
                annotations: annotations(&self.doc.value),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: to_i32("replicas"),
                selector,
                template: pod_template,
                min_ready_seconds: to_i32("minReadySeconds"),
                revision_history_limit: to_i32("revisionHistoryLimit"),
                progress_deadline_seconds: to_i32("progressDeadlineSeconds"),
                strategy: rolling.then(|| DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment { max_surge, max_unavailable }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        self.out.objects.push(Object::Deployment(Box::new(deployment)));
        Target { name, pod_template: Some(template.clone()), match_labels }
    }

    /// `v` decoded as `T`; reports a value that does not decode, and the fields decoding lost.
    fn typed<T: DeserializeOwned + Serialize>(&mut self, v: &Value, path: &str) -> Option<T> {
        match serde_json::from_value::<T>(v.clone()) {
            Ok(t) => {
                let mut lost = Vec::new();
                dropped_paths(v, &serde_json::to_value(&t).unwrap_or(Value::Null), path, &mut lost);
                if !lost.is_empty() {
                    self.report(path, Reason::PodTemplateFieldsDropped { paths: lost });
                }
                Some(t)
            }
            Err(e) => {
                self.report(path, Reason::InvalidPodTemplate { error: e.to_string() });
                None
            }
        }
    }

    fn check_selector(&mut self, target: &Target) {
        let Some(labels) = target.match_labels.as_ref().and_then(Value::as_object) else { return };
        let keys = WorkloadSettings::default().selector_labels;
        if !keys.iter().any(|k| labels.contains_key(k)) {
            self.report("spec.selector.matchLabels", Reason::NoSelectorLabel { keys });
        }
    }

    fn rollout_fields(&mut self) {
        if let Some(seconds) = at(self.spec, &["progressDeadlineSeconds"]).and_then(int)
            && at(self.spec, &["progressDeadlineAbort"]).and_then(Value::as_bool) != Some(true)
        {
            self.report("spec.progressDeadlineSeconds", Reason::ProgressDeadlineAborts { seconds });
        }
        for (key, feature) in [
            ("rollbackWindow", Feature::RollbackWindow),
            ("restartAt", Feature::RestartAt),
            ("analysis", Feature::AnalysisRunHistory),
        ] {
            if !is_empty(at(self.spec, &[key])) {
                self.report(format!("spec.{key}"), Reason::NoEquivalent(feature));
            }
        }
    }

    fn autoscaler(&mut self, deployment: &str) -> Option<AutoscalerReference> {
        let mut found = None;
        let hpas: Vec<&Doc> = self
            .ctx
            .all(DocKind::HorizontalPodAutoscaler)
            .filter(|h| h.namespace == self.doc.namespace)
            .filter(|h| {
                str_at(&h.value, &["spec", "scaleTargetRef", "kind"]) == Some("Rollout")
                    && str_at(&h.value, &["spec", "scaleTargetRef", "name"]) == Some(self.doc.name.as_str())
            })
            .collect();
        for h in hpas {
            let mut v = h.value.clone();
            v["spec"]["scaleTargetRef"] =
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment});
            self.out.replaced.push((h.index, v));
            let entry = if h.api_version == "autoscaling/v2" {
                found.get_or_insert_with(|| AutoscalerReference {
                    api_version: "autoscaling/v2".into(),
                    kind: "HorizontalPodAutoscaler".into(),
                    name: h.name.clone(),
                    ..Default::default()
                });
                Reason::AutoscalerRetargeted { hpa: h.name.clone(), deployment: deployment.into() }
            } else {
                Reason::AutoscalerVersion { hpa: h.name.clone(), api_version: h.api_version.clone() }
            };
            self.out.report.push(h.entry("spec.scaleTargetRef", entry));
        }
        found
    }

    // -------------------------------------------------------------------------------- Services

    /// The Canary's port: the first port of the first of `services` in the input, else the first
    /// container port of the pod template.
    fn port(&mut self, service: &mut CanaryService, services: &[String], pod_template: Option<&Value>) {
        for name in services {
            let Some(d) = self.ctx.find(DocKind::Service, self.namespace(), name) else { continue };
            let ports = array_at(&d.value, &["spec", "ports"]);
            let Some(p) = ports.first() else { continue };
            let Some(port) = at(p, &["port"]).and_then(int).filter(|p| (1..=65535).contains(p)) else {
                continue;
            };
            service.port = port as i32;
            service.port_name = str_at(p, &["name"]).map(str::to_string);
            service.target_port = match at(p, &["targetPort"]) {
                Some(Value::String(s)) => Some(IntOrString::String(s.clone())),
                Some(v) => int(v).filter(|t| *t != port).map(|t| IntOrString::Int(t as i32)),
                None => None,
            };
            if ports.len() > 1 {
                service.port_discovery = true;
                self.report(
                    format!("spec.strategy (Service {name})"),
                    Reason::ServiceExtraPorts { service: name.clone(), ports: ports.len() },
                );
            }
            return;
        }
        let container_port = pod_template
            .map(|t| array_at(t, &["spec", "containers"]))
            .unwrap_or_default()
            .iter()
            .flat_map(|c| array_at(c, &["ports"]))
            .find_map(|p| at(p, &["containerPort"]).and_then(int).filter(|p| (1..=65535).contains(p)));
        match container_port {
            Some(p) => service.port = p as i32,
            None => {
                service.port = 80;
                self.report("spec.template", Reason::ServicePortUnknown { port: 80 });
            }
        }
    }

    /// Reports a routing object Argo managed that Veer replaces by the `generated` ones, or adopts
    /// when it has the name of one of them.
    fn routing_object(&mut self, path: &str, kind: &str, name: &str, generated: &[String]) {
        let reason = if generated.iter().any(|g| g == name) {
            Reason::RoutingObjectAdopted { kind: kind.into(), name: name.into() }
        } else {
            let plural = if generated.len() > 1 { "s" } else { "" };
            Reason::RoutingObjectReplaced {
                kind: kind.into(),
                name: name.into(),
                replacement: format!("the {kind}{plural} {}", generated.join(" and ")),
            }
        };
        self.report(path, reason);
    }

    /// Reports an Argo Service Veer adopts (it has the name of one Veer generates) or replaces,
    /// and leaves it out of the output.
    fn argo_service(
        &mut self,
        path: &str,
        name: &str,
        role: ServiceRole,
        apex: &str,
        out: &mut Vec<ArgoService>,
    ) {
        self.consume(DocKind::Service, name);
        let replacement = match role {
            ServiceRole::Canary | ServiceRole::Preview => format!("{apex}-canary"),
            ServiceRole::Stable if name != apex => format!("{apex}-primary"),
            _ => format!("{apex}-primary and {apex}-canary (the Service {apex} routes to them)"),
        };
        let generated = if name == apex {
            Some(GeneratedService::Apex)
        } else if name == format!("{apex}-primary") {
            Some(GeneratedService::Primary)
        } else if name == format!("{apex}-canary") {
            Some(GeneratedService::Canary)
        } else {
            None
        };
        if let Some(generated) = generated {
            self.report(path, Reason::ServiceAdopted { service: name.into(), role, generated });
        } else {
            let reason =
                Reason::ServiceReplaced { service: name.into(), role, replacement: replacement.clone() };
            self.report(path, reason);
        }
        out.push(ArgoService { name: name.into(), role, replacement });
    }

    fn blue_green_services(&mut self, b: &Value, target: &Target) -> Routing {
        let base = "spec.strategy.blueGreen";
        let active = str_at(b, &["activeService"]).map(str::to_string);
        let preview = str_at(b, &["previewService"]).map(str::to_string);
        let apex = active.clone().unwrap_or_else(|| target.name.clone());
        let mut services = Vec::new();
        if let Some(a) = &active {
            self.argo_service(&format!("{base}.activeService"), a, ServiceRole::Active, &apex, &mut services);
        }
        if let Some(p) = &preview {
            self.argo_service(
                &format!("{base}.previewService"),
                p,
                ServiceRole::Preview,
                &apex,
                &mut services,
            );
        }
        let mut service =
            CanaryService { name: (apex != target.name).then(|| apex.clone()), ..Default::default() };
        let candidates: Vec<String> = active.into_iter().chain(preview).collect();
        self.port(&mut service, &candidates, target.pod_template.as_ref());
        for (key, feature) in [
            ("scaleDownDelaySeconds", Feature::ScaleDownDelay),
            ("scaleDownDelayRevisionLimit", Feature::ScaleDownDelay),
            ("abortScaleDownDelaySeconds", Feature::AbortScaleDownDelay),
            ("previewReplicaCount", Feature::PreviewReplicaCount),
            ("antiAffinity", Feature::AntiAffinity),
            ("activeMetadata", Feature::PodMetadata),
            ("previewMetadata", Feature::PodMetadata),
        ] {
            if at(b, &[key]).is_some() {
                self.report(format!("{base}.{key}"), Reason::NoEquivalent(feature));
            }
        }
        Routing { provider: Some("kubernetes".into()), service, ingress_ref: None, services }
    }

    fn canary_routing(&mut self, c: &Value, target: &Target) -> Routing {
        let base = "spec.strategy.canary";
        let stable = str_at(c, &["stableService"]).map(str::to_string);
        let canary_svc = str_at(c, &["canaryService"]).map(str::to_string);
        let tr = at(c, &["trafficRouting"]);
        let tr_path = format!("{base}.trafficRouting");
        let routers: Vec<String> = tr
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter(|(k, v)| {
                        !matches!(k.as_str(), "managedRoutes" | "maxTrafficWeight") && !is_empty(Some(v))
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let chosen = ["istio", "nginx", "smi"].into_iter().find(|r| routers.iter().any(|k| k == r));
        let others: Vec<String> = routers.iter().filter(|r| Some(r.as_str()) != chosen).cloned().collect();
        for r in &others {
            let flagger = match r.as_str() {
                "istio" | "nginx" | "smi" => None,
                "appMesh" => Some("appmesh"),
                "traefik" => Some("traefik"),
                "apisix" => Some("apisix"),
                _ => None,
            };
            if chosen.is_none() || !matches!(r.as_str(), "istio" | "nginx" | "smi") {
                let reason = Reason::TrafficRouterUnsupported { router: r.clone(), flagger };
                self.report(format!("{tr_path}.{r}"), reason);
            }
        }
        if let Some(used) = chosen
            && !others.is_empty()
        {
            let reason = Reason::SeveralTrafficRouters { used: used.into(), others: others.clone() };
            self.report(&tr_path, reason);
        }
        if let Some(t) = tr
            && !is_empty(at(t, &["managedRoutes"]))
        {
            self.report(format!("{tr_path}.managedRoutes"), Reason::NoEquivalent(Feature::ManagedRoutes));
        }
        if tr.is_none() && !c.is_null() {
            self.report(base, Reason::NoTrafficRouting);
        }

        let mut service = CanaryService::default();
        let tr = tr.unwrap_or(&NULL);
        let root = str_at(tr, &["smi", "rootService"])
            .or_else(|| str_at(tr, &["alb", "rootService"]))
            .map(str::to_string);
        let mut subset_host = None;
        let mut provider = None;
        let mut ingress_ref = None;
        // The apex name must be known before the routing objects are reported, but Istio's
        // subset-level splitting names it in the VirtualService: read that first.
        if chosen == Some("istio") {
            subset_host = self.istio_subset_host(tr);
        }
        let apex = root
            .clone()
            .or_else(|| stable.clone())
            .or(subset_host.clone())
            .unwrap_or_else(|| target.name.clone());
        match chosen {
            Some("istio") => {
                provider = Some("istio".to_string());
                self.istio(tr, &tr_path, &apex, &mut service);
            }
            Some("nginx") => {
                provider = Some("nginx".to_string());
                ingress_ref = self.nginx(tr, &tr_path, &apex);
            }
            Some("smi") => {
                let p = "smi:v1alpha1";
                provider = Some(p.to_string());
                self.report(format!("{tr_path}.smi"), Reason::SmiVersion { provider: p });
                let split = str_at(tr, &["smi", "trafficSplitName"]).unwrap_or(&self.doc.name).to_string();
                self.consume(DocKind::TrafficSplit, &split);
                let path = format!("{tr_path}.smi");
                self.routing_object(&path, "TrafficSplit", &split, std::slice::from_ref(&apex));
            }
            _ => {}
        }

        let mut services = Vec::new();
        if let Some(r) = &root {
            let path = if str_at(tr, &["smi", "rootService"]).is_some() { "smi" } else { "alb" };
            self.argo_service(
                &format!("{tr_path}.{path}.rootService"),
                r,
                ServiceRole::Root,
                &apex,
                &mut services,
            );
        }
        if let Some(s) = &stable {
            self.argo_service(&format!("{base}.stableService"), s, ServiceRole::Stable, &apex, &mut services);
        }
        if let Some(s) = &canary_svc {
            self.argo_service(&format!("{base}.canaryService"), s, ServiceRole::Canary, &apex, &mut services);
        }
        if let Some(h) = subset_host.as_ref().filter(|h| root.is_none() && stable.is_none() && **h == apex) {
            let path = format!("{tr_path}.istio.virtualService");
            self.argo_service(&path, h, ServiceRole::Host, &apex, &mut services);
        }
        service.name = (apex != target.name).then(|| apex.clone());
        let candidates: Vec<String> =
            [Some(apex.clone()), canary_svc, stable, root].into_iter().flatten().collect();
        self.port(&mut service, &candidates, target.pod_template.as_ref());

        for (key, feature) in [
            ("antiAffinity", Feature::AntiAffinity),
            ("canaryMetadata", Feature::PodMetadata),
            ("stableMetadata", Feature::PodMetadata),
            ("scaleDownDelaySeconds", Feature::ScaleDownDelay),
            ("scaleDownDelayRevisionLimit", Feature::ScaleDownDelay),
            ("abortScaleDownDelaySeconds", Feature::AbortScaleDownDelay),
            ("dynamicStableScale", Feature::DynamicStableScale),
            ("minPodsPerReplicaSet", Feature::MinPodsPerReplicaSet),
            ("replicaProgressThreshold", Feature::ReplicaProgressThreshold),
            ("pingPong", Feature::PingPong),
        ] {
            if !is_empty(at(c, &[key])) {
                self.report(format!("{base}.{key}"), Reason::NoEquivalent(feature));
            }
        }
        Routing { provider, service, ingress_ref, services }
    }

    /// The VirtualServices of `trafficRouting.istio`.
    fn virtual_services<'v>(&self, tr: &'v Value) -> Vec<VsRef<'v>> {
        let one = at(tr, &["istio", "virtualService"]).map(|v| (v, "istio.virtualService".to_string()));
        let many = array_at(tr, &["istio", "virtualServices"])
            .iter()
            .enumerate()
            .map(|(i, v)| (v, format!("istio.virtualServices[{i}]")));
        one.into_iter()
            .chain(many)
            .filter_map(|(v, path)| {
                let full = str_at(v, &["name"])?;
                let (name, ns) = match full.split_once('.') {
                    Some((n, ns)) => (n.to_string(), Some(ns.to_string())),
                    None => (full.to_string(), self.doc.namespace.clone()),
                };
                let routes =
                    array_at(v, &["routes"]).iter().filter_map(|r| r.as_str().map(str::to_string)).collect();
                Some(VsRef { name, namespace: ns, routes, path, argo: v })
            })
            .collect()
    }

    /// The HTTP routes of a VirtualService the Rollout weights: (index, route).
    fn chosen_routes<'v>(vs: &'v Value, routes: &[String]) -> Vec<(usize, &'v Value)> {
        let http = array_at(vs, &["spec", "http"]);
        if routes.is_empty() {
            return if http.len() == 1 { vec![(0, &http[0])] } else { Vec::new() };
        }
        routes
            .iter()
            .filter_map(|r| http.iter().enumerate().find(|(_, h)| str_at(h, &["name"]) == Some(r.as_str())))
            .collect()
    }

    /// With subset-level splitting (a DestinationRule and no stable/canary Services), the host the
    /// weighted route sends to.
    fn istio_subset_host(&self, tr: &Value) -> Option<String> {
        at(tr, &["istio", "destinationRule"])?;
        let r = self.virtual_services(tr).into_iter().next()?;
        let vs = self.ctx.find(DocKind::VirtualService, r.namespace.as_deref(), &r.name)?;
        let (_, route) = Self::chosen_routes(&vs.value, &r.routes).into_iter().next()?;
        let host = str_at(array_at(route, &["route"]).first()?, &["destination", "host"])?;
        Some(host.split('.').next().unwrap_or(host).to_string())
    }

    fn istio(&mut self, tr: &Value, tr_path: &str, apex: &str, service: &mut CanaryService) {
        let vss = self.virtual_services(tr);
        if vss.len() > 1 {
            let names = vss.iter().map(|v| v.name.clone()).collect();
            self.report(format!("{tr_path}.istio.virtualServices"), Reason::SeveralVirtualServices { names });
        }
        let mut hosts: Vec<String> = Vec::new();
        let mut gateways: Vec<String> = Vec::new();
        let mut first = true;
        for VsRef { name, namespace: ns, routes, path, argo } in &vss {
            let path = format!("{tr_path}.{path}");
            if let Some(d) = self.ctx.find(DocKind::VirtualService, ns.as_deref(), name) {
                if ns.as_deref() == self.namespace() {
                    self.out.consumed.push(d.index);
                }
                for h in array_at(&d.value, &["spec", "hosts"]).iter().filter_map(Value::as_str) {
                    if !hosts.iter().any(|x| x == h) {
                        hosts.push(h.to_string());
                    }
                }
                for g in array_at(&d.value, &["spec", "gateways"]).iter().filter_map(Value::as_str) {
                    if !gateways.iter().any(|x| x == g) {
                        gateways.push(g.to_string());
                    }
                }
                if first {
                    self.istio_route(&d.value, name, routes, &path, service);
                }
            } else {
                self.report(&path, Reason::VirtualServiceNotInInput { name: name.clone() });
            }
            first = false;
            self.routing_object(&path, "VirtualService", name, &[apex.to_string()]);
            if !is_empty(at(argo, &["tlsRoutes"])) {
                self.report(format!("{path}.tlsRoutes"), Reason::NoEquivalent(Feature::IstioTlsRoutes));
            }
            if !is_empty(at(argo, &["tcpRoutes"])) {
                service.app_protocol = Some("tcp".into());
                self.report(format!("{path}.tcpRoutes"), Reason::TcpRoutes);
            }
        }
        service.hosts = (!hosts.is_empty()).then_some(hosts);
        service.gateways = (!gateways.is_empty()).then_some(gateways);

        if let Some(dr) = at(tr, &["istio", "destinationRule"]) {
            let path = format!("{tr_path}.istio.destinationRule");
            if let Some(name) = str_at(dr, &["name"]) {
                if let Some(d) = self.consume(DocKind::DestinationRule, name) {
                    service.traffic_policy = at(&d.value, &["spec", "trafficPolicy"]).cloned();
                    if array_at(&d.value, &["spec", "subsets"])
                        .iter()
                        .any(|s| !is_empty(at(s, &["trafficPolicy"])))
                    {
                        self.report(&path, Reason::NoEquivalent(Feature::SubsetTrafficPolicy));
                    }
                }
                self.routing_object(
                    &path,
                    "DestinationRule",
                    name,
                    &[format!("{apex}-primary"), format!("{apex}-canary")],
                );
            }
            if !is_empty(at(dr, &["additionalSubsetNames"])) {
                self.report(
                    format!("{path}.additionalSubsetNames"),
                    Reason::NoEquivalent(Feature::AdditionalSubsets),
                );
            }
        }
    }

    /// Copies the settings of the weighted route of `vs` that Flagger's route carries.
    fn istio_route(
        &mut self,
        vs: &Value,
        name: &str,
        routes: &[String],
        path: &str,
        service: &mut CanaryService,
    ) {
        let chosen = Self::chosen_routes(vs, routes);
        let http = array_at(vs, &["spec", "http"]);
        let route_name = |i: usize, h: &Value| {
            str_at(h, &["name"]).map(str::to_string).unwrap_or_else(|| format!("http[{i}]"))
        };
        let other: Vec<String> = http
            .iter()
            .enumerate()
            .filter(|(i, _)| !chosen.iter().any(|(j, _)| j == i))
            .map(|(i, h)| route_name(i, h))
            .collect();
        if !other.is_empty() && !chosen.is_empty() {
            self.report(path, Reason::OtherRoutesDropped { virtual_service: name.into(), routes: other });
        }
        if chosen.len() > 1 {
            let names = chosen.iter().map(|(i, h)| route_name(*i, h)).collect();
            self.report(path, Reason::SeveralRoutes { virtual_service: name.into(), routes: names });
        }
        let Some((_, route)) = chosen.first() else { return };
        let mut dropped: Vec<String> = Vec::new();
        fn take<T: DeserializeOwned + Serialize>(
            route: &Value,
            key: &str,
            dropped: &mut Vec<String>,
        ) -> Option<T> {
            let v = at(route, &[key])?;
            match serde_json::from_value::<T>(v.clone()) {
                Ok(t) => {
                    dropped_paths(v, &serde_json::to_value(&t).unwrap_or(Value::Null), key, dropped);
                    Some(t)
                }
                Err(_) => {
                    dropped.push(key.into());
                    None
                }
            }
        }
        service.match_ = take(route, "match", &mut dropped);
        service.retries = take(route, "retries", &mut dropped);
        service.timeout = take(route, "timeout", &mut dropped);
        service.rewrite = take(route, "rewrite", &mut dropped);
        service.headers = take(route, "headers", &mut dropped);
        service.cors_policy = take(route, "corsPolicy", &mut dropped);
        if let Some(o) = route.as_object() {
            for k in o.keys() {
                if !matches!(
                    k.as_str(),
                    "name" | "route" | "match" | "retries" | "timeout" | "rewrite" | "headers" | "corsPolicy"
                ) {
                    dropped.push(k.clone());
                }
            }
        }
        if !dropped.is_empty() {
            dropped.sort();
            self.report(path, Reason::RouteFieldsDropped { virtual_service: name.into(), fields: dropped });
        }
    }

    fn nginx(&mut self, tr: &Value, tr_path: &str, apex: &str) -> Option<IngressReference> {
        let path = format!("{tr_path}.nginx");
        let n = at(tr, &["nginx"])?;
        let mut ingresses: Vec<String> =
            str_at(n, &["stableIngress"]).map(str::to_string).into_iter().collect();
        ingresses
            .extend(array_at(n, &["stableIngresses"]).iter().filter_map(|v| v.as_str().map(str::to_string)));
        ingresses.dedup();
        let used = ingresses.first()?.clone();
        if ingresses.len() > 1 {
            let reason =
                Reason::SeveralStableIngresses { used: used.clone(), others: ingresses[1..].to_vec() };
            self.report(format!("{path}.stableIngresses"), reason);
        }
        if str_at(n, &["annotationPrefix"]).is_some() {
            self.report(
                format!("{path}.annotationPrefix"),
                Reason::NoEquivalent(Feature::NginxAnnotationPrefix),
            );
        }
        for key in ["additionalIngressAnnotations", "canaryIngressAnnotations"] {
            if !is_empty(at(n, &[key])) {
                self.report(format!("{path}.{key}"), Reason::NoEquivalent(Feature::NginxExtraAnnotations));
            }
        }
        if let Some(d) = self.ctx.find(DocKind::Ingress, self.namespace(), &used) {
            let routes_to_apex = array_at(&d.value, &["spec", "rules"])
                .iter()
                .flat_map(|r| array_at(r, &["http", "paths"]))
                .any(|p| str_at(p, &["backend", "service", "name"]) == Some(apex))
                || str_at(&d.value, &["spec", "defaultBackend", "service", "name"]) == Some(apex);
            if !routes_to_apex {
                self.report(&path, Reason::IngressBackend { ingress: used.clone(), service: apex.into() });
            }
        }
        let argo_canary = format!("{}-{used}-canary", self.doc.name);
        self.routing_object(&path, "Ingress", &argo_canary, &[format!("{used}-canary")]);
        Some(IngressReference {
            api_version: "networking.k8s.io/v1".into(),
            kind: "Ingress".into(),
            name: used,
        })
    }

    // -------------------------------------------------------------------------------- analysis

    fn steps(&mut self, c: &Value) -> Steps {
        let base = "spec.strategy.canary";
        let max_traffic =
            at(c, &["trafficRouting", "maxTrafficWeight"]).and_then(int).filter(|m| *m > 0 && *m != 100);
        if let Some(m) = max_traffic {
            self.report(
                format!("{base}.trafficRouting.maxTrafficWeight"),
                Reason::WeightsScaled { max_traffic_weight: m },
            );
        }
        let steps = array_at(c, &["steps"]);
        // The weights kept, by step index.
        let mut kept: Vec<(usize, i32)> = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            let Some(raw) = at(s, &["setWeight"]).and_then(int) else { continue };
            let path = format!("{base}.steps[{i}].setWeight");
            let scaled = match max_traffic {
                Some(m) => ((raw as f64) * 100.0 / (m as f64)).round() as i64,
                None => raw,
            };
            let w = if scaled > 100 {
                self.report(&path, Reason::WeightAbove100 { weight: scaled });
                100
            } else {
                scaled
            };
            let previous = kept.last().map_or(0, |(_, p)| i64::from(*p));
            if w <= 0 {
                self.report(&path, Reason::ZeroWeight);
            } else if w <= previous {
                self.report(&path, Reason::WeightNotIncreasing { weight: w, previous });
            } else {
                kept.push((i, w as i32));
            }
        }
        let mut out = Steps { weights: kept.iter().map(|(_, w)| *w).collect(), ..Default::default() };
        // Time held at each weight, 0 first.
        let mut segment: (i64, Duration, bool) = (0, Duration::ZERO, false);
        for (i, s) in steps.iter().enumerate() {
            let path = format!("{base}.steps[{i}]");
            if let Some((_, w)) = kept.iter().find(|(j, _)| *j == i) {
                if segment.0 > 0 || !segment.1.is_zero() || segment.2 {
                    out.dwell.push(segment);
                }
                segment = (i64::from(*w), Duration::ZERO, false);
                continue;
            }
            let Some(obj) = s.as_object() else { continue };
            if obj.contains_key("setWeight") {
                continue;
            }
            if let Some(p) = obj.get("pause") {
                match p.get("duration").filter(|d| !d.is_null()) {
                    Some(d) => match super::json::argo_duration(d) {
                        Ok(d) => segment.1 = segment.1.saturating_add(d),
                        Err(error) => {
                            let value = super::json::scalar_string(d).unwrap_or_else(|| d.to_string());
                            self.report(
                                format!("{path}.pause.duration"),
                                Reason::InvalidDuration { value, error },
                            );
                        }
                    },
                    None => {
                        let before = kept.iter().any(|(j, _)| *j < i);
                        let after = kept.iter().any(|(j, _)| *j > i);
                        let gate = match (before, after) {
                            (false, _) => Gate::ConfirmRollout,
                            (true, false) => Gate::ConfirmPromotion,
                            (true, true) => Gate::ConfirmTrafficIncrease,
                        };
                        segment.2 = true;
                        let url = self.gate_url("check");
                        let reason = match gate {
                            Gate::ConfirmTrafficIncrease => Reason::PauseGateMidway { url },
                            _ => Reason::PauseGate { gate, url, namespace_assumed: self.namespace_assumed() },
                        };
                        self.report(format!("{path}.pause"), reason);
                        if !out.gates.contains(&gate) {
                            out.gates.push(gate);
                        }
                    }
                }
            } else if obj.contains_key("analysis") {
                self.report(format!("{path}.analysis"), Reason::StepAnalysis);
                out.uses.push(format!("{path}.analysis"));
            } else {
                let feature = [
                    ("setCanaryScale", Feature::SetCanaryScale),
                    ("experiment", Feature::Experiment),
                    ("setHeaderRoute", Feature::SetHeaderRoute),
                    ("setMirrorRoute", Feature::SetMirrorRoute),
                    ("plugin", Feature::StepPlugin),
                ]
                .into_iter()
                .find(|(k, _)| obj.contains_key(*k));
                match feature {
                    Some((k, f)) => self.report(format!("{path}.{k}"), Reason::NoEquivalent(f)),
                    None => self.report(&path, Reason::UnknownStep { keys: obj.keys().cloned().collect() }),
                }
            }
        }
        if segment.0 > 0 || !segment.1.is_zero() || segment.2 {
            out.dwell.push(segment);
        }
        if out.weights.is_empty() {
            self.report(
                if steps.is_empty() { base.to_string() } else { format!("{base}.steps") },
                Reason::NoSetWeight,
            );
            out.weights.push(100);
        }
        out
    }

    fn namespace_assumed(&self) -> bool {
        self.ctx.options.loadtester_url.is_none()
            && self.doc.namespace.is_none()
            && self.ctx.options.namespace.is_none()
    }

    /// The load tester URL of a gate endpoint (`check`, `close`).
    fn gate_url(&self, what: &str) -> String {
        let base = match &self.ctx.options.loadtester_url {
            Some(u) => u.clone(),
            None => {
                let ns = self
                    .doc
                    .namespace
                    .as_deref()
                    .or(self.ctx.options.namespace.as_deref())
                    .unwrap_or("default");
                format!("http://flagger-loadtester.{ns}/")
            }
        };
        let sep = if base.ends_with('/') { "" } else { "/" };
        format!("{base}{sep}gate/{what}")
    }

    /// The gate webhooks, and the post-rollout webhook that closes the gate again.
    fn gate_webhooks(&self, gates: &[Gate]) -> Option<Vec<CanaryWebhook>> {
        if gates.is_empty() {
            return None;
        }
        let mut sorted = gates.to_vec();
        sorted.sort();
        let mut hooks: Vec<CanaryWebhook> = sorted
            .iter()
            .map(|g| CanaryWebhook {
                name: g.webhook_name().into(),
                type_: Some(g.webhook_type().into()),
                url: self.gate_url("check"),
                ..Default::default()
            })
            .collect();
        hooks.push(CanaryWebhook {
            name: "close-gate".into(),
            type_: Some("post-rollout".into()),
            url: self.gate_url("close"),
            ..Default::default()
        });
        Some(hooks)
    }

    fn canary_analysis(
        &mut self,
        c: &Value,
        routing: &Routing,
    ) -> (CanaryAnalysis, Vec<analysis::BuiltMetric>) {
        let base = "spec.strategy.canary";
        let steps = self.steps(c);
        let mut uses: Vec<Use<'_>> = Vec::new();
        if let Some(a) = at(c, &["analysis"]) {
            if let Some(step) = at(a, &["startingStep"]).and_then(int).filter(|s| *s > 0) {
                self.report(format!("{base}.analysis.startingStep"), Reason::AnalysisStartingStep { step });
            }
            uses.push(Use { path: format!("{base}.analysis"), analysis: a });
        }
        let step_values: Vec<(String, &Value)> = steps
            .uses
            .iter()
            .filter_map(|p| {
                let i: usize = p.strip_prefix(&format!("{base}.steps["))?.split(']').next()?.parse().ok()?;
                Some((p.clone(), at(array_at(c, &["steps"]).get(i)?, &["analysis"])?))
            })
            .collect();
        uses.extend(step_values.into_iter().map(|(path, analysis)| Use { path, analysis }));
        let metrics =
            analysis::canary_metrics(self.ctx, self.doc, &uses, &routing.services, &mut self.out.report);
        self.out.cluster_templates.extend(metrics.cluster_templates.iter().cloned());

        // One interval: the most common time a weight was held (the shortest of equals).
        let timed: Vec<Duration> =
            steps.dwell.iter().filter(|(_, d, gated)| !d.is_zero() && !gated).map(|(_, d, _)| *d).collect();
        let interval = if timed.is_empty() {
            self.interval_without_pauses(&metrics, base)
        } else {
            let mut counts: BTreeMap<Duration, usize> = BTreeMap::new();
            for d in &timed {
                *counts.entry(*d).or_default() += 1;
            }
            let best = counts
                .iter()
                .map(|(d, n)| (*n, std::cmp::Reverse(*d)))
                .max()
                .map(|(_, d)| d.0)
                .unwrap_or(DEFAULT_INTERVAL);
            let ungated: Vec<&(i64, Duration, bool)> = steps.dwell.iter().filter(|(_, _, g)| !g).collect();
            if ungated.iter().any(|(_, d, _)| *d != best) {
                let dwell = ungated.iter().map(|(w, d, _)| (*w, flagger_duration(*d))).collect();
                self.report(
                    format!("{base}.steps"),
                    Reason::PauseDurationsDiffer { interval: flagger_duration(best), dwell },
                );
            }
            best
        };
        let interval = self.bounded_interval(interval, &format!("{base}.steps"));
        self.cadences(&metrics, interval);
        if steps.gates.len() > 1 {
            self.report(format!("{base}.steps"), Reason::SharedGate { gates: steps.gates.clone() });
        }
        let analysis = CanaryAnalysis {
            interval: Some(flagger_duration(interval)),
            threshold: Some(self.threshold(&metrics)),
            max_weight: steps.weights.last().copied(),
            step_weights: Some(steps.weights),
            metrics: Some(metrics.metrics.iter().map(|b| b.metric.clone()).collect())
                .filter(|m: &Vec<_>| !m.is_empty()),
            webhooks: self.gate_webhooks(&steps.gates),
            ..Default::default()
        };
        (analysis, metrics.metrics)
    }

    fn blue_green_analysis(
        &mut self,
        b: &Value,
        routing: &Routing,
    ) -> (CanaryAnalysis, Vec<analysis::BuiltMetric>) {
        let base = "spec.strategy.blueGreen";
        let mut uses = Vec::new();
        if let Some(a) = at(b, &["prePromotionAnalysis"]) {
            uses.push(Use { path: format!("{base}.prePromotionAnalysis"), analysis: a });
        }
        if let Some(a) = at(b, &["postPromotionAnalysis"]) {
            self.report(format!("{base}.postPromotionAnalysis"), Reason::PostPromotionAnalysis);
            uses.push(Use { path: format!("{base}.postPromotionAnalysis"), analysis: a });
        }
        let metrics =
            analysis::canary_metrics(self.ctx, self.doc, &uses, &routing.services, &mut self.out.report);
        self.out.cluster_templates.extend(metrics.cluster_templates.iter().cloned());
        let interval = self.interval_without_pauses(&metrics, base);
        let interval = self.bounded_interval(interval, base);
        self.cadences(&metrics, interval);
        let mut gates = Vec::new();
        let auto = at(b, &["autoPromotionEnabled"]).and_then(Value::as_bool).unwrap_or(true);
        let mut iterations = 1;
        if !auto {
            gates.push(Gate::ConfirmPromotion);
            let reason = Reason::PauseGate {
                gate: Gate::ConfirmPromotion,
                url: self.gate_url("check"),
                namespace_assumed: self.namespace_assumed(),
            };
            self.report(format!("{base}.autoPromotionEnabled"), reason);
        } else if let Some(seconds) = at(b, &["autoPromotionSeconds"]).and_then(int).filter(|s| *s > 0) {
            let step = interval.as_secs().max(1);
            let wanted = (seconds as u64).div_ceil(step);
            iterations = wanted.clamp(1, limits::MAX_ITERATIONS as u64) as i32;
            if !(seconds as u64).is_multiple_of(step) {
                let reason = Reason::AutoPromotionRounded {
                    seconds,
                    iterations,
                    interval: flagger_duration(interval),
                };
                self.report(format!("{base}.autoPromotionSeconds"), reason);
            }
        }
        let analysis = CanaryAnalysis {
            interval: Some(flagger_duration(interval)),
            threshold: Some(self.threshold(&metrics)),
            iterations: Some(iterations),
            metrics: Some(metrics.metrics.iter().map(|b| b.metric.clone()).collect())
                .filter(|m: &Vec<_>| !m.is_empty()),
            webhooks: self.gate_webhooks(&gates),
            ..Default::default()
        };
        (analysis, metrics.metrics)
    }

    /// The interval when no pause gives one: the shortest measurement interval of the metrics, else
    /// Flagger's default.
    fn interval_without_pauses(&mut self, metrics: &analysis::Metrics, path: &str) -> Duration {
        let (interval, source) = match metrics.cadences.iter().map(|(_, d, _)| *d).min() {
            Some(d) => (d, IntervalSource::MetricInterval),
            None => (DEFAULT_INTERVAL, IntervalSource::FlaggerDefault),
        };
        self.report(path, Reason::IntervalChosen { interval: flagger_duration(interval), source });
        interval
    }

    fn bounded_interval(&mut self, interval: Duration, path: &str) -> Duration {
        if interval > limits::MAX_ANALYSIS_INTERVAL {
            let to = limits::MAX_ANALYSIS_INTERVAL;
            self.report(
                path,
                Reason::IntervalCapped { from: flagger_duration(interval), to: flagger_duration(to) },
            );
            return to;
        }
        if interval < MIN_INTERVAL {
            self.report(path, Reason::IntervalBelowMinimum { interval: flagger_duration(interval) });
        }
        interval
    }

    fn cadences(&mut self, metrics: &analysis::Metrics, interval: Duration) {
        for (metric, cadence, path) in &metrics.cadences {
            if *cadence != interval {
                let reason = Reason::MeasurementCadence {
                    metric: metric.clone(),
                    argo: flagger_duration(*cadence),
                    flagger: flagger_duration(interval),
                };
                self.report(path.clone(), reason);
            }
        }
    }

    /// `threshold`: one more than the smallest failureLimit (Argo fails a metric after more than
    /// failureLimit failures; Flagger rolls back at `threshold` failed checks).
    fn threshold(&mut self, metrics: &analysis::Metrics) -> i32 {
        let limits_seen: Vec<i64> = metrics.failure_limits.iter().map(|(_, l)| *l).collect();
        let Some(min) = limits_seen.iter().min().copied() else { return 1 };
        let threshold = (min + 1).clamp(1, i64::from(limits::MAX_THRESHOLD));
        if limits_seen.iter().any(|l| *l != min) {
            let reason = Reason::ThresholdFromLimits { threshold, limits: metrics.failure_limits.clone() };
            self.report("spec.strategy", reason);
        }
        threshold as i32
    }

    /// Renders each metric's query as Veer will, with the Canary's variables; a metric whose query
    /// does not render is taken out of the Canary (reported).
    fn check_queries(&mut self, canary: &mut Canary, built: &[analysis::BuiltMetric]) {
        let mut failed = Vec::new();
        for b in built {
            let ctx = TemplateContext::new(canary, &b.metric);
            if let Err(e) = render(&b.query, &ctx) {
                let reason =
                    Reason::QueryDoesNotRender { metric: b.metric.name.clone(), error: e.to_string() };
                self.report(b.use_path.clone(), reason);
                failed.push(b.metric.name.clone());
            }
        }
        if let Some(a) = canary.spec.analysis.as_mut()
            && let Some(m) = a.metrics.as_mut()
        {
            m.retain(|m| !failed.contains(&m.name));
            if m.is_empty() {
                a.metrics = None;
            }
        }
    }
}

/// The object's labels, if any.
fn labels(v: &Value) -> Option<BTreeMap<String, String>> {
    string_map(at(v, &["metadata", "labels"]), |_| true)
}

/// The object's annotations, without those Argo Rollouts and kubectl manage.
fn annotations(v: &Value) -> Option<BTreeMap<String, String>> {
    string_map(at(v, &["metadata", "annotations"]), |k| {
        !k.contains("argoproj.io/") && k != "kubectl.kubernetes.io/last-applied-configuration"
    })
}

fn string_map(v: Option<&Value>, keep: impl Fn(&str) -> bool) -> Option<BTreeMap<String, String>> {
    let m: BTreeMap<String, String> = v?
        .as_object()?
        .iter()
        .filter(|(k, _)| keep(k))
        .filter_map(|(k, v)| Some((k.clone(), super::json::scalar_string(v)?)))
        .collect();
    (!m.is_empty()).then_some(m)
}
