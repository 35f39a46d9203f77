//! `veer convert`: Argo Rollouts objects as they are written today (Rollout, AnalysisTemplate,
//! ClusterAnalysisTemplate, and the Services, VirtualServices, DestinationRules, Ingresses,
//! Deployments and HorizontalPodAutoscalers they name) to what Veer runs: a Deployment, a
//! `flagger.app/v1beta1` Canary and MetricTemplates, plus a report of everything that does not
//! map, field by field ([`report`]). User-facing documentation: `docs/migrate-from-argo-rollouts.md`.
//!
//! [`convert`] is pure: documents in, objects and report out. The output objects are Veer's own
//! API types (and k8s-openapi's Deployment), so they are valid by construction; each metric query
//! is rendered with Veer's template renderer before it goes into a Canary. The command (reading
//! files, printing YAML, the exit status) is `cli.rs` ([`run`]).
//!
//! What happens to each input document, in input order:
//!
//! | document | output |
//! |---|---|
//! | `Rollout` | a Deployment (from `spec.template`; none with `workloadRef`) and a Canary |
//! | `AnalysisTemplate` | a MetricTemplate per Prometheus metric |
//! | `ClusterAnalysisTemplate` | a MetricTemplate per Prometheus metric, in each namespace of a Rollout that uses it |
//! | a Service, VirtualService, DestinationRule or TrafficSplit a Rollout names | left out: Veer generates its own (reported) |
//! | the Deployment of a `workloadRef` | kept, with the Rollout's replicas |
//! | a HorizontalPodAutoscaler of a Rollout | kept, scaling the Deployment |
//! | another `argoproj.io` kind (Experiment, AnalysisRun, ...) | left out (reported) |
//! | anything else | unchanged |

mod analysis;
mod cli;
mod condition;
mod json;
pub mod report;
mod rollout;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value;

pub use cli::{ConvertArgs, ReportFormat, json_report, run, text_report};
pub use report::{Entry, Level, Reason, SourceRef};

use crate::api::{Canary, MetricTemplate};

/// Settings of a conversion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Base URL of the load tester that holds the manual gates (`http://flagger-loadtester.<ns>/`
    /// by default, `<ns>` being the Rollout's namespace, else [`Options::namespace`], else
    /// `default`).
    pub loadtester_url: Option<String>,
    /// The namespace the output will be applied in, for objects without one. Used in the load
    /// tester's URL only; objects keep the namespace they have (or none).
    pub namespace: Option<String>,
}

/// An output object.
#[derive(Clone, Debug)]
pub enum Object {
    Deployment(Box<Deployment>),
    Canary(Box<Canary>),
    MetricTemplate(Box<MetricTemplate>),
    /// An input object, unchanged or adjusted (the Deployment of a `workloadRef`, an HPA).
    Kept(Value),
}

impl Object {
    /// The object as JSON.
    pub fn to_value(&self) -> Value {
        let v = match self {
            Object::Deployment(d) => serde_json::to_value(d),
            Object::Canary(c) => serde_json::to_value(c),
            Object::MetricTemplate(m) => serde_json::to_value(m),
            Object::Kept(v) => Ok(v.clone()),
        };
        v.unwrap_or_else(|e| Value::String(format!("unserializable object: {e}")))
    }

    /// The object as YAML (one document, without `---`).
    pub fn to_yaml(&self) -> String {
        let r = match self {
            Object::Deployment(d) => serde_saphyr::to_string(d.as_ref()),
            Object::Canary(c) => serde_saphyr::to_string(c.as_ref()),
            Object::MetricTemplate(m) => serde_saphyr::to_string(m.as_ref()),
            Object::Kept(v) => serde_saphyr::to_string(v),
        };
        r.unwrap_or_else(|e| format!("# unserializable object: {e}\n"))
    }

    fn kind_and_name(&self) -> (String, String) {
        let v = self.to_value();
        let s = |p: &[&str]| json::str_at(&v, p).unwrap_or_default().to_string();
        (s(&["kind"]), format!("{}/{}", s(&["metadata", "namespace"]), s(&["metadata", "name"])))
    }
}

/// The result of a conversion.
#[derive(Clone, Debug, Default)]
pub struct Conversion {
    /// The output objects, in the order of the input documents they come from.
    pub objects: Vec<Object>,
    /// Everything that did not map as is, in the order of the input.
    pub report: Vec<Entry>,
}

impl Conversion {
    /// The output as a multi-document YAML stream.
    pub fn to_yaml(&self) -> String {
        self.objects.iter().map(|o| format!("---\n{}", o.to_yaml())).collect()
    }

    /// The most serious level in the report, if any.
    pub fn worst(&self) -> Option<Level> {
        self.report.iter().map(Entry::level).max()
    }

    /// Whether everything mapped: the report holds `info` entries at most.
    pub fn complete(&self) -> bool {
        self.worst().is_none_or(|l| l == Level::Info)
    }

    /// The Canaries of the output.
    pub fn canaries(&self) -> impl Iterator<Item = &Canary> {
        self.objects.iter().filter_map(|o| match o {
            Object::Canary(c) => Some(c.as_ref()),
            _ => None,
        })
    }

    /// The MetricTemplates of the output.
    pub fn metric_templates(&self) -> impl Iterator<Item = &MetricTemplate> {
        self.objects.iter().filter_map(|o| match o {
            Object::MetricTemplate(m) => Some(m.as_ref()),
            _ => None,
        })
    }
}

/// Converts with the default [`Options`].
pub fn convert(docs: Vec<Value>) -> Conversion {
    convert_with(docs, &Options::default())
}

/// Converts `docs` (parsed YAML documents; `kind: List` documents are read item by item, null
/// documents skipped).
pub fn convert_with(docs: Vec<Value>, options: &Options) -> Conversion {
    let mut flat = Vec::new();
    for d in docs {
        flatten(d, &mut flat);
    }
    let ctx = Ctx::new(flat, options);
    let mut outputs: Vec<Vec<Object>> = vec![Vec::new(); ctx.docs.len()];
    let mut reports: Vec<Vec<Entry>> = vec![Vec::new(); ctx.docs.len()];
    let mut left_out: BTreeSet<usize> = BTreeSet::new();
    let mut replaced: BTreeMap<usize, Value> = BTreeMap::new();
    // ClusterAnalysisTemplate name -> the namespaces of the Rollouts that use it.
    let mut cluster_uses: BTreeMap<String, BTreeSet<Option<String>>> = BTreeMap::new();

    for doc in &ctx.docs {
        if doc.kind == DocKind::Rollout {
            let r = rollout::convert(&ctx, doc);
            outputs[doc.index] = r.objects;
            reports[doc.index].extend(r.report);
            left_out.extend(r.consumed);
            for (i, v) in r.replaced {
                replaced.insert(i, v);
            }
            for name in r.cluster_templates {
                cluster_uses.entry(name).or_default().insert(doc.namespace.clone());
            }
        }
    }

    for doc in &ctx.docs {
        match &doc.kind {
            DocKind::Rollout => {}
            DocKind::Invalid => reports[doc.index].push(doc.entry("", Reason::NotAnObject)),
            DocKind::AnalysisTemplate => {
                let t = ctx.template(doc.index);
                reports[doc.index].extend(t.report.iter().cloned());
                outputs[doc.index].extend(t.metric_templates(doc.namespace.as_deref()));
            }
            DocKind::ClusterAnalysisTemplate => {
                let t = ctx.template(doc.index);
                reports[doc.index].extend(t.report.iter().cloned());
                let uses = cluster_uses.get(&doc.name);
                let namespaces: Vec<Option<String>> = match uses {
                    Some(ns) => ns.iter().cloned().collect(),
                    None => vec![None],
                };
                if !t.metrics.iter().all(|m| m.prometheus.is_none()) {
                    match uses {
                        Some(_) => {
                            for ns in &namespaces {
                                reports[doc.index].push(
                                    doc.entry("", Reason::ClusterTemplateCopied { namespace: ns.clone() }),
                                );
                            }
                        }
                        None => reports[doc.index].push(doc.entry("", Reason::ClusterTemplateUnreferenced)),
                    }
                }
                for ns in namespaces {
                    outputs[doc.index].extend(t.metric_templates(ns.as_deref()));
                }
            }
            DocKind::ArgoOther => reports[doc.index]
                .push(doc.entry("", Reason::UnsupportedKind { kind: doc.kind_name.clone() })),
            _ if left_out.contains(&doc.index) => {}
            _ => {
                let v = replaced.remove(&doc.index).unwrap_or_else(|| doc.value.clone());
                outputs[doc.index].push(Object::Kept(v));
            }
        }
    }

    let mut conversion = Conversion::default();
    let mut seen: HashMap<(String, String), ()> = HashMap::new();
    for (i, objects) in outputs.into_iter().enumerate() {
        for o in objects {
            let key = o.kind_and_name();
            if !matches!(o, Object::Kept(_)) && seen.insert(key.clone(), ()).is_some() {
                let (kind, name) = key;
                reports[i].push(ctx.docs[i].entry("", Reason::DuplicateObject { kind, name }));
                continue;
            }
            conversion.objects.push(o);
        }
    }
    for entry in reports.into_iter().flatten() {
        if !conversion.report.contains(&entry) {
            conversion.report.push(entry);
        }
    }
    conversion
}

fn flatten(d: Value, out: &mut Vec<Value>) {
    match d {
        Value::Null => {}
        Value::Object(ref m)
            if m.get("kind").and_then(Value::as_str) == Some("List")
                && m.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = m.get("items") {
                for item in items.clone() {
                    flatten(item, out);
                }
            }
        }
        other => out.push(other),
    }
}

/// What a document is, as far as the conversion is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum DocKind {
    Rollout,
    AnalysisTemplate,
    ClusterAnalysisTemplate,
    /// Another kind of the `argoproj.io` group.
    ArgoOther,
    Service,
    VirtualService,
    DestinationRule,
    TrafficSplit,
    Ingress,
    Deployment,
    HorizontalPodAutoscaler,
    Other,
    /// Not a mapping with a kind and a name.
    Invalid,
}

/// One input document.
#[derive(Clone, Debug)]
pub(crate) struct Doc {
    pub index: usize,
    pub value: Value,
    pub kind: DocKind,
    pub kind_name: String,
    pub api_version: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl Doc {
    fn new(index: usize, value: Value) -> Doc {
        let api_version = json::str_at(&value, &["apiVersion"]).unwrap_or_default().to_string();
        let kind_name = json::str_at(&value, &["kind"]).unwrap_or_default().to_string();
        let name = json::str_at(&value, &["metadata", "name"]).unwrap_or_default().to_string();
        let namespace = json::str_at(&value, &["metadata", "namespace"]).map(str::to_string);
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let kind = if !value.is_object() || kind_name.is_empty() || name.is_empty() {
            DocKind::Invalid
        } else {
            match (group, kind_name.as_str()) {
                ("argoproj.io", "Rollout") => DocKind::Rollout,
                ("argoproj.io", "AnalysisTemplate") => DocKind::AnalysisTemplate,
                ("argoproj.io", "ClusterAnalysisTemplate") => DocKind::ClusterAnalysisTemplate,
                ("argoproj.io", _) => DocKind::ArgoOther,
                ("", "Service") => DocKind::Service,
                ("networking.istio.io", "VirtualService") => DocKind::VirtualService,
                ("networking.istio.io", "DestinationRule") => DocKind::DestinationRule,
                ("split.smi-spec.io", "TrafficSplit") => DocKind::TrafficSplit,
                ("networking.k8s.io", "Ingress") => DocKind::Ingress,
                ("apps", "Deployment") => DocKind::Deployment,
                ("autoscaling", "HorizontalPodAutoscaler") => DocKind::HorizontalPodAutoscaler,
                _ => DocKind::Other,
            }
        };
        Doc { index, value, kind, kind_name, api_version, namespace, name }
    }

    /// The document as the source of report entries.
    pub fn source(&self) -> SourceRef {
        SourceRef {
            kind: if self.kind_name.is_empty() { "document".into() } else { self.kind_name.clone() },
            namespace: self.namespace.clone(),
            name: if self.name.is_empty() { format!("#{}", self.index + 1) } else { self.name.clone() },
        }
    }

    pub fn entry(&self, path: impl Into<String>, reason: Reason) -> Entry {
        Entry { object: self.source(), path: path.into(), reason }
    }
}

/// The input, indexed.
pub(crate) struct Ctx<'a> {
    pub docs: Vec<Doc>,
    pub options: &'a Options,
    by_name: HashMap<(DocKind, String, String), usize>,
    templates: HashMap<usize, analysis::Template>,
}

impl<'a> Ctx<'a> {
    fn new(values: Vec<Value>, options: &'a Options) -> Ctx<'a> {
        let docs: Vec<Doc> = values.into_iter().enumerate().map(|(i, v)| Doc::new(i, v)).collect();
        let mut by_name = HashMap::new();
        for d in &docs {
            let ns = d.namespace.clone().unwrap_or_default();
            by_name.entry((d.kind.clone(), ns, d.name.clone())).or_insert(d.index);
        }
        let templates = docs
            .iter()
            .filter(|d| matches!(d.kind, DocKind::AnalysisTemplate | DocKind::ClusterAnalysisTemplate))
            .map(|d| (d.index, analysis::Template::convert(d)))
            .collect();
        Ctx { docs, options, by_name, templates }
    }

    /// The document of `kind` named `name` in `namespace` (`None`: no namespace).
    pub fn find(&self, kind: DocKind, namespace: Option<&str>, name: &str) -> Option<&Doc> {
        let key = (kind, namespace.unwrap_or_default().to_string(), name.to_string());
        self.by_name.get(&key).map(|i| &self.docs[*i])
    }

    /// The documents of `kind`.
    pub fn all(&self, kind: DocKind) -> impl Iterator<Item = &Doc> {
        self.docs.iter().filter(move |d| d.kind == kind)
    }

    /// The conversion of the template document `index`.
    fn template(&self, index: usize) -> &analysis::Template {
        &self.templates[&index]
    }
}
