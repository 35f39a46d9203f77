//! An API server that answers a scripted list of requests, in the style of kube-rs's
//! controller-rs `ApiServerVerifier`: a task owns the mock client's `Handle`, checks each request
//! against the next expectation, answers it, and records what was sent. A request that is not the
//! expected one, an expected request that never comes, and a request after the script all fail the
//! test with the request named (method, path, body excerpt). Every wait is bounded.

use std::time::Duration;

use http::{Request, Response};
use kube::{Client, client::Body};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The longest the verifier waits for an expected request.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long the verifier watches for a stray request once the code under test returned. Every
/// request the reconcile makes is awaited inline (its Events are recorded by `Scenario::reconcile`
/// before it returns), so it is already queued when it returns; this window only catches a write
/// spawned in the background.
const QUIET: Duration = Duration::from_millis(50);

/// What the API server answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// The request body, with a fresh `metadata.resourceVersion` (a server-side apply or create).
    Echo,
    /// `base` with the request body merged onto it (RFC 7386) and a fresh resourceVersion: a
    /// merge patch, or a status patch answered with the whole object.
    Onto(Value),
    /// A `Status` failure with this HTTP code and reason.
    Fail(u16, &'static str),
}

/// One expected request.
#[derive(Clone, Debug)]
pub struct Expect {
    method: &'static str,
    path: String,
    query: Option<String>,
    reply: Reply,
}

/// A request `method` on exactly `path` (the query is not compared unless [`Expect::query`]).
pub fn expect(method: &'static str, path: impl Into<String>) -> Expect {
    Expect { method, path: path.into(), query: None, reply: Reply::Echo }
}

impl Expect {
    /// The query string must contain `part` (e.g. `force=true`).
    pub fn query(mut self, part: &str) -> Expect {
        self.query = Some(part.to_string());
        self
    }

    pub fn reply(mut self, reply: Reply) -> Expect {
        self.reply = reply;
        self
    }

    fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A request the verifier answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
    /// What was answered (for replies that are JSON).
    pub reply: Value,
}

impl Recorded {
    /// `PATCH /apis/apps/v1/namespaces/test/deployments/podinfo-primary`
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The mock API server: answers the requests of one round (one reconcile, say) at a time.
pub struct ApiServer {
    handle: Option<Handle>,
    round: Option<Round>,
}

/// A round being served, and how to tell it the code under test returned.
type Round = (JoinHandle<(Handle, Vec<Recorded>)>, oneshot::Sender<()>);

/// A client and the mock API server behind it.
pub fn mock() -> (Client, ApiServer) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "default"), ApiServer { handle: Some(handle), round: None })
}

impl ApiServer {
    fn start<F>(&mut self, serve: impl FnOnce(Handle, oneshot::Receiver<()>) -> F)
    where
        F: std::future::Future<Output = (Handle, Vec<Recorded>)> + Send + 'static,
    {
        assert!(self.round.is_none(), "verify the previous round first");
        let handle = self.handle.take().expect("the mock handle (lost when a round failed)");
        let (done, finished) = oneshot::channel();
        self.round = Some((tokio::spawn(serve(handle, finished)), done));
    }

    /// The next requests must be `script`, in order, and nothing else.
    pub fn script(&mut self, script: Vec<Expect>) {
        self.start(|h, f| serve(h, script, f));
    }

    /// The next requests are all answered with [`Reply::Echo`] (a status or merge patch of the
    /// Canary with `canary` patched), in whatever order they come: to learn what a reconcile
    /// writes, not to check it.
    pub fn record(&mut self, canary: Value) {
        self.start(|h, f| serve_all(h, canary, f));
    }

    /// Call once the code under test returned: fails the test when an expected request did not
    /// come or another one did; returns the requests answered, in order.
    pub async fn verify(&mut self) -> Vec<Recorded> {
        let (task, done) = self.round.take().expect("a round to verify");
        let _ = done.send(());
        let (handle, recorded) = match tokio::time::timeout(PATIENCE * 2, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Err(e)) => panic!("the verifier task failed: {e}"),
            Err(_) => panic!("the verifier did not finish within {:?}", PATIENCE * 2),
        };
        self.handle = Some(handle);
        recorded
    }
}

fn excerpt(body: &Value) -> String {
    let s = body.to_string();
    match s.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

fn history(recorded: &[Recorded]) -> String {
    if recorded.is_empty() {
        return "  (none)".into();
    }
    recorded.iter().map(|r| format!("  {}", r.line())).collect::<Vec<_>>().join("\n")
}

/// A request taken off the handle, its body read.
struct Incoming {
    method: String,
    path: String,
    query: String,
    body: Value,
    send: tower_test::mock::SendResponse<Response<Body>>,
}

async fn take(req: Request<Body>, send: tower_test::mock::SendResponse<Response<Body>>) -> Incoming {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let bytes = req.into_body().collect_bytes().await.expect("a request body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Incoming { method, path, query, body, send }
}

/// RFC 7386 JSON merge patch.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn answer(incoming: Incoming, reply: &Reply, version: &mut u64) -> Recorded {
    let with_version = |mut v: Value, version: &mut u64| {
        *version += 1;
        if v.is_object() {
            if !v["metadata"].is_object() {
                v["metadata"] = json!({});
            }
            v["metadata"]["resourceVersion"] = json!(version.to_string());
        }
        v
    };
    let (code, reply_body) = match reply {
        Reply::Echo => (200, with_version(incoming.body.clone(), version)),
        Reply::Onto(base) => {
            let mut v = base.clone();
            // The version the client sent is a precondition, not a value to keep.
            let mut body = incoming.body.clone();
            if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            merge(&mut v, &body);
            (200, with_version(v, version))
        }
        Reply::Fail(code, reason) => (
            *code,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "code": code, "reason": reason,
                   "message": format!("{} {} is {reason} (scripted)", incoming.method, incoming.path)}),
        ),
    };
    let response = Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&reply_body).expect("a JSON reply")))
        .expect("a response");
    incoming.send.send_response(response);
    Recorded {
        method: incoming.method,
        path: incoming.path,
        query: incoming.query,
        body: incoming.body,
        reply: reply_body,
    }
}

/// Answers `script` in order, then checks that nothing else comes.
async fn serve(
    mut handle: Handle,
    script: Vec<Expect>,
    mut finished: oneshot::Receiver<()>,
) -> (Handle, Vec<Recorded>) {
    let mut recorded: Vec<Recorded> = Vec::new();
    let mut version = 100;
    let mut returned = false;
    for (i, want) in script.iter().enumerate() {
        let next = if returned {
            // The code under test returned: what it sent is queued already.
            match futures::FutureExt::now_or_never(handle.next_request()) {
                Some(r) => r,
                None => panic!(
                    "expected request #{} {}, but the code under test returned without making it; \
                     requests answered before:\n{}",
                    i + 1,
                    want.describe(),
                    history(&recorded)
                ),
            }
        } else {
            tokio::select! {
                r = handle.next_request() => r,
                _ = &mut finished => {
                    returned = true;
                    futures::FutureExt::now_or_never(handle.next_request()).unwrap_or_else(|| panic!(
                        "expected request #{} {}, but the code under test returned without making it; \
                         requests answered before:\n{}",
                        i + 1,
                        want.describe(),
                        history(&recorded)
                    ))
                }
                _ = tokio::time::sleep(PATIENCE) => panic!(
                    "expected request #{} {}, but none came within {PATIENCE:?}; requests answered before:\n{}",
                    i + 1,
                    want.describe(),
                    history(&recorded)
                ),
            }
        };
        let Some((req, send)) = next else {
            panic!(
                "expected request #{} {}, but the client was dropped; requests answered before:\n{}",
                i + 1,
                want.describe(),
                history(&recorded)
            )
        };
        let incoming = take(req, send).await;
        let query_ok = want.query.as_ref().is_none_or(|q| incoming.query.contains(q.as_str()));
        if incoming.method != want.method || incoming.path != want.path || !query_ok {
            panic!(
                "request #{} was {} {}?{} with body {}\nbut the script expected {}{}\nrequests answered before:\n{}",
                i + 1,
                incoming.method,
                incoming.path,
                incoming.query,
                excerpt(&incoming.body),
                want.describe(),
                want.query.as_ref().map(|q| format!(" with query containing {q:?}")).unwrap_or_default(),
                history(&recorded)
            );
        }
        recorded.push(answer(incoming, &want.reply, &mut version));
    }
    // Nothing after the script: neither before the code under test returns, nor queued when it
    // does, nor within a short window after.
    let stray = if returned {
        tokio::time::timeout(QUIET, handle.next_request()).await.ok().flatten()
    } else {
        tokio::select! {
            r = handle.next_request() => r,
            _ = &mut finished => tokio::time::timeout(QUIET, handle.next_request()).await.ok().flatten(),
            _ = tokio::time::sleep(PATIENCE) => panic!(
                "the code under test did not return within {PATIENCE:?} of the last request; answered:\n{}",
                history(&recorded)
            ),
        }
    };
    if let Some((req, send)) = stray {
        let incoming = take(req, send).await;
        panic!(
            "unexpected request after the script: {} {}?{} with body {}\nrequests answered before:\n{}",
            incoming.method,
            incoming.path,
            incoming.query,
            excerpt(&incoming.body),
            history(&recorded)
        );
    }
    (handle, recorded)
}

/// Answers every request (see [`ApiServer::record`]) until the code under test returned.
async fn serve_all(
    mut handle: Handle,
    canary: Value,
    mut finished: oneshot::Receiver<()>,
) -> (Handle, Vec<Recorded>) {
    let mut recorded = Vec::new();
    let mut version = 100;
    let mut returned = false;
    loop {
        let next = if returned {
            match tokio::time::timeout(QUIET, handle.next_request()).await {
                Ok(r) => r,
                Err(_) => return (handle, recorded),
            }
        } else {
            tokio::select! {
                r = handle.next_request() => r,
                _ = &mut finished => { returned = true; continue; }
                _ = tokio::time::sleep(PATIENCE) => panic!(
                    "the code under test neither made a request nor returned within {PATIENCE:?}; answered:\n{}",
                    history(&recorded)
                ),
            }
        };
        let Some((req, send)) = next else { return (handle, recorded) };
        let incoming = take(req, send).await;
        let reply = if incoming.path.ends_with("/status") || incoming.path.contains("/canaries/") {
            Reply::Onto(canary.clone())
        } else {
            Reply::Echo
        };
        recorded.push(answer(incoming, &reply, &mut version));
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::{Api, api::PostParams};

    use super::*;

    fn config_map(name: &str) -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "test"}})).unwrap()
    }

    async fn create(client: &Client, name: &str) -> Result<ConfigMap, kube::Error> {
        Api::<ConfigMap>::namespaced(client.clone(), "test")
            .create(&PostParams::default(), &config_map(name))
            .await
    }

    const PATH: &str = "/api/v1/namespaces/test/configmaps";

    #[tokio::test]
    async fn the_scripted_requests_are_answered_and_recorded() {
        let (client, mut api) = mock();
        api.script(vec![expect("POST", PATH), expect("POST", PATH).reply(Reply::Fail(403, "Forbidden"))]);
        let created = create(&client, "a").await.unwrap();
        assert_eq!(created.metadata.resource_version.as_deref(), Some("101"));
        let e = create(&client, "b").await.unwrap_err();
        assert!(matches!(e, kube::Error::Api(s) if s.code == 403), "the scripted failure");
        let recorded = api.verify().await;
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[1].body["metadata"]["name"], "b");
        // The next round starts afresh on the same client.
        api.script(vec![]);
        assert!(api.verify().await.is_empty());
    }

    #[tokio::test]
    #[should_panic(expected = "request #1 was POST /api/v1/namespaces/test/configmaps")]
    async fn an_unexpected_request_fails_naming_it() {
        let (client, mut api) = mock();
        api.script(vec![expect("PATCH", PATH)]);
        let _ = create(&client, "a").await;
        api.verify().await;
    }

    #[tokio::test]
    #[should_panic(expected = "returned without making it")]
    async fn a_missing_request_fails_naming_it() {
        let (_client, mut api) = mock();
        api.script(vec![expect("POST", PATH)]);
        api.verify().await;
    }

    #[tokio::test]
    #[should_panic(expected = "unexpected request after the script: POST /api/v1/namespaces/test/configmaps")]
    async fn a_request_after_the_script_fails_naming_it() {
        let (client, mut api) = mock();
        api.script(vec![]);
        let _ = create(&client, "a").await;
        api.verify().await;
    }

    #[test]
    fn merge_patches_follow_rfc_7386() {
        let mut base = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut base, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(base, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }
}
