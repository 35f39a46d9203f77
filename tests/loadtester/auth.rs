//! Authentication over HTTP: the static token and ServiceAccount tokens checked by a stand-in for
//! the API server's TokenReview (the real one is in tests/e2e_loadtester_auth.rs).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use veer::loadtester::auth::{Review, ReviewError, TokenReviewPolicy, TokenReviewer};
use veer::loadtester::gates::MemoryGateStore;
use veer::loadtester::{Config, Token};

use crate::support::{Api, client, get, payload, post_with};

const CONTROLLER: &str = "system:serviceaccount:veer-system:veer";
// JWT-shaped: three dot-separated parts (the stand-in does not decode them).
const CONTROLLER_TOKEN: &str = "h.controller.s";
const OTHER_TOKEN: &str = "h.other.s";
const WRONG_AUDIENCE_TOKEN: &str = "h.wrong-audience.s";
const API_DOWN_TOKEN: &str = "h.api-down.s";

/// Answers TokenReviews from a fixed table and counts them.
#[derive(Default)]
struct ApiServer {
    calls: AtomicUsize,
}

impl TokenReviewer for ApiServer {
    fn review<'a>(&'a self, token: &'a str, audience: &'a str) -> BoxFuture<'a, Result<Review, ReviewError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let user = |name: &str| Review {
            authenticated: true,
            username: Some(name.into()),
            audiences: vec![audience.into()],
            error: None,
        };
        let answer = match token {
            CONTROLLER_TOKEN => Ok(user(CONTROLLER)),
            OTHER_TOKEN => Ok(user("system:serviceaccount:test:default")),
            WRONG_AUDIENCE_TOKEN => {
                Ok(Review { error: Some("token audiences are invalid".into()), ..Review::default() })
            }
            API_DOWN_TOKEN => Err(ReviewError::Api("dial tcp 10.0.0.1:443: connection refused".into())),
            _ => Ok(Review::default()),
        };
        Box::pin(async move { answer })
    }
}

fn config(unauthenticated_metrics: bool) -> Config {
    Config {
        token: Some(Token::new("ci-token")),
        token_review: Some(TokenReviewPolicy {
            audience: "veer-loadtester".into(),
            allowed: BTreeSet::from([CONTROLLER.parse().unwrap()]),
        }),
        unauthenticated_metrics,
        ..Config::default()
    }
}

#[tokio::test]
async fn service_account_tokens_are_checked_on_every_endpoint() {
    let api_server = Arc::new(ApiServer::default());
    let api =
        Api::start_with_reviewer(config(false), Arc::new(MemoryGateStore::default()), api_server.clone())
            .await;
    let p = payload("test", &[]);
    for path in ["/gate/check", "/gate/open", "/rollback/check", "/gate/approve", "/", "/any"] {
        let url = api.url(path);
        let (status, body) = post_with(&url, &p, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("Authorization: Bearer") && body.contains("veer-loadtester"), "{body}");
        let (status, body) = post_with(&url, &p, Some(WRONG_AUDIENCE_TOKEN)).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("does not accept it for audience"), "{body}");
        let (status, body) = post_with(&url, &p, Some(OTHER_TOKEN)).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("system:serviceaccount:test:default may not use this load tester"), "{body}");
        let (status, body) = post_with(&url, &p, Some(API_DOWN_TOKEN)).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(body.contains("connection refused"), "{body}");
        let (status, body) = post_with(&url, &p, Some("not-a-jwt")).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let response = client().post(api.url("/gate/check")).body(p.clone()).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    // The controller's token and the static token both work; the gate itself answers as usual.
    assert_eq!(
        post_with(&api.url("/gate/check"), &p, Some(CONTROLLER_TOKEN)).await,
        (403, "Forbidden".into())
    );
    assert_eq!(post_with(&api.url("/gate/open"), &p, Some("ci-token")).await.0, 202);
    assert_eq!(
        post_with(&api.url("/gate/check"), &p, Some(CONTROLLER_TOKEN)).await,
        (200, "Approved".into())
    );
    assert_eq!(post_with(&api.url("/gate/check"), &p, Some("ci-token")).await, (200, "Approved".into()));

    // One TokenReview per token, not per request: one each for the controller's, the other
    // account's and the wrong-audience token; failed reviews are not cached, so one per request
    // (six paths) for the token the API server could not check.
    assert_eq!(api_server.calls.load(Ordering::SeqCst), 1 + 1 + 1 + 6);

    assert_eq!(get(&api.url("/healthz"), None).await, (200, "OK".into()));
    assert_eq!(get(&api.url("/metrics"), None).await.0, 401);
    assert_eq!(get(&api.url("/metrics"), Some(CONTROLLER_TOKEN)).await.0, 200);
    api.stop().await;
}

#[tokio::test]
async fn metrics_can_be_scraped_without_a_token() {
    let api = Api::start_with_reviewer(
        config(true),
        Arc::new(MemoryGateStore::default()),
        Arc::new(ApiServer::default()),
    )
    .await;
    let (status, body) = get(&api.url("/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(body.contains("veer_loadtester_load_runs_active 0"), "{body}");
    assert_eq!(post_with(&api.url("/gate/check"), &payload("test", &[]), None).await.0, 401);
    api.stop().await;
}

#[tokio::test]
async fn without_a_reviewer_service_account_tokens_get_503() {
    // router() with a TokenReview policy but no client: fail closed, the static token still works.
    let api = Api::start(config(false), Arc::new(MemoryGateStore::default())).await;
    let p = payload("test", &[]);
    let (status, body) = post_with(&api.url("/gate/check"), &p, Some(CONTROLLER_TOKEN)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(post_with(&api.url("/gate/check"), &p, Some("ci-token")).await.0, 403);
    api.stop().await;
}
