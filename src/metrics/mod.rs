//! Metric queries: from a Canary's `analysis.metrics[]` entry to a [`MetricResult`] for the
//! decision core.
//!
//! One metric resolves, in this order, to:
//! 1. `templateRef` → the MetricTemplate's query on its own server (`prometheus` type only);
//! 2. inline `query` (deprecated) → on the Canary's `metricsServer` or the default server;
//! 3. name `request-success-rate` / `request-duration` → the built-in query of the metrics
//!    provider, on the Canary's `metricsServer` or the default server;
//! 4. anything else → an error ("no usable metrics template and query were configured").
//!
//! Every query is a Go-style template (see [`template`]). Nothing here decides pass or fail; every
//! problem becomes [`MetricResult::Error`] with a message that names the object and the fix.

pub mod builtin;
mod gofmt;
pub mod prometheus;
pub mod template;
#[cfg(test)]
mod test_server;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;

pub use builtin::{BuiltinError, BuiltinQuery, MetricsProvider, Observer, builtin_query, metrics_provider};
pub use prometheus::{ClientError, Credentials, CredentialsError, Endpoint, Prometheus, QueryOutcome};
pub use template::{TemplateContext, TemplateError};

use crate::analysis::{MetricResult, MetricSource};
use crate::api::{Canary, CanaryMetric, MetricTemplate};

/// Controller-wide metrics settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `--metrics-server`: Prometheus for built-in checks and inline queries of Canaries without
    /// `metricsServer`.
    pub default_server: String,
    /// Skip TLS verification for `default_server` and Canary `metricsServer`s.
    pub insecure_skip_verify: bool,
    /// `--mesh-provider`: the provider of Canaries that name none.
    pub mesh_provider: String,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            default_server: "http://prometheus:9090".into(),
            insecure_skip_verify: false,
            mesh_provider: "istio".into(),
            timeout: prometheus::DEFAULT_TIMEOUT,
        }
    }
}

/// One metric to observe.
#[derive(Clone, Copy, Debug)]
pub struct MetricQuery<'a> {
    pub canary: &'a Canary,
    /// One entry of `canary.spec.analysis.metrics`.
    pub metric: &'a CanaryMetric,
    /// The MetricTemplate named by `metric.templateRef` (namespace defaulting to the Canary's),
    /// or `None` when it does not exist.
    pub template: Option<&'a MetricTemplate>,
    /// The Secret named by the template's `spec.provider.secretRef`, read from the template's
    /// namespace, or `None` when it does not exist (or the template names none).
    pub secret: Option<&'a Secret>,
}

/// What a metric query is about to do, worked out without any I/O.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub endpoint: Endpoint,
    /// Rendered, whitespace-collapsed PromQL.
    pub query: String,
    /// Factor applied to the value (1000 for the generic observer's seconds).
    pub scale: f64,
    /// Things worth telling the user that do not stop the query.
    pub warnings: Vec<String>,
}

/// The result of one metric, with what was sent, for status records, Events and logs.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub result: MetricResult,
    /// The PromQL sent, when it got that far.
    pub query: Option<String>,
    pub warnings: Vec<String>,
}

/// MetricTemplate provider types Flagger knows and Veer does not query.
const OTHER_PROVIDER_TYPES: [&str; 10] = [
    "influxdb",
    "datadog",
    "externalmetrics",
    "stackdriver",
    "cloudwatch",
    "newrelic",
    "graphite",
    "dynatrace",
    "keptn",
    "splunk",
];

/// The metrics layer: settings plus one shared HTTP client.
#[derive(Clone, Debug)]
pub struct MetricQueries {
    config: MetricsConfig,
    prometheus: Prometheus,
}

impl MetricQueries {
    pub fn new(config: MetricsConfig) -> Result<MetricQueries, ClientError> {
        Ok(MetricQueries { prometheus: Prometheus::new(config.timeout)?, config })
    }

    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// The Prometheus client, e.g. for [`Prometheus::check_online`] at start-up.
    pub fn prometheus(&self) -> &Prometheus {
        &self.prometheus
    }

    /// Queries one metric. Never fails: problems are [`MetricResult::Error`].
    pub async fn observe(&self, q: &MetricQuery<'_>) -> Observation {
        let plan = match self.plan(q) {
            Ok(plan) => plan,
            Err(message) => {
                return Observation {
                    result: MetricResult::Error(message),
                    query: None,
                    warnings: Vec::new(),
                };
            }
        };
        let outcome = self.prometheus.query(&plan.endpoint, &plan.query).await;
        let mut warnings = plan.warnings;
        if outcome.series > 1 {
            warnings.push(format!(
                "the query returned {} series and the last one was used; aggregate it (e.g. with sum()) to get one",
                outcome.series
            ));
        }
        let result = match outcome.result {
            MetricResult::Value(v) => MetricResult::Value(v * plan.scale),
            other => other,
        };
        Observation { result, query: Some(plan.query), warnings }
    }

    /// Flagger's check at initialization: the metrics server of each built-in check
    /// (`request-success-rate`, `request-duration`) and of each MetricTemplate answers
    /// `vector(1)` with 1. The first that does not is the error; metrics with an inline `query`
    /// are not checked, as in Flagger.
    pub async fn check_providers(
        &self,
        metrics: impl Iterator<Item = MetricQuery<'_>>,
    ) -> Result<(), String> {
        for q in metrics {
            let what = match MetricSource::of(q.metric) {
                MetricSource::Query(_) => continue,
                MetricSource::Template(r) => {
                    let ns = r.namespace_or(q.canary.metadata.namespace.as_deref().unwrap_or_default());
                    let kind =
                        q.template.map_or("metric template".to_string(), |t| t.spec.provider.type_.clone());
                    format!("{kind} in metric template {}.{ns}", r.name)
                }
                MetricSource::Builtin
                    if q.metric.name == crate::analysis::REQUEST_SUCCESS_RATE
                        || q.metric.name == crate::analysis::REQUEST_DURATION =>
                {
                    "prometheus".to_string()
                }
                // Any other name without a query: its check says what is missing.
                MetricSource::Builtin => continue,
            };
            let plan = self.plan(&q).map_err(|e| format!("{what} not available: {e}"))?;
            self.prometheus
                .check_online(&plan.endpoint)
                .await
                .map_err(|e| format!("{what} not available: {e}"))?;
        }
        Ok(())
    }

    /// Works out the endpoint and the rendered query of a metric; `Err` is the message of a
    /// [`MetricResult::Error`].
    pub fn plan(&self, q: &MetricQuery<'_>) -> Result<Plan, String> {
        let ctx = TemplateContext::new(q.canary, q.metric);
        let source = MetricSource::of(q.metric);
        if let MetricSource::Template(reference) = source {
            let namespace = reference.namespace_or(&ctx.namespace).to_string();
            let Some(template) = q.template else {
                return Err(format!(
                    "MetricTemplate {namespace}/{} (templateRef of metric {}) was not found; create it or fix the \
                     templateRef",
                    reference.name, q.metric.name
                ));
            };
            return self.plan_template(template, &namespace, q.secret, &ctx);
        }
        let server = q
            .canary
            .spec
            .metrics_server
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| self.config.default_server.clone());
        let endpoint = Endpoint {
            address: server,
            insecure_skip_verify: self.config.insecure_skip_verify,
            ..Default::default()
        };
        if let MetricSource::Query(query) = source {
            let rendered =
                template::render(query, &ctx).map_err(|e| format!("metric {} query: {e}", q.metric.name))?;
            return Ok(Plan {
                endpoint,
                query: builtin::collapse_whitespace(&rendered),
                scale: 1.0,
                warnings: Vec::new(),
            });
        }
        let provider = metrics_provider(&q.canary.spec, &self.config.mesh_provider);
        match builtin_query(&q.metric.name, &provider, &ctx) {
            Some(Ok(b)) => Ok(Plan { endpoint, query: b.query, scale: b.scale, warnings: Vec::new() }),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("no usable metrics template and query were configured".into()),
        }
    }

    /// `namespace` is the template's: its Secret lives there too.
    fn plan_template(
        &self,
        template: &MetricTemplate,
        namespace: &str,
        secret: Option<&Secret>,
        ctx: &TemplateContext,
    ) -> Result<Plan, String> {
        let id = format!("{namespace}/{}", template.metadata.name.as_deref().unwrap_or_default());
        let provider = &template.spec.provider;
        let kind = provider.type_.as_str();
        let mut warnings = Vec::new();
        if OTHER_PROVIDER_TYPES.contains(&kind) {
            return Err(format!(
                "MetricTemplate {id}: unsupported metric provider {kind}: Veer supports prometheus (and \
                 Prometheus-compatible APIs such as Thanos, Mimir or VictoriaMetrics); rewrite the query in PromQL \
                 or remove the metric"
            ));
        }
        if kind != "prometheus" {
            // Flagger treats unknown types as Prometheus; so does Veer, but says so.
            warnings
                .push(format!("MetricTemplate {id}: unknown provider type {kind:?}, queried as prometheus"));
        }
        let address = provider.address.clone().filter(|a| !a.trim().is_empty()).ok_or_else(|| {
            format!("MetricTemplate {id}: spec.provider.address is required for the prometheus provider")
        })?;
        let credentials = match &provider.secret_ref {
            None => Credentials::None,
            Some(r) => {
                let secret = secret.ok_or_else(|| {
                    format!(
                        "MetricTemplate {id}: Secret {namespace}/{} (spec.provider.secretRef) was not found; create \
                         it in the template's namespace",
                        r.name
                    )
                })?;
                Credentials::from_secret(secret).map_err(|e| format!("MetricTemplate {id}: {e}"))?
            }
        };
        let rendered = template::render(&template.spec.query, ctx)
            .map_err(|e| format!("MetricTemplate {id}: spec.query: {e}"))?;
        Ok(Plan {
            endpoint: Endpoint {
                address,
                credentials,
                headers: provider.headers.clone().unwrap_or_default(),
                insecure_skip_verify: provider.insecure_skip_verify.unwrap_or(false),
            },
            query: builtin::collapse_whitespace(&rendered),
            scale: 1.0,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::api::CrossNamespaceRef;
    use crate::fixtures;
    use crate::metrics::test_server::{TestServer, vector};

    /// `podinfo.test` on port 80 with an empty analysis, and the spec fields of `spec`.
    fn canary(spec: serde_json::Value) -> Canary {
        fixtures::canary("podinfo", "test")
            .spec(json!({"service": {"port": 80}, "analysis": {}}))
            .spec(spec)
            .build()
    }

    fn template(provider: serde_json::Value, query: &str) -> MetricTemplate {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": "latency", "namespace": "monitoring"},
            "spec": {"provider": provider, "query": query}
        }))
        .unwrap()
    }

    fn secret(data: serde_json::Value) -> Secret {
        serde_json::from_value(
            json!({"metadata": {"name": "prom-auth", "namespace": "monitoring"}, "data": data}),
        )
        .unwrap()
    }

    fn templated(name: &str) -> CanaryMetric {
        CanaryMetric {
            name: name.into(),
            template_ref: Some(CrossNamespaceRef {
                name: "latency".into(),
                namespace: Some("monitoring".into()),
            }),
            ..Default::default()
        }
    }

    fn metrics(default_server: &str) -> MetricQueries {
        MetricQueries::new(MetricsConfig { default_server: default_server.into(), ..Default::default() })
            .unwrap()
    }

    fn plan(m: &MetricQueries, q: MetricQuery<'_>) -> Result<Plan, String> {
        m.plan(&q)
    }

    #[test]
    fn builtins_run_on_the_canary_server_or_the_default() {
        let m = metrics("http://prometheus.istio-system:9090");
        let metric = CanaryMetric { name: "request-success-rate".into(), ..Default::default() };
        let c = canary(json!({}));
        let p = plan(&m, MetricQuery { canary: &c, metric: &metric, template: None, secret: None }).unwrap();
        assert_eq!(p.endpoint, Endpoint::new("http://prometheus.istio-system:9090"));
        assert!(p.query.starts_with("sum( rate( istio_requests_total{"), "{}", p.query);
        assert!(p.query.contains("}[1m]"), "interval defaults to 1m");

        let c = canary(json!({"provider": "nginx", "metricsServer": "http://own:9090",
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"}}));
        let p = plan(&m, MetricQuery { canary: &c, metric: &metric, template: None, secret: None }).unwrap();
        assert_eq!(p.endpoint.address, "http://own:9090");
        assert!(
            p.query.contains(r#"nginx_ingress_controller_requests{ namespace="test", ingress="web""#),
            "{}",
            p.query
        );
    }

    #[test]
    fn inline_queries_are_templates_too() {
        let m = metrics("http://prom:9090");
        let metric = CanaryMetric {
            name: "errors".into(),
            interval: Some("5m".into()),
            query: Some("sum(rate(errors{ns=\"{{ namespace }}\"}[{{ interval }}]))\n".into()),
            ..Default::default()
        };
        let c = canary(json!({}));
        let p = plan(&m, MetricQuery { canary: &c, metric: &metric, template: None, secret: None }).unwrap();
        assert_eq!(p.query, r#"sum(rate(errors{ns="test"}[5m]))"#);
        assert_eq!(p.endpoint.address, "http://prom:9090");
        let broken = CanaryMetric { query: Some("{{ variables.x }}".into()), ..metric };
        let e =
            plan(&m, MetricQuery { canary: &c, metric: &broken, template: None, secret: None }).unwrap_err();
        assert_eq!(
            e,
            "metric errors query: query template line 1: variables.x is not set; add `x` to the metric's templateVariables"
        );
    }

    #[test]
    fn nothing_to_query_uses_flaggers_words() {
        let m = metrics("http://prom:9090");
        let metric = CanaryMetric { name: "error-rate".into(), ..Default::default() };
        let c = canary(json!({}));
        let e =
            plan(&m, MetricQuery { canary: &c, metric: &metric, template: None, secret: None }).unwrap_err();
        assert_eq!(e, "no usable metrics template and query were configured");
    }

    #[test]
    fn template_problems_name_the_object() {
        let m = metrics("http://prom:9090");
        let c = canary(json!({}));
        let metric = templated("latency");
        let q = |template, secret| MetricQuery { canary: &c, metric: &metric, template, secret };

        let e = plan(&m, q(None, None)).unwrap_err();
        assert_eq!(
            e,
            "MetricTemplate monitoring/latency (templateRef of metric latency) was not found; create it or fix the templateRef"
        );

        let datadog = template(json!({"type": "datadog", "address": "https://api.datadoghq.com"}), "x");
        let e = plan(&m, q(Some(&datadog), None)).unwrap_err();
        assert!(e.starts_with("MetricTemplate monitoring/latency: unsupported metric provider datadog: Veer supports prometheus"), "{e}");

        let no_address = template(json!({"type": "prometheus"}), "up");
        let e = plan(&m, q(Some(&no_address), None)).unwrap_err();
        assert_eq!(
            e,
            "MetricTemplate monitoring/latency: spec.provider.address is required for the prometheus provider"
        );

        let with_secret = template(
            json!({"type": "prometheus", "address": "http://p:9090", "secretRef": {"name": "prom-auth"}}),
            "up",
        );
        let e = plan(&m, q(Some(&with_secret), None)).unwrap_err();
        assert!(e.starts_with("MetricTemplate monitoring/latency: Secret monitoring/prom-auth (spec.provider.secretRef) was not found"), "{e}");
        let half = secret(json!({"password": "cA=="}));
        let e = plan(&m, q(Some(&with_secret), Some(&half))).unwrap_err();
        assert!(e.starts_with("MetricTemplate monitoring/latency: Secret monitoring/prom-auth has `password` but no `username`"), "{e}");

        let bad_query =
            template(json!({"type": "prometheus", "address": "http://p:9090"}), "{{ variables.reporter }}");
        let e = plan(&m, q(Some(&bad_query), None)).unwrap_err();
        assert_eq!(
            e,
            "MetricTemplate monitoring/latency: spec.query: query template line 1: variables.reporter is not set; add \
             `reporter` to the metric's templateVariables"
        );
    }

    #[test]
    fn template_ref_namespace_defaults_to_the_canary() {
        let m = metrics("http://prom:9090");
        let c = canary(json!({}));
        // Unset or empty (as a Helm template renders an empty value): the Canary's namespace.
        for namespace in [None, Some(String::new())] {
            let metric = CanaryMetric {
                name: "latency".into(),
                template_ref: Some(CrossNamespaceRef { name: "latency".into(), namespace }),
                ..Default::default()
            };
            let e = plan(&m, MetricQuery { canary: &c, metric: &metric, template: None, secret: None })
                .unwrap_err();
            assert!(e.starts_with("MetricTemplate test/latency "), "{e}");
        }
    }

    #[test]
    fn unknown_provider_types_are_queried_as_prometheus_with_a_warning() {
        let m = metrics("http://prom:9090");
        let c = canary(json!({}));
        let metric = templated("latency");
        let t = template(json!({"type": "victoriametrics", "address": "http://vm:8428"}), "up");
        let p =
            plan(&m, MetricQuery { canary: &c, metric: &metric, template: Some(&t), secret: None }).unwrap();
        assert_eq!(p.endpoint.address, "http://vm:8428");
        assert_eq!(
            p.warnings,
            [
                "MetricTemplate monitoring/latency: unknown provider type \"victoriametrics\", queried as prometheus"
            ]
        );
    }

    #[tokio::test]
    async fn a_template_is_queried_with_its_credentials_and_headers() {
        let server = TestServer::start(200, &vector(&["12.5", "0.5"])).await;
        let t = template(
            json!({"type": "prometheus", "address": server.url, "secretRef": {"name": "prom-auth"},
                   "headers": {"X-Scope-OrgID": ["team-a"]}}),
            "histogram_quantile(0.99,\n  sum(rate(x{ns=\"{{ namespace }}\",d=\"{{ variables.direction }}\"}[{{ interval }}])) by (le))",
        );
        let s = secret(json!({"token": "dG9r"}));
        let c = canary(json!({}));
        let metric = CanaryMetric {
            template_variables: Some(BTreeMap::from([("direction".into(), "inbound".into())])),
            ..templated("latency")
        };
        let obs = metrics("http://unused:9090")
            .observe(&MetricQuery { canary: &c, metric: &metric, template: Some(&t), secret: Some(&s) })
            .await;
        let sent = r#"histogram_quantile(0.99, sum(rate(x{ns="test",d="inbound"}[1m])) by (le))"#;
        assert_eq!(obs.result, MetricResult::Value(0.5));
        assert_eq!(obs.query.as_deref(), Some(sent));
        assert_eq!(obs.warnings.len(), 1, "two series are reported: {:?}", obs.warnings);
        assert!(obs.warnings[0].starts_with("the query returned 2 series and the last one was used"));
        let seen = server.seen();
        assert_eq!(seen[0].query.as_deref(), Some(sent));
        assert_eq!(seen[0].header("authorization"), ["Bearer tok"]);
        assert_eq!(seen[0].header("x-scope-orgid"), ["team-a"]);
    }

    #[tokio::test]
    async fn providers_are_checked_as_flagger_does() {
        let up = TestServer::start(200, &vector(&["1"])).await;
        let down = TestServer::start(503, "overloaded").await;
        let builtin = CanaryMetric { name: "request-success-rate".into(), ..Default::default() };
        let inline = CanaryMetric { name: "errors".into(), query: Some("x".into()), ..Default::default() };
        fn q<'a>(
            c: &'a Canary,
            m: &'a CanaryMetric,
            t: Option<&'a MetricTemplate>,
        ) -> std::iter::Once<MetricQuery<'a>> {
            std::iter::once(MetricQuery { canary: c, metric: m, template: t, secret: None })
        }
        let m = metrics(&up.url);
        let c = canary(json!({}));
        assert_eq!(m.check_providers(q(&c, &builtin, None)).await, Ok(()));
        assert_eq!(up.seen()[0].query.as_deref(), Some("vector(1)"));

        let c = canary(json!({"metricsServer": down.url}));
        let e = m.check_providers(q(&c, &builtin, None)).await.unwrap_err();
        assert!(e.starts_with("prometheus not available: ") && e.contains("503"), "{e}");
        assert_eq!(m.check_providers(q(&c, &inline, None)).await, Ok(()), "inline queries are not checked");

        let t = template(json!({"type": "prometheus", "address": down.url}), "x");
        let e = m.check_providers(q(&c, &templated("latency"), Some(&t))).await.unwrap_err();
        assert!(e.starts_with("prometheus in metric template latency.monitoring not available: "), "{e}");
        let e = m.check_providers(q(&c, &templated("latency"), None)).await.unwrap_err();
        assert!(e.contains("MetricTemplate monitoring/latency") && e.contains("was not found"), "{e}");
    }

    #[tokio::test]
    async fn generic_latency_is_converted_to_milliseconds() {
        let server = TestServer::start(200, &vector(&["0.25"])).await;
        let c = canary(json!({"provider": "kubernetes", "metricsServer": server.url}));
        let metric = CanaryMetric { name: "request-duration".into(), ..Default::default() };
        let obs = metrics("http://unused:9090")
            .observe(&MetricQuery { canary: &c, metric: &metric, template: None, secret: None })
            .await;
        assert_eq!(obs.result, MetricResult::Value(250.0));
        assert!(server.seen()[0].query.as_deref().unwrap().contains("http_request_duration_seconds_bucket"));
    }

    #[tokio::test]
    async fn planning_errors_become_error_results_without_a_request() {
        let obs = metrics("http://127.0.0.1:1")
            .observe(&MetricQuery {
                canary: &canary(json!({})),
                metric: &CanaryMetric { name: "nothing".into(), ..Default::default() },
                template: None,
                secret: None,
            })
            .await;
        assert_eq!(
            obs.result,
            MetricResult::Error("no usable metrics template and query were configured".into())
        );
        assert_eq!(obs.query, None);
    }
}
