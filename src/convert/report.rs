//! What a conversion could not carry over, field by field: each [`Entry`] names the source object,
//! the path of the field in it and a typed [`Reason`], which gives its [`Level`], a stable code,
//! why, and what to do instead.

use std::fmt;

use serde::Serialize;
use serde_json::{Value, json};

use super::condition::ConditionError;

/// How much an entry matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Converted; something to know or to do besides applying the output (delete an old object,
    /// open a gate instead of `kubectl argo rollouts promote`).
    Info,
    /// Converted with a different behaviour (the entry says which).
    Approximated,
    /// Not converted: the output lacks it, and the entry says what to do instead.
    Unmapped,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Approximated => "approximated",
            Level::Unmapped => "unmapped",
        }
    }
}

/// The source object of an entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SourceRef {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One thing the conversion reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The object the field belongs to.
    pub object: SourceRef,
    /// The field's path in that object (`spec.strategy.canary.steps[1].pause`); empty for the
    /// object as a whole.
    pub path: String,
    pub reason: Reason,
}

impl Entry {
    pub fn level(&self) -> Level {
        self.reason.level()
    }

    /// The entry as JSON, for `--report json`.
    pub fn to_json(&self) -> Value {
        json!({
            "object": self.object,
            "path": self.path,
            "level": self.level(),
            "code": self.reason.code(),
            "message": self.reason.message(),
            "hint": self.reason.hint(),
        })
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.path.is_empty() { String::new() } else { format!(" {}", self.path) };
        write!(
            f,
            "{}{at}: {} [{}]\n  {}",
            self.object,
            self.level().as_str(),
            self.reason.code(),
            self.reason.message()
        )?;
        let hint = self.reason.hint();
        if !hint.is_empty() {
            write!(f, "\n  -> {hint}")?;
        }
        Ok(())
    }
}

/// Which Argo Service an entry is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceRole {
    Stable,
    Canary,
    Root,
    Active,
    Preview,
    /// The destination host of the VirtualService route (Istio subset-level splitting).
    Host,
}

impl ServiceRole {
    fn field(self) -> &'static str {
        match self {
            ServiceRole::Host => "VirtualService destination host",
            ServiceRole::Stable => "stableService",
            ServiceRole::Canary => "canaryService",
            ServiceRole::Root => "rootService",
            ServiceRole::Active => "activeService",
            ServiceRole::Preview => "previewService",
        }
    }
}

/// Which of the Services Veer generates (`<svc>`, `<svc>-primary`, `<svc>-canary`) an Argo
/// Service becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeneratedService {
    Apex,
    Primary,
    Canary,
}

/// The Flagger webhook an indefinite pause (or a manual promotion) becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gate {
    /// Before the canary gets any traffic: a pause before the first `setWeight`.
    ConfirmRollout,
    /// Before each weight increase: a pause between two `setWeight` steps.
    ConfirmTrafficIncrease,
    /// Before the promotion: a pause after the last `setWeight`, or `autoPromotionEnabled: false`.
    ConfirmPromotion,
}

impl Gate {
    /// The webhook `type`.
    pub fn webhook_type(self) -> &'static str {
        match self {
            Gate::ConfirmRollout => "confirm-rollout",
            Gate::ConfirmTrafficIncrease => "confirm-traffic-increase",
            Gate::ConfirmPromotion => "confirm-promotion",
        }
    }

    /// The webhook `name` (it appears in Veer's Events: `waiting for approval <name>`).
    pub fn webhook_name(self) -> &'static str {
        match self {
            Gate::ConfirmRollout => "approve-rollout",
            Gate::ConfirmTrafficIncrease => "approve-traffic-increase",
            Gate::ConfirmPromotion => "approve-promotion",
        }
    }
}

/// Which condition of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionField {
    Success,
    Failure,
}

impl ConditionField {
    pub fn field(self) -> &'static str {
        match self {
            ConditionField::Success => "successCondition",
            ConditionField::Failure => "failureCondition",
        }
    }
}

/// Why a template argument has no value the Canary can carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgProblem {
    /// Neither the Rollout nor the template gives a value.
    Missing,
    /// `valueFrom.podTemplateHashValue` (`Stable` or `Latest`).
    PodTemplateHash(String),
    /// `valueFrom.secretKeyRef`.
    Secret { name: String, key: String },
    /// `valueFrom.fieldRef` to a field that is not in the Rollout as written (`status.*`).
    Field(String),
}

/// An Argo Rollouts feature that Flagger (and so Veer) does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    SetCanaryScale,
    Experiment,
    SetHeaderRoute,
    SetMirrorRoute,
    StepPlugin,
    ManagedRoutes,
    AntiAffinity,
    PodMetadata,
    ScaleDownDelay,
    AbortScaleDownDelay,
    DynamicStableScale,
    MinPodsPerReplicaSet,
    ReplicaProgressThreshold,
    PingPong,
    PreviewReplicaCount,
    RollbackWindow,
    RestartAt,
    IstioTlsRoutes,
    AdditionalSubsets,
    SubsetTrafficPolicy,
    NginxAnnotationPrefix,
    NginxExtraAnnotations,
    DryRun,
    InitialDelay,
    InconclusiveLimit,
    ConsecutiveErrorLimit,
    ConsecutiveSuccessLimit,
    FailureLimitDisabled,
    PrometheusAuthentication,
    PrometheusTimeout,
    RangeQuery,
    WorkloadRefScaleDown,
    AnalysisRunHistory,
    MeasurementRetention,
    AnalysisRunMetadata,
}

impl Feature {
    pub fn level(self) -> Level {
        match self {
            Feature::WorkloadRefScaleDown
            | Feature::AnalysisRunHistory
            | Feature::MeasurementRetention
            | Feature::AnalysisRunMetadata => Level::Info,
            Feature::PrometheusTimeout | Feature::ConsecutiveErrorLimit | Feature::InitialDelay => {
                Level::Approximated
            }
            _ => Level::Unmapped,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Feature::SetCanaryScale => "set-canary-scale",
            Feature::Experiment => "experiment",
            Feature::SetHeaderRoute => "set-header-route",
            Feature::SetMirrorRoute => "set-mirror-route",
            Feature::StepPlugin => "step-plugin",
            Feature::ManagedRoutes => "managed-routes",
            Feature::AntiAffinity => "anti-affinity",
            Feature::PodMetadata => "pod-metadata",
            Feature::ScaleDownDelay => "scale-down-delay",
            Feature::AbortScaleDownDelay => "abort-scale-down-delay",
            Feature::DynamicStableScale => "dynamic-stable-scale",
            Feature::MinPodsPerReplicaSet => "min-pods-per-replica-set",
            Feature::ReplicaProgressThreshold => "replica-progress-threshold",
            Feature::PingPong => "ping-pong",
            Feature::PreviewReplicaCount => "preview-replica-count",
            Feature::RollbackWindow => "rollback-window",
            Feature::RestartAt => "restart-at",
            Feature::IstioTlsRoutes => "istio-tls-routes",
            Feature::AdditionalSubsets => "additional-subsets",
            Feature::SubsetTrafficPolicy => "subset-traffic-policy",
            Feature::NginxAnnotationPrefix => "nginx-annotation-prefix",
            Feature::NginxExtraAnnotations => "nginx-extra-annotations",
            Feature::DryRun => "dry-run",
            Feature::InitialDelay => "initial-delay",
            Feature::InconclusiveLimit => "inconclusive-limit",
            Feature::ConsecutiveErrorLimit => "consecutive-error-limit",
            Feature::ConsecutiveSuccessLimit => "consecutive-success-limit",
            Feature::FailureLimitDisabled => "failure-limit-disabled",
            Feature::PrometheusAuthentication => "prometheus-authentication",
            Feature::PrometheusTimeout => "prometheus-timeout",
            Feature::RangeQuery => "range-query",
            Feature::WorkloadRefScaleDown => "workload-ref-scale-down",
            Feature::AnalysisRunHistory => "analysis-run-history",
            Feature::MeasurementRetention => "measurement-retention",
            Feature::AnalysisRunMetadata => "analysis-run-metadata",
        }
    }

    /// Why it does not map.
    fn message(self) -> &'static str {
        match self {
            Feature::SetCanaryScale => {
                "setCanaryScale sizes the canary apart from its traffic weight; Flagger always runs the canary at the target's full replica count"
            }
            Feature::Experiment => {
                "experiment steps run extra ReplicaSets (baseline, canary) side by side; Flagger has no experiments"
            }
            Feature::SetHeaderRoute => {
                "setHeaderRoute sends matching requests to the canary for some steps; Flagger's header matching is a whole A/B run (analysis.match with iterations), not a step of a weighted canary"
            }
            Feature::SetMirrorRoute => {
                "setMirrorRoute mirrors a share of matching requests for some steps; Flagger mirrors all traffic (Istio, analysis.mirror) for one step before shifting weight"
            }
            Feature::StepPlugin => "step plugins run Argo Rollouts plugins; Flagger has no plugins",
            Feature::ManagedRoutes => {
                "managedRoutes names the extra routes header and mirror steps add; Flagger's VirtualService has one route"
            }
            Feature::AntiAffinity => {
                "antiAffinity keeps new pods off the nodes of the old ones; Flagger does not change the pods' scheduling"
            }
            Feature::PodMetadata => {
                "canaryMetadata/stableMetadata (activeMetadata/previewMetadata) label the pods by role; Flagger's primary pods are told apart by the selector label <value>-primary instead"
            }
            Feature::ScaleDownDelay => {
                "the old version is kept running after the switch for scaleDownDelaySeconds; Flagger scales the canary to zero as soon as the primary runs the new version"
            }
            Feature::AbortScaleDownDelay => {
                "abortScaleDownDelaySeconds keeps an aborted canary running; Flagger scales a rolled-back canary to zero at once"
            }
            Feature::DynamicStableScale => {
                "dynamicStableScale shrinks the stable ReplicaSet as the canary's weight grows; Flagger keeps the primary at full size"
            }
            Feature::MinPodsPerReplicaSet => {
                "minPodsPerReplicaSet sizes canary ReplicaSets; Flagger runs the canary at the target's replica count"
            }
            Feature::ReplicaProgressThreshold => {
                "replicaProgressThreshold lets a step continue with part of the canary ready; Flagger waits for canaryReadyThreshold percent of it (analysis.canaryReadyThreshold, default 100)"
            }
            Feature::PingPong => {
                "ping-pong alternates two Services between versions; Flagger copies the new version to <target>-primary instead"
            }
            Feature::PreviewReplicaCount => {
                "previewReplicaCount runs a smaller preview; Flagger runs the canary at the target's replica count"
            }
            Feature::RollbackWindow => {
                "rollbackWindow lets recent revisions roll back without analysis; Flagger analyses every new revision"
            }
            Feature::RestartAt => "restartAt restarts the pods at a time; Flagger has no scheduled restarts",
            Feature::IstioTlsRoutes => {
                "tlsRoutes splits TLS traffic by SNI; Flagger's Istio router generates HTTP or TCP routes only"
            }
            Feature::AdditionalSubsets => {
                "additionalSubsetNames keeps more DestinationRule subsets; Flagger generates its own DestinationRules with none"
            }
            Feature::SubsetTrafficPolicy => {
                "a subset of the DestinationRule has its own trafficPolicy; Flagger applies one trafficPolicy (service.trafficPolicy) to both of its DestinationRules"
            }
            Feature::NginxAnnotationPrefix => {
                "annotationPrefix changes the NGINX annotation prefix for this Rollout; in Veer the prefix is the controller's --ingress-annotations-prefix, for every Canary"
            }
            Feature::NginxExtraAnnotations => {
                "additionalIngressAnnotations/canaryIngressAnnotations add annotations to the canary Ingress (header or cookie routing, say); Veer's canary Ingress carries the user Ingress' annotations and its own canary ones"
            }
            Feature::DryRun => {
                "dryRun runs metrics without acting on them; every Flagger metric check counts"
            }
            Feature::InitialDelay => {
                "initialDelay waits before the first measurement; Flagger measures at the first analysis step, one interval after the canary is ready"
            }
            Feature::InconclusiveLimit => {
                "inconclusiveLimit pauses the rollout after inconclusive measurements; Flagger has no inconclusive result: a value outside thresholdRange is a failed check"
            }
            Feature::ConsecutiveErrorLimit => {
                "consecutiveErrorLimit tolerates query errors; Flagger counts each error (and each query without data) as a failed check"
            }
            Feature::ConsecutiveSuccessLimit => {
                "consecutiveSuccessLimit waits for consecutive successful measurements; Flagger's checks pass or fail one step at a time"
            }
            Feature::FailureLimitDisabled => {
                "failureLimit -1 turns failures off (consecutiveSuccessLimit alone decides); Flagger always rolls back after `threshold` failed checks"
            }
            Feature::PrometheusAuthentication => {
                "the query authenticates with sigv4, oauth2 or a user and password written in the template; a Flagger MetricTemplate reads credentials from a Secret (provider.secretRef: keys token, or username and password)"
            }
            Feature::PrometheusTimeout => {
                "timeout sets the query timeout; Veer's queries time out after 5 seconds"
            }
            Feature::RangeQuery => {
                "rangeQuery asks Prometheus for a range of values; Flagger runs instant queries and judges one value"
            }
            Feature::WorkloadRefScaleDown => {
                "workloadRef.scaleDown said when Argo scaled the Deployment down; Veer scales its target to zero itself once the primary runs"
            }
            Feature::AnalysisRunHistory => {
                "successfulRunHistoryLimit/unsuccessfulRunHistoryLimit keep AnalysisRuns; Veer keeps no runs (the last checks are in the Canary's status.checks)"
            }
            Feature::MeasurementRetention => {
                "measurementRetention keeps measurements in AnalysisRuns; Veer records the last value of each check in status.checks"
            }
            Feature::AnalysisRunMetadata => "analysisRunMetadata labels AnalysisRuns; Veer creates none",
        }
    }

    /// What to do instead.
    fn hint(self) -> &'static str {
        match self {
            Feature::SetCanaryScale | Feature::MinPodsPerReplicaSet | Feature::PreviewReplicaCount => {
                "Nothing to convert; size the Deployment for its full load"
            }
            Feature::Experiment => {
                "Compare the canary with the primary in a MetricTemplate query instead (Flagger's pods are <target> and <target>-primary)"
            }
            Feature::SetHeaderRoute => {
                "For A/B testing by header, write a separate Canary with analysis.match and analysis.iterations (see Flagger's A/B testing docs)"
            }
            Feature::SetMirrorRoute => {
                "With Istio, set analysis.mirror: true (and mirrorWeight) on the Canary"
            }
            Feature::StepPlugin => {
                "Run what the plugin did from a webhook (pre-rollout, rollout or post-rollout)"
            }
            Feature::ManagedRoutes => "Nothing to convert once the header and mirror steps are gone",
            Feature::AntiAffinity => "Add podAntiAffinity to the Deployment's pod template if you need it",
            Feature::PodMetadata => {
                "Select canary pods by their Deployment (<target>) and primary pods by <target>-primary in dashboards and queries"
            }
            Feature::ScaleDownDelay | Feature::AbortScaleDownDelay | Feature::DynamicStableScale => {
                "Nothing to convert"
            }
            Feature::ReplicaProgressThreshold => {
                "Set analysis.canaryReadyThreshold on the Canary if you need it"
            }
            Feature::PingPong => "Nothing to convert; Veer generates <svc>-primary and <svc>-canary",
            Feature::RollbackWindow | Feature::RestartAt => "Nothing to convert",
            Feature::IstioTlsRoutes => "Keep TLS routing in a VirtualService of your own, outside the Canary",
            Feature::AdditionalSubsets => {
                "Keep the extra subsets in a DestinationRule of your own for another host"
            }
            Feature::SubsetTrafficPolicy => "Move the policy you need into service.trafficPolicy",
            Feature::NginxAnnotationPrefix => "Start Veer with --ingress-annotations-prefix <prefix>",
            Feature::NginxExtraAnnotations => {
                "For header or cookie routing, use analysis.match (A/B testing); put other annotations on your Ingress"
            }
            Feature::DryRun => "Leave the metric out, or watch it on a dashboard",
            Feature::InitialDelay => "Raise the analysis interval if the first measurement comes too early",
            Feature::InconclusiveLimit => "Widen thresholdRange to the values that should pass",
            Feature::ConsecutiveErrorLimit => "Raise analysis.threshold to tolerate more failed checks",
            Feature::ConsecutiveSuccessLimit | Feature::FailureLimitDisabled => {
                "Model the wait with iterations or a confirm-promotion webhook"
            }
            Feature::PrometheusAuthentication => {
                "Create a Secret with the keys username and password (or token) and set provider.secretRef on the MetricTemplate; for sigv4 or OAuth2, put a proxy that signs requests in front of Prometheus"
            }
            Feature::PrometheusTimeout => "Make the query faster, or pre-compute it with a recording rule",
            Feature::RangeQuery => {
                "Aggregate over the range in PromQL instead (max_over_time(...[5m]), for example) and judge that one value"
            }
            Feature::WorkloadRefScaleDown
            | Feature::AnalysisRunHistory
            | Feature::MeasurementRetention
            | Feature::AnalysisRunMetadata => "",
        }
    }
}

/// Why an entry was reported.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    // ---- documents
    /// A document is not a mapping with `kind` and `metadata.name`.
    NotAnObject,
    /// An Argo kind that has no Flagger counterpart (Experiment, AnalysisRun, ...); dropped.
    UnsupportedKind { kind: String },
    /// Two output objects of one kind would have the same name; the second is left out.
    DuplicateObject { kind: String, name: String },

    // ---- the target
    /// Neither `spec.template` nor `spec.workloadRef`: no Deployment to roll out.
    NoPodTemplate,
    /// `spec.template` is not a pod template.
    InvalidPodTemplate { error: String },
    /// Fields of `spec.template` that Kubernetes' Deployment type does not know.
    PodTemplateFieldsDropped { paths: Vec<String> },
    /// No `spec.selector`: the Deployment selects the template's labels.
    NoSelector,
    /// `workloadRef` to something other than a Deployment.
    WorkloadRefKind { kind: String },
    /// The referenced Deployment is in the input and got the Rollout's replicas.
    WorkloadRefScaled { deployment: String, replicas: i64 },
    /// The referenced Deployment is not in the input.
    WorkloadRefNotInInput { deployment: String, replicas: Option<i64> },
    /// The selector has none of the labels Veer tells pods apart with.
    NoSelectorLabel { keys: Vec<String> },
    /// `maxSurge`/`maxUnavailable` became the Deployment's rolling update parameters.
    RollingUpdateParameters,
    /// `progressDeadlineSeconds` without `progressDeadlineAbort: true`.
    ProgressDeadlineAborts { seconds: i64 },
    /// A HorizontalPodAutoscaler of the Rollout now scales the Deployment.
    AutoscalerRetargeted { hpa: String, deployment: String },
    /// A HorizontalPodAutoscaler of the Rollout that is not autoscaling/v2.
    AutoscalerVersion { hpa: String, api_version: String },

    // ---- Services and routing
    /// An Argo Service whose name Veer's apex Service takes over.
    ServiceAdopted { service: String, role: ServiceRole, generated: GeneratedService },
    /// An Argo Service Veer replaces by one it generates.
    ServiceReplaced { service: String, role: ServiceRole, replacement: String },
    /// No port in the Services or the pod template.
    ServicePortUnknown { port: i32 },
    /// The Service has more ports than Flagger's main one.
    ServiceExtraPorts { service: String, ports: usize },
    /// A canary without `trafficRouting`.
    NoTrafficRouting,
    /// A traffic router Veer does not drive.
    TrafficRouterUnsupported { router: String, flagger: Option<&'static str> },
    /// Several traffic routers; one is used.
    SeveralTrafficRouters { used: String, others: Vec<String> },
    /// A routing object Argo managed that Veer replaces by one it generates.
    RoutingObjectReplaced { kind: String, name: String, replacement: String },
    /// A routing object Argo managed that has the name of one Veer generates: Veer takes it over.
    RoutingObjectAdopted { kind: String, name: String },
    /// A VirtualService named by the Rollout that is not in the input.
    VirtualServiceNotInInput { name: String },
    /// Several VirtualServices: their hosts and gateways are merged into one.
    SeveralVirtualServices { names: Vec<String> },
    /// Routes of the VirtualService other than the canary's.
    OtherRoutesDropped { virtual_service: String, routes: Vec<String> },
    /// Fields of the canary's route that Flagger's route has no place for.
    RouteFieldsDropped { virtual_service: String, fields: Vec<String> },
    /// Several routes named in `routes`: the first one's settings are used.
    SeveralRoutes { virtual_service: String, routes: Vec<String> },
    /// `tcpRoutes`: the Canary routes TCP (`appProtocol: tcp`).
    TcpRoutes,
    /// Several stable Ingresses; one is used.
    SeveralStableIngresses { used: String, others: Vec<String> },
    /// The Ingress does not route to the Service Veer's canary Ingress is made from.
    IngressBackend { ingress: String, service: String },
    /// SMI: the TrafficSplit API version Argo used is a controller flag.
    SmiVersion { provider: &'static str },

    // ---- steps and timing
    /// No `setWeight` step: the canary takes all traffic in one step.
    NoSetWeight,
    /// A `setWeight` not above the previous one (Flagger's weights only grow).
    WeightNotIncreasing { weight: i64, previous: i64 },
    /// `setWeight: 0`.
    ZeroWeight,
    /// A weight above 100.
    WeightAbove100 { weight: i64 },
    /// `maxTrafficWeight`: the weights were scaled to percentages.
    WeightsScaled { max_traffic_weight: i64 },
    /// The pauses at the weights differ; Flagger has one interval.
    PauseDurationsDiffer { interval: String, dwell: Vec<(i64, String)> },
    /// No timed pause: the interval comes from elsewhere.
    IntervalChosen { interval: String, source: IntervalSource },
    /// An interval below Veer's default minimum analysis interval.
    IntervalBelowMinimum { interval: String },
    /// An interval above the CRD's maximum.
    IntervalCapped { from: String, to: String },
    /// A duration that does not parse.
    InvalidDuration { value: String, error: String },
    /// An indefinite pause (or `autoPromotionEnabled: false`) became a load tester gate.
    PauseGate { gate: Gate, url: String, namespace_assumed: bool },
    /// An indefinite pause between two weights became a gate before every weight increase.
    PauseGateMidway { url: String },
    /// Several indefinite pauses share the Canary's one gate.
    SharedGate { gates: Vec<Gate> },
    /// An analysis step: Flagger checks every metric at every step.
    StepAnalysis,
    /// `startingStep` of the background analysis.
    AnalysisStartingStep { step: i64 },
    /// A feature Flagger does not have.
    NoEquivalent(Feature),
    /// A step of an unknown kind.
    UnknownStep { keys: Vec<String> },
    /// blueGreen `autoPromotionSeconds` is not a multiple of the interval.
    AutoPromotionRounded { seconds: i64, iterations: i32, interval: String },
    /// blueGreen `postPromotionAnalysis`: checked before the promotion.
    PostPromotionAnalysis,

    // ---- analysis
    /// An analysis template the Rollout names that is not in the input.
    TemplateNotInInput { name: String, cluster_scope: bool },
    /// A metric provider other than Prometheus.
    ProviderUnsupported { metric: String, provider: String, in_flagger: bool },
    /// A `job` metric.
    JobMetric { metric: String },
    /// A `web` metric.
    WebMetric { metric: String, url: Option<String> },
    /// A metric without a provider.
    NoProvider { metric: String },
    /// A Prometheus metric without an address.
    PrometheusAddressMissing { metric: String },
    /// An address (or header) that needs an argument without a default.
    AddressNeedsArgument { metric: String, field: String, arg: String },
    /// The rewritten query is not a template Veer can render.
    QueryNotTemplate { metric: String, error: String },
    /// A condition that no thresholdRange expresses; the metric is left out.
    ConditionUnmapped { metric: String, field: ConditionField, condition: String, why: ConditionError },
    /// `>`/`<`: Flagger's bounds are inclusive.
    StrictBound { metric: String, condition: String, bound: f64 },
    /// The condition lets a measurement without data pass.
    NoDataPasses { metric: String, condition: String },
    /// Both conditions, with values between them inconclusive.
    Inconclusive { metric: String },
    /// The metrics' failureLimits differ; the Canary has one threshold.
    ThresholdFromLimits { threshold: i64, limits: Vec<(String, i64)> },
    /// `count`: Flagger measures at every step of the whole run.
    MeasurementCount { metric: String, count: String },
    /// The metric was measured at another cadence than the analysis interval.
    MeasurementCadence { metric: String, argo: String, flagger: String },
    /// A template argument without a value the Canary can carry; the metric is left out when its
    /// query needs it.
    ArgumentUnresolved { metric: String, arg: String, problem: ArgProblem },
    /// A `valueFrom.fieldRef` argument, resolved once from the Rollout as written.
    ArgumentFromField { arg: String, field_path: String, value: String },
    /// An argument names an Argo Service whose traffic now goes elsewhere.
    ArgumentNamesArgoService { arg: String, service: String, role: ServiceRole, replacement: String },
    /// The query does not render with the Canary's variables; the metric is left out.
    QueryDoesNotRender { metric: String, error: String },
    /// A ClusterAnalysisTemplate became a MetricTemplate in the Rollout's namespace.
    ClusterTemplateCopied { namespace: Option<String> },
    /// A ClusterAnalysisTemplate no Rollout of the input uses.
    ClusterTemplateUnreferenced,
    /// Two metrics of one Canary had the same name.
    MetricRenamed { from: String, to: String },
}

/// Where an interval came from when the steps have no timed pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntervalSource {
    /// The shortest measurement interval of the analysis metrics.
    MetricInterval,
    /// Flagger's default for an unset interval.
    FlaggerDefault,
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

impl Reason {
    pub fn level(&self) -> Level {
        use Reason::*;
        match self {
            NoEquivalent(f) => f.level(),
            WorkloadRefScaled { .. }
            | WorkloadRefNotInInput { .. }
            | RollingUpdateParameters
            | AutoscalerRetargeted { .. }
            | ServiceAdopted { .. }
            | ServiceReplaced { .. }
            | RoutingObjectReplaced { .. }
            | RoutingObjectAdopted { .. }
            | SmiVersion { .. }
            | IntervalChosen { .. }
            | PauseGate { .. }
            | ClusterTemplateCopied { .. }
            | ClusterTemplateUnreferenced
            | MetricRenamed { .. } => Level::Info,
            NoSelector
            | ProgressDeadlineAborts { .. }
            | ServicePortUnknown { .. }
            | ServiceExtraPorts { .. }
            | NoTrafficRouting
            | SeveralTrafficRouters { .. }
            | VirtualServiceNotInInput { .. }
            | SeveralVirtualServices { .. }
            | SeveralRoutes { .. }
            | TcpRoutes
            | SeveralStableIngresses { .. }
            | NoSetWeight
            | WeightNotIncreasing { .. }
            | ZeroWeight
            | WeightAbove100 { .. }
            | WeightsScaled { .. }
            | PauseDurationsDiffer { .. }
            | IntervalBelowMinimum { .. }
            | IntervalCapped { .. }
            | PauseGateMidway { .. }
            | SharedGate { .. }
            | StepAnalysis
            | AnalysisStartingStep { .. }
            | AutoPromotionRounded { .. }
            | PostPromotionAnalysis
            | StrictBound { .. }
            | NoDataPasses { .. }
            | Inconclusive { .. }
            | ThresholdFromLimits { .. }
            | MeasurementCount { .. }
            | MeasurementCadence { .. }
            | ArgumentFromField { .. }
            | ArgumentNamesArgoService { .. } => Level::Approximated,
            NotAnObject
            | UnsupportedKind { .. }
            | DuplicateObject { .. }
            | NoPodTemplate
            | InvalidPodTemplate { .. }
            | PodTemplateFieldsDropped { .. }
            | WorkloadRefKind { .. }
            | NoSelectorLabel { .. }
            | AutoscalerVersion { .. }
            | TrafficRouterUnsupported { .. }
            | OtherRoutesDropped { .. }
            | RouteFieldsDropped { .. }
            | IngressBackend { .. }
            | InvalidDuration { .. }
            | UnknownStep { .. }
            | TemplateNotInInput { .. }
            | ProviderUnsupported { .. }
            | JobMetric { .. }
            | WebMetric { .. }
            | NoProvider { .. }
            | PrometheusAddressMissing { .. }
            | AddressNeedsArgument { .. }
            | QueryNotTemplate { .. }
            | ConditionUnmapped { .. }
            | ArgumentUnresolved { .. }
            | QueryDoesNotRender { .. } => Level::Unmapped,
        }
    }

    /// A stable, kebab-case name for scripts.
    pub fn code(&self) -> &'static str {
        use Reason::*;
        match self {
            NotAnObject => "not-an-object",
            UnsupportedKind { .. } => "unsupported-kind",
            DuplicateObject { .. } => "duplicate-object",
            NoPodTemplate => "no-pod-template",
            InvalidPodTemplate { .. } => "invalid-pod-template",
            PodTemplateFieldsDropped { .. } => "pod-template-fields-dropped",
            NoSelector => "no-selector",
            WorkloadRefKind { .. } => "workload-ref-kind",
            WorkloadRefScaled { .. } => "workload-ref-scaled",
            WorkloadRefNotInInput { .. } => "workload-ref-not-in-input",
            NoSelectorLabel { .. } => "no-selector-label",
            RollingUpdateParameters => "rolling-update-parameters",
            ProgressDeadlineAborts { .. } => "progress-deadline-aborts",
            AutoscalerRetargeted { .. } => "autoscaler-retargeted",
            AutoscalerVersion { .. } => "autoscaler-version",
            ServiceAdopted { .. } => "service-adopted",
            ServiceReplaced { .. } => "service-replaced",
            ServicePortUnknown { .. } => "service-port-unknown",
            ServiceExtraPorts { .. } => "service-extra-ports",
            NoTrafficRouting => "no-traffic-routing",
            TrafficRouterUnsupported { .. } => "traffic-router-unsupported",
            SeveralTrafficRouters { .. } => "several-traffic-routers",
            RoutingObjectReplaced { .. } => "routing-object-replaced",
            RoutingObjectAdopted { .. } => "routing-object-adopted",
            VirtualServiceNotInInput { .. } => "virtual-service-not-in-input",
            SeveralVirtualServices { .. } => "several-virtual-services",
            OtherRoutesDropped { .. } => "other-routes-dropped",
            RouteFieldsDropped { .. } => "route-fields-dropped",
            SeveralRoutes { .. } => "several-routes",
            TcpRoutes => "tcp-routes",
            SeveralStableIngresses { .. } => "several-stable-ingresses",
            IngressBackend { .. } => "ingress-backend",
            SmiVersion { .. } => "smi-version",
            NoSetWeight => "no-set-weight",
            WeightNotIncreasing { .. } => "weight-not-increasing",
            ZeroWeight => "zero-weight",
            WeightAbove100 { .. } => "weight-above-100",
            WeightsScaled { .. } => "weights-scaled",
            PauseDurationsDiffer { .. } => "pause-durations-differ",
            IntervalChosen { .. } => "interval-chosen",
            IntervalBelowMinimum { .. } => "interval-below-minimum",
            IntervalCapped { .. } => "interval-capped",
            InvalidDuration { .. } => "invalid-duration",
            PauseGate { .. } => "pause-gate",
            PauseGateMidway { .. } => "pause-gate-midway",
            SharedGate { .. } => "shared-gate",
            StepAnalysis => "step-analysis",
            AnalysisStartingStep { .. } => "analysis-starting-step",
            NoEquivalent(f) => f.code(),
            UnknownStep { .. } => "unknown-step",
            AutoPromotionRounded { .. } => "auto-promotion-rounded",
            PostPromotionAnalysis => "post-promotion-analysis",
            TemplateNotInInput { .. } => "template-not-in-input",
            ProviderUnsupported { .. } => "provider-unsupported",
            JobMetric { .. } => "job-metric",
            WebMetric { .. } => "web-metric",
            NoProvider { .. } => "no-provider",
            PrometheusAddressMissing { .. } => "prometheus-address-missing",
            AddressNeedsArgument { .. } => "address-needs-argument",
            QueryNotTemplate { .. } => "query-not-template",
            ConditionUnmapped { .. } => "condition-unmapped",
            StrictBound { .. } => "strict-bound",
            NoDataPasses { .. } => "no-data-passes",
            Inconclusive { .. } => "inconclusive",
            ThresholdFromLimits { .. } => "threshold-from-limits",
            MeasurementCount { .. } => "measurement-count",
            MeasurementCadence { .. } => "measurement-cadence",
            ArgumentUnresolved { .. } => "argument-unresolved",
            ArgumentFromField { .. } => "argument-from-field",
            ArgumentNamesArgoService { .. } => "argument-names-argo-service",
            QueryDoesNotRender { .. } => "query-does-not-render",
            ClusterTemplateCopied { .. } => "cluster-template-copied",
            ClusterTemplateUnreferenced => "cluster-template-unreferenced",
            MetricRenamed { .. } => "metric-renamed",
        }
    }

    /// What happened, and why.
    pub fn message(&self) -> String {
        use Reason::*;
        match self {
            NotAnObject => "this document is not a Kubernetes object (a mapping with kind and metadata.name); it is left out".into(),
            UnsupportedKind { kind } => format!("{kind} has no Flagger counterpart; it is left out"),
            DuplicateObject { kind, name } => {
                format!("another {kind} named {name} is already in the output; this one is left out")
            }
            NoPodTemplate => "the Rollout has neither spec.template nor spec.workloadRef: there is no Deployment to roll out".into(),
            InvalidPodTemplate { error } => format!("spec.template is not a pod template ({error}); no Deployment was written"),
            PodTemplateFieldsDropped { paths } => format!(
                "these fields of the pod template are unknown to Kubernetes' Deployment and were left out: {}",
                list(paths)
            ),
            NoSelector => "the Rollout has no spec.selector; the Deployment selects the pod template's labels".into(),
            WorkloadRefKind { kind } => format!(
                "workloadRef names a {kind}; a Canary's target is a Deployment (or a DaemonSet), so the Canary targets a Deployment of that name"
            ),
            WorkloadRefScaled { deployment, replicas } => format!(
                "the Deployment {deployment} is the Canary's target; its spec.replicas is set to the Rollout's {replicas} (Argo ran the pods through the Rollout, Veer sizes the primary from the target)"
            ),
            WorkloadRefNotInInput { deployment, replicas } => match replicas {
                Some(n) => format!(
                    "the Deployment {deployment} is the Canary's target but not in the input; Veer sizes the primary from its spec.replicas, which Argo kept at 0 while the Rollout ran {n} pods"
                ),
                None => format!("the Deployment {deployment} is the Canary's target but not in the input"),
            },
            NoSelectorLabel { keys } => format!(
                "the selector has none of the labels Veer tells primary and canary pods apart with ({}); the Canary would stall",
                list(keys)
            ),
            RollingUpdateParameters => "maxSurge/maxUnavailable became the Deployment's rolling update parameters; Veer copies them to the primary, where they pace the promotion".into(),
            ProgressDeadlineAborts { seconds } => format!(
                "after {seconds}s without progress Argo only marked the Rollout degraded (progressDeadlineAbort is not true); Veer rolls the canary back"
            ),
            AutoscalerRetargeted { hpa, deployment } => format!(
                "the HorizontalPodAutoscaler {hpa} now scales the Deployment {deployment} and is the Canary's autoscalerRef (Veer gives the primary a copy)"
            ),
            AutoscalerVersion { hpa, api_version } => format!(
                "the HorizontalPodAutoscaler {hpa} is {api_version}; Veer copies autoscaling/v2 autoscalers only, so it is not the Canary's autoscalerRef"
            ),
            ServiceAdopted { service, role, generated } => match generated {
                GeneratedService::Apex => format!(
                    "the {} {service} is the Service clients call: the Canary's service.name, so Veer keeps the name and takes the Service over (its selector and port); it is left out of the output",
                    role.field()
                ),
                GeneratedService::Primary | GeneratedService::Canary => format!(
                    "the {} {service} has the name of the {} Service Veer generates: Veer takes it over (its selector and port); it is left out of the output",
                    role.field(),
                    if *generated == GeneratedService::Primary { "primary" } else { "canary" }
                ),
            },
            ServiceReplaced { service, role, replacement } => format!(
                "the {} {service} has no place in Flagger's model: Veer generates {replacement} for that role; it is left out of the output",
                role.field()
            ),
            ServicePortUnknown { port } => format!(
                "no Service of the Rollout is in the input and the pod template declares no port; the Canary uses port {port}"
            ),
            ServiceExtraPorts { service, ports } => format!(
                "the Service {service} has {ports} ports; Flagger's Services have the main port plus, with service.portDiscovery (set), every container port under its own number"
            ),
            NoTrafficRouting => "without trafficRouting Argo approximated the weights with replica counts; Flagger always splits traffic through a mesh or an ingress, so the Canary's provider is left to the controller's --mesh-provider".into(),
            TrafficRouterUnsupported { router, flagger } => match flagger {
                Some(p) => format!(
                    "trafficRouting.{router}: Flagger routes it as provider {p}, which Veer does not drive yet; the Canary has no provider"
                ),
                None => format!("trafficRouting.{router} has no Flagger provider; the Canary has no provider"),
            },
            SeveralTrafficRouters { used, others } => {
                format!("several traffic routers; the Canary uses {used} and not {}", list(others))
            }
            RoutingObjectAdopted { kind, name } => format!(
                "Argo steered traffic with the {kind} {name}, which has the name of the one Veer generates: Veer takes it over and rewrites its spec"
            ),
            RoutingObjectReplaced { kind, name, replacement } => format!(
                "Argo steered traffic with the {kind} {name}; Veer generates {replacement} instead, and the two would route the same hosts"
            ),
            VirtualServiceNotInInput { name } => format!(
                "the VirtualService {name} is not in the input, so its hosts, gateways and route settings are not in the Canary; Veer's VirtualService serves the mesh only"
            ),
            SeveralVirtualServices { names } => format!(
                "Argo split traffic in several VirtualServices ({}); Veer generates one, with all their hosts and gateways",
                list(names)
            ),
            OtherRoutesDropped { virtual_service, routes } => format!(
                "the VirtualService {virtual_service} has routes besides the canary's ({}); Veer's VirtualService has one route, so they are not in the Canary",
                list(routes)
            ),
            RouteFieldsDropped { virtual_service, fields } => format!(
                "the canary's route of the VirtualService {virtual_service} sets {}, which Flagger's route does not carry",
                list(fields)
            ),
            SeveralRoutes { virtual_service, routes } => format!(
                "Argo weighted several routes of {virtual_service} ({}); Veer's one route takes the match, timeout, retries and rewrite of the first",
                list(routes)
            ),
            TcpRoutes => "tcpRoutes: the Canary routes TCP (service.appProtocol: tcp), one route for all ports".into(),
            SeveralStableIngresses { used, others } => format!(
                "Argo split traffic in several Ingresses; the Canary's ingressRef is {used}, not {}",
                list(others)
            ),
            IngressBackend { ingress, service } => format!(
                "the Ingress {ingress} does not send traffic to the Service {service}; Veer's NGINX router copies the Ingress rules that do, and finds none"
            ),
            SmiVersion { provider } => format!(
                "Argo writes SMI TrafficSplits as v1alpha1 unless its controller ran with --traffic-split-api-version; the Canary's provider is {provider}"
            ),
            NoSetWeight => "no setWeight step: Argo replaced the pods like a Deployment; the Canary sends all traffic to the canary in one step (stepWeights [100]) before promoting it".into(),
            WeightNotIncreasing { weight, previous } => format!(
                "setWeight {weight} comes after {previous}; Flagger's weights only grow, so this step is left out"
            ),
            ZeroWeight => "setWeight 0 is the weight before the first step in Flagger; the step is left out".into(),
            WeightAbove100 { weight } => format!("setWeight {weight} is above 100; the Canary uses 100"),
            WeightsScaled { max_traffic_weight } => format!(
                "maxTrafficWeight is {max_traffic_weight}: the weights were converted to percentages and rounded"
            ),
            PauseDurationsDiffer { interval, dwell } => format!(
                "Argo held the weights for different times ({}); Flagger holds each for one interval: {interval}, the most common",
                dwell.iter().map(|(w, d)| format!("{w}%: {d}")).collect::<Vec<_>>().join(", ")
            ),
            IntervalChosen { interval, source } => match source {
                IntervalSource::MetricInterval => format!(
                    "no timed pause; the analysis interval is {interval}, the shortest measurement interval of the metrics"
                ),
                IntervalSource::FlaggerDefault => format!(
                    "no timed pause and no metric interval; the analysis interval is {interval}, Flagger's default"
                ),
            },
            IntervalBelowMinimum { interval } => format!(
                "an interval of {interval} is below Veer's minimum analysis interval (--min-analysis-interval, default 10s), which Veer then uses"
            ),
            IntervalCapped { from, to } => format!("{from} is longer than the longest analysis interval, {to}, which the Canary uses"),
            InvalidDuration { value, error } => format!("{value:?} is not a duration ({error}); it is left out"),
            PauseGate { gate, url, .. } => format!(
                "{} becomes a {} webhook to the load tester gate {url}; Veer waits there until the gate is open, and a post-rollout webhook closes it again so that the next release waits too",
                match gate {
                    Gate::ConfirmRollout => "the indefinite pause before the first weight",
                    Gate::ConfirmTrafficIncrease => "the indefinite pause",
                    Gate::ConfirmPromotion => "the wait for a manual promotion (kubectl argo rollouts promote)",
                },
                gate.webhook_type()
            ),
            PauseGateMidway { url } => format!(
                "an indefinite pause between two weights becomes a confirm-traffic-increase webhook to {url}: Flagger asks before every weight increase (the first one too), not at this step only"
            ),
            SharedGate { gates } => format!(
                "{} ask the same load tester gate (one per Canary): once opened, it lets every one of them pass",
                gates.iter().map(|g| g.webhook_type()).collect::<Vec<_>>().join(" and ")
            ),
            StepAnalysis => "an analysis step ran its metrics at this step only; Flagger checks every metric at every step".into(),
            AnalysisStartingStep { step } => format!(
                "the background analysis started at step {step}; Flagger checks the metrics from the first step"
            ),
            NoEquivalent(f) => f.message().into(),
            UnknownStep { keys } => format!("a step of an unknown kind ({}); it is left out", list(keys)),
            AutoPromotionRounded { seconds, iterations, interval } => format!(
                "autoPromotionSeconds {seconds} is not a multiple of the interval {interval}: the Canary promotes after {iterations} iterations"
            ),
            PostPromotionAnalysis => "Flagger has no analysis after the switch; the post-promotion metrics are checked before it, on the canary".into(),
            TemplateNotInInput { name, cluster_scope } => format!(
                "the {} {name} is not in the input, so its metrics are not in the Canary",
                if *cluster_scope { "ClusterAnalysisTemplate" } else { "AnalysisTemplate" }
            ),
            ProviderUnsupported { metric, provider, in_flagger } => {
                if *in_flagger {
                    format!(
                        "metric {metric} queries {provider}; Flagger has a {provider} MetricTemplate provider, which Veer does not run yet, so no MetricTemplate was written"
                    )
                } else {
                    format!("metric {metric} queries {provider}, which Flagger cannot query; no MetricTemplate was written")
                }
            }
            JobMetric { metric } => format!("metric {metric} runs a Kubernetes Job; Flagger's checks are queries and webhooks"),
            WebMetric { metric, url } => format!(
                "metric {metric} reads a value from {} and judges it; a Flagger webhook POSTs Flagger's payload and passes on HTTP 200-202, without a condition on the body",
                url.as_deref().unwrap_or("a URL")
            ),
            NoProvider { metric } => format!("metric {metric} has no provider"),
            PrometheusAddressMissing { metric } => format!("metric {metric} has no Prometheus address, which a MetricTemplate needs"),
            AddressNeedsArgument { metric, field, arg } => format!(
                "the {field} of metric {metric} uses the argument {arg}, which has no default in the template; a MetricTemplate's provider takes no variables"
            ),
            QueryNotTemplate { metric, error } => format!(
                "the query of metric {metric} is not a template Veer can render once its arguments are variables: {error}"
            ),
            ConditionUnmapped { metric, field, condition, why } => format!(
                "the {} of metric {metric}, {condition:?}, has no thresholdRange: {why}; the metric is left out of the Canary",
                field.field()
            ),
            StrictBound { metric, condition, bound } => format!(
                "with {condition:?} (metric {metric}) the value {bound} itself does not pass; Flagger's thresholdRange bounds are inclusive, so it passes there"
            ),
            NoDataPasses { metric, condition } => format!(
                "{condition:?} (metric {metric}) lets a measurement without data pass; Flagger counts a query without data as a failed check"
            ),
            Inconclusive { metric } => format!(
                "metric {metric} has both conditions, and values between them were inconclusive (pausing the rollout); Flagger fails every value outside the successCondition's range"
            ),
            ThresholdFromLimits { threshold, limits } => format!(
                "the metrics allow different numbers of failures ({}); Flagger counts failed checks for the whole Canary: threshold {threshold}, from the smallest failureLimit",
                limits.iter().map(|(m, l)| format!("{m}: {l}")).collect::<Vec<_>>().join(", ")
            ),
            MeasurementCount { metric, count } => format!(
                "metric {metric} was measured {count} times; Flagger measures it at every analysis step until the promotion"
            ),
            MeasurementCadence { metric, argo, flagger } => format!(
                "metric {metric} was measured every {argo}; Flagger measures every analysis interval, {flagger} (the metric's interval is kept as its {{{{ interval }}}})"
            ),
            ArgumentUnresolved { metric, arg, problem } => {
                let why = match problem {
                    ArgProblem::Missing => "neither the Rollout nor the template gives it a value".to_string(),
                    ArgProblem::PodTemplateHash(which) => format!(
                        "it is the pod template hash of the {which} ReplicaSet, which only exists at run time in Argo"
                    ),
                    ArgProblem::Secret { name, key } => format!("it is read from the Secret {name} (key {key}) at run time"),
                    ArgProblem::Field(path) => format!("it is read from {path} of the Rollout at run time"),
                };
                format!("the argument {arg} of metric {metric} has no value for the Canary: {why}; the metric is left out")
            }
            ArgumentFromField { arg, field_path, value } => format!(
                "the argument {arg} reads {field_path} of the Rollout: {value:?}, fixed now rather than read at each run"
            ),
            ArgumentNamesArgoService { arg, service, role, replacement } => format!(
                "the argument {arg} names the {} {service}; with Veer that traffic goes to {replacement}",
                role.field()
            ),
            QueryDoesNotRender { metric, error } => format!(
                "the query of metric {metric} does not render with the Canary's variables ({error}); the metric is left out"
            ),
            ClusterTemplateCopied { namespace } => match namespace {
                Some(ns) => format!(
                    "MetricTemplates are namespaced: the ClusterAnalysisTemplate's metrics are written as MetricTemplates in {ns}, the namespace of the Rollout that uses them"
                ),
                None => "MetricTemplates are namespaced: the ClusterAnalysisTemplate's metrics are written as MetricTemplates without a namespace, next to the Rollout that uses them".into(),
            },
            ClusterTemplateUnreferenced => "no Rollout of the input uses this ClusterAnalysisTemplate; its MetricTemplates are written without a namespace".into(),
            MetricRenamed { from, to } => format!("two metrics are named {from}; the second is {to} in the Canary"),
        }
    }

    /// What to do instead (empty when nothing is needed).
    pub fn hint(&self) -> String {
        use Reason::*;
        match self {
            NotAnObject | UnsupportedKind { .. } | DuplicateObject { .. } => String::new(),
            NoPodTemplate => "Write a Deployment for the workload and point the Canary's targetRef at it".into(),
            InvalidPodTemplate { .. } => "Fix spec.template and convert again".into(),
            PodTemplateFieldsDropped { .. } => "Check the field names; a newer Kubernetes field needs a newer Veer".into(),
            NoSelector => "Check the Deployment's spec.selector".into(),
            WorkloadRefKind { kind } => format!("Turn the {kind} into a Deployment with the Canary's targetRef name"),
            WorkloadRefScaled { .. } => String::new(),
            WorkloadRefNotInInput { deployment, replicas } => match replicas {
                Some(n) => format!("Scale it as Argo did before applying the Canary: kubectl scale deployment {deployment} --replicas {n} (and set replicas: {n} where you keep its manifest)"),
                None => format!("Make sure {deployment} has the replicas it should run"),
            },
            NoSelectorLabel { keys } => format!(
                "Add one of {} to spec.selector.matchLabels and the pod labels, or start Veer with --selector-labels naming yours",
                list(keys)
            ),
            RollingUpdateParameters => String::new(),
            ProgressDeadlineAborts { .. } => "Raise spec.progressDeadlineSeconds on the Canary if the canary needs longer to become ready".into(),
            AutoscalerRetargeted { .. } => String::new(),
            AutoscalerVersion { .. } => "Rewrite it as autoscaling/v2 and set the Canary's autoscalerRef".into(),
            ServiceAdopted { service, .. } => format!(
                "Remove the Service {service} from your manifests, but do not delete it from the cluster: Veer owns it now (its whole selector, Argo's rollouts-pod-template-hash included, is replaced)"
            ),
            ServiceReplaced { service, .. } => format!(
                "Delete the Service {service} once the Rollout is gone, and remove it from your manifests"
            ),
            ServicePortUnknown { .. } => "Set service.port (and targetPort) on the Canary".into(),
            ServiceExtraPorts { .. } => "Check that clients use the first port, or call the other ports by their container port numbers".into(),
            NoTrafficRouting => "Set spec.provider to your mesh or ingress (istio, nginx, linkerd, gatewayapi:v1, ...); with provider kubernetes the Canary becomes Blue/Green".into(),
            TrafficRouterUnsupported { .. } => "Route through a provider Veer drives (istio, nginx, linkerd, smi, gatewayapi:v1, kubernetes) and set spec.provider".into(),
            SeveralTrafficRouters { .. } => "Write a Canary per router if you need each of them".into(),
            RoutingObjectAdopted { kind, name } => format!(
                "Remove the {kind} {name} from your manifests, but do not delete it from the cluster: Veer owns it now"
            ),
            RoutingObjectReplaced { kind, name, .. } => format!(
                "Delete the {kind} {name} once the Canary is initialized, and remove it from your manifests"
            ),
            VirtualServiceNotInInput { .. } => "Add the VirtualService to the input, or set service.hosts and service.gateways on the Canary".into(),
            SeveralVirtualServices { .. } => String::new(),
            OtherRoutesDropped { .. } => "Move those routes into a VirtualService of their own (another host), or delegate (service.delegation)".into(),
            RouteFieldsDropped { .. } => "Keep what you need in a VirtualService of your own, outside the Canary".into(),
            SeveralRoutes { .. } => "Check service.match on the Canary".into(),
            TcpRoutes => String::new(),
            SeveralStableIngresses { .. } => "Write a Canary per Ingress if you need each of them".into(),
            IngressBackend { ingress, service } => format!("Point the Ingress {ingress} at the Service {service}"),
            SmiVersion { .. } => "On Linkerd use provider linkerd; if Argo ran with --traffic-split-api-version, use smi:<that version>".into(),
            NoSetWeight => "Set analysis.stepWeights on the Canary for a gradual shift".into(),
            WeightNotIncreasing { .. } | ZeroWeight | WeightAbove100 { .. } | WeightsScaled { .. } => String::new(),
            PauseDurationsDiffer { .. } => "Adjust analysis.interval if another one suits better".into(),
            IntervalChosen { .. } => "Adjust analysis.interval if another one suits better".into(),
            IntervalBelowMinimum { .. } => "Start Veer with a lower --min-analysis-interval if you need it".into(),
            IntervalCapped { .. } => String::new(),
            InvalidDuration { .. } => "Use a duration like 30s, 10m or 1h".into(),
            PauseGate { url, namespace_assumed, .. } => {
                let open = url.strip_suffix("check").map(|base| format!("{base}open")).unwrap_or_else(|| url.clone());
                let mut hint = format!(
                    "Install the load tester (charts/veer-loadtester, release flagger-loadtester) and approve with: curl -d '{{\"name\": \"<canary>\", \"namespace\": \"<namespace>\"}}' {open}"
                );
                if *namespace_assumed {
                    hint.push_str(". The Rollout has no namespace, so the URL assumes the load tester in `default`: pass --namespace or --loadtester-url");
                }
                hint
            }
            PauseGateMidway { .. } => "Open the gate when the canary may go on; it then stays open for the rest of the run".into(),
            SharedGate { .. } => String::new(),
            StepAnalysis | AnalysisStartingStep { .. } => String::new(),
            NoEquivalent(f) => f.hint().into(),
            UnknownStep { .. } => String::new(),
            AutoPromotionRounded { .. } => "Adjust analysis.iterations or interval".into(),
            PostPromotionAnalysis => "For checks after the switch, add a post-rollout webhook".into(),
            TemplateNotInInput { .. } => "Add the template to the input and convert again".into(),
            ProviderUnsupported { .. } => "Expose the metric to Prometheus (most of these backends can), and write a prometheus MetricTemplate".into(),
            JobMetric { .. } => "Run the check from a pre-rollout or rollout webhook (the load tester's bash or kubectl tasks, turned on with --allow-shell), or serve it as a Prometheus metric".into(),
            WebMetric { url, .. } => format!(
                "Put a small endpoint in front of it that answers 200 when the check passes and 500 when it fails, and add it to the Canary: webhooks: [{{name: <metric>, type: rollout, url: {}}}]",
                url.as_deref().unwrap_or("<url>")
            ),
            NoProvider { .. } => String::new(),
            PrometheusAddressMissing { .. } => "Set provider.address on the MetricTemplate".into(),
            AddressNeedsArgument { arg, .. } => format!("Give {arg} a default value in the template, or write the address into the MetricTemplate"),
            QueryNotTemplate { .. } => "Write the query as a MetricTemplate by hand (docs/metrics.md lists the template syntax)".into(),
            ConditionUnmapped { .. } => "Add the metric to the Canary with the thresholdRange (min, max) that should pass".into(),
            StrictBound { .. } => "Nudge the bound if the value itself must fail".into(),
            NoDataPasses { .. } => "Make the query answer 0 without traffic (… or vector(0)) if no data should pass, or send test traffic with a load test webhook".into(),
            Inconclusive { .. } => String::new(),
            ThresholdFromLimits { .. } => "Adjust analysis.threshold".into(),
            MeasurementCount { .. } | MeasurementCadence { .. } => String::new(),
            ArgumentUnresolved { problem, arg, .. } => match problem {
                ArgProblem::PodTemplateHash(_) => "Select the canary's pods by their Deployment instead: {{ target }} (canary) and {{ target }}-primary (primary), e.g. pod=~\"{{ target }}-[0-9a-z]+-[0-9a-z]+\"".into(),
                ArgProblem::Secret { .. } => "Write the value into the MetricTemplate, or move the credential into provider.secretRef".into(),
                ArgProblem::Missing | ArgProblem::Field(_) => format!("Add {arg} to the metric's templateVariables in the Canary"),
            },
            ArgumentFromField { .. } => "Update the Canary's templateVariables when that field changes".into(),
            ArgumentNamesArgoService { .. } => "Check the query: {{ service }} is the apex Service, the canary is {{ service }}-canary and the primary {{ service }}-primary".into(),
            QueryDoesNotRender { .. } => "Fix the templateVariables or the query".into(),
            ClusterTemplateCopied { .. } => String::new(),
            ClusterTemplateUnreferenced => "Apply them in the namespaces of the Canaries that use them, or reference them with templateRef.namespace".into(),
            MetricRenamed { .. } => String::new(),
        }
    }
}
