//! The controller-wide receivers: the `--slack-*` and `--msteams-*` flags, used by Canaries without
//! `analysis.alerts`.

use std::fmt;

use serde_json::Value;

use super::{
    Delivery, Message, ProviderKind, ResolveError,
    resolve::{http_url, non_empty},
};

/// The controller-wide alert settings (flags `--slack-*`, `--msteams-*`, `--cluster-name`). Empty
/// strings mean "not set". The Slack and MS Teams receivers serve Canaries without
/// `analysis.alerts` only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GlobalAlerts {
    pub slack_url: String,
    pub slack_token: String,
    pub slack_proxy: String,
    /// Empty means `flagger`.
    pub slack_user: String,
    /// Empty: the channel of the incoming webhook.
    pub slack_channel: String,
    pub msteams_url: String,
    pub msteams_proxy: String,
    /// Shown as the `Cluster` field of every alert when set.
    pub cluster_name: String,
}

// Webhook URLs carry their credentials in the path: never print them, nor the token.
impl fmt::Debug for GlobalAlerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &str| if s.is_empty() { "<unset>" } else { "<set>" };
        f.debug_struct("GlobalAlerts")
            .field("slack_url", &set(&self.slack_url))
            .field("slack_token", &set(&self.slack_token))
            .field("slack_proxy", &set(&self.slack_proxy))
            .field("slack_user", &self.slack_user)
            .field("slack_channel", &self.slack_channel)
            .field("msteams_url", &set(&self.msteams_url))
            .field("msteams_proxy", &set(&self.msteams_proxy))
            .field("cluster_name", &self.cluster_name)
            .finish()
    }
}

/// The global receivers that are set: Slack, then MS Teams. Every severity reaches them.
pub(super) fn global_targets(msg: &Message, g: &GlobalAlerts) -> Vec<Result<Delivery, ResolveError>> {
    let mut out = Vec::new();
    if !g.slack_url.is_empty() {
        let username = non_empty(Some(&g.slack_user)).unwrap_or("flagger");
        out.push(global_target(
            msg,
            ProviderKind::Slack,
            ("global Slack (--slack-url)", "--slack-url (SLACK_URL)", &g.slack_url),
            ("--slack-proxy-url (SLACK_PROXY_URL)", &g.slack_proxy),
            non_empty(Some(&g.slack_token)),
            ProviderKind::Slack.payload(msg, &g.slack_channel, username),
        ));
    }
    if !g.msteams_url.is_empty() {
        out.push(global_target(
            msg,
            ProviderKind::MsTeams,
            ("global MS Teams (--msteams-url)", "--msteams-url (MSTEAMS_URL)", &g.msteams_url),
            ("--msteams-proxy-url (MSTEAMS_PROXY_URL)", &g.msteams_proxy),
            None,
            ProviderKind::MsTeams.payload(msg, "", ""),
        ));
    }
    out
}

/// `(receiver, flag, url)` and `(flag, proxy)` of one global receiver.
fn global_target(
    msg: &Message,
    kind: ProviderKind,
    (receiver, url_flag, url): (&str, &str, &str),
    (proxy_flag, proxy): (&str, &str),
    token: Option<&str>,
    payload: Value,
) -> Result<Delivery, ResolveError> {
    let url = http_url(url)
        .map_err(|reason| ResolveError::InvalidAddress { what: url_flag.to_string(), reason })?;
    let proxy = non_empty(Some(proxy))
        .map(|p| {
            http_url(p).map_err(|reason| ResolveError::InvalidProxy { what: proxy_flag.to_string(), reason })
        })
        .transpose()?;
    Ok(Delivery {
        canary: msg.title.clone(),
        receiver: receiver.to_string(),
        kind,
        url,
        token: token.map(str::to_string),
        proxy,
        payload,
    })
}
