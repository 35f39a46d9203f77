//! The Grafana dashboard (`charts/veer/dashboards/veer.json`) and the PrometheusRule
//! (`charts/veer/templates/prometheusrule.yaml`) that the controller chart ships, off by default.
//!
//! * Without a cluster: the dashboard's shape (variables, data sources, layout), and that every
//!   series and label its expressions name is one that Veer exports, as Veer's own metric registry
//!   encodes them; every `flagger_*` and `veer_*` family has a panel.
//! * With the real helm: both objects are rendered only when enabled, their values reach them, the
//!   schema refuses bad ones, the alerts table of docs/operations.md shows what is rendered, and
//!   `promtool check rules` accepts the rendered groups, whose series Veer exports too.
//! * On the local control plane: prometheus-operator's PrometheusRule CRD (from
//!   `e2e/crds/monitoring.coreos.com_prometheusrules.yaml`) accepts the rendered rule, and a real
//!   controller rolls a Canary out and back while a Prometheus of the test's own scrapes it and
//!   evaluates the rules: every dashboard query runs there and returns what the run implies, and
//!   the alerts fire.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::harness::*;
use common::helm::{Helm, Rendered, chart, data_file};
use common::prometheus::{OwnPrometheus, package_binary, sample_value};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, api::DynamicObject, discovery::ApiResource};
use prometheus_client::{encoding::text::encode, registry::Registry};
use serde_json::{Value, json};
use veer::api::Phase;
use veer::telemetry::{
    CanaryLabels, ControllerMetrics, InfoLabels, KindLabels, MetricLabels, RunLabels, WorkloadLabels,
};
use veer::trafficsim::{Client as Sim, IstioSpec};

/// The Grafana schema version of the dashboard: Grafana 12.0's. The migrations Grafana has added
/// since (42: hidden fields also hidden from tooltips, 43: formatTime transformations) touch nothing
/// the dashboard uses.
const SCHEMA_VERSION: u64 = 41;

/// The alerts of docs/operations.md, in the order the rule lists them.
const ALERTS: [&str; 5] =
    ["CanaryRolledBack", "CanaryProgressingTooLong", "VeerReconcileErrors", "VeerStepsLate", "VeerDown"];

fn dashboard_path() -> PathBuf {
    chart("veer").join("dashboards/veer.json")
}

fn dashboard() -> Value {
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

// ------------------------------------------------------------------------------ PromQL references

/// The series and label names a PromQL expression refers to.
#[derive(Debug, Default, PartialEq)]
struct Refs {
    series: BTreeSet<String>,
    labels: BTreeSet<String>,
}

/// Words that are never series names: PromQL's keywords and aggregation operators.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// Reads the series and label names of `expr`: series selectors (an identifier that is neither a
/// keyword nor a function call), the label names of their matchers, and the labels of `by`,
/// `without`, `on`, `ignoring`, `group_left` and `group_right` lists. Strings, ranges and numbers are
/// skipped. Grafana variables must have been substituted ([`substitute`]).
fn references(expr: &str) -> Result<Refs, String> {
    let s: Vec<char> = expr.chars().collect();
    if s.windows(2).any(|w| w[0] == '$' && (w[1] == '{' || w[1] == '_' || w[1].is_ascii_alphabetic())) {
        return Err(format!("a Grafana variable is left in {expr}"));
    }
    let mut refs = Refs::default();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c.is_whitespace() || "()+-*/%^=!<>,@".contains(c) {
            i += 1;
        } else if c == '#' {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&s, i)?;
        } else if c == '[' {
            let close = s[i..].iter().position(|&x| x == ']').ok_or(format!("unclosed [ in {expr}"))?;
            i += close + 1;
        } else if c == '{' {
            i = matchers(&s, i + 1, &mut refs.labels).map_err(|e| format!("{e} in {expr}"))?;
        } else if c.is_ascii_digit() || c == '.' {
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.' || s[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_' || s[i] == ':') {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let next = s[i..].iter().find(|c| !c.is_whitespace()).copied();
            if LABEL_LISTS.contains(&word.as_str()) {
                if next == Some('(') {
                    let open = i + s[i..].iter().position(|&x| x == '(').unwrap();
                    i = label_list(&s, open + 1, &mut refs.labels).map_err(|e| format!("{e} in {expr}"))?;
                }
            } else if !KEYWORDS.contains(&word.as_str()) && next != Some('(') {
                refs.series.insert(word);
            }
        } else {
            return Err(format!("unexpected {c:?} in {expr}"));
        }
    }
    Ok(refs)
}

/// The index after the string literal that starts at `i`.
fn skip_string(s: &[char], i: usize) -> Result<usize, String> {
    let quote = s[i];
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            '\\' if quote != '`' => j += 2,
            c if c == quote => return Ok(j + 1),
            _ => j += 1,
        }
    }
    Err("unclosed string".into())
}

fn skip_space(s: &[char], mut i: usize) -> usize {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    i
}

fn identifier(s: &[char], i: usize) -> (String, usize) {
    let mut j = i;
    while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == '_') {
        j += 1;
    }
    (s[i..j].iter().collect(), j)
}

/// Reads `label op "value", ...}` from `i` (after the `{`); returns the index after the `}`.
fn matchers(s: &[char], i: usize, labels: &mut BTreeSet<String>) -> Result<usize, String> {
    labels_until(s, i, '}', labels, |s, i| {
        let op: String = s[i..].iter().take_while(|c| "=!~".contains(**c)).collect();
        if !["=", "!=", "=~", "!~"].contains(&op.as_str()) {
            return Err(format!("a matcher operator expected at {i}"));
        }
        let i = skip_space(s, i + op.len());
        if !matches!(s.get(i), Some('"' | '\'' | '`')) {
            return Err(format!("a string expected at {i}"));
        }
        Ok(skip_space(s, skip_string(s, i)?))
    })
}

/// Reads `label, ...)` from `i` (after the `(`); returns the index after the `)`.
fn label_list(s: &[char], i: usize, labels: &mut BTreeSet<String>) -> Result<usize, String> {
    labels_until(s, i, ')', labels, |_, i| Ok(i))
}

/// Reads a `,`-separated list up to `close` from `i`: each item a label name (kept in `labels`),
/// then what `rest` reads after it (from the next non-space; it returns where the item ends).
/// Returns the index after `close`.
fn labels_until(
    s: &[char],
    mut i: usize,
    close: char,
    labels: &mut BTreeSet<String>,
    rest: impl Fn(&[char], usize) -> Result<usize, String>,
) -> Result<usize, String> {
    loop {
        i = skip_space(s, i);
        if s.get(i) == Some(&close) {
            return Ok(i + 1);
        }
        let (label, j) = identifier(s, i);
        if label.is_empty() {
            return Err(format!("a label name expected at {i}"));
        }
        labels.insert(label);
        i = skip_space(s, rest(s, skip_space(s, j))?);
        match s.get(i) {
            Some(',') => i += 1,
            Some(c) if *c == close => return Ok(i + 1),
            _ => return Err(format!("`,` or `{close}` expected at {i}")),
        }
    }
}

/// Replaces the Grafana variables `$name` and `${name}` of `text` with `values`; an unknown
/// variable is an error, so that no `$...` reaches Prometheus.
fn substitute(text: &str, values: &BTreeMap<&str, &str>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').ok_or(format!("unclosed ${{ in {text}"))?;
                (&braced[..end], end + 2)
            }
            None => {
                let end =
                    after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = values.get(name).ok_or(format!("unknown variable ${name} in {text}"))?;
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Grafana's `label_values(SELECTOR, LABEL)` variable query: the selector and the label.
fn label_values_query(query: &str) -> Result<(&str, &str), String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or(format!("not a label_values(selector, label) query: {query}"))?;
    let (selector, label) = inner.rsplit_once(',').ok_or(format!("no label in {query}"))?;
    Ok((selector.trim(), label.trim()))
}

// ------------------------------------------------------------------------------ what Veer exports

/// Every series Veer's registry encodes, with its label names: each family of
/// [`ControllerMetrics`] given one value (the families that have none are not encoded), and the
/// `process_*` series. A family added to `ControllerMetrics` must get a value here before a
/// dashboard or alert can use it.
fn exported_series() -> BTreeMap<String, BTreeSet<String>> {
    let mut registry = Registry::default();
    let m = ControllerMetrics::register(&mut registry);
    let s = |v: &str| v.to_string();
    let canary = CanaryLabels { name: s("podinfo"), namespace: s("test") };
    let run = RunLabels {
        name: s("podinfo"),
        namespace: s("test"),
        deployment_strategy: s("canary"),
        analysis_status: s("completed"),
    };
    m.info.get_or_create(&InfoLabels { version: s("0.1.0"), mesh_provider: s("istio") }).set(1);
    m.canary_total.count_with(Box::new(|| BTreeMap::from([("test".to_string(), 1)])));
    m.canary_status.get_or_create(&canary).set(1);
    m.canary_weight.get_or_create(&WorkloadLabels { workload: s("podinfo"), namespace: s("test") }).set(10);
    m.metric_analysis
        .get_or_create(&MetricLabels {
            name: s("podinfo"),
            namespace: s("test"),
            metric: s("request-success-rate"),
        })
        .set(99.5);
    m.canary_duration.get_or_create(&canary).observe(0.02);
    m.successes.get_or_create(&run).inc();
    m.failures.get_or_create(&run).inc();
    m.reconcile_errors.get_or_create(&KindLabels { kind: s("write") }).inc();
    m.api_writes.get_or_create(&KindLabels { kind: s("Deployment") }).inc();
    m.api_write_duration.get_or_create(&KindLabels { kind: s("Deployment") }).observe(0.02);
    m.step_lag.observe(0.1);
    m.wake_lag.observe(0.05);
    m.event_queue_depth.set(0);
    m.events_dropped.inc();
    let mut text = String::new();
    encode(&mut text, &registry).expect("the registry encodes");
    let samples = veer::trafficsim::exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for sample in samples {
        series.entry(sample.name).or_default().extend(sample.labels.into_keys());
    }
    series
}

/// Labels Prometheus adds to every series it scrapes.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Checks that `expr` names at least one series, only series in `exported`, and only labels that
/// one of its series has (or a scrape target's `job` and `instance`).
fn check_exported(expr: &str, exported: &BTreeMap<String, BTreeSet<String>>) -> Result<Refs, String> {
    let refs = references(expr)?;
    if refs.series.is_empty() {
        return Err(format!("names no series: {expr}"));
    }
    let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
    for series in &refs.series {
        let Some(has) = exported.get(series) else {
            return Err(format!("{series} is not a series Veer exports (in {expr})"));
        };
        labels.extend(has.iter().cloned());
    }
    if let Some(label) = refs.labels.iter().find(|l| !labels.contains(*l)) {
        return Err(format!("label {label} is on none of {:?} (in {expr})", refs.series));
    }
    Ok(refs)
}

// ------------------------------------------------------------------------------ the dashboard's parts

/// Every panel, rows and the panels of collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// (panel title, refId, expr) of every query of every panel.
fn panel_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("a target of {title} has no expr"));
            out.push((title, t["refId"].as_str().unwrap_or("?").to_string(), expr.to_string()));
        }
    }
    out
}

/// (name, query) of the dashboard's query variables.
fn variable_queries(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let query = v["query"]["query"].as_str().or(v["query"].as_str()).expect("a variable query");
            (v["name"].as_str().unwrap().to_string(), query.to_string())
        })
        .collect()
}

/// Values for the variables the dashboard uses, as Grafana would substitute them.
fn grafana_values<'a>(namespace: &'a str, name: &'a str) -> BTreeMap<&'a str, &'a str> {
    BTreeMap::from([
        ("namespace", namespace),
        ("name", name),
        ("__rate_interval", "1m"),
        ("__range", "1h"),
        ("__interval", "15s"),
    ])
}

// ------------------------------------------------------------------------------ without a cluster

#[test]
fn promql_references_are_read_from_expressions() {
    let refs = |e: &str| references(e).unwrap();
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let r = refs(
        r#"histogram_quantile(0.99, sum by (le, ns) (rate(a_bucket{ns=~"x|y", name!="}"}[5m:1m]))) > 5"#,
    );
    assert_eq!(r, Refs { series: set(&["a_bucket"]), labels: set(&["le", "ns", "name"]) });
    let r = refs("rate(cpu_total[1m]) * on (job, instance) group_left (version) info offset 1h");
    assert_eq!(r, Refs { series: set(&["cpu_total", "info"]), labels: set(&["job", "instance", "version"]) });
    let r = refs(r#"count(s == 0) or vector(0) unless absent(t{k='v'}) and sum without(a)(u) / 1e3"#);
    assert_eq!(r, Refs { series: set(&["s", "t", "u"]), labels: set(&["k", "a"]) });
    // A keyword never counts as a series, a function name only when called.
    assert_eq!(refs("sum(rate)").series, set(&["rate"]));
    assert_eq!(refs("x > bool 2").series, set(&["x"]));
    assert!(references("x{a=}").is_err());
    assert!(references(r#"x{a="b"#).is_err());
    assert!(references("x[5m").is_err());
    assert!(references("rate(x[$__rate_interval])").is_err(), "a Grafana variable left");
    assert!(references(r#"x{a=~"${name}"}"#).is_err(), "a Grafana variable left");
    assert_eq!(refs(r#"x{a=~"^b$"}"#).series, set(&["x"]), "a regular expression's anchor is no variable");
}

#[test]
fn grafana_variables_are_substituted() {
    let values = grafana_values("test", "podinfo");
    assert_eq!(
        substitute(r#"x{namespace=~"$namespace", name=~"${name}"}[$__rate_interval]"#, &values).unwrap(),
        r#"x{namespace=~"test", name=~"podinfo"}[1m]"#
    );
    assert!(substitute("x[$unknown]", &values).unwrap_err().contains("$unknown"));
    assert_eq!(label_values_query("label_values(s{a=\"b\"}, name)").unwrap(), ("s{a=\"b\"}", "name"));
    assert!(label_values_query("query_result(s)").is_err());
}

#[test]
fn the_exported_series_are_read_from_veers_registry() {
    let exported = exported_series();
    for (series, labels) in [
        ("flagger_canary_status", &["name", "namespace"][..]),
        ("flagger_canary_weight", &["workload", "namespace"]),
        ("flagger_canary_duration_seconds_bucket", &["name", "namespace", "le"]),
        ("flagger_canary_successes_total", &["name", "namespace", "deployment_strategy", "analysis_status"]),
        ("veer_step_lag_seconds_bucket", &["le"]),
        ("veer_wake_lag_seconds_bucket", &["le"]),
        ("veer_api_write_duration_seconds_bucket", &["kind", "le"]),
        ("veer_event_queue_depth", &[]),
        ("veer_events_dropped_total", &[]),
        ("process_resident_memory_bytes", &[]),
    ] {
        let want: BTreeSet<String> = labels.iter().map(|l| l.to_string()).collect();
        assert_eq!(exported.get(series), Some(&want), "{series} in {exported:#?}");
    }
    // The check refuses what Veer does not export.
    assert!(check_exported("flagger_canary_status", &exported).is_ok());
    let unknown = check_exported("rate(flagger_canary_total_runs[1m])", &exported).unwrap_err();
    assert!(unknown.contains("flagger_canary_total_runs is not a series Veer exports"), "{unknown}");
    let label = check_exported(r#"flagger_canary_weight{name="podinfo"}"#, &exported).unwrap_err();
    assert!(label.contains("label name is on none of"), "{label}");
    let grouping = check_exported("sum by (workload) (flagger_canary_status)", &exported).unwrap_err();
    assert!(grouping.contains("label workload"), "{grouping}");
    assert!(check_exported("vector(1)", &exported).unwrap_err().contains("names no series"));
}

#[test]
fn the_dashboard_has_the_variables_and_the_data_source_grafana_needs() {
    let d = dashboard();
    assert_eq!(d["schemaVersion"], SCHEMA_VERSION);
    assert_eq!(d["uid"], "veer");
    assert!(d["id"].is_null(), "no id: Grafana assigns one on import");
    assert!(d["refresh"].is_string(), "refresh is a string since schema version 40");
    let vars = d["templating"]["list"].as_array().unwrap();
    let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["datasource", "namespace", "name"]);
    assert_eq!((&vars[0]["type"], &vars[0]["query"]), (&json!("datasource"), &json!("prometheus")));
    let source = json!({"type": "prometheus", "uid": "${datasource}"});
    for v in &vars[1..] {
        assert_eq!(v["type"], "query");
        assert_eq!(v["datasource"], source, "variable {}", v["name"]);
        assert_eq!(
            (&v["multi"], &v["includeAll"], &v["allValue"]),
            (&json!(true), &json!(true), &json!(".*"))
        );
        assert_eq!(v["definition"], v["query"]["query"], "variable {}", v["name"]);
    }
    let (_, namespaces) = &variable_queries(&d)[0];
    assert_eq!(label_values_query(namespaces).unwrap(), ("flagger_canary_status", "namespace"));

    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for p in panels(&d) {
        let title = p["title"].as_str().expect("a title");
        assert!(ids.insert(p["id"].as_u64().expect("an id")), "panel id {} twice", p["id"]);
        let g = &p["gridPos"];
        let [x, y, w, h] =
            ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap_or_else(|| panic!("{title}: {g}")));
        assert!(x + w <= 24 && w > 0 && h > 0, "{title} does not fit the 24 columns: {g}");
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            if let Some(other) = cells.insert(cell, title.to_string()) {
                panic!("{title} overlaps {other} at {cell:?}");
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert!(p["description"].as_str().is_some_and(|s| !s.is_empty()), "{title} has no description");
        assert_eq!(p["datasource"], source, "{title}");
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{title} has no targets"));
        let refs: BTreeSet<&str> = targets.iter().map(|t| t["refId"].as_str().unwrap()).collect();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds are not unique");
        for t in targets {
            assert_eq!(t["datasource"], source, "{title}");
        }
    }
}

#[test]
fn every_dashboard_query_names_only_series_veer_exports() {
    let d = dashboard();
    let exported = exported_series();
    let values = grafana_values("test", "podinfo");
    let mut named = BTreeSet::new();
    for (title, ref_id, expr) in panel_queries(&d) {
        let expr = substitute(&expr, &values).unwrap_or_else(|e| panic!("{title} {ref_id}: {e}"));
        let refs = check_exported(&expr, &exported).unwrap_or_else(|e| panic!("{title} {ref_id}: {e}"));
        named.extend(refs.series);
    }
    for (name, query) in variable_queries(&d) {
        let query = substitute(&query, &values).unwrap_or_else(|e| panic!("variable {name}: {e}"));
        let (selector, label) = label_values_query(&query).unwrap();
        let refs = check_exported(selector, &exported).unwrap_or_else(|e| panic!("variable {name}: {e}"));
        let labels = &exported[refs.series.first().unwrap()];
        assert!(labels.contains(label), "variable {name}: {selector} has no label {label}");
    }
    // Every family of Flagger's and Veer's has a panel (the process_* series only for CPU and memory).
    let family = |s: &str| {
        ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .fold(s.to_string(), |s, suffix| s.strip_suffix(suffix).map(str::to_string).unwrap_or(s))
    };
    let shown: BTreeSet<String> = named.iter().map(|s| family(s)).collect();
    let missing: Vec<String> = exported
        .keys()
        .filter(|s| s.starts_with("flagger_") || s.starts_with("veer_"))
        .map(|s| family(s))
        .filter(|f| !shown.contains(f))
        .collect();
    assert!(missing.is_empty(), "families without a panel: {missing:?}");
}

// ------------------------------------------------------------------------------ with helm

/// `helm template` of the controller chart in `veer-system` with `sets`.
fn render(helm: &Helm, sets: &[&str]) -> Rendered {
    let mut extra = Vec::new();
    for s in sets {
        extra.extend(["--set", s]);
    }
    helm.template("veer", "veer", "veer-system", &extra)
}

/// The rule groups of the only PrometheusRule rendered.
fn groups(r: &Rendered) -> Value {
    let spec = &r.one("PrometheusRule")["spec"];
    assert_eq!(spec.as_object().map(|o| o.len()), Some(1), "only groups in the spec: {spec}");
    spec.clone()
}

fn rules(r: &Rendered) -> Vec<Value> {
    let g = groups(r);
    assert_eq!(g["groups"].as_array().map(Vec::len), Some(1), "{g}");
    assert_eq!(g["groups"][0]["name"], "veer");
    g["groups"][0]["rules"].as_array().unwrap().clone()
}

fn rule<'a>(rules: &'a [Value], alert: &str) -> &'a Value {
    rules.iter().find(|r| r["alert"] == alert).unwrap_or_else(|| panic!("no alert {alert} in {rules:#?}"))
}

/// The rows of the alerts table in docs/operations.md ("### Alerts"): alert, expression, `for` and
/// severity, without their backticks.
fn documented_alerts() -> Vec<[String; 4]> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let section = page.split("\n### Alerts\n").nth(1).expect("a section Alerts");
    let section = section.split("\n### ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> =
                l.trim_matches('|').split(" | ").map(|c| c.trim().trim_matches('`').to_string()).collect();
            assert!(cells.len() >= 4, "a row of alert, expression, for, severity: {l}");
            [cells[0].clone(), cells[1].clone(), cells[2].clone(), cells[3].clone()]
        })
        .collect()
}

/// Runs `promtool check rules` on `groups`, written as a rule file (JSON is YAML).
fn promtool_check(groups: &Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("veer-rules.yaml");
    std::fs::write(&file, serde_json::to_string_pretty(groups).unwrap()).unwrap();
    let out = Command::new(package_binary("promtool")).arg("check").arg("rules").arg(&file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check rules failed:\n{text}\n{groups:#}");
    text
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn neither_object_is_rendered_unless_enabled() {
    let helm = Helm::new();
    let flagger_values = data_file("flagger-values.yaml");
    for r in [
        render(&helm, &[]),
        helm.template("flagger", "veer", "flagger-system", &["-f", flagger_values.to_str().unwrap()]),
    ] {
        let kinds = r.kinds();
        assert!(!kinds.iter().any(|k| k == "PrometheusRule" || k == "ConfigMap"), "{kinds:?}");
    }
    let r = render(&helm, &["grafanaDashboard.enabled=true"]);
    assert_eq!((r.all("ConfigMap").len(), r.find("PrometheusRule").is_none()), (1, true));
    let r = render(&helm, &["prometheusRule.enabled=true"]);
    assert_eq!((r.find("ConfigMap").is_none(), r.all("PrometheusRule").len()), (true, 1));
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn the_dashboard_configmap_carries_the_file_and_the_sidecars_label() {
    let helm = Helm::new();
    let file = std::fs::read_to_string(dashboard_path()).unwrap();
    let r = render(&helm, &["grafanaDashboard.enabled=true"]);
    let cm = r.one("ConfigMap");
    assert_eq!(cm["metadata"]["name"], "veer-dashboard");
    assert_eq!(cm["metadata"]["namespace"], "veer-system");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        cm["data"].as_object().map(|d| d.keys().collect::<Vec<_>>()),
        Some(vec![&"veer.json".to_string()])
    );
    assert_eq!(cm["data"]["veer.json"].as_str(), Some(file.trim_end()), "the file, unchanged");

    let r = render(
        &helm,
        &[
            "grafanaDashboard.enabled=true,grafanaDashboard.namespace=monitoring",
            "grafanaDashboard.label=dashboards,grafanaDashboard.additionalLabels.team=platform",
            "grafanaDashboard.annotations.grafana_folder=Veer",
            "fullnameOverride=cd",
        ],
    );
    let cm = r.one("ConfigMap");
    assert_eq!(cm["metadata"]["name"], "cd-dashboard");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    let labels = &cm["metadata"]["labels"];
    assert_eq!((&labels["dashboards"], &labels["team"]), (&json!("1"), &json!("platform")));
    assert!(labels.get("grafana_dashboard").is_none(), "{labels}");
    assert_eq!(cm["metadata"]["annotations"], json!({"grafana_folder": "Veer"}));
    let r = helm.template(
        "veer",
        "veer",
        "veer-system",
        &["--set", "grafanaDashboard.enabled=true", "--set-string", "grafanaDashboard.labelValue=yes"],
    );
    assert_eq!(r.one("ConfigMap")["metadata"]["labels"]["grafana_dashboard"], "yes");
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn the_prometheus_rule_has_the_documented_alerts() {
    let helm = Helm::new();
    let r = render(&helm, &["prometheusRule.enabled=true"]);
    let pr = r.one("PrometheusRule");
    assert_eq!(pr["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        (&pr["metadata"]["name"], &pr["metadata"]["namespace"]),
        (&json!("veer"), &json!("veer-system"))
    );
    let rules = rules(&r);
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(alerts, ALERTS);
    // The table of docs/operations.md shows the defaults: (alert, expression, for, severity).
    let shown: Vec<[String; 4]> = documented_alerts();
    let rendered: Vec<[String; 4]> = rules
        .iter()
        .map(|r| {
            let text = |v: &Value| v.as_str().unwrap_or_else(|| panic!("{v} in {r}")).to_string();
            [text(&r["alert"]), text(&r["expr"]), text(&r["for"]), text(&r["labels"]["severity"])]
        })
        .collect();
    assert_eq!(rendered, shown, "docs/operations.md, Alerts, shows other defaults than the chart renders");
    for r in &rules {
        assert_eq!(r["labels"].as_object().map(|l| l.len()), Some(1), "only a severity: {r}");
        assert!(r["annotations"]["summary"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    }
    assert_eq!(
        rule(&rules, "CanaryRolledBack")["annotations"]["summary"],
        "Canary {{ $labels.namespace }}/{{ $labels.name }} was rolled back",
        "Prometheus' templates reach the rule as they are"
    );
    let exported = exported_series();
    for r in &rules {
        check_exported(r["expr"].as_str().unwrap(), &exported)
            .unwrap_or_else(|e| panic!("{}: {e}", r["alert"]));
    }
    let out = promtool_check(&groups(&r));
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn the_prometheus_rule_follows_its_values() {
    let helm = Helm::new();
    let r = render(
        &helm,
        &[
            "prometheusRule.enabled=true,prometheusRule.namespace=monitoring",
            "prometheusRule.additionalLabels.release=kube-prometheus-stack",
            "prometheusRule.additionalRuleLabels.team=platform",
            "prometheusRule.additionalRuleLabels.severity=page",
            "prometheusRule.rules.CanaryProgressingTooLong.for=2h30m",
            "prometheusRule.rules.VeerReconcileErrors.enabled=false",
            "prometheusRule.rules.VeerStepsLate.quantile=0.9",
            "prometheusRule.rules.VeerStepsLate.lagSeconds=2.5",
            "prometheusRule.rules.VeerStepsLate.window=30m,prometheusRule.rules.VeerStepsLate.for=1h",
            "prometheusRule.rules.VeerDown.severity=page",
        ],
    );
    let pr = r.one("PrometheusRule");
    assert_eq!(pr["metadata"]["namespace"], "monitoring");
    assert_eq!(pr["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let rules = rules(&r);
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(alerts, ["CanaryRolledBack", "CanaryProgressingTooLong", "VeerStepsLate", "VeerDown"]);
    let slow = rule(&rules, "CanaryProgressingTooLong");
    assert_eq!(slow["for"], "2h30m");
    assert!(slow["annotations"]["summary"].as_str().unwrap().ends_with("for more than 2h30m"), "{slow}");
    let late = rule(&rules, "VeerStepsLate");
    assert_eq!(
        late["expr"],
        "histogram_quantile(0.9, sum by (le) (rate(veer_step_lag_seconds_bucket[30m]))) > 2.5"
    );
    assert_eq!(late["for"], "1h");
    assert_eq!(late["annotations"]["summary"], "Analysis steps run more than 2.5s late (quantile 0.9)");
    // Each alert's own severity wins over the extra labels'.
    assert_eq!(late["labels"], json!({"severity": "warning", "team": "platform"}));
    assert_eq!(rule(&rules, "VeerDown")["labels"], json!({"severity": "page", "team": "platform"}));
    let out = promtool_check(&groups(&r));
    assert!(out.contains("SUCCESS: 4 rules found"), "{out}");
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn bad_observability_values_are_refused_with_their_key() {
    let helm = Helm::new();
    for (set, needle) in [
        ("grafanaDashboard.enable=true", "/grafanaDashboard"),
        ("grafanaDashboard.label=a label", "/grafanaDashboard/label"),
        ("grafanaDashboard.labelValue=1", "/grafanaDashboard/labelValue"),
        ("prometheusRule.rules.VeerDown.for=5 minutes", "/prometheusRule/rules/VeerDown/for"),
        ("prometheusRule.rules.VeerStepsLate.window=0m", "/prometheusRule/rules/VeerStepsLate/window"),
        ("prometheusRule.rules.VeerStepsLate.quantile=1.5", "/prometheusRule/rules/VeerStepsLate/quantile"),
        ("prometheusRule.rules.VeerStepsLate.lagSeconds=0", "/prometheusRule/rules/VeerStepsLate/lagSeconds"),
        ("prometheusRule.rules.CanaryFailed.enabled=true", "/prometheusRule/rules"),
        ("prometheusRule.rules.VeerDown.severity=", "/prometheusRule/rules/VeerDown/severity"),
    ] {
        let err = helm.template_fails("veer", &["--set", set]);
        assert!(err.contains(needle), "--set {set}: expected {needle} in:\n{err}");
    }
    let none = ALERTS.map(|a| format!("prometheusRule.rules.{a}.enabled=false")).join(",");
    let err = helm.template_fails("veer", &["--set", "prometheusRule.enabled=true", "--set", &none]);
    assert!(err.contains("every alert under prometheusRule.rules is disabled"), "{err}");
    let chart_dir = chart("veer");
    let out = helm.ok(&[
        "lint",
        "--strict",
        chart_dir.to_str().unwrap(),
        "--set",
        "grafanaDashboard.enabled=true,prometheusRule.enabled=true",
        "--set",
        "prometheusRule.additionalRuleLabels.team=a",
    ]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

// ------------------------------------------------------------------------------ on the control plane

const PROMETHEUS_RULE_CRD: &str = "prometheusrules.monitoring.coreos.com";

/// Installs prometheus-operator's PrometheusRule CRD (`e2e/crds/`) unless the API server has it,
/// and waits until it is established.
async fn ensure_prometheus_rule_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let established = |c: &CustomResourceDefinition| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
    };
    if crds.get_opt(PROMETHEUS_RULE_CRD).await.unwrap().as_ref().is_some_and(established) {
        return;
    }
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/crds/monitoring.coreos.com_prometheusrules.yaml");
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{e}"));
    crds.patch(PROMETHEUS_RULE_CRD, &PatchParams::apply("veer-e2e").force(), &Patch::Apply(&crd))
        .await
        .unwrap_or_else(|e| panic!("cannot apply {}: {e}", path.display()));
    common::wait_for("the PrometheusRule CRD to be established", Duration::from_secs(30), || async {
        match crds.get_opt(PROMETHEUS_RULE_CRD).await {
            Ok(Some(c)) if established(&c) => Ok(()),
            other => Err(format!("{:?}", other.map(|c| c.and_then(|c| c.status)))),
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn the_api_server_accepts_both_objects_with_prometheus_operators_crd() {
    let client = common::client().await;
    ensure_prometheus_rule_crd(&client).await;
    common::with_namespace(&client, "obs-crd", async |ns| {
        let helm = Helm::new();
        let dashboard_in = format!("grafanaDashboard.enabled=true,grafanaDashboard.namespace={}", ns.name);
        let rule_in = format!("prometheusRule.enabled=true,prometheusRule.namespace={}", ns.name);
        let r =
            render(&helm, &[&dashboard_in, &rule_in, "prometheusRule.additionalRuleLabels.team=platform"]);
        for kind in ["PrometheusRule", "ConfigMap"] {
            let yaml = serde_json::to_string(r.one(kind)).unwrap();
            apply_yaml(&client, &ns.name, &yaml).await;
        }
        let ar = ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"),
            "prometheusrules",
        );
        let rules = Api::<DynamicObject>::namespaced_with(client.clone(), &ns.name, &ar);
        let stored = rules.get("veer").await.unwrap();
        assert_eq!(stored.data["spec"], groups(&r), "the CRD's schema keeps every field");
        let cm = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns.name)
            .get("veer-dashboard")
            .await
            .unwrap();
        let json = cm.data.unwrap_or_default().remove("veer.json").expect("veer.json");
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), dashboard());
    })
    .await;
}

const OLD: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const NEW: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const NEWER: &str = "ghcr.io/stefanprodan/podinfo:6.0.2";

fn sim() -> Sim {
    Sim::new(&common::env("TRAFFICSIM_URL")).expect("a simulator client")
}

/// The value of the one sample `expr` returns.
async fn single(prometheus: &OwnPrometheus, expr: &str) -> f64 {
    let samples = prometheus.query(expr).await.unwrap_or_else(|e| panic!("{expr}: {e}"));
    assert_eq!(samples.len(), 1, "{expr}: {samples:#?}");
    sample_value(&samples[0])
}

/// The query of the dashboard's panel `title` (its only one), with the variables substituted.
fn panel_query(dashboard: &Value, title: &str, values: &BTreeMap<&str, &str>) -> String {
    let found: Vec<String> =
        panel_queries(dashboard).into_iter().filter(|(t, _, _)| t == title).map(|(_, _, e)| e).collect();
    assert_eq!(found.len(), 1, "one query in panel {title}: {found:?}");
    substitute(&found[0], values).unwrap()
}

/// Waits until Prometheus reports alert `name` firing with `labels`.
async fn wait_firing(prometheus: &OwnPrometheus, name: &str, labels: &[(&str, &str)]) -> Duration {
    let start = Instant::now();
    common::wait_for(&format!("alert {name} firing"), Duration::from_secs(60), || async {
        let data = prometheus.api("alerts", &[]).await?;
        let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
        let firing = alerts.iter().any(|a| {
            a["labels"]["alertname"] == name
                && a["state"] == "firing"
                && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
        });
        if firing { Ok(()) } else { Err(format!("{alerts:#?}")) }
    })
    .await;
    start.elapsed()
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn the_dashboard_and_the_alerts_work_on_a_real_controllers_series() {
    let client = common::client().await;
    common::with_namespace(&client, "obs", async |ns| {
        let ns = ns.name.as_str();
        let d = dashboard();
        // The alerts as the chart renders them, VeerDown without its five minutes of grace.
        let helm = Helm::new();
        let rendered = render(&helm, &["prometheusRule.enabled=true,prometheusRule.rules.VeerDown.for=0s"]);
        let rules = [("veer-rules.json", serde_json::to_string_pretty(&groups(&rendered)).unwrap())];

        let traffic = |error_rate| IstioSpec { rps: 20.0, error_rate, latency_ms: 20.0 };
        sim().put_istio(ns, "podinfo", &traffic(0.0)).await.unwrap();
        let mut controller = Process::controller(ns, &[]);
        let target = format!("127.0.0.1:{}", controller.port);
        let prometheus = OwnPrometheus::start("veer", &[target], &rules, "1s").await;

        // A promotion, then a rollback.
        let t = Instant::now();
        let analysis = r#"    interval: 2s
    threshold: 2
    maxWeight: 30
    stepWeight: 10
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}, interval: 30s}
    - {name: request-duration, thresholdRange: {max: 500}, interval: 30s}
"#;
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", OLD)).await;
        apply_yaml(
            &client,
            ns,
            &canary_yaml("  provider: istio\n  service: {port: 9898, targetPort: http}", analysis),
        )
        .await;
        wait_phase(&client, ns, "podinfo", Phase::Initialized, Duration::from_secs(60)).await;
        set_image(&client, ns, "podinfo", NEW).await;
        wait_phase(&client, ns, "podinfo", Phase::Succeeded, Duration::from_secs(120)).await;
        sim().put_istio(ns, "podinfo", &traffic(0.5)).await.unwrap();
        set_image(&client, ns, "podinfo", NEWER).await;
        wait_phase(&client, ns, "podinfo", Phase::Failed, Duration::from_secs(120)).await;
        println!("[{ns}] promoted and rolled back in {:?}", t.elapsed());

        // Prometheus has scraped the end of the run.
        let failed = format!(
            "flagger_canary_failures_total{{namespace=\"{ns}\"}} == 1 \
             and on () flagger_canary_status{{namespace=\"{ns}\"}} == 2"
        );
        common::wait_for("the rollback in Prometheus", Duration::from_secs(30), || async {
            match prometheus.query(&failed).await {
                Ok(v) if !v.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;

        // What the controller serves is what the registry check knows.
        let exported = exported_series();
        let scrape = veer::trafficsim::exposition::parse(&controller.metrics().await).unwrap();
        let served: BTreeSet<String> = scrape.iter().map(|s| s.name.clone()).collect();
        for name in &served {
            assert!(exported.contains_key(name), "{name} is served but exported_series() does not know it");
        }

        // Every query of the dashboard parses and runs, for one Canary and for all; each returns data
        // when the controller serves every series it names (veer_reconcile_errors_total appears only
        // with a first error).
        for values in [grafana_values(ns, "podinfo"), grafana_values(".*", ".*")] {
            for (title, ref_id, expr) in panel_queries(&d) {
                let expr = substitute(&expr, &values).unwrap();
                let result = prometheus.query(&expr).await;
                let result = result.unwrap_or_else(|e| panic!("{title} {ref_id}: {e}\n{expr}"));
                let names = references(&expr).unwrap().series;
                if names.iter().all(|n| served.contains(n)) {
                    assert!(!result.is_empty(), "{title} {ref_id} returned nothing: {expr}");
                } else {
                    println!("[{ns}] {title} {ref_id}: not served yet ({names:?}), {} samples", result.len());
                }
            }
        }
        for (name, query) in variable_queries(&d) {
            let query = substitute(&query, &grafana_values(ns, "podinfo")).unwrap();
            let (selector, label) = label_values_query(&query).unwrap();
            let path = format!("label/{label}/values");
            let values = prometheus.api(&path, &[("match[]", selector)]).await.unwrap();
            let want = if name == "namespace" { ns } else { "podinfo" };
            assert!(values.as_array().unwrap().iter().any(|v| v == want), "variable {name}: {values}");
        }

        // The numbers the run implies.
        let values = grafana_values(ns, "podinfo");
        let stat = |title: &str| panel_query(&d, title, &values);
        assert_eq!(single(&prometheus, &stat("Canaries")).await, 1.0);
        assert_eq!(single(&prometheus, &stat("Progressing")).await, 0.0);
        assert_eq!(single(&prometheus, &stat("Failed")).await, 1.0);
        assert_eq!(single(&prometheus, &stat("Idle, waiting or promoting")).await, 0.0);
        // The first run of each counter is counted although its series appeared at 1.
        assert_eq!(single(&prometheus, &stat("Promotions in range")).await, 1.0);
        assert_eq!(single(&prometheus, &stat("Rollbacks in range")).await, 1.0);
        let weights = prometheus.query(&stat("Canary weight")).await.unwrap();
        assert_eq!(weights.len(), 1, "only the canary's weight: {weights:#?}");
        assert_eq!(weights[0]["metric"]["workload"], "podinfo");
        let checks = prometheus.query(&stat("Metric checks")).await.unwrap();
        let metrics: BTreeSet<&str> = checks.iter().filter_map(|s| s["metric"]["metric"].as_str()).collect();
        assert_eq!(metrics, BTreeSet::from(["request-success-rate", "request-duration"]));

        // The rules load and evaluate, and the rollback fires its alert.
        common::wait_for("every rule evaluated without error", Duration::from_secs(30), || async {
            let data = prometheus.api("rules", &[]).await?;
            let rules: Vec<Value> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let names: Vec<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
            if names != ALERTS {
                return Err(format!("rules {names:?}"));
            }
            match rules.iter().find(|r| r["health"] != "ok") {
                None => Ok(()),
                Some(r) => Err(format!("{}: {} {}", r["name"], r["health"], r["lastError"])),
            }
        })
        .await;
        let canary = [("namespace", ns), ("name", "podinfo")];
        let took = wait_firing(&prometheus, "CanaryRolledBack", &canary).await;
        println!("[{ns}] CanaryRolledBack firing {took:?} after the check");
        controller.kill();
        let took = wait_firing(&prometheus, "VeerDown", &[]).await;
        println!("[{ns}] VeerDown firing {took:?} after the controller was killed");
        sim().delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}
