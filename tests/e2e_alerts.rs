//! Alerts end to end: a Canary with one AlertProvider of each type, all pointing at an HTTP
//! receiver inside the test, goes through initialization and a rolled-back run. Each provider must
//! receive Flagger's body for its type, Slack the bearer token of its Secret, and an `error` entry
//! only the rollback alert.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::Uri};
use common::harness::*;
use serde_json::{Value, json};
use veer::{
    api::Phase,
    trafficsim::{Client as Sim, IstioSpec},
};

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    authorization: Option<String>,
    body: Value,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// An HTTP server on 127.0.0.1:0 that records every request and answers 200.
async fn receiver() -> (String, Inbox) {
    async fn record(State(inbox): State<Inbox>, uri: Uri, headers: HeaderMap, body: Bytes) -> &'static str {
        let body = serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
        inbox.lock().unwrap().push(Received { path: uri.path().to_string(), authorization, body });
        "ok"
    }
    let inbox = Inbox::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(record).with_state(inbox.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, inbox)
}

fn at(inbox: &Inbox, path: &str) -> Vec<Received> {
    inbox.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
}

const INIT: &str = "New Deployment detected, initialization completed.";
const STARTED: &str = "New revision detected, progressing canary analysis.";
const ROLLBACK: &str = "Failed checks threshold reached 2";

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn alerts_reach_every_provider_type_with_its_payload_and_severity() {
    let client = common::client().await;
    common::with_namespace(&client, "alerts", async |ns| {
        let ns = &ns.name;
        let (base, inbox) = receiver().await;
        let sim = Sim::new(&common::env("TRAFFICSIM_URL")).unwrap();
        sim.put_istio(ns, "podinfo", &IstioSpec { rps: 20.0, error_rate: 0.5, latency_ms: 20.0 }).await.unwrap();

        // The providers exist before the controller starts, so its caches have them for the first
        // alert.
        apply_yaml(
            &client,
            ns,
            &format!(
                r#"
apiVersion: v1
kind: Secret
metadata: {{name: slack-hook}}
stringData: {{address: "{base}/slack-hook", token: "xoxb-e2e-token"}}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {{name: slack}}
spec: {{type: slack, channel: deployments, username: veer-e2e, secretRef: {{name: slack-hook}}}}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {{name: teams}}
spec: {{type: msteams, address: "{base}/teams"}}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {{name: discord}}
spec: {{type: discord, address: "{base}/discord"}}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {{name: rocket}}
spec: {{type: rocket, address: "{base}/rocket"}}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {{name: gchat}}
spec: {{type: gchat, address: "{base}/gchat"}}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {{name: on-call}}
spec: {{type: slack, address: "{base}/on-call"}}
"#
            ),
        )
        .await;
        let _controller = Process::controller(ns, &[]);
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", "ghcr.io/stefanprodan/podinfo:6.0.0")).await;
        apply_yaml(
            &client,
            ns,
            r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  provider: istio
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  progressDeadlineSeconds: 120
  service: {port: 9898}
  analysis:
    interval: 2s
    threshold: 2
    maxWeight: 30
    stepWeight: 10
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}, interval: 30s}
    alerts:
    - {name: slack, severity: info, providerRef: {name: slack}}
    - {name: teams, severity: info, providerRef: {name: teams}}
    - {name: discord, severity: warn, providerRef: {name: discord}}
    - {name: rocket, providerRef: {name: rocket}}
    - {name: gchat, severity: info, providerRef: {name: gchat}}
    - {name: on-call, severity: error, providerRef: {name: on-call}}
"#,
        )
        .await;
        let t = Instant::now();
        wait_phase(&client, ns, "podinfo", Phase::Initialized, Duration::from_secs(60)).await;
        set_image(&client, ns, "podinfo", "ghcr.io/stefanprodan/podinfo:6.0.1").await;
        wait_phase(&client, ns, "podinfo", Phase::Failed, Duration::from_secs(90)).await;
        // Delivery is in the background: wait for the last alert of each receiver.
        let expected = [
            ("/slack-hook", 3),
            ("/teams", 3),
            ("/discord/slack", 1),
            ("/rocket", 3),
            ("/gchat", 3),
            ("/on-call", 1),
        ];
        common::wait_for("every alert", Duration::from_secs(20), || async {
            let counts: Vec<(&str, usize)> = expected.iter().map(|(p, _)| (*p, at(&inbox, p).len())).collect();
            if counts.iter().zip(&expected).all(|(got, want)| got.1 >= want.1) {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        })
        .await;
        println!("[{ns}] created → rolled back, every alert received, in {:?}", t.elapsed());
        // Nothing else arrives (no stray paths, no extra alerts).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let all = inbox.lock().unwrap().clone();
        for r in &all {
            let want = expected.iter().find(|(p, _)| *p == r.path).map(|(_, n)| *n);
            assert_eq!(Some(at(&inbox, &r.path).len()), want, "requests at {}: {all:#?}", r.path);
        }

        let title = format!("podinfo.{ns}");
        let target = format!("Deployment/podinfo.{ns}");
        let details = [
            ("Target", target.as_str()),
            ("Failed checks threshold", "2"),
            ("Progress deadline", "120s"),
            ("Traffic routing", "Weight step: 10 max: 30"),
        ];
        let slack_fields = |with: bool| -> Value {
            if with {
                details.iter().map(|(k, v)| json!({"title": k, "value": v, "short": false})).collect()
            } else {
                json!([])
            }
        };
        let messages = [(INIT, true), (STARTED, true), (ROLLBACK, false)];

        // Slack, address and token from the Secret; in the order the alerts were decided.
        let slack = at(&inbox, "/slack-hook");
        for (r, (text, with)) in slack.iter().zip(messages) {
            assert_eq!(r.authorization.as_deref(), Some("Bearer xoxb-e2e-token"));
            let color = if text == ROLLBACK { "danger" } else { "good" };
            assert_eq!(
                r.body,
                json!({
                    "channel": "deployments",
                    "username": "veer-e2e",
                    "icon_url": "",
                    "icon_emoji": ":rocket:",
                    "attachments": [{
                        "color": color,
                        "author_name": title,
                        "text": text,
                        "mrkdwn_in": ["text"],
                        "fields": slack_fields(with),
                    }],
                })
            );
        }

        // MS Teams: a MessageCard; never a token.
        for (r, (text, with)) in at(&inbox, "/teams").iter().zip(messages) {
            assert_eq!(r.authorization, None);
            let facts: Value = if with {
                details.iter().map(|(k, v)| json!({"name": k, "value": v})).collect()
            } else {
                json!([])
            };
            assert_eq!(
                r.body,
                json!({
                    "@type": "MessageCard",
                    "@context": "http://schema.org/extensions",
                    "themeColor": if text == ROLLBACK { "FF0000" } else { "0076D7" },
                    "summary": title,
                    "sections": [{"activityTitle": text, "activitySubtitle": title, "facts": facts}],
                })
            );
        }

        // Discord (severity warn): only the rollback, as a Slack body at <address>/slack.
        let discord = at(&inbox, "/discord/slack");
        assert_eq!(discord[0].body["attachments"][0]["text"], ROLLBACK);
        assert_eq!(discord[0].body["attachments"][0]["color"], "danger");
        assert_eq!((discord[0].body["channel"].as_str(), discord[0].body["username"].as_str()), (Some("general"), Some("flagger")));

        // Rocket.Chat (no severity: everything): the Slack body with Rocket's colors.
        for (r, (text, _)) in at(&inbox, "/rocket").iter().zip(messages) {
            let a = &r.body["attachments"][0];
            assert_eq!(a["text"], text);
            assert_eq!(a["color"], if text == ROLLBACK { "#FF0000" } else { "#0076D7" });
            assert_eq!(r.body["icon_emoji"], ":rocket:");
        }

        // Google Chat: a card, the message then one section per field.
        for (r, (text, with)) in at(&inbox, "/gchat").iter().zip(messages) {
            let mut sections = vec![json!({"widgets": [{"textParagraph": {
                "text": format!("<font color=#848484><strong>{text}</strong></font>")}}]})];
            if with {
                sections.extend(details.iter().map(|(k, v)| {
                    json!({"widgets": [{"textParagraph": {
                        "text": format!("{k}<br><font color=#848484><strong>{v}</strong></font>")}}]})
                }));
            }
            assert_eq!(
                r.body,
                json!({"cards": [{
                    "header": {"title": "Flagger", "subtitle": title, "imageUrl": "https://flagger.app/favicon.png"},
                    "sections": sections,
                }]})
            );
        }

        // The `error` entry: the rollback alert only.
        let on_call = at(&inbox, "/on-call");
        assert_eq!(on_call[0].body["attachments"][0]["text"], ROLLBACK);
        assert_eq!(on_call[0].authorization, None);

        // Read once the rollback's last Event is there (a tick's Events follow its status).
        let events = wait_event(
            &client,
            ns,
            "podinfo",
            Some("Warning"),
            Message::Is(&format!("Canary failed! Scaling down podinfo.{ns}")),
        )
        .await;
        assert!(!events.iter().any(|e| e.message.starts_with("Alert not sent")), "{events:#?}");
        sim.delete_istio(ns, "podinfo").await.ok();
    })
    .await;
}
