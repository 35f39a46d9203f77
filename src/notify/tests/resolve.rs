//! Who gets an alert: severity filtering, provider and Secret resolution, the global fallback.

use super::*;
use crate::notify::{Delivery, GlobalAlerts, ProviderKind, ResolveError, targets};

fn global() -> GlobalAlerts {
    GlobalAlerts {
        slack_url: "https://slack.example/services/T0/B0/secret".into(),
        slack_token: "xoxb-global".into(),
        slack_proxy: "http://proxy.example:3128".into(),
        slack_user: "veer".into(),
        slack_channel: "deploys".into(),
        msteams_url: "https://teams.example/webhook/secret".into(),
        msteams_proxy: String::new(),
        cluster_name: "prod-eu".into(),
    }
}

fn resolve(c: &Canary, cache: &Cache, severity: Severity) -> Vec<Result<Delivery, ResolveError>> {
    let p = params(c);
    targets(&alert(c, &p, severity, false), cache, &GlobalAlerts::default())
}

fn only_ok(results: Vec<Result<Delivery, ResolveError>>) -> Delivery {
    assert_eq!(results.len(), 1, "{results:?}");
    results.into_iter().next().unwrap().unwrap()
}

fn only_err(results: Vec<Result<Delivery, ResolveError>>) -> ResolveError {
    assert_eq!(results.len(), 1, "{results:?}");
    results.into_iter().next().unwrap().unwrap_err()
}

#[test]
fn severity_table() {
    let cache =
        Cache::default().with_provider(provider("test", "chat", spec("slack", "https://chat.example/h")));
    // (entry severity, alert severity, delivered)
    let table = [
        (None, Severity::Info, true),
        (None, Severity::Warn, true),
        (None, Severity::Error, true),
        (Some(""), Severity::Info, true),
        (Some(""), Severity::Error, true),
        (Some("info"), Severity::Info, true),
        (Some("info"), Severity::Warn, true),
        (Some("info"), Severity::Error, true),
        (Some("warn"), Severity::Info, false),
        (Some("warn"), Severity::Warn, true),
        (Some("warn"), Severity::Error, true),
        (Some("error"), Severity::Info, false),
        (Some("error"), Severity::Warn, false),
        (Some("error"), Severity::Error, true),
    ];
    for (entry_severity, severity, delivered) in table {
        let c = canary(Some(vec![entry("a", entry_severity, "chat", None)]));
        let got = resolve(&c, &cache, severity);
        assert_eq!(
            got.len(),
            usize::from(delivered),
            "entry {entry_severity:?}, alert {severity:?}: {got:?}"
        );
        assert!(got.iter().all(Result::is_ok));
    }
}

#[test]
fn unknown_entry_severity_is_reported() {
    let c = canary(Some(vec![entry("pager", Some("warning"), "chat", None)]));
    let err = only_err(resolve(&c, &Cache::default(), Severity::Error));
    assert_eq!(
        err.to_string(),
        "Canary podinfo.test spec.analysis.alerts[0] (\"pager\"): severity \"warning\" is not one of info, warn, \
         error; fix it (empty means info)"
    );
}

#[test]
fn each_matching_entry_gets_its_own_delivery_in_order() {
    let cache = Cache::default()
        .with_provider(provider("test", "slack", spec("slack", "https://slack.example/h")))
        .with_provider(provider("test", "teams", spec("msteams", "https://teams.example/h")));
    let c = canary(Some(vec![
        entry("all", Some("info"), "slack", None),
        entry("errors", Some("error"), "teams", None),
    ]));
    let receivers =
        |s| -> Vec<String> { resolve(&c, &cache, s).into_iter().map(|d| d.unwrap().receiver).collect() };
    assert_eq!(receivers(Severity::Warn), ["AlertProvider test/slack (slack)"]);
    assert_eq!(
        receivers(Severity::Error),
        ["AlertProvider test/slack (slack)", "AlertProvider test/teams (msteams)"]
    );
}

#[test]
fn address_channel_and_username_defaults() {
    let cache =
        Cache::default().with_provider(provider("test", "chat", spec("slack", "https://slack.example/h")));
    let c = canary(Some(vec![entry("a", None, "chat", None)]));
    let d = only_ok(resolve(&c, &cache, Severity::Info));
    assert_eq!(d.url.as_str(), "https://slack.example/h");
    assert_eq!(
        (d.payload["channel"].as_str(), d.payload["username"].as_str()),
        (Some("general"), Some("flagger"))
    );
    assert_eq!((d.token, d.proxy, d.kind), (None, None, ProviderKind::Slack));
    assert_eq!(d.canary, "podinfo.test");
}

#[test]
fn channel_username_and_proxy_from_the_spec() {
    let spec = AlertProviderSpec {
        channel: Some("deploys".into()),
        username: Some("veer".into()),
        proxy: Some("http://proxy.example:3128".into()),
        ..spec("rocket", "https://rocket.example/hooks/x")
    };
    let cache = Cache::default().with_provider(provider("test", "chat", spec));
    let c = canary(Some(vec![entry("a", None, "chat", None)]));
    let d = only_ok(resolve(&c, &cache, Severity::Info));
    assert_eq!(
        (d.payload["channel"].as_str(), d.payload["username"].as_str()),
        (Some("deploys"), Some("veer"))
    );
    assert_eq!(d.proxy.unwrap().as_str(), "http://proxy.example:3128/");
}

#[test]
fn provider_and_secret_are_read_from_the_provider_namespace() {
    let cache = Cache::default()
        .with_provider(provider("alerting", "chat", secret_spec("slack", "hook")))
        .with_secret(secret("alerting", "hook", &[("address", "https://slack.example/from-secret\n")]))
        // Same names in the Canary's namespace must not be used.
        .with_provider(provider("test", "chat", spec("slack", "https://wrong.example/")))
        .with_secret(secret("test", "hook", &[("address", "https://wrong.example/")]));
    let c = canary(Some(vec![entry("a", None, "chat", Some("alerting"))]));
    let d = only_ok(resolve(&c, &cache, Severity::Info));
    assert_eq!(d.url.as_str(), "https://slack.example/from-secret");
    assert_eq!(d.receiver, "AlertProvider alerting/chat (slack)");
}

#[test]
fn secret_address_overrides_spec_address_and_token_is_for_slack_only() {
    for (kind, token) in [("slack", Some("xoxb-1")), ("msteams", None), ("discord", None), ("gchat", None)] {
        let spec =
            AlertProviderSpec { address: Some("https://spec.example/h".into()), ..secret_spec(kind, "hook") };
        let cache = Cache::default().with_provider(provider("test", "chat", spec)).with_secret(secret(
            "test",
            "hook",
            &[("address", "https://secret.example/h"), ("token", "xoxb-1 ")],
        ));
        let c = canary(Some(vec![entry("a", None, "chat", None)]));
        let d = only_ok(resolve(&c, &cache, Severity::Info));
        assert_eq!(d.url.host_str(), Some("secret.example"), "{kind}");
        assert_eq!(d.token.as_deref(), token, "{kind}");
    }
}

#[test]
fn discord_delivery_goes_to_the_slack_endpoint() {
    let cache = Cache::default().with_provider(provider(
        "test",
        "d",
        spec("discord", "https://discord.example/api/webhooks/1/x"),
    ));
    let c = canary(Some(vec![entry("a", None, "d", None)]));
    let d = only_ok(resolve(&c, &cache, Severity::Info));
    assert_eq!(d.url.as_str(), "https://discord.example/api/webhooks/1/x/slack");
    assert_eq!(d.payload["attachments"][0]["color"], "good");
}

#[test]
fn missing_objects_and_values_are_errors_that_say_what_to_do() {
    let c = canary(Some(vec![entry("pager", None, "chat", None)]));
    let err = only_err(resolve(&c, &Cache::default(), Severity::Info));
    assert_eq!(
        err.to_string(),
        "Canary podinfo.test spec.analysis.alerts[0] (\"pager\"): AlertProvider test/chat not found; create it, \
         or fix providerRef (the namespace defaults to the Canary's)"
    );

    let cache = Cache::default().with_provider(provider("test", "chat", secret_spec("slack", "hook")));
    let err = only_err(resolve(&c, &cache, Severity::Info));
    assert_eq!(
        err,
        ResolveError::SecretNotFound { provider: "test/chat".into(), secret: "test/hook".into() }
    );
    assert!(err.to_string().contains("under the key `address`"), "{err}");

    let cache = cache.with_secret(secret("test", "hook", &[("token", "xoxb-1")]));
    let err = only_err(resolve(&c, &cache, Severity::Info));
    assert_eq!(
        err,
        ResolveError::SecretWithoutAddress { provider: "test/chat".into(), secret: "test/hook".into() }
    );

    let cache = Cache::default().with_provider(provider(
        "test",
        "chat",
        AlertProviderSpec { type_: "slack".into(), ..Default::default() },
    ));
    let err = only_err(resolve(&c, &cache, Severity::Info));
    assert_eq!(
        err.to_string(),
        "AlertProvider test/chat has neither spec.address nor spec.secretRef; set one of them"
    );

    let cache =
        Cache::default().with_provider(provider("test", "chat", spec("pagerduty", "https://x.example/")));
    let err = only_err(resolve(&c, &cache, Severity::Info));
    assert_eq!(
        err,
        ResolveError::UnsupportedType { provider: "test/chat".into(), type_: "pagerduty".into() }
    );
}

#[test]
fn invalid_urls_are_errors_that_do_not_reveal_them() {
    let c = canary(Some(vec![entry("a", None, "chat", None)]));
    let cache = Cache::default()
        .with_provider(provider("test", "chat", secret_spec("slack", "hook")))
        .with_secret(secret("test", "hook", &[("address", "hooks.example/T0/very-secret")]));
    let err = only_err(resolve(&c, &cache, Severity::Info)).to_string();
    assert!(
        err.starts_with(
            "Secret test/hook key `address` (spec.secretRef of AlertProvider test/chat) is not a valid"
        ),
        "{err}"
    );
    assert!(!err.contains("very-secret"), "{err}");

    let bad_proxy = AlertProviderSpec {
        proxy: Some("socks5://user:pw@proxy.example".into()),
        ..spec("slack", "https://s.example/")
    };
    let cache = Cache::default().with_provider(provider("test", "chat", bad_proxy));
    let err = only_err(resolve(&c, &cache, Severity::Info)).to_string();
    assert_eq!(
        err,
        "AlertProvider test/chat spec.proxy is not a valid http(s) proxy URL (scheme \"socks5\" is not http or https); fix it"
    );
}

#[test]
fn global_receivers_only_for_canaries_without_alerts() {
    let g = global();
    let without = canary(None);
    let p = params(&without);
    for severity in [Severity::Info, Severity::Warn, Severity::Error] {
        let got: Vec<Delivery> = targets(&alert(&without, &p, severity, true), &Cache::default(), &g)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), 2);
        let (slack, teams) = (&got[0], &got[1]);
        assert_eq!(
            (slack.receiver.as_str(), slack.kind),
            ("global Slack (--slack-url)", ProviderKind::Slack)
        );
        assert_eq!(slack.token.as_deref(), Some("xoxb-global"));
        assert_eq!(slack.proxy.as_ref().map(|u| u.as_str()), Some("http://proxy.example:3128/"));
        assert_eq!(
            (slack.payload["channel"].as_str(), slack.payload["username"].as_str()),
            (Some("deploys"), Some("veer"))
        );
        assert_eq!(slack.payload["attachments"][0]["fields"][0]["value"], "prod-eu");
        assert_eq!(
            (teams.kind, teams.token.as_deref(), teams.proxy.as_ref()),
            (ProviderKind::MsTeams, None, None)
        );
        assert_eq!(teams.url.as_str(), "https://teams.example/webhook/secret");
    }
    // An empty alerts list counts as none.
    let empty = canary(Some(vec![]));
    assert_eq!(targets(&alert(&empty, &p, Severity::Info, false), &Cache::default(), &g).len(), 2);
    // A Canary with alerts never reaches the global receivers, even when its entries do not match.
    let with = canary(Some(vec![entry("a", Some("error"), "chat", None)]));
    assert!(targets(&alert(&with, &p, Severity::Info, false), &Cache::default(), &g).is_empty());
    // Nothing configured: nobody.
    assert!(
        targets(&alert(&without, &p, Severity::Error, false), &Cache::default(), &GlobalAlerts::default())
            .is_empty()
    );
}

#[test]
fn global_slack_defaults_and_invalid_flags() {
    let g = GlobalAlerts { slack_url: "https://slack.example/h".into(), ..Default::default() };
    let c = canary(None);
    let p = params(&c);
    let d = targets(&alert(&c, &p, Severity::Info, false), &Cache::default(), &g).remove(0).unwrap();
    assert_eq!(d.payload["username"], "flagger");
    assert_eq!(d.payload.get("channel"), None, "no --slack-channel: the webhook's own channel");
    assert_eq!(d.token, None);

    let g = GlobalAlerts { msteams_url: "not a url".into(), ..Default::default() };
    let err = targets(&alert(&c, &p, Severity::Info, false), &Cache::default(), &g).remove(0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--msteams-url (MSTEAMS_URL) is not a valid http(s) URL (relative URL without a base); fix it"
    );
}

#[test]
fn debug_output_hides_credentials() {
    let g = global();
    let c = canary(None);
    let p = params(&c);
    let text = format!("{g:?} {:?}", targets(&alert(&c, &p, Severity::Info, false), &Cache::default(), &g));
    for secret in ["secret", "xoxb-global", "proxy.example"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}
