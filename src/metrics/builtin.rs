//! The built-in checks `request-success-rate` (percent) and `request-duration` (milliseconds):
//! one PromQL pair per traffic provider, the same queries Flagger sends (flagger-behaviour.md §4.1).
//!
//! Which pair is used depends on the *metrics provider* ([`metrics_provider`]), chosen as Flagger
//! chooses it, with one deliberate difference: Flagger appends `:service` when the target is a
//! Service and then, for most providers, finds no observer of that name and silently falls back
//! to the Istio queries (quirk §9.3 #8) — a Linkerd or NGINX user gets `istio_requests_total`,
//! which never has data, so the canary always rolls back. Veer drops the `:service` suffix and
//! uses the provider's own queries.

use thiserror::Error;

use super::template::{self, TemplateContext, TemplateError};
use crate::analysis::{Provider, REQUEST_DURATION, REQUEST_SUCCESS_RATE};
use crate::api::CanarySpec;

/// A family of built-in queries (Flagger's "observers").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observer {
    Istio,
    Nginx,
    Linkerd,
    AppMesh,
    Contour,
    Gloo,
    /// Generic `http_request_duration_seconds` metrics: `kubernetes` and `gatewayapi*`.
    Http,
    Traefik,
    Kuma,
    /// Open Service Mesh.
    Osm,
}

/// Why a built-in check cannot be queried.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum BuiltinError {
    #[error(
        "the built-in check {check} has no query for metrics provider {provider} in Veer; define the check as a \
         MetricTemplate with your own PromQL and reference it with templateRef (see docs/metrics.md)"
    )]
    UnsupportedProvider { check: String, provider: String },
    #[error("built-in check {check}: {source}")]
    Template { check: String, source: TemplateError },
}

/// A rendered built-in query.
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltinQuery {
    /// PromQL, whitespace collapsed.
    pub query: String,
    /// Factor applied to the value: the generic observer's latency is in seconds, the check in ms.
    pub scale: f64,
    pub observer: Observer,
}

/// The metrics provider of a Canary, as Flagger computes it (see [`metrics_provider`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsProvider {
    pub provider: Provider,
    /// Flagger's `:service` suffix: the target is a Service. Veer picks the same queries either way.
    pub service: bool,
}

impl MetricsProvider {
    /// Parses a metrics provider as Flagger writes it: a provider name, `:service` appended when
    /// the target is a Service.
    pub fn parse(name: &str) -> MetricsProvider {
        match name.strip_suffix(":service") {
            Some(p) => MetricsProvider { provider: Provider::parse(p), service: true },
            None => MetricsProvider { provider: Provider::parse(name), service: false },
        }
    }

    /// The observer for this metrics provider. Unknown providers (and `smi:*`) get the Istio
    /// queries, as in Flagger; providers whose Flagger queries Veer does not carry are an error
    /// rather than a wrong query that would never return data.
    pub fn observer(&self, check: &str) -> Result<Observer, BuiltinError> {
        Ok(match &self.provider {
            Provider::Istio => Observer::Istio,
            Provider::Nginx => Observer::Nginx,
            Provider::Kubernetes | Provider::GatewayApi(_) => Observer::Http,
            // `smi:*` gets the Istio queries, as in Flagger (no observer of that name).
            Provider::Smi(smi) => match smi.name.as_str() {
                "linkerd" => Observer::Linkerd,
                "osm" => Observer::Osm,
                _ => Observer::Istio,
            },
            Provider::Unsupported(p) => match p.as_str() {
                p if p.starts_with("appmesh") => Observer::AppMesh,
                p if p.starts_with("gloo") => Observer::Gloo,
                p if p.starts_with("gatewayapi") => Observer::Http,
                "linkerd" => Observer::Linkerd,
                "contour" => Observer::Contour,
                "traefik" => Observer::Traefik,
                "kuma" => Observer::Kuma,
                "apisix" | "knative" | "skipper" | "crossover" => {
                    return Err(BuiltinError::UnsupportedProvider {
                        check: check.into(),
                        provider: p.into(),
                    });
                }
                _ => Observer::Istio,
            },
        })
    }
}

impl std::fmt::Display for MetricsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.provider.as_str())?;
        if self.service { f.write_str(":service") } else { Ok(()) }
    }
}

/// The metrics provider of a Canary: `spec.provider` or the controller's `--mesh-provider`;
/// a global Linkerd (or Crossover) mesh forces its own metrics; `:service` is appended when the
/// target is a Service (except for Knative). Kept as Flagger computes it, so that its name is
/// Flagger's.
pub fn metrics_provider(spec: &CanarySpec, mesh_provider: &str) -> MetricsProvider {
    let provider = if mesh_provider.contains("linkerd") {
        Provider::parse("linkerd")
    } else if mesh_provider.contains("crossover") {
        Provider::parse("crossover")
    } else {
        Provider::of_spec(spec, mesh_provider)
    };
    // `Service` is a kind of the CRD that Veer does not roll out (it is no `TargetKind`; such a
    // Canary stalls before any query): compared as written, as Flagger does.
    let service = spec.target_ref.kind == "Service" && provider.as_str() != "knative";
    MetricsProvider { provider, service }
}

/// The built-in query for `check` (a metric name), or `None` when the name is not a built-in.
pub fn builtin_query(
    check: &str,
    metrics_provider: &MetricsProvider,
    ctx: &TemplateContext,
) -> Option<Result<BuiltinQuery, BuiltinError>> {
    let success_rate = match check {
        REQUEST_SUCCESS_RATE => true,
        REQUEST_DURATION => false,
        _ => return None,
    };
    Some(metrics_provider.observer(check).and_then(|observer| {
        let (source, scale) = queries(observer, success_rate);
        let rendered = template::render(source, ctx)
            .map_err(|source| BuiltinError::Template { check: check.into(), source })?;
        Ok(BuiltinQuery { query: collapse_whitespace(&rendered), scale, observer })
    }))
}

/// Every whitespace run becomes one space, ends trimmed: the form sent to Prometheus (Flagger
/// does the same, including inside string literals).
pub fn collapse_whitespace(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `(template, scale)` for one observer and check. The layout is free (whitespace collapses); the
/// collapsed text equals Flagger's.
fn queries(observer: Observer, success_rate: bool) -> (&'static str, f64) {
    match (observer, success_rate) {
        (Observer::Istio, true) => (ISTIO_SUCCESS_RATE, 1.0),
        (Observer::Istio, false) => (ISTIO_DURATION, 1.0),
        (Observer::Nginx, true) => (NGINX_SUCCESS_RATE, 1.0),
        (Observer::Nginx, false) => (NGINX_DURATION, 1.0),
        (Observer::Linkerd, true) => (LINKERD_SUCCESS_RATE, 1.0),
        (Observer::Linkerd, false) => (LINKERD_DURATION, 1.0),
        (Observer::AppMesh, true) => (APPMESH_SUCCESS_RATE, 1.0),
        (Observer::AppMesh, false) => (APPMESH_DURATION, 1.0),
        (Observer::Contour, true) => (CONTOUR_SUCCESS_RATE, 1.0),
        (Observer::Contour, false) => (CONTOUR_DURATION, 1.0),
        (Observer::Gloo, true) => (GLOO_SUCCESS_RATE, 1.0),
        (Observer::Gloo, false) => (GLOO_DURATION, 1.0),
        (Observer::Http, true) => (HTTP_SUCCESS_RATE, 1.0),
        // The only latency histogram in seconds whose query does not convert.
        (Observer::Http, false) => (HTTP_DURATION, 1000.0),
        (Observer::Traefik, true) => (TRAEFIK_SUCCESS_RATE, 1.0),
        (Observer::Traefik, false) => (TRAEFIK_DURATION, 1.0),
        (Observer::Kuma, true) => (KUMA_SUCCESS_RATE, 1.0),
        (Observer::Kuma, false) => (KUMA_DURATION, 1.0),
        (Observer::Osm, true) => (OSM_SUCCESS_RATE, 1.0),
        (Observer::Osm, false) => (OSM_DURATION, 1.0),
    }
}

const ISTIO_SUCCESS_RATE: &str = r#"
sum( rate( istio_requests_total{ reporter="destination",
    destination_workload_namespace="{{ namespace }}",
    destination_workload=~"{{ target }}",
    response_code!~"5.*" }[{{ interval }}] ) )
/
sum( rate( istio_requests_total{ reporter="destination",
    destination_workload_namespace="{{ namespace }}",
    destination_workload=~"{{ target }}" }[{{ interval }}] ) )
* 100
"#;

const ISTIO_DURATION: &str = r#"
histogram_quantile( 0.99,
  sum( rate( istio_request_duration_milliseconds_bucket{ reporter="destination",
      destination_workload_namespace="{{ namespace }}",
      destination_workload=~"{{ target }}" }[{{ interval }}] ) ) by (le) )
"#;

const NGINX_SUCCESS_RATE: &str = r#"
sum( rate( nginx_ingress_controller_requests{ namespace="{{ namespace }}",
    ingress="{{ ingress }}", canary!="", status!~"5.*" }[{{ interval }}] ) )
/
sum( rate( nginx_ingress_controller_requests{ namespace="{{ namespace }}",
    ingress="{{ ingress }}", canary!="" }[{{ interval }}] ) )
* 100
"#;

// An average, not a percentile: the NGINX controller has no per-canary latency histogram.
const NGINX_DURATION: &str = r#"
sum( rate( nginx_ingress_controller_response_duration_seconds_sum{ namespace="{{ namespace }}",
    ingress="{{ ingress }}", canary!="" }[{{ interval }}] ) )
/
sum( rate( nginx_ingress_controller_response_duration_seconds_count{ namespace="{{ namespace }}",
    ingress="{{ ingress }}", canary!="" }[{{ interval }}] ) )
* 1000
"#;

const LINKERD_SUCCESS_RATE: &str = r#"
sum( rate( response_total{ namespace="{{ namespace }}", deployment=~"{{ target }}",
    classification!="failure", direction="inbound" }[{{ interval }}] ) )
/
sum( rate( response_total{ namespace="{{ namespace }}", deployment=~"{{ target }}",
    direction="inbound" }[{{ interval }}] ) )
* 100
"#;

const LINKERD_DURATION: &str = r#"
histogram_quantile( 0.99,
  sum( rate( response_latency_ms_bucket{ namespace="{{ namespace }}", deployment=~"{{ target }}",
      direction="inbound" }[{{ interval }}] ) ) by (le) )
"#;

const OSM_SUCCESS_RATE: &str = r#"
sum( rate( osm_request_total{ destination_namespace="{{ namespace }}", destination_kind="Deployment",
    destination_name="{{ target }}", response_code!~"5.*" }[{{ interval }}] ) )
/
sum( rate( osm_request_total{ destination_namespace="{{ namespace }}", destination_kind="Deployment",
    destination_name="{{ target }}" }[{{ interval }}] ) )
* 100
"#;

const OSM_DURATION: &str = r#"
histogram_quantile( 0.99,
  sum( rate( osm_request_duration_ms_bucket{ destination_namespace="{{ namespace }}",
      destination_kind="Deployment", destination_name="{{ target }}" }[{{ interval }}] ) ) by (le) )
"#;

const APPMESH_SUCCESS_RATE: &str = r#"
sum( rate( envoy_cluster_upstream_rq{ kubernetes_namespace="{{ namespace }}",
    kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",
    envoy_response_code!~"5.*" }[{{ interval }}] ) )
/
sum( rate( envoy_cluster_upstream_rq{ kubernetes_namespace="{{ namespace }}",
    kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[{{ interval }}] ) )
* 100
"#;

const APPMESH_DURATION: &str = r#"
histogram_quantile( 0.99,
  sum( rate( envoy_cluster_upstream_rq_time_bucket{ kubernetes_namespace="{{ namespace }}",
      kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[{{ interval }}] ) ) by (le) )
"#;

const CONTOUR_SUCCESS_RATE: &str = r#"
sum( rate( envoy_cluster_upstream_rq{
    envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+",
    envoy_response_code!~"5.*" }[{{ interval }}] ) )
/
sum( rate( envoy_cluster_upstream_rq{
    envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+", }[{{ interval }}] ) )
* 100
"#;

const CONTOUR_DURATION: &str = r#"
histogram_quantile( 0.99,
  sum( rate( envoy_cluster_upstream_rq_time_bucket{
      envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+", }[{{ interval }}] ) ) by (le) )
"#;

const GLOO_SUCCESS_RATE: &str = r#"
sum( rate( envoy_cluster_upstream_rq{
    envoy_cluster_name=~"{{ namespace }}-{{ target }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+",
    envoy_response_code!~"5.*" }[{{ interval }}] ) )
/
sum( rate( envoy_cluster_upstream_rq{
    envoy_cluster_name=~"{{ namespace }}-{{ target }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", }[{{ interval }}] ) )
* 100
"#;

const GLOO_DURATION: &str = r#"
histogram_quantile( 0.99,
  sum( rate( envoy_cluster_upstream_rq_time_bucket{
      envoy_cluster_name=~"{{ namespace }}-{{ target }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", }[{{ interval }}] ) )
  by (le) )
"#;

const HTTP_SUCCESS_RATE: &str = r#"
sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="{{ namespace }}",
    kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",
    status!~"5.*" }[{{ interval }}] ) )
/
sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="{{ namespace }}",
    kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[{{ interval }}] ) )
* 100
"#;

const HTTP_DURATION: &str = r#"
histogram_quantile( 0.99,
  sum( rate( http_request_duration_seconds_bucket{ kubernetes_namespace="{{ namespace }}",
      kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[{{ interval }}] ) ) by (le) )
"#;

const TRAEFIK_SUCCESS_RATE: &str = r#"
sum( rate( traefik_service_request_duration_seconds_bucket{
    service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd",
    code!~"5..", le="+Inf" }[{{ interval }}] ) )
/
sum( rate( traefik_service_request_duration_seconds_bucket{
    service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd",
    le="+Inf" }[{{ interval }}] ) )
* 100
"#;

const TRAEFIK_DURATION: &str = r#"
histogram_quantile( 0.99,
  sum( rate( traefik_service_request_duration_seconds_bucket{
      service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd" }[{{ interval }}] ) ) by (le) )
* 1000
"#;

const KUMA_SUCCESS_RATE: &str = r#"
sum( rate( envoy_cluster_upstream_rq{
    service=~"{{ target }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+",
    envoy_response_code!~"5.*" }[{{ interval }}] ) )
/
sum( rate( envoy_cluster_upstream_rq{
    service=~"{{ target }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+", }[{{ interval }}] ) )
* 100
"#;

const KUMA_DURATION: &str = r#"
histogram_quantile( 0.99,
  sum( rate( envoy_cluster_upstream_rq_time_bucket{
      service=~"{{ target }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+", }[{{ interval }}] ) ) by (le) )
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LocalObjectReference;

    fn ctx(namespace: &str) -> TemplateContext {
        TemplateContext {
            name: "podinfo".into(),
            namespace: namespace.into(),
            target: "podinfo".into(),
            service: "podinfo".into(),
            ingress: "podinfo".into(),
            route: "podinfo".into(),
            interval: "1m".into(),
            variables: Default::default(),
        }
    }

    fn rendered(check: &str, provider: &str, namespace: &str) -> BuiltinQuery {
        builtin_query(check, &MetricsProvider::parse(provider), &ctx(namespace))
            .expect("a built-in")
            .expect("renders")
    }

    /// The collapsed queries Flagger sends for podinfo in `default` (`nginx` for NGINX), 1m.
    #[test]
    fn queries_equal_flaggers() {
        let cases = [
            (
                "istio",
                r#"sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="default", destination_workload=~"podinfo", response_code!~"5.*" }[1m] ) ) / sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="default", destination_workload=~"podinfo" }[1m] ) ) * 100"#,
                r#"histogram_quantile( 0.99, sum( rate( istio_request_duration_milliseconds_bucket{ reporter="destination", destination_workload_namespace="default", destination_workload=~"podinfo" }[1m] ) ) by (le) )"#,
            ),
            (
                "linkerd",
                r#"sum( rate( response_total{ namespace="default", deployment=~"podinfo", classification!="failure", direction="inbound" }[1m] ) ) / sum( rate( response_total{ namespace="default", deployment=~"podinfo", direction="inbound" }[1m] ) ) * 100"#,
                r#"histogram_quantile( 0.99, sum( rate( response_latency_ms_bucket{ namespace="default", deployment=~"podinfo", direction="inbound" }[1m] ) ) by (le) )"#,
            ),
            (
                "appmesh:v1beta2",
                r#"sum( rate( envoy_cluster_upstream_rq{ kubernetes_namespace="default", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", envoy_response_code!~"5.*" }[1m] ) ) / sum( rate( envoy_cluster_upstream_rq{ kubernetes_namespace="default", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) ) * 100"#,
                r#"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ kubernetes_namespace="default", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) ) by (le) )"#,
            ),
            (
                "contour",
                r#"sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"default_podinfo-canary_[0-9a-zA-Z-]+", envoy_response_code!~"5.*" }[1m] ) ) / sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"default_podinfo-canary_[0-9a-zA-Z-]+", }[1m] ) ) * 100"#,
                r#"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ envoy_cluster_name=~"default_podinfo-canary_[0-9a-zA-Z-]+", }[1m] ) ) by (le) )"#,
            ),
            (
                "gloo",
                r#"sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"default-podinfo-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", envoy_response_code!~"5.*" }[1m] ) ) / sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"default-podinfo-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", }[1m] ) ) * 100"#,
                r#"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ envoy_cluster_name=~"default-podinfo-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", }[1m] ) ) by (le) )"#,
            ),
            (
                "kubernetes",
                r#"sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="default", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", status!~"5.*" }[1m] ) ) / sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="default", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) ) * 100"#,
                r#"histogram_quantile( 0.99, sum( rate( http_request_duration_seconds_bucket{ kubernetes_namespace="default", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) ) by (le) )"#,
            ),
            (
                "traefik",
                r#"sum( rate( traefik_service_request_duration_seconds_bucket{ service=~"default-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd", code!~"5..", le="+Inf" }[1m] ) ) / sum( rate( traefik_service_request_duration_seconds_bucket{ service=~"default-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd", le="+Inf" }[1m] ) ) * 100"#,
                r#"histogram_quantile( 0.99, sum( rate( traefik_service_request_duration_seconds_bucket{ service=~"default-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd" }[1m] ) ) by (le) ) * 1000"#,
            ),
            (
                "kuma",
                r#"sum( rate( envoy_cluster_upstream_rq{ service=~"podinfo-canary_default_svc_[0-9a-zA-Z-]+", envoy_response_code!~"5.*" }[1m] ) ) / sum( rate( envoy_cluster_upstream_rq{ service=~"podinfo-canary_default_svc_[0-9a-zA-Z-]+", }[1m] ) ) * 100"#,
                r#"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ service=~"podinfo-canary_default_svc_[0-9a-zA-Z-]+", }[1m] ) ) by (le) )"#,
            ),
            (
                "osm",
                r#"sum( rate( osm_request_total{ destination_namespace="default", destination_kind="Deployment", destination_name="podinfo", response_code!~"5.*" }[1m] ) ) / sum( rate( osm_request_total{ destination_namespace="default", destination_kind="Deployment", destination_name="podinfo" }[1m] ) ) * 100"#,
                r#"histogram_quantile( 0.99, sum( rate( osm_request_duration_ms_bucket{ destination_namespace="default", destination_kind="Deployment", destination_name="podinfo" }[1m] ) ) by (le) )"#,
            ),
        ];
        for (provider, success_rate, duration) in cases {
            assert_eq!(rendered(REQUEST_SUCCESS_RATE, provider, "default").query, success_rate, "{provider}");
            assert_eq!(rendered(REQUEST_DURATION, provider, "default").query, duration, "{provider}");
        }
    }

    #[test]
    fn nginx_uses_the_ingress_and_an_average_duration() {
        let mut c = ctx("nginx");
        c.ingress = "podinfo-ing".into();
        let sr = builtin_query(REQUEST_SUCCESS_RATE, &MetricsProvider::parse("nginx"), &c).unwrap().unwrap();
        assert_eq!(
            sr.query,
            r#"sum( rate( nginx_ingress_controller_requests{ namespace="nginx", ingress="podinfo-ing", canary!="", status!~"5.*" }[1m] ) ) / sum( rate( nginx_ingress_controller_requests{ namespace="nginx", ingress="podinfo-ing", canary!="" }[1m] ) ) * 100"#
        );
        let d = builtin_query(REQUEST_DURATION, &MetricsProvider::parse("nginx"), &c).unwrap().unwrap();
        assert_eq!(
            d.query,
            r#"sum( rate( nginx_ingress_controller_response_duration_seconds_sum{ namespace="nginx", ingress="podinfo-ing", canary!="" }[1m] ) ) / sum( rate( nginx_ingress_controller_response_duration_seconds_count{ namespace="nginx", ingress="podinfo-ing", canary!="" }[1m] ) ) * 1000"#
        );
        assert_eq!(d.scale, 1.0);
    }

    #[test]
    fn interval_and_scale() {
        let mut c = ctx("default");
        c.interval = "30s".into();
        assert!(
            builtin_query(REQUEST_DURATION, &MetricsProvider::parse("istio"), &c)
                .unwrap()
                .unwrap()
                .query
                .contains("}[30s]")
        );
        // Only the generic observer's latency is in seconds and converted here.
        assert_eq!(rendered(REQUEST_DURATION, "gatewayapi:v1", "default").scale, 1000.0);
        assert_eq!(rendered(REQUEST_SUCCESS_RATE, "gatewayapi:v1", "default").scale, 1.0);
        assert_eq!(rendered(REQUEST_DURATION, "istio", "default").scale, 1.0);
    }

    #[test]
    fn not_a_builtin() {
        assert!(builtin_query("latency", &MetricsProvider::parse("istio"), &ctx("default")).is_none());
    }

    #[test]
    fn observer_selection() {
        for (provider, want) in [
            ("istio", Observer::Istio),
            ("nginx", Observer::Nginx),
            ("gatewayapi:v1beta1", Observer::Http),
            ("gloo:v1", Observer::Gloo),
            ("smi:v1alpha3", Observer::Istio),
            ("smi:v1alpha2:linkerd", Observer::Istio),
            ("linkerd", Observer::Linkerd),
            ("osm", Observer::Osm),
            ("something-else", Observer::Istio),
            // Veer's answer to quirk §9.3 #8: the provider's own queries, not Istio's.
            ("nginx:service", Observer::Nginx),
            ("linkerd:service", Observer::Linkerd),
            ("kubernetes:service", Observer::Http),
        ] {
            let observer = MetricsProvider::parse(provider).observer(REQUEST_SUCCESS_RATE);
            assert_eq!(observer, Ok(want), "{provider}");
        }
        let e = MetricsProvider::parse("skipper").observer(REQUEST_DURATION).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the built-in check request-duration has no query for metrics provider skipper")
        );
    }

    #[test]
    fn metrics_provider_as_flagger_computes_it() {
        let metrics_provider_name = |spec: &CanarySpec, mesh: &str| metrics_provider(spec, mesh).to_string();
        let spec = |provider: Option<&str>, kind: &str| CanarySpec {
            provider: provider.map(String::from),
            target_ref: LocalObjectReference {
                kind: kind.into(),
                name: "podinfo".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(metrics_provider_name(&spec(None, "Deployment"), "istio"), "istio");
        assert_eq!(metrics_provider_name(&spec(Some(""), "Deployment"), "istio"), "istio");
        assert_eq!(metrics_provider_name(&spec(Some("nginx"), "Deployment"), "istio"), "nginx");
        assert_eq!(metrics_provider_name(&spec(Some("nginx"), "Deployment"), "linkerd"), "linkerd");
        assert_eq!(metrics_provider_name(&spec(Some("gloo"), "Service"), "istio"), "gloo:service");
        assert_eq!(metrics_provider_name(&spec(Some("knative"), "Service"), "istio"), "knative");
    }

    #[test]
    fn collapsing() {
        assert_eq!(collapse_whitespace("\n  sum(\n\t rate(x[1m]) )\n"), "sum( rate(x[1m]) )");
    }
}
