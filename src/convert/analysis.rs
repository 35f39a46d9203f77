//! AnalysisTemplates and ClusterAnalysisTemplates to MetricTemplates, and the analysis a Rollout
//! asks for (background, step, pre- and post-promotion) to the Canary's `metrics`.
//!
//! A template is converted once ([`Template::convert`]): each Prometheus metric becomes a
//! MetricTemplate whose query reads the template's arguments as Flagger variables
//! (`{{args.x}}` -> `{{ variables.x }}`, or `{{ index variables "x-y" }}` for names that are not
//! Go identifiers). What depends on the Rollout (argument values, conditions, limits and
//! intervals, which may use arguments too) is resolved per use ([`canary_metrics`]).

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;

use super::{
    Ctx, Doc, DocKind, Object, condition,
    json::{self, array_at, at, str_at},
    report::{ArgProblem, ConditionField, Entry, Feature, Reason, ServiceRole, SourceRef},
};
use crate::api::{
    CanaryMetric, CrossNamespaceRef, MetricProvider, MetricTemplate, MetricTemplateSpec, ThresholdRange,
};

/// The default of an argument a template declares.
#[derive(Clone, Debug, PartialEq)]
enum ArgDefault {
    None,
    Value(String),
    Secret { name: String, key: String },
    Field(String),
}

/// A converted Prometheus metric.
#[derive(Clone, Debug)]
pub(crate) struct PromMetric {
    /// The MetricTemplate's name.
    pub name: String,
    pub spec: MetricTemplateSpec,
    /// The arguments the query reads, now variables.
    pub query_args: Vec<String>,
}

/// One metric of a template.
#[derive(Clone, Debug)]
pub(crate) struct TemplateMetric {
    pub index: usize,
    pub name: String,
    pub value: Value,
    /// Its MetricTemplate, when it has one.
    pub prometheus: Option<PromMetric>,
}

/// A converted AnalysisTemplate or ClusterAnalysisTemplate.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    pub source: SourceRef,
    pub metrics: Vec<TemplateMetric>,
    args: Vec<(String, ArgDefault)>,
    /// `spec.templates`: (name, clusterScope, path).
    includes: Vec<(String, bool, String)>,
    /// What does not map, reported once at the template.
    pub report: Vec<Entry>,
}

/// Metric providers Flagger has MetricTemplate types for (which Veer does not run yet).
const FLAGGER_PROVIDERS: [(&str, &str); 5] = [
    ("datadog", "datadog"),
    ("newRelic", "newrelic"),
    ("cloudWatch", "cloudwatch"),
    ("graphite", "graphite"),
    ("influxdb", "influxdb"),
];

impl Template {
    pub fn convert(doc: &Doc) -> Template {
        let spec = doc.value.get("spec").unwrap_or(&Value::Null);
        let mut report = Vec::new();
        let args = declared_args(spec);
        let defaults: BTreeMap<String, String> = args
            .iter()
            .filter_map(|(n, d)| match d {
                ArgDefault::Value(v) => Some((n.clone(), v.clone())),
                _ => None,
            })
            .collect();
        let raw_metrics = array_at(spec, &["metrics"]);
        let mut metrics = Vec::new();
        for (i, m) in raw_metrics.iter().enumerate() {
            let path = format!("spec.metrics[{i}]");
            let name = str_at(m, &["name"]).map(str::to_string).unwrap_or_else(|| format!("metric-{i}"));
            let provider = at(m, &["provider"]);
            let keys: Vec<&String> =
                provider.and_then(Value::as_object).map(|o| o.keys().collect()).unwrap_or_default();
            let mut prometheus = None;
            match keys.first().map(|k| k.as_str()) {
                None => report.push(doc.entry(&path, Reason::NoProvider { metric: name.clone() })),
                Some("prometheus") => {
                    let p = &provider.unwrap_or(&Value::Null)["prometheus"];
                    let mt_name = metric_template_name(&doc.name, &name, raw_metrics.len());
                    prometheus = prometheus_metric(doc, &path, &name, mt_name, p, &defaults, &mut report);
                    if prometheus.is_some() {
                        metric_features(doc, &path, m, &mut report);
                        // Conditions without arguments are judged here too, so that a template
                        // no Rollout of the input uses is reported as well.
                        let cond = |k: &str| str_at(m, &[k]).filter(|c| !c.contains("{{"));
                        let (s, f) = (cond("successCondition"), cond("failureCondition"));
                        let with_args = |k: &str| str_at(m, &[k]).is_some_and(|c| c.contains("{{"));
                        if !with_args("successCondition") && !with_args("failureCondition") {
                            threshold_range(&doc.source(), &path, &name, s, f, &mut report);
                        }
                    }
                }
                Some("job") => report.push(
                    doc.entry(format!("{path}.provider.job"), Reason::JobMetric { metric: name.clone() }),
                ),
                Some("web") => {
                    let url = str_at(m, &["provider", "web", "url"]).map(|u| {
                        substitute(u, |n| defaults.get(n).cloned().ok_or(ArgProblem::Missing))
                            .unwrap_or_else(|_| u.to_string())
                    });
                    report.push(doc.entry(
                        format!("{path}.provider.web"),
                        Reason::WebMetric { metric: name.clone(), url },
                    ))
                }
                Some(other) => {
                    let flagger = FLAGGER_PROVIDERS.iter().find(|(argo, _)| *argo == other);
                    report.push(doc.entry(
                        format!("{path}.provider.{other}"),
                        Reason::ProviderUnsupported {
                            metric: name.clone(),
                            provider: flagger.map_or(other, |(_, f)| *f).to_string(),
                            in_flagger: flagger.is_some(),
                        },
                    ))
                }
            }
            metrics.push(TemplateMetric { index: i, name, value: m.clone(), prometheus });
        }
        if !json::is_empty(at(spec, &["dryRun"])) {
            report.push(doc.entry("spec.dryRun", Reason::NoEquivalent(Feature::DryRun)));
        }
        if !json::is_empty(at(spec, &["measurementRetention"])) {
            report.push(
                doc.entry("spec.measurementRetention", Reason::NoEquivalent(Feature::MeasurementRetention)),
            );
        }
        let includes = array_at(spec, &["templates"])
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let name = str_at(t, &["templateName"])?.to_string();
                let cluster = at(t, &["clusterScope"]).and_then(Value::as_bool).unwrap_or(false);
                Some((name, cluster, format!("spec.templates[{i}]")))
            })
            .collect();
        Template { source: doc.source(), metrics, args, includes, report }
    }

    /// The template's MetricTemplates, in `namespace`.
    pub fn metric_templates(&self, namespace: Option<&str>) -> Vec<Object> {
        self.metrics
            .iter()
            .filter_map(|m| m.prometheus.as_ref())
            .map(|p| {
                let mut mt = MetricTemplate::new(&p.name, p.spec.clone());
                mt.metadata.namespace = namespace.map(str::to_string);
                Object::MetricTemplate(Box::new(mt))
            })
            .collect()
    }
}

fn declared_args(spec: &Value) -> Vec<(String, ArgDefault)> {
    array_at(spec, &["args"])
        .iter()
        .filter_map(|a| {
            let name = str_at(a, &["name"])?.to_string();
            let default = if let Some(v) = at(a, &["value"]).and_then(json::scalar_string) {
                ArgDefault::Value(v)
            } else if let Some(s) = at(a, &["valueFrom", "secretKeyRef"]) {
                ArgDefault::Secret {
                    name: str_at(s, &["name"]).unwrap_or_default().into(),
                    key: str_at(s, &["key"]).unwrap_or_default().into(),
                }
            } else if let Some(p) = str_at(a, &["valueFrom", "fieldRef", "fieldPath"]) {
                ArgDefault::Field(p.into())
            } else {
                ArgDefault::None
            };
            Some((name, default))
        })
        .collect()
}

/// The MetricTemplate of metric `metric` of template `template` (which has `count` metrics): the
/// template's name when it has one metric, else `<template>-<metric>`, as a DNS subdomain.
pub(crate) fn metric_template_name(template: &str, metric: &str, count: usize) -> String {
    let raw = if count <= 1 { template.to_string() } else { format!("{template}-{metric}") };
    let mut name: String = raw
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
        .collect();
    name.truncate(253);
    let trimmed = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() { "metric".into() } else { trimmed.to_string() }
}

fn prometheus_metric(
    doc: &Doc,
    path: &str,
    metric: &str,
    mt_name: String,
    p: &Value,
    defaults: &BTreeMap<String, String>,
    report: &mut Vec<Entry>,
) -> Option<PromMetric> {
    let path = format!("{path}.provider.prometheus");
    let by_default = |name: &str| defaults.get(name).cloned().ok_or(ArgProblem::Missing);
    let Some(address) = str_at(p, &["address"]) else {
        report.push(
            doc.entry(format!("{path}.address"), Reason::PrometheusAddressMissing { metric: metric.into() }),
        );
        return None;
    };
    let address = match substitute(address, by_default) {
        Ok(a) => a,
        Err((arg, _)) => {
            let reason = Reason::AddressNeedsArgument { metric: metric.into(), field: "address".into(), arg };
            report.push(doc.entry(format!("{path}.address"), reason));
            return None;
        }
    };
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, h) in array_at(p, &["headers"]).iter().enumerate() {
        let (Some(key), Some(value)) = (str_at(h, &["key"]), at(h, &["value"]).and_then(json::scalar_string))
        else {
            continue;
        };
        match substitute(&value, by_default) {
            Ok(v) => headers.entry(key.to_string()).or_default().push(v),
            Err((arg, _)) => {
                let reason = Reason::AddressNeedsArgument {
                    metric: metric.into(),
                    field: format!("header {key}"),
                    arg,
                };
                report.push(doc.entry(format!("{path}.headers[{i}]"), reason));
                return None;
            }
        }
    }
    let source = str_at(p, &["query"]).unwrap_or_default();
    let (query, query_args) = rewrite_query(source);
    if let Err(e) = crate::metrics::template::check(&query).and(if query.trim().is_empty() {
        Err(crate::metrics::template::TemplateError::Syntax { line: 1, message: "the query is empty".into() })
    } else {
        Ok(())
    }) {
        let reason = Reason::QueryNotTemplate { metric: metric.into(), error: e.to_string() };
        report.push(doc.entry(format!("{path}.query"), reason));
        return None;
    }
    if !json::is_empty(at(p, &["authentication"])) {
        report.push(doc.entry(
            format!("{path}.authentication"),
            Reason::NoEquivalent(Feature::PrometheusAuthentication),
        ));
    }
    if at(p, &["timeout"]).is_some() {
        report.push(doc.entry(format!("{path}.timeout"), Reason::NoEquivalent(Feature::PrometheusTimeout)));
    }
    if !json::is_empty(at(p, &["rangeQuery"])) {
        report.push(doc.entry(format!("{path}.rangeQuery"), Reason::NoEquivalent(Feature::RangeQuery)));
    }
    let provider = MetricProvider {
        type_: "prometheus".into(),
        address: Some(address),
        headers: (!headers.is_empty()).then_some(headers),
        insecure_skip_verify: at(p, &["insecure"]).and_then(Value::as_bool).filter(|b| *b),
        ..Default::default()
    };
    Some(PromMetric { name: mt_name, spec: MetricTemplateSpec { provider, query }, query_args })
}

/// Metric settings that have no Flagger counterpart (those that may use arguments are judged per
/// use, in [`canary_metrics`]).
fn metric_features(doc: &Doc, path: &str, m: &Value, report: &mut Vec<Entry>) {
    let set = |k: &str| at(m, &[k]).is_some_and(|v| json::int(v) != Some(0) && !json::is_empty(Some(v)));
    for (key, feature) in [
        ("initialDelay", Feature::InitialDelay),
        ("inconclusiveLimit", Feature::InconclusiveLimit),
        ("consecutiveErrorLimit", Feature::ConsecutiveErrorLimit),
        ("consecutiveSuccessLimit", Feature::ConsecutiveSuccessLimit),
    ] {
        if set(key) {
            report.push(doc.entry(format!("{path}.{key}"), Reason::NoEquivalent(feature)));
        }
    }
}

/// The `{{args.<name>}}` placeholders of `s` (spaces allowed inside the braces), each replaced by
/// what `f` makes of the name; other `{{ ... }}` text is kept as it is.
fn replace_args(
    s: &str,
    mut f: impl FnMut(&str) -> Result<String, ArgProblem>,
) -> Result<String, (String, ArgProblem)> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let inner = after[..end].trim();
        match inner.strip_prefix("args.") {
            Some(name)
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                out.push_str(&rest[..start]);
                out.push_str(&f(name).map_err(|p| (name.to_string(), p))?);
            }
            _ => out.push_str(&rest[..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `s` with every `{{args.x}}` replaced by the value `lookup` gives; the first argument without a
/// value is the error.
pub(crate) fn substitute(
    s: &str,
    lookup: impl FnMut(&str) -> Result<String, ArgProblem>,
) -> Result<String, (String, ArgProblem)> {
    replace_args(s, lookup)
}

/// The query with its arguments as Flagger variables, and the names of those arguments.
pub(crate) fn rewrite_query(s: &str) -> (String, Vec<String>) {
    let mut names: Vec<String> = Vec::new();
    let query = replace_args(s, |name| {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
        let ident = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        Ok(if ident {
            format!("{{{{ variables.{name} }}}}")
        } else {
            format!("{{{{ index variables {name:?} }}}}")
        })
    })
    .unwrap_or_else(|_| s.to_string());
    (query, names)
}

// ------------------------------------------------------------------------------------ uses

/// One analysis of a Rollout: a `RolloutAnalysis` object (templates and args) and its path.
pub(crate) struct Use<'a> {
    pub path: String,
    pub analysis: &'a Value,
}

/// An Argo Service of the Rollout, for spotting arguments that name it.
pub(crate) struct ArgoService {
    pub name: String,
    pub role: ServiceRole,
    /// Where its traffic goes with Veer.
    pub replacement: String,
}

/// A Canary metric and the query of its MetricTemplate.
pub(crate) struct BuiltMetric {
    pub metric: CanaryMetric,
    pub query: String,
    /// The path of the analysis it comes from, in the Rollout.
    pub use_path: String,
}

/// What the analyses of a Rollout give the Canary.
#[derive(Default)]
pub(crate) struct Metrics {
    pub metrics: Vec<BuiltMetric>,
    /// (metric, failureLimit) of each metric.
    pub failure_limits: Vec<(String, i64)>,
    /// (metric, measurement interval, path of the analysis in the Rollout).
    pub cadences: Vec<(String, Duration, String)>,
    /// ClusterAnalysisTemplates used, by name.
    pub cluster_templates: Vec<String>,
}

/// The Canary metrics of `rollout`'s analyses.
pub(crate) fn canary_metrics(
    ctx: &Ctx<'_>,
    rollout: &Doc,
    uses: &[Use<'_>],
    services: &[ArgoService],
    report: &mut Vec<Entry>,
) -> Metrics {
    let mut out = Metrics::default();
    for u in uses {
        let mut templates: Vec<&Template> = Vec::new();
        let mut seen: Vec<usize> = Vec::new();
        for (i, t) in array_at(u.analysis, &["templates"]).iter().enumerate() {
            let Some(name) = str_at(t, &["templateName"]) else { continue };
            let cluster = at(t, &["clusterScope"]).and_then(Value::as_bool).unwrap_or(false);
            let path = format!("{}.templates[{i}]", u.path);
            collect(
                ctx,
                rollout,
                name,
                cluster,
                &path,
                &mut templates,
                &mut seen,
                &mut out.cluster_templates,
                report,
            );
        }
        let rollout_args: BTreeMap<String, &Value> = array_at(u.analysis, &["args"])
            .iter()
            .filter_map(|a| Some((str_at(a, &["name"])?.to_string(), a)))
            .collect();
        let mut declared: BTreeMap<String, ArgDefault> = BTreeMap::new();
        for t in &templates {
            for (n, d) in &t.args {
                declared.entry(n.clone()).or_insert_with(|| d.clone());
            }
        }
        let mut from_fields: Vec<Entry> = Vec::new();
        let resolve = |name: &str, from_fields: &mut Vec<Entry>| -> Result<String, ArgProblem> {
            if let Some(a) = rollout_args.get(name) {
                if let Some(v) = at(a, &["value"]).and_then(json::scalar_string) {
                    return Ok(v);
                }
                if let Some(which) =
                    at(a, &["valueFrom", "podTemplateHashValue"]).and_then(json::scalar_string)
                {
                    return Err(ArgProblem::PodTemplateHash(which));
                }
                if let Some(p) = str_at(a, &["valueFrom", "fieldRef", "fieldPath"]) {
                    return match field(&rollout.value, p) {
                        Some(value) => {
                            let reason = Reason::ArgumentFromField {
                                arg: name.into(),
                                field_path: p.into(),
                                value: value.clone(),
                            };
                            from_fields.push(rollout.entry(format!("{}.args", u.path), reason));
                            Ok(value)
                        }
                        None => Err(ArgProblem::Field(p.into())),
                    };
                }
            }
            match declared.get(name) {
                Some(ArgDefault::Value(v)) => Ok(v.clone()),
                Some(ArgDefault::Secret { name, key }) => {
                    Err(ArgProblem::Secret { name: name.clone(), key: key.clone() })
                }
                Some(ArgDefault::Field(p)) => match field(&rollout.value, p) {
                    Some(v) => Ok(v),
                    None => Err(ArgProblem::Field(p.clone())),
                },
                Some(ArgDefault::None) | None => Err(ArgProblem::Missing),
            }
        };
        for t in &templates {
            for m in &t.metrics {
                let Some(p) = &m.prometheus else { continue };
                let mut lookup_log = Vec::new();
                let built = use_metric(
                    t,
                    m,
                    p,
                    &u.path,
                    rollout,
                    services,
                    &mut |n| resolve(n, &mut lookup_log),
                    report,
                );
                from_fields.append(&mut lookup_log);
                let Some((mut metric, limit, cadence)) = built else { continue };
                let base = metric.name.clone();
                let mut n = 2;
                while out.metrics.iter().any(|b| b.metric.name == metric.name) {
                    metric.name = format!("{base}-{n}");
                    n += 1;
                }
                if metric.name != base {
                    let reason = Reason::MetricRenamed { from: base, to: metric.name.clone() };
                    report.push(rollout.entry(u.path.clone(), reason));
                }
                if let Some(limit) = limit {
                    out.failure_limits.push((metric.name.clone(), limit));
                }
                if let Some(c) = cadence {
                    out.cadences.push((metric.name.clone(), c, u.path.clone()));
                }
                out.metrics.push(BuiltMetric {
                    metric,
                    query: p.spec.query.clone(),
                    use_path: u.path.clone(),
                });
            }
        }
        report.extend(from_fields);
    }
    out
}

/// Adds the template `name` and the templates it includes to `out`. A template met twice is
/// read once, as Argo does.
#[allow(clippy::too_many_arguments)]
fn collect<'c>(
    ctx: &'c Ctx<'_>,
    rollout: &Doc,
    name: &str,
    cluster: bool,
    path: &str,
    out: &mut Vec<&'c Template>,
    seen: &mut Vec<usize>,
    cluster_templates: &mut Vec<String>,
    report: &mut Vec<Entry>,
) {
    let doc = if cluster {
        ctx.find(DocKind::ClusterAnalysisTemplate, None, name)
    } else {
        ctx.find(DocKind::AnalysisTemplate, rollout.namespace.as_deref(), name)
    };
    let Some(doc) = doc else {
        report.push(
            rollout.entry(path, Reason::TemplateNotInInput { name: name.into(), cluster_scope: cluster }),
        );
        return;
    };
    if seen.contains(&doc.index) {
        return;
    }
    seen.push(doc.index);
    if cluster && !cluster_templates.iter().any(|n| n == name) {
        cluster_templates.push(name.into());
    }
    let t = ctx.template(doc.index);
    out.push(t);
    for (inner, inner_cluster, _) in &t.includes {
        collect(ctx, rollout, inner, *inner_cluster, path, out, seen, cluster_templates, report);
    }
}

/// A Prometheus metric as one Rollout uses it: the Canary metric, its failureLimit and its
/// measurement interval; `None` (reported) when it cannot be part of the Canary.
#[allow(clippy::too_many_arguments)]
fn use_metric(
    t: &Template,
    m: &TemplateMetric,
    p: &PromMetric,
    use_path: &str,
    rollout: &Doc,
    services: &[ArgoService],
    resolve: &mut dyn FnMut(&str) -> Result<String, ArgProblem>,
    report: &mut Vec<Entry>,
) -> Option<(CanaryMetric, Option<i64>, Option<Duration>)> {
    let at_template = |path: String, reason: Reason| Entry { object: t.source.clone(), path, reason };
    let mpath = format!("spec.metrics[{}]", m.index);
    let unresolved = |arg: String, problem: ArgProblem| {
        rollout.entry(
            format!("{use_path}.args"),
            Reason::ArgumentUnresolved { metric: m.name.clone(), arg, problem },
        )
    };
    let mut variables = BTreeMap::new();
    for arg in &p.query_args {
        match resolve(arg) {
            Ok(v) => {
                for s in services {
                    if names_service(&v, &s.name) {
                        let reason = Reason::ArgumentNamesArgoService {
                            arg: arg.clone(),
                            service: s.name.clone(),
                            role: s.role,
                            replacement: s.replacement.clone(),
                        };
                        report.push(rollout.entry(format!("{use_path}.args"), reason));
                    }
                }
                variables.insert(arg.clone(), v);
            }
            Err(problem) => {
                report.push(unresolved(arg.clone(), problem));
                return None;
            }
        }
    }
    // A field that may hold `{{args.x}}`, with the arguments substituted.
    let mut text = |key: &str| -> Result<Option<String>, ()> {
        let Some(v) = at(&m.value, &[key]).and_then(json::scalar_string) else { return Ok(None) };
        match substitute(&v, &mut *resolve) {
            Ok(s) => Ok(Some(s)),
            Err((arg, problem)) => {
                report.push(unresolved(arg, problem));
                Err(())
            }
        }
    };
    let success = text("successCondition").ok()?;
    let failure = text("failureCondition").ok()?;
    let interval = text("interval").ok()?;
    let failure_limit = text("failureLimit").ok()?;
    let count = text("count").ok()?;

    let range = threshold_range(&t.source, &mpath, &m.name, success.as_deref(), failure.as_deref(), report)?;
    let mut cadence = None;
    let mut metric_interval = None;
    if let Some(i) = interval.filter(|i| !i.is_empty()) {
        match crate::duration::parse(&i) {
            Ok(d) if !d.is_zero() => {
                cadence = Some(d);
                let capped = d.min(crate::api::limits::MAX_METRIC_INTERVAL);
                metric_interval = Some(json::flagger_duration(capped));
            }
            Ok(_) => {}
            Err(e) => report.push(at_template(
                format!("{mpath}.interval"),
                Reason::InvalidDuration { value: i.clone(), error: e.to_string() },
            )),
        }
    }
    let limit = match failure_limit.as_deref().map(|s| s.trim().parse::<i64>()) {
        None => Some(0),
        Some(Ok(-1)) => {
            report.push(at_template(
                format!("{mpath}.failureLimit"),
                Reason::NoEquivalent(Feature::FailureLimitDisabled),
            ));
            None
        }
        Some(Ok(n)) if n >= 0 => Some(n),
        Some(_) => {
            let value = failure_limit.unwrap_or_default();
            let reason =
                Reason::InvalidDuration { value, error: "failureLimit must be a whole number".into() };
            report.push(at_template(format!("{mpath}.failureLimit"), reason));
            Some(0)
        }
    };
    if let Some(c) = count.filter(|c| c.trim() != "0" && !c.is_empty()) {
        report.push(at_template(
            format!("{mpath}.count"),
            Reason::MeasurementCount { metric: m.name.clone(), count: c },
        ));
    }
    let metric = CanaryMetric {
        name: m.name.clone(),
        interval: metric_interval,
        threshold_range: Some(range),
        template_ref: Some(CrossNamespaceRef { name: p.name.clone(), namespace: None }),
        template_variables: (!variables.is_empty()).then_some(variables),
        ..Default::default()
    };
    Some((metric, limit, cadence))
}

/// The thresholdRange of a metric's conditions; `None` (reported) when they have none.
fn threshold_range(
    source: &SourceRef,
    mpath: &str,
    metric: &str,
    success: Option<&str>,
    failure: Option<&str>,
    report: &mut Vec<Entry>,
) -> Option<ThresholdRange> {
    let at_template = |field: ConditionField, reason: Reason| Entry {
        object: source.clone(),
        path: format!("{mpath}.{}", field.field()),
        reason,
    };
    let parse = |field: ConditionField,
                 text: &str,
                 report: &mut Vec<Entry>|
     -> Option<(condition::Expr, condition::Range)> {
        let parsed = condition::parse(text).and_then(|e| {
            let r = match field {
                ConditionField::Success => condition::success_range(&e),
                ConditionField::Failure => condition::failure_complement(&e),
            };
            r.map(|r| (e, r))
        });
        match parsed {
            Ok(x) => Some(x),
            Err(why) => {
                let reason =
                    Reason::ConditionUnmapped { metric: metric.into(), field, condition: text.into(), why };
                report.push(at_template(field, reason));
                None
            }
        }
    };
    let success = success.filter(|s| !s.trim().is_empty());
    let failure = failure.filter(|s| !s.trim().is_empty());
    let s = match success {
        Some(text) => Some((text, parse(ConditionField::Success, text, report)?)),
        None => None,
    };
    let f = match failure {
        Some(text) => Some((text, parse(ConditionField::Failure, text, report)?)),
        None => None,
    };
    let (field, text, expr, range) = match (&s, &f) {
        (Some((text, (e, r))), _) => (ConditionField::Success, *text, e, *r),
        (None, Some((text, (e, r)))) => (ConditionField::Failure, *text, e, *r),
        (None, None) => return Some(ThresholdRange::default()),
    };
    for b in [range.min, range.max].into_iter().flatten().filter(|b| b.strict) {
        let reason = Reason::StrictBound { metric: metric.into(), condition: text.into(), bound: b.value };
        report.push(at_template(field, reason));
    }
    if range.no_data_passes && expr.mentions_data() {
        report
            .push(at_template(field, Reason::NoDataPasses { metric: metric.into(), condition: text.into() }));
    }
    if let (Some((_, (_, sr))), Some((_, (_, fr)))) = (&s, &f)
        && (sr.min != fr.min || sr.max != fr.max)
    {
        report.push(at_template(ConditionField::Failure, Reason::Inconclusive { metric: metric.into() }));
    }
    Some(ThresholdRange { min: range.min.map(|b| b.value), max: range.max.map(|b| b.value) })
}

/// Whether `value` names the Service `service`: the name itself, or a DNS name or URL starting
/// with it.
fn names_service(value: &str, service: &str) -> bool {
    value.match_indices(service).any(|(i, _)| {
        let before = value[..i].chars().next_back();
        let after = value[i + service.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'));
        boundary(before) && boundary(after)
    })
}

/// The value of a `fieldRef` path in the Rollout as written: `metadata.name`,
/// `metadata.labels['env']`, `spec.template.metadata.labels.version`, ... (`status.*` is not in
/// a manifest, so `None`).
fn field(rollout: &Value, path: &str) -> Option<String> {
    let mut cur = rollout;
    let mut rest = path.trim();
    while !rest.is_empty() {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        let key;
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            key = r[..end].trim_matches(|c| c == '\'' || c == '"').to_string();
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            key = rest[..end].to_string();
            rest = &rest[end..];
        }
        cur = cur.get(&key)?;
    }
    json::scalar_string(cur)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn queries_read_arguments_as_variables() {
        let (q, args) = rewrite_query(
            r#"sum(rate(x{service=~"{{args.service-name}}", ns="{{ args.namespace }}", a="{{args.service-name}}"}[5m]))"#,
        );
        assert_eq!(
            q,
            r#"sum(rate(x{service=~"{{ index variables "service-name" }}", ns="{{ variables.namespace }}", a="{{ index variables "service-name" }}"}[5m]))"#
        );
        assert_eq!(args, ["service-name", "namespace"]);
        let (q, args) = rewrite_query("up{job=\"{{ other }}\"} {{args.x");
        assert_eq!(q, "up{job=\"{{ other }}\"} {{args.x");
        assert!(args.is_empty());
    }

    #[test]
    fn substitution_fails_on_the_first_argument_without_a_value() {
        let lookup = |n: &str| if n == "a" { Ok("1".to_string()) } else { Err(ArgProblem::Missing) };
        assert_eq!(substitute("x{{args.a}}y{{ args.a }}", lookup), Ok("x1y1".into()));
        assert_eq!(substitute("{{args.a}}:{{args.b}}", lookup), Err(("b".into(), ArgProblem::Missing)));
    }

    #[test]
    fn field_paths_of_the_rollout() {
        let r = json!({"metadata": {"name": "guestbook", "labels": {"env": "dev", "app.kubernetes.io/name": "gb"}},
                       "spec": {"template": {"metadata": {"labels": {"version": "1"}}}}});
        assert_eq!(field(&r, "metadata.name").as_deref(), Some("guestbook"));
        assert_eq!(field(&r, "metadata.labels['env']").as_deref(), Some("dev"));
        assert_eq!(field(&r, "metadata.labels.env").as_deref(), Some("dev"));
        assert_eq!(field(&r, "metadata.labels['app.kubernetes.io/name']").as_deref(), Some("gb"));
        assert_eq!(field(&r, "spec.template.metadata.labels.version").as_deref(), Some("1"));
        assert_eq!(field(&r, "status.alb.canaryTargetGroup.name"), None);
        assert_eq!(field(&r, "metadata.labels['env'"), None);
    }

    #[test]
    fn service_names_are_matched_as_whole_names() {
        assert!(names_service("guestbook-svc.default.svc.cluster.local", "guestbook-svc"));
        assert!(names_service("guestbook-svc", "guestbook-svc"));
        assert!(names_service("http://guestbook-svc:80/", "guestbook-svc"));
        assert!(!names_service("guestbook-svc-canary", "guestbook-svc"));
        assert!(!names_service("my-guestbook-svc", "guestbook-svc"));
    }

    #[test]
    fn metric_template_names_are_dns_names() {
        assert_eq!(metric_template_name("success-rate", "success-rate", 1), "success-rate");
        assert_eq!(metric_template_name("rates", "error_rate", 2), "rates-error-rate");
        assert_eq!(metric_template_name("Rates", "P99 Latency", 2), "rates-p99-latency");
    }
}
