//! The server on a loopback port with kube's mock client: what each route answers, what it reads
//! from the cluster, and what it turns away.

use std::time::Duration;

use http::{Request as HttpRequest, Response as HttpResponse};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::PodTemplateSpec};
use kube::client::Body;
use serde_json::{Value, json};

use super::*;
use crate::{
    api::{CanaryStatus, Phase},
    fixtures,
};

type Handle = tower_test::mock::Handle<HttpRequest<Body>, HttpResponse<Body>>;

const TOKEN: &str = "0123456789abcdef";

fn deployment() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{"name": "podinfod", "image": "podinfo:6.0.1"}]}
            }
        }
    }))
    .unwrap()
}

fn revision() -> String {
    let template: PodTemplateSpec = deployment().spec.unwrap().template;
    template_revision(&template)
}

fn canary(phase: Phase) -> Canary {
    let mut c = fixtures::canary("podinfo", "test").uid("u1").build();
    c.metadata.resource_version = Some("7".into());
    c.status = Some(CanaryStatus {
        phase,
        canary_weight: 20,
        last_applied_spec: revision(),
        last_promoted_spec: "v1-0000000000000001".into(),
        ..Default::default()
    });
    c
}

/// Serves the dashboard for namespace `test` holding `canaries`, on a free loopback port;
/// returns its address and the mock API server's handle.
async fn serve(canaries: Vec<Canary>) -> (SocketAddr, Handle) {
    let (svc, handle) = tower_test::mock::pair::<HttpRequest<Body>, HttpResponse<Body>>();
    let mut store = Store::default();
    let now = Timestamp::now();
    store.listing_started();
    for c in canaries {
        store.listed(c, now);
    }
    store.listing_done(now);
    store.events_listed();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = App {
        store: Arc::new(Mutex::new(store)),
        client: Client::new(svc, "test"),
        guard: Arc::new(Guard::new(address, TOKEN.into())),
        scope: Arc::new(Scope::Namespace("test".into())),
        timeout: Duration::ZERO,
        targets: Arc::default(),
    };
    tokio::spawn(async move { axum::serve(listener, router(app)).await });
    (address, handle)
}

/// Answers the next request of the client, which must be `method path`, with `reply`.
async fn expect(handle: &mut Handle, method: &str, path: &str, reply: Value) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no {method} {path}"))
        .expect("the client is alive");
    assert_eq!((req.method().as_str(), req.uri().path()), (method, path));
    send.send_response(
        HttpResponse::builder().body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap(),
    );
}

/// Whether the client sends another request within a moment.
async fn quiet(handle: &mut Handle) -> bool {
    tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await.is_err()
}

fn http() -> reqwest::Client {
    crate::http::client_builder().build().unwrap()
}

async fn post(address: SocketAddr, path: &str, headers: &[(&str, String)]) -> (u16, Value) {
    let mut request = http().post(format!("http://{address}{path}"));
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn same_origin(address: SocketAddr) -> Vec<(&'static str, String)> {
    vec![("origin", format!("http://{address}")), (guard::TOKEN_HEADER, TOKEN.into())]
}

#[tokio::test]
async fn pages_come_from_the_store_and_the_target_is_read_once_per_change() {
    let (address, mut handle) = serve(vec![canary(Phase::Progressing)]).await;
    let get = |path: &str| http().get(format!("http://{address}{path}")).send();

    let overview = get("/").await.unwrap();
    assert_eq!(overview.status(), 200);
    for (name, value) in [("x-frame-options", "DENY"), ("cache-control", "no-store")] {
        assert_eq!(overview.headers()[name], value);
    }
    assert!(
        overview.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'")
    );
    let html = overview.text().await.unwrap();
    assert!(html.contains(r#"<tr class="canary phase-progressing" data-canary="test/podinfo">"#), "{html}");
    assert!(html.contains(&format!(r#"<meta name="veer-token" content="{TOKEN}">"#)));
    assert!(quiet(&mut handle).await, "the overview reads nothing from the cluster");

    let rows: Value = get("/api/canaries").await.unwrap().json().await.unwrap();
    assert_eq!(
        (rows[0]["name"].as_str(), rows[0]["phase"].as_str(), rows[0]["weight"].as_i64()),
        (Some("podinfo"), Some("Progressing"), Some(20))
    );

    // The Canary's page reads the target's revision once for its buttons.
    let page = tokio::spawn(get("/canaries/test/podinfo"));
    expect(
        &mut handle,
        "GET",
        "/apis/apps/v1/namespaces/test/deployments/podinfo",
        serde_json::to_value(deployment()).unwrap(),
    )
    .await;
    let html = page.await.unwrap().unwrap().text().await.unwrap();
    assert!(html.contains(r#"data-control="abort" data-url="/api/canaries/test/podinfo/abort" data-confirm="1">Abort</button>"#), "{html}");
    assert!(
        html.contains(r#"id="btn-retry""#) && html.contains("nothing to retry: the Canary is Progressing"),
        "{html}"
    );
    assert!(html.contains("the last 500 changes of this Canary"));
    let detail: Value = get("/api/canaries/test/podinfo").await.unwrap().json().await.unwrap();
    assert!(quiet(&mut handle).await, "the same Canary: the revision is remembered");
    assert_eq!(detail["buttons"][2], json!({"control": "abort", "enabled": true, "why": null}));
    assert_eq!(detail["samples"][0]["weight"], 20);

    let missing = get("/canaries/test/other").await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("No Canary other.test in namespace test"));
    assert_eq!(get("/api/canaries/test/other").await.unwrap().status(), 404);
    assert_eq!(get("/healthz").await.unwrap().text().await.unwrap(), "ok\n");
}

#[tokio::test]
async fn other_hosts_other_origins_and_requests_without_the_token_are_turned_away() {
    let (address, mut handle) = serve(vec![canary(Phase::Progressing)]).await;
    let rebound =
        http().get(format!("http://{address}/")).header("host", "evil.example:3100").send().await.unwrap();
    assert_eq!(rebound.status(), 403);
    assert!(!rebound.text().await.unwrap().contains(TOKEN));

    let path = "/api/canaries/test/podinfo/abort";
    let (status, body) = post(address, path, &[]).await;
    assert_eq!((status, body["ok"].as_bool()), (403, Some(false)));
    assert!(body["message"].as_str().unwrap().contains("no Origin"), "{body}");
    let (status, body) =
        post(address, path, &[("origin", "http://evil.example".into()), (guard::TOKEN_HEADER, TOKEN.into())])
            .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(address, path, &[("origin", format!("http://{address}"))]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("token"), "{body}");
    assert!(quiet(&mut handle).await, "nothing was sent to the cluster");

    let (status, _) = post(address, "/api/canaries/test/podinfo/explode", &same_origin(address)).await;
    assert_eq!(status, 404);
    let (status, body) = post(address, "/api/canaries/elsewhere/podinfo/abort", &same_origin(address)).await;
    assert_eq!(status, 404, "only the Canaries on show: {body}");
    assert!(quiet(&mut handle).await);
}

#[tokio::test]
async fn a_button_sends_the_request_bound_to_the_targets_revision() {
    let (address, mut handle) = serve(vec![canary(Phase::Progressing)]).await;
    let sent = tokio::spawn(async move {
        post(address, "/api/canaries/test/podinfo/abort", &same_origin(address)).await
    });
    let live = serde_json::to_value(canary(Phase::Progressing)).unwrap();
    expect(&mut handle, "GET", "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo", live.clone())
        .await;
    expect(
        &mut handle,
        "GET",
        "/apis/apps/v1/namespaces/test/deployments/podinfo",
        serde_json::to_value(deployment()).unwrap(),
    )
    .await;
    expect(&mut handle, "PATCH", "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo", live).await;
    let (status, body) = sent.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], format!("podinfo.test: requested abort@{}", revision()));

    // What admit refuses is refused with its words, and nothing is written.
    let (address, mut handle) = serve(vec![canary(Phase::Succeeded)]).await;
    let sent = tokio::spawn(async move {
        post(address, "/api/canaries/test/podinfo/abort", &same_origin(address)).await
    });
    let live = serde_json::to_value(canary(Phase::Succeeded)).unwrap();
    expect(&mut handle, "GET", "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo", live).await;
    expect(
        &mut handle,
        "GET",
        "/apis/apps/v1/namespaces/test/deployments/podinfo",
        serde_json::to_value(deployment()).unwrap(),
    )
    .await;
    let (status, body) = sent.await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["message"],
        "podinfo.test: nothing to abort: no analysis is running (deploy a new revision first)"
    );
    assert!(quiet(&mut handle).await, "no write");
}

#[tokio::test]
async fn an_unreadable_target_disables_the_requests_and_says_why() {
    let (address, mut handle) = serve(vec![canary(Phase::Progressing)]).await;
    let detail = tokio::spawn(http().get(format!("http://{address}/api/canaries/test/podinfo")).send());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.uri().path(), "/apis/apps/v1/namespaces/test/deployments/podinfo");
    let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": "deployments.apps \"podinfo\" is forbidden: User \"alice\" cannot get resource"});
    send.send_response(
        HttpResponse::builder()
            .status(403)
            .body(Body::from(serde_json::to_vec(&forbidden).unwrap()))
            .unwrap(),
    );
    let detail: Value = detail.await.unwrap().unwrap().json().await.unwrap();
    let abort = &detail["buttons"][2];
    assert_eq!(abort["enabled"], false);
    assert!(abort["why"].as_str().unwrap().contains("cannot read Deployment podinfo.test"), "{abort}");
    assert_eq!(detail["buttons"][4], json!({"control": "pause", "enabled": true, "why": null}));
}

#[test]
fn watch_errors_read_as_the_api_server_says_them() {
    let forbidden = kube::core::Status {
        code: 403,
        reason: "Forbidden".into(),
        message: "events is forbidden: User \"alice\" cannot list resource \"events\"".into(),
        ..Default::default()
    };
    let e = watcher::Error::InitialListFailed(kube::Error::Api(Box::new(forbidden)));
    assert_eq!(
        watch_error(&e),
        "Forbidden: events is forbidden: User \"alice\" cannot list resource \"events\""
    );
    let gone =
        kube::core::Status { code: 410, message: "too old resource version".into(), ..Default::default() };
    assert_eq!(
        watch_error(&watcher::Error::WatchError(Box::new(gone))),
        "too old resource version (HTTP 410)"
    );
    let e = watcher::Error::WatchFailed(kube::Error::LinesCodecMaxLineLengthExceeded);
    assert!(watch_error(&e).starts_with("cannot reach the API server: "), "{}", watch_error(&e));
}
