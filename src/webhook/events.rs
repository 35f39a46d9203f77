//! Event webhooks delivered in order, off the reconcile path.
//!
//! Flagger calls a Canary's event webhooks synchronously, one Event after the other, so a receiver
//! sees a run's Events in the order they happened; a slow receiver then holds up every Canary.
//! Here each Canary has its own queue with one sender task: Events keep their order per Canary and
//! hook, and a slow or failing receiver (with its own timeout and retries) delays only the Events
//! of the Canaries that use it. A sender task ends once its queue has been empty for
//! [`IDLE`], so an idle Canary costs nothing.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::sync::mpsc;

use super::WebhookClient;
use crate::api::{CanaryWebhook, WebhookPayload};

/// How long a sender task waits for another Event before it ends.
const IDLE: Duration = Duration::from_secs(60);
/// Most Events waiting for one Canary's receivers. A run sends a few dozen; beyond this the
/// receiver has been failing for a long time, and the newest Events are dropped with a warning.
pub const QUEUE_LENGTH: usize = 1000;

/// One Event for one event webhook.
#[derive(Clone, Debug)]
pub struct EventCall {
    pub hook: CanaryWebhook,
    pub payload: WebhookPayload,
    pub message: String,
    pub warning: bool,
    pub unix_millis: i64,
}

/// The per-Canary queues, keyed by `namespace/name`.
#[derive(Debug, Default)]
pub struct EventQueues(Mutex<HashMap<String, mpsc::Sender<EventCall>>>);

/// Why an Event was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("{QUEUE_LENGTH} Events are already waiting for the event webhooks of {0}: dropped")]
    Full(String),
}

impl WebhookClient {
    /// Queues Events for the event webhooks of the Canary `key`, to be sent in this order after
    /// the Events queued before them. Returns without waiting for delivery.
    pub fn queue_events(&self, key: &str, calls: Vec<EventCall>) -> Result<(), QueueError> {
        let mut queues = self.events.0.lock().expect("event queues lock");
        for mut call in calls {
            if let Some(tx) = queues.get(key) {
                match tx.try_send(call) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Full(_)) => return Err(QueueError::Full(key.to_string())),
                    // Cannot happen while the lock is held (a task removes its sender before it
                    // ends); start a new task all the same.
                    Err(mpsc::error::TrySendError::Closed(c)) => call = c,
                }
            }
            let (tx, rx) = mpsc::channel(QUEUE_LENGTH);
            tx.try_send(call).expect("a new queue has room");
            queues.insert(key.to_string(), tx.clone());
            tokio::spawn(self.clone().deliver(key.to_string(), tx, rx));
        }
        Ok(())
    }

    /// Sends the queued Events one by one until the queue stays empty for [`IDLE`].
    async fn deliver(self, key: String, tx: mpsc::Sender<EventCall>, mut rx: mpsc::Receiver<EventCall>) {
        loop {
            match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(c)) => {
                    if let Err(e) =
                        self.send_event(&c.hook, &c.payload, &c.message, c.warning, c.unix_millis).await
                    {
                        tracing::warn!(canary = %key, hook = %c.hook.name, error = %e, "event webhook failed");
                    }
                }
                Ok(None) => return,
                Err(_) => {
                    // Under the lock nothing can be queued: end only when nothing came meanwhile.
                    let mut queues = self.events.0.lock().expect("event queues lock");
                    if rx.is_empty() {
                        if queues.get(&key).is_some_and(|t| t.same_channel(&tx)) {
                            queues.remove(&key);
                        }
                        return;
                    }
                }
            }
        }
    }

    /// Canaries with a sender task running (tests).
    #[cfg(test)]
    pub fn event_senders(&self) -> usize {
        self.events.0.lock().expect("event queues lock").len()
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use axum::{Json, Router, extract::State, routing::post};

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

    /// A receiver that records the path and body of each call; `/slow` answers after 50 ms and
    /// `/fail` with HTTP 500 after 10 ms.
    async fn receiver() -> (String, Seen) {
        let seen: Seen = Default::default();
        async fn handle(
            State(seen): State<Seen>,
            uri: axum::http::Uri,
            Json(body): Json<serde_json::Value>,
        ) -> axum::http::StatusCode {
            let path = uri.path().to_string();
            match path.as_str() {
                "/slow" => tokio::time::sleep(Duration::from_millis(50)).await,
                "/fail" => tokio::time::sleep(Duration::from_millis(10)).await,
                _ => {}
            }
            let failed = path == "/fail";
            seen.lock().unwrap().push((path, body));
            if failed { axum::http::StatusCode::INTERNAL_SERVER_ERROR } else { axum::http::StatusCode::OK }
        }
        let app = Router::new().fallback(post(handle)).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    fn call(url: &str, message: &str) -> EventCall {
        EventCall {
            hook: CanaryWebhook {
                name: "events".into(),
                url: url.into(),
                metadata: Some(BTreeMap::from([
                    ("env".to_string(), "prod".to_string()),
                    ("eventType".to_string(), "mine".to_string()),
                ])),
                ..Default::default()
            },
            payload: WebhookPayload {
                name: "podinfo".into(),
                namespace: "test".into(),
                ..Default::default()
            },
            message: message.into(),
            warning: false,
            unix_millis: 1,
        }
    }

    async fn until(seen: &Seen, n: usize) -> Vec<(String, serde_json::Value)> {
        for _ in 0..500 {
            if seen.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn events_of_one_canary_arrive_in_order_with_the_hooks_metadata() {
        let (url, seen) = receiver().await;
        let client = WebhookClient::new().unwrap();
        // The first Event is slow to deliver: the later ones must wait for it.
        let first = call(&format!("{url}/slow"), "0");
        let rest = (1..20).map(|i| call(&format!("{url}/fast"), &i.to_string()));
        client
            .queue_events("test/podinfo", std::iter::once(first).chain(rest.clone().take(9)).collect())
            .unwrap();
        client.queue_events("test/podinfo", rest.skip(9).collect()).unwrap();
        let got = until(&seen, 20).await;
        let messages: Vec<&str> =
            got.iter().map(|(_, b)| b["metadata"]["eventMessage"].as_str().unwrap()).collect();
        assert_eq!(messages, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
        let meta = &got[0].1["metadata"];
        assert_eq!(meta["env"], "prod", "the hook's own metadata is sent");
        assert_eq!(meta["eventType"], "Normal", "the event's keys win");
        assert_eq!(client.event_senders(), 1, "one sender per Canary");
    }

    #[tokio::test]
    async fn a_failing_receiver_delays_only_its_own_canary() {
        let (url, seen) = receiver().await;
        let client = WebhookClient::new().unwrap().with_first_backoff(Duration::from_millis(200));
        let mut failing = call(&format!("{url}/fail"), "a");
        failing.hook.retries = Some(2);
        client.queue_events("test/a", vec![failing]).unwrap();
        client.queue_events("test/b", vec![call(&format!("{url}/fast"), "b")]).unwrap();
        let got = until(&seen, 4).await;
        let order: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        // b's Event arrives while a's receiver is still being retried (after 200 ms, then 400 ms).
        assert_eq!(order.len(), 4, "{got:#?}");
        assert!(order.iter().position(|p| *p == "/fast") < Some(2), "{got:#?}");
        assert_eq!(client.event_senders(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_ends_when_its_queue_stays_empty() {
        let client = WebhookClient::new().unwrap();
        let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        // Nothing listens: each call fails at once, without retries.
        client.queue_events("test/podinfo", vec![call(&format!("http://127.0.0.1:{port}/"), "x")]).unwrap();
        assert_eq!(client.event_senders(), 1);
        tokio::time::sleep(IDLE * 2).await;
        assert_eq!(client.event_senders(), 0);
        // A later Event starts a new sender.
        client.queue_events("test/podinfo", vec![call(&format!("http://127.0.0.1:{port}/"), "y")]).unwrap();
        assert_eq!(client.event_senders(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_newest_events_and_says_so() {
        let (url, _seen) = receiver().await;
        let client = WebhookClient::new().unwrap();
        let slow: Vec<EventCall> =
            (0..QUEUE_LENGTH + 2).map(|i| call(&format!("{url}/slow"), &i.to_string())).collect();
        assert_eq!(client.queue_events("test/podinfo", slow), Err(QueueError::Full("test/podinfo".into())));
    }
}
