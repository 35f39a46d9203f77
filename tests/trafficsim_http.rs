//! The traffic simulator over real HTTP on loopback: control API status codes, `/metrics`, and the
//! real-traffic endpoints.

use std::net::SocketAddr;

use futures::future::join_all;
use reqwest::StatusCode;
use veer::trafficsim::exposition::Sample;
use veer::trafficsim::server::{self, MAX_BODY_BYTES};
use veer::trafficsim::sim::{MAX_STREAMS, Sim};
use veer::trafficsim::{Client, ClientError, IstioSpec, NginxSpec};

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start() -> (Server, Client, reqwest::Client) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, Sim::new(), async {
        let _ = stopped.await;
    }));
    let client = Client::new(&format!("http://{addr}")).unwrap();
    let raw = veer::http::client_builder().build().unwrap();
    (Server { addr, stop: Some(stop) }, client, raw)
}

fn istio(rps: f64, error_rate: f64, latency_ms: f64) -> IstioSpec {
    IstioSpec { rps, error_rate, latency_ms }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let hits: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .collect();
    assert_eq!(hits.len(), 1, "{name} {labels:?}: {hits:?}");
    hits[0].value
}

fn status_of(result: Result<impl std::fmt::Debug, ClientError>) -> StatusCode {
    match result {
        Err(ClientError::Status { status, .. }) => status,
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[tokio::test]
async fn healthz_answers() {
    let (s, _, raw) = start().await;
    let r = raw.get(format!("http://{}/healthz", s.addr)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn istio_workload_lifecycle() {
    let (s, client, raw) = start().await;
    let url = format!("http://{}/api/istio/shop/cart", s.addr);

    let r = raw.put(&url).json(&istio(10.0, 0.2, 250.0)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = raw.put(&url).json(&istio(10.0, 0.3, 250.0)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let got = client.get_istio("shop", "cart").await.unwrap().unwrap();
    assert_eq!((got.namespace.as_str(), got.workload.as_str()), ("shop", "cart"));
    assert_eq!((got.rps, got.error_rate, got.latency_ms), (10.0, 0.3, 250.0));
    let list = client.list_istio().await.unwrap();
    assert_eq!(list.len(), 1);

    assert!(client.delete_istio("shop", "cart").await.unwrap());
    let r = raw.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(client.get_istio("shop", "cart").await.unwrap(), None);
    assert!(client.list_istio().await.unwrap().is_empty());
}

#[tokio::test]
async fn nginx_ingress_lifecycle() {
    let (_s, client, _) = start().await;
    let spec = NginxSpec { rps: 5.0, error_rate: 0.1, latency_ms: 80.0, primary_rps: 20.0 };
    let view = client.put_nginx("shop", "web", &spec).await.unwrap();
    assert_eq!(view.canary, "shop-web-canary-80");
    assert_eq!((view.rps, view.primary_rps), (5.0, 20.0));
    assert_eq!(client.list_nginx().await.unwrap().len(), 1);
    assert!(client.delete_nginx("shop", "web").await.unwrap());
    assert!(!client.delete_nginx("shop", "web").await.unwrap());
    assert_eq!(client.get_nginx("shop", "web").await.unwrap(), None);
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_right_code() {
    let (s, client, raw) = start().await;
    let url = format!("http://{}/api/istio/shop/cart", s.addr);
    let put = |body: String| raw.put(&url).header("content-type", "application/json").body(body).send();

    let bad_rate = status_of(client.put_istio("shop", "cart", &istio(1.0, 1.5, 1.0)).await);
    assert_eq!(bad_rate, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(put("{\"rps\":1".into()).await.unwrap().status(), StatusCode::BAD_REQUEST);
    let unknown = r#"{"rps":1,"errorRate":0,"latencyMs":1,"color":"red"}"#;
    assert_eq!(put(unknown.into()).await.unwrap().status(), StatusCode::BAD_REQUEST);
    let missing = r#"{"rps":1,"errorRate":0}"#;
    assert_eq!(put(missing.into()).await.unwrap().status(), StatusCode::BAD_REQUEST);
    let huge = format!(r#"{{"rps":1,"errorRate":0,"latencyMs":1,"x":"{}"}}"#, "a".repeat(MAX_BODY_BYTES));
    assert_eq!(put(huge).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bad_name = status_of(client.put_istio("Shop", "cart", &istio(1.0, 0.0, 1.0)).await);
    assert_eq!(bad_name, StatusCode::BAD_REQUEST);
    let r = raw.post(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // None of that created anything.
    assert!(client.list_istio().await.unwrap().is_empty());
    // The error body says what was wrong.
    match client.put_istio("shop", "cart", &istio(-1.0, 0.0, 1.0)).await {
        Err(ClientError::Status { message, .. }) => assert!(message.contains("rps"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_number_of_workloads_is_bounded() {
    let (_s, client, _) = start().await;
    for i in 0..MAX_STREAMS {
        client.put_istio("shop", &format!("w{i}"), &istio(0.0, 0.0, 1.0)).await.unwrap();
    }
    let full = status_of(client.put_istio("shop", "one-more", &istio(0.0, 0.0, 1.0)).await);
    assert_eq!(full, StatusCode::INSUFFICIENT_STORAGE);
    // Updating an existing one is still fine.
    client.put_istio("shop", "w0", &istio(1.0, 0.0, 1.0)).await.unwrap();
}

#[tokio::test]
async fn metrics_expose_configured_workloads() {
    let (s, client, raw) = start().await;
    client.put_istio("shop", "cart", &istio(100.0, 0.5, 250.0)).await.unwrap();
    let spec = NginxSpec { rps: 100.0, error_rate: 0.25, latency_ms: 40.0, primary_rps: 0.0 };
    client.put_nginx("shop", "web", &spec).await.unwrap();

    let r = raw.get(format!("http://{}/metrics", s.addr)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));

    let samples = client.metrics().await.unwrap();
    let cart = [("reporter", "destination"), ("destination_workload", "cart")];
    let ok = value(&samples, "istio_requests_total", &[cart[0], cart[1], ("response_code", "200")]);
    let failed = value(&samples, "istio_requests_total", &[cart[0], cart[1], ("response_code", "500")]);
    // Synthetic traffic has been accruing since the PUT, half of it failing.
    assert!(ok > 0.0);
    assert!((ok - failed).abs() <= 1e-9 * ok);
    let inf = value(
        &samples,
        "istio_request_duration_milliseconds_bucket",
        &[cart[1], ("response_code", "200"), ("le", "+Inf")],
    );
    let at_250 = value(
        &samples,
        "istio_request_duration_milliseconds_bucket",
        &[cart[1], ("response_code", "200"), ("le", "250")],
    );
    assert!((at_250 - 0.99 * inf).abs() <= 1e-9 * inf);
    // Linkerd's series for the same workload carry its counters (read in the same scrape).
    let linkerd = [("direction", "inbound"), ("namespace", "shop"), ("deployment", "cart")];
    let l_ok = value(
        &samples,
        "response_total",
        &[linkerd[0], linkerd[1], linkerd[2], ("classification", "success")],
    );
    let l_failed = value(
        &samples,
        "response_total",
        &[linkerd[0], linkerd[1], linkerd[2], ("classification", "failure")],
    );
    assert_eq!((l_ok, l_failed), (ok, failed));
    let l_inf =
        value(&samples, "response_latency_ms_bucket", &[linkerd[2], ("status_code", "200"), ("le", "+Inf")]);
    assert_eq!(l_inf, inf);

    let canary = [("ingress", "web"), ("canary", "shop-web-canary-80")];
    let n_ok =
        value(&samples, "nginx_ingress_controller_requests", &[canary[0], canary[1], ("status", "200")]);
    let n_failed =
        value(&samples, "nginx_ingress_controller_requests", &[canary[0], canary[1], ("status", "500")]);
    assert!((n_ok - 3.0 * n_failed).abs() <= 1e-9 * n_ok);

    // Counters never go backwards between scrapes, also across a change.
    client.put_istio("shop", "cart", &istio(1.0, 0.0, 10.0)).await.unwrap();
    let later = client.metrics().await.unwrap();
    let ok_later = value(&later, "istio_requests_total", &[cart[0], cart[1], ("response_code", "200")]);
    assert!(ok_later >= ok);

    // Deleted workloads disappear from the scrape.
    client.delete_istio("shop", "cart").await.unwrap();
    let gone = client.metrics().await.unwrap();
    assert!(!gone.iter().any(|s| s.label("destination_workload") == Some("cart")));
    assert!(!gone.iter().any(|s| s.label("deployment") == Some("cart")));
}

#[tokio::test]
async fn real_traffic_fails_in_the_configured_ratio_and_is_counted() {
    let (s, client, raw) = start().await;
    // No synthetic traffic, so the counters hold exactly the real requests.
    client.put_istio("shop", "cart", &istio(0.0, 0.25, 0.0)).await.unwrap();
    let mut statuses = Vec::new();
    for i in 0..100 {
        // Any method and any suffix count.
        let url = format!("http://{}/traffic/shop/cart/api/items/{i}", s.addr);
        let request = if i % 2 == 0 { raw.get(url) } else { raw.post(url).body("x") };
        statuses.push(request.send().await.unwrap().status());
    }
    let failed = statuses.iter().filter(|s| **s == StatusCode::INTERNAL_SERVER_ERROR).count();
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!((ok, failed), (75, 25));

    let samples = client.metrics().await.unwrap();
    let cart = ("destination_workload", "cart");
    assert_eq!(value(&samples, "istio_requests_total", &[cart, ("response_code", "200")]), 75.0);
    assert_eq!(value(&samples, "istio_requests_total", &[cart, ("response_code", "500")]), 25.0);
    assert_eq!(client.get_istio("shop", "cart").await.unwrap().unwrap().real_requests, 100);

    // No suffix, or just a slash, counts too.
    for path in ["", "/"] {
        let r = raw.get(format!("http://{}/traffic/shop/cart{path}", s.addr)).send().await.unwrap();
        assert!(r.status() == StatusCode::OK || r.status() == StatusCode::INTERNAL_SERVER_ERROR, "{path:?}");
    }
    assert_eq!(client.get_istio("shop", "cart").await.unwrap().unwrap().real_requests, 102);

    // Unconfigured workloads are not counted anywhere.
    assert_eq!(client.istio_request("shop", "nobody").await.unwrap(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn real_traffic_records_the_configured_latency() {
    let (_s, client, _) = start().await;
    let spec = NginxSpec { rps: 0.0, error_rate: 0.1, latency_ms: 20.0, primary_rps: 0.0 };
    client.put_nginx("shop", "web", &spec).await.unwrap();
    // Concurrently, as a load tester would; 100 requests hold exactly one fast and one slow one.
    let results = join_all((0..100).map(|_| client.nginx_request("shop", "web"))).await;
    let failed = results.iter().filter(|r| *r.as_ref().unwrap() == StatusCode::INTERNAL_SERVER_ERROR).count();
    assert_eq!(failed, 10);

    let samples = client.metrics().await.unwrap();
    let canary = ("canary", "shop-web-canary-80");
    let h = "nginx_ingress_controller_response_duration_seconds";
    let count: f64 =
        ["200", "500"].iter().map(|c| value(&samples, &format!("{h}_count"), &[canary, ("status", c)])).sum();
    let sum: f64 =
        ["200", "500"].iter().map(|c| value(&samples, &format!("{h}_sum"), &[canary, ("status", c)])).sum();
    assert_eq!(count, 100.0);
    assert!((sum / count * 1000.0 - 20.0).abs() < 1e-9, "average {}", sum / count * 1000.0);
    let primary = value(&samples, "nginx_ingress_controller_requests", &[("canary", ""), ("status", "200")]);
    assert_eq!(primary, 0.0);
    assert_eq!(client.nginx_request("shop", "other").await.unwrap(), StatusCode::NOT_FOUND);
}
