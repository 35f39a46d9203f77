//! The JSON bodies each provider type expects (flagger-behaviour.md §6.3), byte-for-byte the
//! fields Flagger sends so that existing channel formatting and bots keep working.

use reqwest::Url;
use serde_json::{Value, json};

use super::Message;
use crate::analysis::Severity;

/// AlertProvider `spec.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    Slack,
    MsTeams,
    Discord,
    Rocket,
    GoogleChat,
}

impl ProviderKind {
    /// Every type, in the order of the CRD's enum.
    pub const ALL: [ProviderKind; 5] = [
        ProviderKind::Slack,
        ProviderKind::MsTeams,
        ProviderKind::Discord,
        ProviderKind::Rocket,
        ProviderKind::GoogleChat,
    ];

    /// Parses `spec.type`; `None` for anything else.
    pub fn parse(s: &str) -> Option<ProviderKind> {
        ProviderKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The `spec.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Slack => "slack",
            ProviderKind::MsTeams => "msteams",
            ProviderKind::Discord => "discord",
            ProviderKind::Rocket => "rocket",
            ProviderKind::GoogleChat => "gchat",
        }
    }

    /// Whether a Secret's `token` is sent as `Authorization: Bearer`. Slack only, as Flagger: the
    /// other services authenticate by the webhook URL, and a token sent there would leak to them.
    pub fn sends_token(self) -> bool {
        self == ProviderKind::Slack
    }

    /// The body of a message for this type. `channel` and `username` are used by the Slack-shaped
    /// types only.
    pub fn payload(self, msg: &Message, channel: &str, username: &str) -> Value {
        match self {
            ProviderKind::Slack | ProviderKind::Discord => slack_payload(msg, channel, username),
            ProviderKind::Rocket => rocket_payload(msg, channel, username),
            ProviderKind::MsTeams => msteams_payload(msg),
            ProviderKind::GoogleChat => gchat_payload(msg),
        }
    }

    /// Where the body goes: Discord takes Slack-shaped bodies at `<webhook>/slack`.
    pub fn url(self, address: &Url) -> Url {
        match self {
            ProviderKind::Discord => discord_url(address),
            _ => address.clone(),
        }
    }
}

/// Slack (and Discord): one attachment, `good` or `danger` (errors).
pub fn slack_payload(msg: &Message, channel: &str, username: &str) -> Value {
    let color = if msg.severity == Severity::Error { "danger" } else { "good" };
    slack_shaped(msg, channel, username, color)
}

/// Rocket.Chat: the Slack body with Rocket's colors.
pub fn rocket_payload(msg: &Message, channel: &str, username: &str) -> Value {
    let color = if msg.severity == Severity::Error { "#FF0000" } else { "#0076D7" };
    slack_shaped(msg, channel, username, color)
}

fn slack_shaped(msg: &Message, channel: &str, username: &str, color: &str) -> Value {
    let fields: Vec<Value> =
        msg.fields.iter().map(|f| json!({"title": f.name, "value": f.value, "short": false})).collect();
    let mut body = json!({
        "channel": channel,
        "username": username,
        "icon_url": "",
        "icon_emoji": ":rocket:",
        "attachments": [{
            "color": color,
            "author_name": msg.title,
            "text": msg.text,
            "mrkdwn_in": ["text"],
            "fields": fields,
        }],
    });
    // Only the global Slack settings can leave the channel empty; an incoming webhook then posts
    // to its own channel, where an empty `channel` could be rejected.
    if channel.is_empty()
        && let Some(o) = body.as_object_mut()
    {
        o.remove("channel");
    }
    body
}

/// MS Teams: a MessageCard.
pub fn msteams_payload(msg: &Message) -> Value {
    let facts: Vec<Value> = msg.fields.iter().map(|f| json!({"name": f.name, "value": f.value})).collect();
    json!({
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": if msg.severity == Severity::Error { "FF0000" } else { "0076D7" },
        "summary": msg.title,
        "sections": [{
            "activityTitle": msg.text,
            "activitySubtitle": msg.title,
            "facts": facts,
        }],
    })
}

/// Google Chat: a card with the message, then one section per field.
pub fn gchat_payload(msg: &Message) -> Value {
    let paragraph = |text: String| json!({"widgets": [{"textParagraph": {"text": text}}]});
    let mut sections = vec![paragraph(format!("<font color=#848484><strong>{}</strong></font>", msg.text))];
    sections.extend(msg.fields.iter().map(|f| {
        paragraph(format!("{}<br><font color=#848484><strong>{}</strong></font>", f.name, f.value))
    }));
    json!({
        "cards": [{
            "header": {
                "title": "Flagger",
                "subtitle": msg.title,
                "imageUrl": "https://flagger.app/favicon.png",
            },
            "sections": sections,
        }],
    })
}

/// A Discord webhook URL with `/slack` appended to its path unless it is there already (query kept).
pub fn discord_url(address: &Url) -> Url {
    let mut url = address.clone();
    let path = address.path().trim_end_matches('/');
    if !path.ends_with("/slack") {
        url.set_path(&format!("{path}/slack"));
    }
    url
}
