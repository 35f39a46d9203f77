//! The traffic simulator through a real Prometheus: the built-in queries of the reference (§4.1,
//! Istio, Linkerd and NGINX) return the configured values, and follow a change made at run time.
//!
//! Needs `PROMETHEUS_URL` and `TRAFFICSIM_URL`, with Prometheus scraping the simulator every second
//! (the local control plane sets this up).

use std::time::{Duration, Instant};

use veer::trafficsim::{Client, IstioSpec, NginxSpec};

const NAMESPACE: &str = "e2e-trafficsim";
const INTERVAL: &str = "30s";
/// A change is fully visible one 30 s window (plus a scrape or two) after it is made.
const DEADLINE: Duration = Duration::from_secs(60);
const TOLERANCE: f64 = 0.01;

// The built-in queries as the reference gives them, placeholders and all.
const ISTIO_SUCCESS_RATE: &str = r#"
    sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",
        destination_workload=~"{{ target }}",response_code!~"5.*"}[{{ interval }}]))
    / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",
        destination_workload=~"{{ target }}"}[{{ interval }}])) * 100"#;
const ISTIO_DURATION: &str = r#"
    histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",
        destination_workload_namespace="{{ namespace }}",destination_workload=~"{{ target }}"}[{{ interval }}]))
        by (le))"#;
// Linkerd's series are derived from the Istio workload: same target, same values.
const LINKERD_SUCCESS_RATE: &str = r#"
    sum(rate(response_total{namespace="{{ namespace }}",deployment=~"{{ target }}",
        classification!="failure",direction="inbound"}[{{ interval }}]))
    / sum(rate(response_total{namespace="{{ namespace }}",deployment=~"{{ target }}",
        direction="inbound"}[{{ interval }}])) * 100"#;
const LINKERD_DURATION: &str = r#"
    histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{namespace="{{ namespace }}",
        deployment=~"{{ target }}",direction="inbound"}[{{ interval }}])) by (le))"#;
const NGINX_SUCCESS_RATE: &str = r#"
    sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",ingress="{{ ingress }}",
        canary!="",status!~"5.*"}[{{ interval }}]))
    / sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",ingress="{{ ingress }}",
        canary!=""}[{{ interval }}])) * 100"#;
const NGINX_DURATION: &str = r#"
    sum(rate(nginx_ingress_controller_response_duration_seconds_sum{namespace="{{ namespace }}",
        ingress="{{ ingress }}",canary!=""}[{{ interval }}]))
    / sum(rate(nginx_ingress_controller_response_duration_seconds_count{namespace="{{ namespace }}",
        ingress="{{ ingress }}",canary!=""}[{{ interval }}])) * 1000"#;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run this test through the local control plane (make test), which sets it")
    })
}

/// Fills the placeholders and collapses whitespace runs to one space, as the controller sends
/// queries (a space after a comma is valid PromQL).
fn render(template: &str, target: &str, ingress: &str) -> String {
    let filled = template
        .replace("{{ namespace }}", NAMESPACE)
        .replace("{{ target }}", target)
        .replace("{{ ingress }}", ingress)
        .replace("{{ interval }}", INTERVAL);
    filled.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Names unique to this run, so reruns against a long-lived Prometheus never see old series.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

struct Prometheus {
    url: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// The value as the controller reads it: the last series of a vector; `None` when empty or NaN.
    async fn query(&self, query: &str) -> Option<f64> {
        let mut url =
            reqwest::Url::parse(&format!("{}/api/v1/query", self.url.trim_end_matches('/'))).unwrap();
        url.query_pairs_mut().append_pair("query", query);
        let response = self.http.get(url).send().await.expect("Prometheus is not reachable");
        assert!(response.status().is_success(), "query {query} failed: {}", response.text().await.unwrap());
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["data"]["resultType"], "vector", "{body}");
        let value = body["data"]["result"].as_array()?.last()?["value"][1].as_str()?.parse::<f64>().ok()?;
        (!value.is_nan()).then_some(value)
    }
}

struct Expected {
    istio_success: f64,
    istio_p99: f64,
    nginx_success: f64,
    nginx_avg: f64,
}

/// Polls the six queries every second until all match, and returns how long that took.
async fn wait_for(prom: &Prometheus, target: &str, ingress: &str, want: &Expected) -> Duration {
    let queries = [
        ("istio request-success-rate", render(ISTIO_SUCCESS_RATE, target, ingress), want.istio_success),
        ("istio request-duration", render(ISTIO_DURATION, target, ingress), want.istio_p99),
        ("linkerd request-success-rate", render(LINKERD_SUCCESS_RATE, target, ingress), want.istio_success),
        ("linkerd request-duration", render(LINKERD_DURATION, target, ingress), want.istio_p99),
        ("nginx request-success-rate", render(NGINX_SUCCESS_RATE, target, ingress), want.nginx_success),
        ("nginx request-duration", render(NGINX_DURATION, target, ingress), want.nginx_avg),
    ];
    let start = Instant::now();
    loop {
        let mut got = Vec::new();
        for (name, query, _) in &queries {
            got.push((*name, prom.query(query).await));
        }
        let done = queries
            .iter()
            .zip(&got)
            .all(|((_, _, want), (_, v))| v.is_some_and(|v| (v - want).abs() <= TOLERANCE));
        if done {
            return start.elapsed();
        }
        if start.elapsed() > DEADLINE {
            let wanted: Vec<f64> = queries.iter().map(|q| q.2).collect();
            panic!(
                "after {DEADLINE:?} Prometheus returns {got:?}, want {wanted:?}; queries: {:#?}",
                queries.map(|q| q.1)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn built_in_queries_return_the_configured_values_and_follow_changes() {
    let prom = Prometheus {
        url: env("PROMETHEUS_URL"),
        http: veer::http::client_builder().timeout(Duration::from_secs(5)).build().unwrap(),
    };
    let sim = Client::new(&env("TRAFFICSIM_URL")).unwrap();
    let target = unique("podinfo");
    let ingress = unique("podinfo-web");

    sim.put_istio(NAMESPACE, &target, &IstioSpec { rps: 20.0, error_rate: 0.1, latency_ms: 250.0 })
        .await
        .unwrap();
    // Primary-served traffic without errors and at the same latency: the canary!="" matchers must
    // keep it out of the success rate.
    let nginx = NginxSpec { rps: 20.0, error_rate: 0.05, latency_ms: 120.0, primary_rps: 50.0 };
    sim.put_nginx(NAMESPACE, &ingress, &nginx).await.unwrap();
    let first = Expected { istio_success: 90.0, istio_p99: 250.0, nginx_success: 95.0, nginx_avg: 120.0 };
    let took = wait_for(&prom, &target, &ingress, &first).await;
    eprintln!("configured values visible through Prometheus after {took:.1?}");

    sim.put_istio(NAMESPACE, &target, &IstioSpec { rps: 20.0, error_rate: 0.3, latency_ms: 400.0 })
        .await
        .unwrap();
    let nginx = NginxSpec { rps: 20.0, error_rate: 0.2, latency_ms: 60.0, primary_rps: 50.0 };
    sim.put_nginx(NAMESPACE, &ingress, &nginx).await.unwrap();
    let second = Expected { istio_success: 70.0, istio_p99: 400.0, nginx_success: 80.0, nginx_avg: 60.0 };
    let took = wait_for(&prom, &target, &ingress, &second).await;
    eprintln!("changed values visible through Prometheus after {took:.1?}");

    sim.delete_istio(NAMESPACE, &target).await.unwrap();
    sim.delete_nginx(NAMESPACE, &ingress).await.unwrap();
}
