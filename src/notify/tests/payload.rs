//! Message fields and the body of each provider type, as whole JSON objects.

use reqwest::Url;
use serde_json::json;

use super::*;
use crate::notify::{Field, Message, ProviderKind, discord_url};

fn message(severity: Severity) -> Message {
    Message {
        title: "podinfo.test".into(),
        text: "New revision detected, progressing canary analysis.".into(),
        fields: vec![
            Field { name: "Cluster", value: "prod-eu".into() },
            Field { name: "Target", value: "Deployment/podinfo.test".into() },
        ],
        severity,
    }
}

#[test]
fn fields_follow_flagger_order_and_formats() {
    let c = canary(None);
    let p = params(&c);
    let msg = Message::new(&alert(&c, &p, Severity::Warn, true), "prod-eu");
    assert_eq!(
        msg,
        Message {
            title: "podinfo.test".into(),
            text: "Failed checks threshold reached 5".into(),
            fields: vec![
                Field { name: "Cluster", value: "prod-eu".into() },
                Field { name: "Target", value: "Deployment/podinfo-app.test".into() },
                Field { name: "Failed checks threshold", value: "5".into() },
                Field { name: "Progress deadline", value: "60s".into() },
                Field { name: "Traffic routing", value: "Weight step: 10 max: 50".into() },
            ],
            severity: Severity::Warn,
        }
    );
}

#[test]
fn no_cluster_name_no_details_no_fields() {
    let c = canary(None);
    let p = params(&c);
    assert_eq!(Message::new(&alert(&c, &p, Severity::Info, false), "").fields, vec![]);
    let with_cluster = Message::new(&alert(&c, &p, Severity::Info, false), "prod-eu");
    assert_eq!(with_cluster.fields, vec![Field { name: "Cluster", value: "prod-eu".into() }]);
}

#[test]
fn slack_attachment_is_good_or_danger() {
    let body = |severity| {
        json!({
            "channel": "on-call",
            "username": "veer",
            "icon_url": "",
            "icon_emoji": ":rocket:",
            "attachments": [{
                "color": if severity == Severity::Error { "danger" } else { "good" },
                "author_name": "podinfo.test",
                "text": "New revision detected, progressing canary analysis.",
                "mrkdwn_in": ["text"],
                "fields": [
                    {"title": "Cluster", "value": "prod-eu", "short": false},
                    {"title": "Target", "value": "Deployment/podinfo.test", "short": false},
                ],
            }],
        })
    };
    for severity in [Severity::Info, Severity::Warn, Severity::Error] {
        assert_eq!(ProviderKind::Slack.payload(&message(severity), "on-call", "veer"), body(severity));
        assert_eq!(ProviderKind::Discord.payload(&message(severity), "on-call", "veer"), body(severity));
    }
}

#[test]
fn slack_without_channel_leaves_it_to_the_webhook() {
    let body = ProviderKind::Slack.payload(&message(Severity::Info), "", "flagger");
    assert_eq!(body.get("channel"), None);
    assert_eq!(body["username"], "flagger");
}

#[test]
fn rocket_uses_its_colors() {
    let info = ProviderKind::Rocket.payload(&message(Severity::Warn), "general", "flagger");
    assert_eq!(
        info,
        json!({
            "channel": "general",
            "username": "flagger",
            "icon_url": "",
            "icon_emoji": ":rocket:",
            "attachments": [{
                "color": "#0076D7",
                "author_name": "podinfo.test",
                "text": "New revision detected, progressing canary analysis.",
                "mrkdwn_in": ["text"],
                "fields": [
                    {"title": "Cluster", "value": "prod-eu", "short": false},
                    {"title": "Target", "value": "Deployment/podinfo.test", "short": false},
                ],
            }],
        })
    );
    let error = ProviderKind::Rocket.payload(&message(Severity::Error), "general", "flagger");
    assert_eq!(error["attachments"][0]["color"], "#FF0000");
}

#[test]
fn msteams_message_card() {
    let card = |color: &str| {
        json!({
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": color,
            "summary": "podinfo.test",
            "sections": [{
                "activityTitle": "New revision detected, progressing canary analysis.",
                "activitySubtitle": "podinfo.test",
                "facts": [
                    {"name": "Cluster", "value": "prod-eu"},
                    {"name": "Target", "value": "Deployment/podinfo.test"},
                ],
            }],
        })
    };
    assert_eq!(ProviderKind::MsTeams.payload(&message(Severity::Warn), "x", "y"), card("0076D7"));
    assert_eq!(ProviderKind::MsTeams.payload(&message(Severity::Error), "x", "y"), card("FF0000"));
}

#[test]
fn google_chat_card() {
    let text = |s: &str| json!({"widgets": [{"textParagraph": {"text": s}}]});
    assert_eq!(
        ProviderKind::GoogleChat.payload(&message(Severity::Error), "x", "y"),
        json!({
            "cards": [{
                "header": {
                    "title": "Flagger",
                    "subtitle": "podinfo.test",
                    "imageUrl": "https://flagger.app/favicon.png",
                },
                "sections": [
                    text("<font color=#848484><strong>New revision detected, progressing canary analysis.</strong></font>"),
                    text("Cluster<br><font color=#848484><strong>prod-eu</strong></font>"),
                    text("Target<br><font color=#848484><strong>Deployment/podinfo.test</strong></font>"),
                ],
            }],
        })
    );
}

#[test]
fn empty_field_lists_stay_arrays() {
    let msg = Message { fields: vec![], ..message(Severity::Info) };
    assert_eq!(ProviderKind::Slack.payload(&msg, "c", "u")["attachments"][0]["fields"], json!([]));
    assert_eq!(ProviderKind::MsTeams.payload(&msg, "c", "u")["sections"][0]["facts"], json!([]));
    assert_eq!(
        ProviderKind::GoogleChat.payload(&msg, "c", "u")["cards"][0]["sections"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn discord_posts_to_the_slack_endpoint() {
    let url = |s: &str| discord_url(&Url::parse(s).unwrap()).to_string();
    assert_eq!(
        url("https://discord.example/api/webhooks/1/abc"),
        "https://discord.example/api/webhooks/1/abc/slack"
    );
    assert_eq!(
        url("https://discord.example/api/webhooks/1/abc/"),
        "https://discord.example/api/webhooks/1/abc/slack"
    );
    assert_eq!(
        url("https://discord.example/api/webhooks/1/abc/slack"),
        "https://discord.example/api/webhooks/1/abc/slack"
    );
    assert_eq!(url("https://discord.example/w/1?wait=true"), "https://discord.example/w/1/slack?wait=true");
    assert_eq!(url("https://discord.example"), "https://discord.example/slack");
}

#[test]
fn provider_types_round_trip() {
    for kind in ProviderKind::ALL {
        assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(ProviderKind::parse("Slack"), None);
    assert_eq!(ProviderKind::parse("slack-api"), None);
    let only_slack: Vec<_> = ProviderKind::ALL.into_iter().filter(|k| k.sends_token()).collect();
    assert_eq!(only_slack, vec![ProviderKind::Slack]);
}
