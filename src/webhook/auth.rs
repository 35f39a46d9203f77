//! The controller's bearer token for webhooks (`--webhook-token-file`, `--webhook-token-hosts`).
//!
//! Canary authors choose webhook URLs, so the token goes only to the hosts the operator listed:
//! sending it everywhere would hand the controller's identity to anyone who can write a Canary. The
//! token is typically a projected ServiceAccount token that kubelet rotates, so the file is read
//! again once it is older than [`REFRESH`], never on every request.

use std::{
    net::Ipv6Addr,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::Url;
use tokio::time::Instant;

/// How long a token read from the file is used before the file is read again. Kubelet rotates a
/// projected token when 80% of its lifetime has passed (at least 10 minutes, as
/// `expirationSeconds` is at least 600), and the old token stays valid until it expires, so a
/// minute-old copy is always still valid.
pub const REFRESH: Duration = Duration::from_secs(60);
/// How soon a failed read is tried again, so a briefly missing file costs a few seconds of
/// unauthenticated calls, not a minute.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// A problem with `--webhook-token-file` or `--webhook-token-hosts`, found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read --webhook-token-file {path}: {source}")]
    TokenFile { path: String, source: std::io::Error },
    #[error(
        "--webhook-token-file {path} is empty; it must hold the token (surrounding whitespace is ignored)"
    )]
    EmptyToken { path: String },
    #[error(
        "--webhook-token-hosts entry {entry:?} {reason}; give host or host:port, e.g. \
         flagger-loadtester.test or flagger-loadtester.test.svc.cluster.local:80"
    )]
    BadHost { entry: String, reason: &'static str },
    #[error("--webhook-token-file needs --webhook-token-hosts: name the hosts the token may be sent to")]
    NoHosts,
    #[error("--webhook-token-hosts needs --webhook-token-file: the file holding the token to send")]
    NoTokenFile,
}

/// One allowed webhook host: a host name or IP address, and optionally a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// As `Url::host_str` spells it: lower case, IPv6 in brackets and compressed.
    host: String,
    /// `None`: any port.
    port: Option<u16>,
}

impl FromStr for HostEntry {
    type Err = AuthError;

    fn from_str(entry: &str) -> Result<Self, AuthError> {
        let bad = |reason| AuthError::BadHost { entry: entry.to_owned(), reason };
        let trimmed = entry.trim();
        if trimmed.is_empty() {
            return Err(bad("is empty"));
        }
        if trimmed.contains("://") || trimmed.contains('/') || trimmed.contains('@') {
            return Err(bad("is not a host"));
        }
        let (host, port) = if let Some(rest) = trimmed.strip_prefix('[') {
            let (addr, after) = rest.split_once(']').ok_or_else(|| bad("has no closing ']'"))?;
            let addr: Ipv6Addr = addr.parse().map_err(|_| bad("is not an IPv6 address in brackets"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("has text after ']'"))?),
            };
            (format!("[{addr}]"), port)
        } else {
            match trimmed.split_once(':') {
                Some((_, p)) if p.contains(':') => {
                    return Err(bad("has several ':'; put IPv6 addresses in []"));
                }
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (trimmed.to_owned(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("has a bad port"))?),
        };
        // Spell the host exactly as the URL parser spells hosts of webhook URLs (lower case,
        // punycode, normalised IP addresses), so that matching is a plain comparison.
        let url = Url::parse(&format!("http://{host}/")).map_err(|_| bad("is not a valid host name"))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("is not a valid host name"))?;
        Ok(HostEntry { host: host.to_owned(), port })
    }
}

impl HostEntry {
    fn matches(&self, url: &Url) -> bool {
        url.host_str() == Some(self.host.as_str())
            && self.port.is_none_or(|p| url.port_or_known_default() == Some(p))
    }
}

/// The token file, read again when the copy in memory is older than [`REFRESH`].
#[derive(Debug)]
struct TokenFile {
    path: PathBuf,
    refresh: Duration,
    state: Mutex<TokenState>,
}

#[derive(Debug)]
struct TokenState {
    /// `None` after a failed read.
    token: Option<Arc<str>>,
    next_read: Instant,
}

/// Reads and trims a token file.
async fn read_token(path: &Path) -> Result<Arc<str>, AuthError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| AuthError::TokenFile { path: path.display().to_string(), source })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(AuthError::EmptyToken { path: path.display().to_string() });
    }
    Ok(Arc::from(token))
}

impl TokenFile {
    async fn open(path: PathBuf, refresh: Duration) -> Result<Self, AuthError> {
        let token = read_token(&path).await?;
        let state = Mutex::new(TokenState { token: Some(token), next_read: Instant::now() + refresh });
        Ok(TokenFile { path, refresh, state })
    }

    /// The current token; `None` while the file cannot be read (logged).
    async fn current(&self) -> Option<Arc<str>> {
        {
            let state = self.state.lock().expect("token state lock poisoned");
            if Instant::now() < state.next_read {
                return state.token.clone();
            }
        }
        // Read outside the lock; two callers reading at once is harmless.
        let read = read_token(&self.path).await;
        let mut state = self.state.lock().expect("token state lock poisoned");
        match read {
            Ok(token) => {
                if state.token.as_deref() != Some(&*token) {
                    tracing::debug!(path = %self.path.display(), "webhook token re-read: it changed");
                }
                state.token = Some(token);
                state.next_read = Instant::now() + self.refresh;
            }
            Err(e) => {
                tracing::warn!("{e}; webhooks are called without the token until it can be read");
                state.token = None;
                state.next_read = Instant::now() + RETRY_AFTER_FAILURE.min(self.refresh);
            }
        }
        state.token.clone()
    }
}

/// The controller's webhook credentials: a token file and the hosts it may be sent to.
#[derive(Debug)]
pub struct WebhookAuth {
    token: TokenFile,
    hosts: Vec<HostEntry>,
}

impl WebhookAuth {
    /// From the flags: `None` when neither is set; an error when only one is, when an entry is
    /// not a host, or when the file cannot be read now.
    pub async fn from_flags(file: Option<&Path>, hosts: &[String]) -> Result<Option<Self>, AuthError> {
        let hosts: Vec<&String> = hosts.iter().filter(|h| !h.trim().is_empty()).collect();
        match (file, hosts.is_empty()) {
            (None, true) => Ok(None),
            (None, false) => Err(AuthError::NoTokenFile),
            (Some(_), true) => Err(AuthError::NoHosts),
            (Some(file), false) => {
                let hosts = hosts.into_iter().map(|h| h.parse()).collect::<Result<Vec<HostEntry>, _>>()?;
                Ok(Some(WebhookAuth::new(file.to_path_buf(), hosts, REFRESH).await?))
            }
        }
    }

    /// Reads the token now; then again whenever the copy is older than `refresh`.
    pub async fn new(file: PathBuf, hosts: Vec<HostEntry>, refresh: Duration) -> Result<Self, AuthError> {
        Ok(WebhookAuth { token: TokenFile::open(file, refresh).await?, hosts })
    }

    /// Whether `url` is on one of the allowed hosts.
    pub fn allows(&self, url: &str) -> bool {
        Url::parse(url).is_ok_and(|u| self.hosts.iter().any(|h| h.matches(&u)))
    }

    /// The token to send to `url`: only for an allowed host, and only while the file is readable.
    pub async fn token_for(&self, url: &str) -> Option<Arc<str>> {
        if self.allows(url) { self.token.current().await } else { None }
    }
}

/// Adds `Authorization: Bearer` when there is a token.
pub(super) trait Bearer {
    fn bearer(self, token: Option<&str>) -> Self;
}

impl Bearer for reqwest::RequestBuilder {
    fn bearer(self, token: Option<&str>) -> Self {
        match token {
            Some(token) => self.bearer_auth(token),
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(s: &str) -> HostEntry {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn matches(e: &str, url: &str) -> bool {
        entry(e).matches(&Url::parse(url).unwrap())
    }

    #[test]
    fn hosts_match_exactly_and_ports_only_when_given() {
        assert!(matches("flagger-loadtester.test", "http://flagger-loadtester.test/gate/check"));
        assert!(matches("flagger-loadtester.test", "http://flagger-loadtester.test:8080/"));
        assert!(matches("flagger-loadtester.test", "https://Flagger-Loadtester.TEST/"));
        assert!(matches("flagger-loadtester.test:80", "http://flagger-loadtester.test/"));
        assert!(!matches("flagger-loadtester.test:80", "https://flagger-loadtester.test/"), "443 is not 80");
        assert!(!matches("flagger-loadtester.test:8080", "http://flagger-loadtester.test/"));
        // No suffix, prefix or subdomain matching: a Canary author could register any of these.
        for url in [
            "http://flagger-loadtester.test.evil.example/",
            "http://evil-flagger-loadtester.test/",
            "http://x.flagger-loadtester.test/",
            "http://flagger-loadtester/",
            "http://flagger-loadtester.test.svc.cluster.local/",
            "http://flagger-loadtester.test./",
        ] {
            assert!(!matches("flagger-loadtester.test", url), "{url}");
        }
        // The user part of a URL is not its host.
        assert!(!matches("flagger-loadtester.test", "http://flagger-loadtester.test@evil.example/"));
        assert!(matches("127.0.0.1:9090", "http://127.0.0.1:9090/"));
        assert!(!matches("127.0.0.1:9090", "http://localhost:9090/"));
        assert!(matches("[::1]:80", "http://[0:0::1]/"));
        assert!(matches("[0::1]", "http://[::1]:9/"));
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        for (bad, reason) in [
            ("http://lt.test", "is not a host"),
            ("lt.test/gate", "is not a host"),
            ("lt.test:0", "bad port"),
            ("lt.test:http", "bad port"),
            ("lt.test:70000", "bad port"),
            ("::1", "several ':'"),
            ("[::1", "closing ']'"),
            ("[::1]x", "text after ']'"),
            ("[nope]", "IPv6"),
            ("", "is empty"),
            ("lt test", "not a valid host"),
        ] {
            let e = bad.parse::<HostEntry>().unwrap_err().to_string();
            assert!(e.contains(reason), "{bad:?}: {e}");
        }
    }

    #[tokio::test]
    async fn both_flags_or_neither() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "t").unwrap();
        assert!(WebhookAuth::from_flags(None, &[]).await.unwrap().is_none());
        let e = WebhookAuth::from_flags(Some(&file), &[]).await.unwrap_err();
        assert!(matches!(e, AuthError::NoHosts), "{e}");
        let e = WebhookAuth::from_flags(None, &["lt.test".into()]).await.unwrap_err();
        assert!(matches!(e, AuthError::NoTokenFile), "{e}");
        let auth = WebhookAuth::from_flags(Some(&file), &["lt.test".into(), "other.test:81".into()])
            .await
            .unwrap()
            .unwrap();
        assert!(auth.allows("http://lt.test/") && auth.allows("http://other.test:81/"));
        assert!(!auth.allows("http://other.test/") && !auth.allows("not a url"));
    }

    #[tokio::test]
    async fn an_unreadable_or_empty_file_is_a_startup_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = WebhookAuth::from_flags(Some(&missing), &["lt.test".into()]).await.unwrap_err();
        assert!(e.to_string().starts_with("cannot read --webhook-token-file"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n ").unwrap();
        let e = WebhookAuth::from_flags(Some(&empty), &["lt.test".into()]).await.unwrap_err();
        assert!(matches!(e, AuthError::EmptyToken { .. }), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_file_is_read_again_once_the_copy_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "first\n").unwrap();
        let refresh = Duration::from_secs(60);
        let auth = WebhookAuth::new(file.clone(), vec![entry("lt.test")], refresh).await.unwrap();
        let url = "http://lt.test/";
        assert_eq!(auth.token_for(url).await.as_deref(), Some("first"));
        assert_eq!(auth.token_for("http://other.test/").await, None, "other hosts get no token");

        // Kubelet rotates the token: the copy is used until it is a minute old.
        std::fs::write(&file, "second").unwrap();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(auth.token_for(url).await.as_deref(), Some("first"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(auth.token_for(url).await.as_deref(), Some("second"));

        // A file that disappears: no token (logged), and another try a few seconds later.
        std::fs::remove_file(&file).unwrap();
        tokio::time::advance(refresh).await;
        assert_eq!(auth.token_for(url).await, None);
        std::fs::write(&file, "third").unwrap();
        assert_eq!(auth.token_for(url).await, None, "not read again at once");
        tokio::time::advance(RETRY_AFTER_FAILURE).await;
        assert_eq!(auth.token_for(url).await.as_deref(), Some("third"));
    }

    /// A webhook receiver on 127.0.0.1 that records the Authorization header of each call
    /// (`None` when absent); `/redirect` answers 307 to `redirect_to`.
    async fn recorder(redirect_to: Option<String>) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
        use axum::{
            Router,
            http::{HeaderMap, StatusCode, header},
            response::IntoResponse,
            routing::post,
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = Router::new()
            .route(
                "/hook",
                post(move |headers: HeaderMap| async move {
                    let auth = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap().to_owned());
                    record.lock().unwrap().push(auth);
                    "ok"
                }),
            )
            .route(
                "/redirect",
                post(move || async move {
                    let to = redirect_to.clone().unwrap_or_default();
                    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, seen)
    }

    #[tokio::test]
    async fn the_token_goes_to_allowed_hosts_only() {
        use crate::{
            analysis::HookResult,
            api::{CanaryWebhook, WebhookPayload},
            webhook::WebhookClient,
        };
        let (other, other_seen) = recorder(None).await;
        let (allowed, allowed_seen) = recorder(Some(format!("{other}/hook"))).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let host = allowed.trim_start_matches("http://").to_owned();
        let with_token = WebhookClient::new().unwrap().with_token_file(Some(&file), &[host]).await.unwrap();
        let without = WebhookClient::new().unwrap();
        let hook = |url: String| CanaryWebhook { name: "h".into(), url, ..Default::default() };
        let payload =
            WebhookPayload { name: "podinfo".into(), namespace: "test".into(), ..Default::default() };

        let call = |client: &WebhookClient, url: String| {
            let (client, hook, payload) = (client.clone(), hook(url), payload.clone());
            async move { client.call(&hook, &payload).await }
        };
        assert_eq!(call(&with_token, format!("{allowed}/hook")).await, HookResult::Passed);
        assert_eq!(call(&without, format!("{allowed}/hook")).await, HookResult::Passed);
        with_token
            .send_event(
                &crate::api::CanaryWebhook { url: format!("{allowed}/hook"), ..Default::default() },
                &payload,
                "m",
                false,
                0,
            )
            .await
            .unwrap();
        assert_eq!(
            *allowed_seen.lock().unwrap(),
            [Some("Bearer s3cret".to_owned()), None, Some("Bearer s3cret".to_owned())],
            "the allowed host gets the token (hooks and events); a client without auth sends none"
        );

        // Another port of the same address is another host; a redirect from the allowed host to
        // it does not carry the token either.
        assert_eq!(call(&with_token, format!("{other}/hook")).await, HookResult::Passed);
        assert_eq!(call(&with_token, format!("{allowed}/redirect")).await, HookResult::Passed);
        assert_eq!(*other_seen.lock().unwrap(), [None, None]);
        assert_eq!(allowed_seen.lock().unwrap().len(), 3, "the redirect answered without recording");
    }
}
