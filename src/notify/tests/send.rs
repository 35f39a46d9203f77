//! Delivery against local HTTP receivers (127.0.0.1, bounded waits).

use std::time::{Duration, Instant};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::*;
use crate::notify::{Delivery, GlobalAlerts, Notifier, ProviderKind, ResolveError, SendError, targets};

/// One request as a receiver saw it.
#[derive(Debug)]
struct Received {
    /// The request target: a path, or an absolute URL when the receiver is used as a proxy.
    uri: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

struct Receiver {
    base: String,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .expect("no request within 5s")
            .unwrap()
    }
}

/// A receiver answering every request with `status` and `body` after `delay`. Also serves as an
/// HTTP proxy that answers instead of forwarding.
async fn receiver(status: u16, body: &'static str, delay: Duration) -> Receiver {
    type S = (mpsc::UnboundedSender<Received>, u16, &'static str, Duration);
    async fn handle(
        State((tx, status, answer, delay)): State<S>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, &'static str) {
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
        let _ = tx.send(Received {
            uri: uri.to_string(),
            authorization: header("authorization"),
            content_type: header("content-type"),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        tokio::time::sleep(delay).await;
        (StatusCode::from_u16(status).unwrap(), answer)
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().fallback(handle).with_state((tx, status, body, delay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { base, rx }
}

fn notifier() -> Notifier {
    Notifier::new(GlobalAlerts::default()).unwrap()
}

/// The delivery of an error alert of `podinfo.test` to an AlertProvider with this spec (Secret
/// `hook` available in `test`).
fn delivery(spec: AlertProviderSpec, secret_data: &[(&str, &str)]) -> Delivery {
    let c = canary(Some(vec![entry("a", None, "chat", None)]));
    let p = params(&c);
    let cache = Cache::default().with_provider(provider("test", "chat", spec)).with_secret(secret(
        "test",
        "hook",
        secret_data,
    ));
    let mut got = targets(&alert(&c, &p, Severity::Error, true), &cache, &GlobalAlerts::default());
    assert_eq!(got.len(), 1);
    got.remove(0).unwrap()
}

#[tokio::test]
async fn each_type_posts_its_body_as_json_to_its_path() {
    let mut r = receiver(200, "ok", Duration::ZERO).await;
    for kind in ProviderKind::ALL {
        let d = delivery(spec(kind.as_str(), &format!("{}/hook", r.base)), &[]);
        notifier().deliver(&d).await.unwrap();
        let got = r.next().await;
        let path = if kind == ProviderKind::Discord { "/hook/slack" } else { "/hook" };
        assert_eq!(got.uri, path, "{kind:?}");
        assert_eq!(got.content_type.as_deref(), Some("application/json"), "{kind:?}");
        assert_eq!(got.authorization, None, "{kind:?}");
        assert_eq!(got.body, d.payload, "{kind:?}");
        assert_ne!(got.body, Value::Null);
    }
}

#[tokio::test]
async fn the_secret_token_is_a_bearer_token_for_slack_only() {
    let mut r = receiver(200, "ok", Duration::ZERO).await;
    let data = [("address", format!("{}/hook", r.base)), ("token", "xoxb-42".to_string())];
    let data: Vec<(&str, &str)> = data.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (kind, expected) in [("slack", Some("Bearer xoxb-42")), ("msteams", None), ("rocket", None)] {
        notifier().deliver(&delivery(secret_spec(kind, "hook"), &data)).await.unwrap();
        assert_eq!(r.next().await.authorization.as_deref(), expected, "{kind}");
    }
}

#[tokio::test]
async fn an_error_status_is_an_error_with_the_trimmed_body() {
    let mut r = receiver(500, "  invalid_payload\n", Duration::ZERO).await;
    let err =
        notifier().deliver(&delivery(spec("slack", &format!("{}/hook", r.base)), &[])).await.unwrap_err();
    r.next().await;
    assert_eq!(
        err.to_string(),
        "alert to AlertProvider test/chat (slack) rejected: HTTP 500 Internal Server Error: invalid_payload"
    );

    // Any 2xx is a success.
    let _r = receiver(204, "", Duration::ZERO).await;
    notifier().deliver(&delivery(spec("slack", &format!("{}/hook", _r.base)), &[])).await.unwrap();
}

#[tokio::test]
async fn an_endless_error_body_is_cut_and_the_delivery_ends_at_once() {
    let (url, _server) = crate::http::endless_body_server(500).await;
    let d = delivery(spec("slack", &format!("{url}/hook")), &[]);
    let started = Instant::now();
    let err = notifier().with_timeout(Duration::from_secs(30)).deliver(&d).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(
        err,
        SendError::Status {
            receiver: "AlertProvider test/chat (slack)".into(),
            status: reqwest::StatusCode::INTERNAL_SERVER_ERROR,
            body: format!("{}…", "x".repeat(512)),
        }
    );
}

#[tokio::test]
async fn a_slow_receiver_times_out() {
    let r = receiver(200, "ok", Duration::from_secs(3)).await;
    let d = delivery(spec("msteams", &format!("{}/hook", r.base)), &[]);
    let started = Instant::now();
    let err = notifier().with_timeout(Duration::from_millis(200)).deliver(&d).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(
        err,
        SendError::Timeout {
            receiver: "AlertProvider test/chat (msteams)".into(),
            after: Duration::from_millis(200)
        }
    );
}

#[tokio::test]
async fn an_unreachable_receiver_is_an_error_that_does_not_reveal_the_url() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}/services/very-secret", listener.local_addr().unwrap());
    drop(listener);
    let err = notifier().deliver(&delivery(spec("gchat", &address), &[])).await.unwrap_err();
    assert!(matches!(err, SendError::Request { .. }), "{err:?}");
    assert!(!err.to_string().contains("very-secret"), "{err}");
}

#[tokio::test]
async fn the_proxy_is_used() {
    let mut proxy = receiver(200, "ok", Duration::ZERO).await;
    // `.invalid` never resolves: only a proxy can deliver this.
    let spec =
        AlertProviderSpec { proxy: Some(proxy.base.clone()), ..spec("slack", "http://alerts.invalid/hook") };
    let d = delivery(spec, &[]);
    notifier().deliver(&d).await.unwrap();
    let got = proxy.next().await;
    assert_eq!(got.uri, "http://alerts.invalid/hook");
    assert_eq!(got.body, d.payload);
}

#[tokio::test]
async fn alert_returns_resolution_errors_and_delivers_in_the_background() {
    let mut r = receiver(200, "ok", Duration::ZERO).await;
    let c = canary(Some(vec![entry("ok", None, "chat", None), entry("missing", Some("warn"), "gone", None)]));
    let p = params(&c);
    let cache =
        Cache::default().with_provider(provider("test", "chat", spec("slack", &format!("{}/hook", r.base))));
    let errors = notifier().alert(&alert(&c, &p, Severity::Warn, false), &cache);
    assert!(
        matches!(&errors[..], [ResolveError::ProviderNotFound { alert, .. }] if alert == "missing"),
        "{errors:?}"
    );
    assert_eq!(r.next().await.body["attachments"][0]["text"], "Failed checks threshold reached 5");
}

#[tokio::test]
async fn global_receivers_are_used_by_alert() {
    let mut r = receiver(200, "ok", Duration::ZERO).await;
    let global = GlobalAlerts {
        slack_url: format!("{}/slack", r.base),
        slack_token: "xoxb-global".into(),
        msteams_url: format!("{}/teams", r.base),
        ..Default::default()
    };
    let c = canary(None);
    let p = params(&c);
    let errors =
        Notifier::new(global).unwrap().alert(&alert(&c, &p, Severity::Info, false), &Cache::default());
    assert_eq!(errors, vec![]);
    let mut got = [r.next().await, r.next().await];
    got.sort_by(|a, b| a.uri.cmp(&b.uri));
    assert_eq!(
        (got[0].uri.as_str(), got[0].authorization.as_deref()),
        ("/slack", Some("Bearer xoxb-global"))
    );
    assert_eq!((got[1].uri.as_str(), got[1].authorization.as_deref()), ("/teams", None));
    assert_eq!(got[1].body["@type"], "MessageCard");
}

#[tokio::test]
async fn a_failed_background_delivery_is_logged_not_raised() {
    let mut r = receiver(503, "down", Duration::ZERO).await;
    let d = delivery(spec("rocket", &format!("{}/hook", r.base)), &[]);
    notifier().send(d).await.expect("the task completes without panicking");
    r.next().await;
}
