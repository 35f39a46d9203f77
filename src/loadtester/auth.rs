//! Who may call the load tester.
//!
//! - No `--token-file` and no `--allowed-service-account`: anyone (Flagger's behaviour).
//! - `--token-file`: callers that present that token (CI, people).
//! - `--allowed-service-account`: also callers presenting a ServiceAccount token issued for
//!   `--token-review-audience`, verified by the API server with a TokenReview, whose user is one of
//!   the allowed accounts. This is how Veer's controller authenticates: with its own projected
//!   token, which kubelet rotates and nobody has to copy.
//!
//! TokenReview answers are cached by the SHA-256 of the token (never the token itself), so one
//! request does not mean one TokenReview: accepted tokens for [`ACCEPTED_TTL`] (less if the token
//! expires sooner), refused ones for [`REFUSED_TTL`]. An API server that cannot be asked means
//! 503: the load tester fails closed.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::config::Token;

/// The audience Veer's chart gives the controller's projected token. A token for this audience
/// is useless against the API server and against any other service that checks audiences, so a
/// leaked one does not unlock anything else; and a token meant for another service is not
/// accepted here.
pub const DEFAULT_AUDIENCE: &str = "veer-loadtester";
/// How long an accepted token is trusted without asking again. Short enough that a deleted
/// ServiceAccount (whose tokens the API server then refuses) is locked out within a minute; long
/// enough that the controller's calls every analysis interval rarely need a TokenReview.
pub const ACCEPTED_TTL: Duration = Duration::from_secs(60);
/// How long a refused token stays refused without asking again: repeated calls with a bad
/// token cost no TokenReview, and a token that becomes valid (a new ServiceAccount) is accepted
/// after a few seconds.
pub const REFUSED_TTL: Duration = Duration::from_secs(10);
/// Most cached answers: far above the callers a load tester has (one controller, some CI jobs),
/// small enough (~100 KiB) that random tokens cannot grow memory.
const MAX_CACHED: usize = 1024;
/// Most TokenReviews in flight at once, so a flood of new tokens cannot flood the API server.
const MAX_CONCURRENT_REVIEWS: usize = 8;
/// Longest wait for a TokenReview (including the wait for a free slot); then 503.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest token sent to the API server. ServiceAccount tokens are about 1 KiB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// An allowed caller, `system:serviceaccount:<namespace>:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceAccountUser(String);

/// A value of `--allowed-service-account` that is not a ServiceAccount user name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "--allowed-service-account {0:?} is not a ServiceAccount: write system:serviceaccount:<namespace>:<name>, \
     e.g. system:serviceaccount:veer-system:veer"
)]
pub struct BadServiceAccount(String);

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

impl FromStr for ServiceAccountUser {
    type Err = BadServiceAccount;

    fn from_str(s: &str) -> Result<Self, BadServiceAccount> {
        let s = s.trim();
        let valid = s
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(ns, name)| dns_label(ns) && dns_subdomain(name));
        if valid { Ok(Self(s.to_owned())) } else { Err(BadServiceAccount(s.to_owned())) }
    }
}

impl ServiceAccountUser {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which ServiceAccount tokens are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenReviewPolicy {
    /// The audience the token must have been issued for.
    pub audience: String,
    /// The users allowed to call; never empty.
    pub allowed: BTreeSet<ServiceAccountUser>,
}

/// What the API server said about a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Review {
    pub authenticated: bool,
    pub username: Option<String>,
    /// The audiences the token is valid for, among those asked for.
    pub audiences: Vec<String>,
    /// The API server's reason for a refusal.
    pub error: Option<String>,
}

/// Why no answer could be had.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReviewError {
    #[error(
        "the TokenReview failed: {0}; check that the API server is reachable and that the load tester's ServiceAccount may create tokenreviews"
    )]
    Api(String),
    #[error("the TokenReview did not answer within {0:?}")]
    Timeout(Duration),
    #[error("ServiceAccount tokens are not checked: no TokenReview client is configured")]
    NotConfigured,
}

/// Asks the API server about a token.
pub trait TokenReviewer: Send + Sync + 'static {
    fn review<'a>(&'a self, token: &'a str, audience: &'a str) -> BoxFuture<'a, Result<Review, ReviewError>>;
}

/// The TokenReview API (`authentication.k8s.io/v1`) through a kube client.
pub struct KubeTokenReviewer {
    api: Api<TokenReview>,
}

impl KubeTokenReviewer {
    pub fn new(client: kube::Client) -> Self {
        Self { api: Api::all(client) }
    }
}

impl TokenReviewer for KubeTokenReviewer {
    fn review<'a>(&'a self, token: &'a str, audience: &'a str) -> BoxFuture<'a, Result<Review, ReviewError>> {
        Box::pin(async move {
            let request = TokenReview {
                spec: TokenReviewSpec { token: token.to_owned(), audiences: Some(vec![audience.to_owned()]) },
                ..Default::default()
            };
            let answer = self
                .api
                .create(&PostParams::default(), &request)
                .await
                .map_err(|e| ReviewError::Api(e.to_string()))?;
            let status = answer.status.unwrap_or_default();
            Ok(Review {
                authenticated: status.authenticated.unwrap_or(false),
                username: status.user.and_then(|u| u.username),
                audiences: status.audiences.unwrap_or_default(),
                error: status.error,
            })
        })
    }
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off, or the path needs none.
    Anyone,
    /// The `--token-file` token.
    StaticToken,
    /// An allowed ServiceAccount.
    ServiceAccount(String),
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Caller),
    /// 401: no token, or one that is not valid (here).
    Unauthorized(String),
    /// 403: a valid token of a ServiceAccount that is not allowed.
    Forbidden(String),
    /// 503: the API server could not be asked.
    Unavailable(String),
}

/// An answer kept in the cache (errors are never kept).
#[derive(Debug, Clone)]
struct Cached {
    decision: Decision,
    until: Instant,
}

struct Reviewing {
    policy: TokenReviewPolicy,
    reviewer: Option<Arc<dyn TokenReviewer>>,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    slots: Semaphore,
}

/// Checks the `Authorization` header of requests.
pub struct Authenticator {
    token: Option<Token>,
    review: Option<Reviewing>,
    unauthenticated_metrics: bool,
}

/// Paths that never need a token: kubelet probes carry none.
const OPEN_PATHS: &[&str] = &["/healthz"];

impl Authenticator {
    /// `reviewer` is used when `policy` is set; without one, ServiceAccount tokens get 503.
    pub fn new(
        token: Option<Token>,
        policy: Option<TokenReviewPolicy>,
        reviewer: Option<Arc<dyn TokenReviewer>>,
        unauthenticated_metrics: bool,
    ) -> Self {
        let review = policy.map(|policy| Reviewing {
            policy,
            reviewer,
            cache: Mutex::new(HashMap::new()),
            slots: Semaphore::new(MAX_CONCURRENT_REVIEWS),
        });
        Self { token, review, unauthenticated_metrics }
    }

    /// Whether any authentication is configured.
    pub fn enabled(&self) -> bool {
        self.token.is_some() || self.review.is_some()
    }

    /// Decides about a request for `path` with this `Authorization` header value.
    pub async fn check(&self, path: &str, authorization: Option<&str>) -> Decision {
        if !self.enabled()
            || OPEN_PATHS.contains(&path)
            || (self.unauthenticated_metrics && path == "/metrics")
        {
            return Decision::Allow(Caller::Anyone);
        }
        let presented = authorization
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(presented) = presented else {
            return Decision::Unauthorized(format!("missing bearer token: {}", self.how()));
        };
        if self.token.as_ref().is_some_and(|t| t.matches(presented)) {
            return Decision::Allow(Caller::StaticToken);
        }
        match &self.review {
            Some(review) => review.check(presented).await,
            None => Decision::Unauthorized(format!("wrong bearer token: {}", self.how())),
        }
    }

    /// What a caller should send.
    fn how(&self) -> String {
        let mut ways = Vec::new();
        if self.token.is_some() {
            ways.push("the token of the load tester's --token-file".to_owned());
        }
        if let Some(r) = &self.review {
            ways.push(format!("a ServiceAccount token for audience {:?}", r.policy.audience));
        }
        format!("send 'Authorization: Bearer <token>' with {}", ways.join(" or "))
    }
}

impl Reviewing {
    async fn check(&self, token: &str) -> Decision {
        let audience = &self.policy.audience;
        // ServiceAccount tokens are JWTs; anything else cannot be one, and is not worth a
        // TokenReview.
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return Decision::Unauthorized(format!(
                "invalid bearer token: it is neither the --token-file token nor a ServiceAccount token \
                 for audience {audience:?}"
            ));
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some(hit) = self.cache.lock().expect("token cache lock poisoned").get(&key)
            && hit.until > now
        {
            return hit.decision.clone();
        }
        let Some(reviewer) = &self.reviewer else {
            return Decision::Unavailable(ReviewError::NotConfigured.to_string());
        };
        let answer = tokio::time::timeout(REVIEW_TIMEOUT, async {
            let _slot = self.slots.acquire().await;
            reviewer.review(token, audience).await
        })
        .await
        .unwrap_or(Err(ReviewError::Timeout(REVIEW_TIMEOUT)));
        let review = match answer {
            Ok(review) => review,
            Err(e) => return Decision::Unavailable(format!("cannot verify the ServiceAccount token: {e}")),
        };
        let decision = self.judge(&review);
        let ttl = match &decision {
            Decision::Unauthorized(_) => Some(REFUSED_TTL),
            // Accepted and refused-for-identity answers hold as long as the token does.
            _ => accepted_ttl(token, SystemTime::now()),
        };
        if let Some(ttl) = ttl {
            self.remember(key, decision.clone(), Instant::now() + ttl);
        }
        decision
    }

    fn judge(&self, review: &Review) -> Decision {
        let audience = &self.policy.audience;
        if !review.authenticated || !review.audiences.iter().any(|a| a == audience) {
            let reason = review.error.as_deref().unwrap_or("not authenticated");
            return Decision::Unauthorized(format!(
                "invalid bearer token: the API server does not accept it for audience {audience:?} ({reason})"
            ));
        }
        let user = review.username.clone().unwrap_or_default();
        if self.policy.allowed.iter().any(|a| a.as_str() == user) {
            Decision::Allow(Caller::ServiceAccount(user))
        } else {
            Decision::Forbidden(format!(
                "Forbidden: {user} may not use this load tester (it is not an --allowed-service-account)"
            ))
        }
    }

    fn remember(&self, key: [u8; 32], decision: Decision, until: Instant) {
        let mut cache = self.cache.lock().expect("token cache lock poisoned");
        if cache.len() >= MAX_CACHED && !cache.contains_key(&key) {
            let now = Instant::now();
            cache.retain(|_, c| c.until > now);
            if cache.len() >= MAX_CACHED
                && let Some(soonest) = cache.iter().min_by_key(|(_, c)| c.until).map(|(k, _)| *k)
            {
                cache.remove(&soonest);
            }
        }
        cache.insert(key, Cached { decision, until });
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.lock().unwrap().len()
    }
}

/// How long an accepted token may be trusted: [`ACCEPTED_TTL`], or less when its `exp` claim
/// says it expires sooner; `None` when it has expired (it is then not cached).
fn accepted_ttl(token: &str, now: SystemTime) -> Option<Duration> {
    let Some(exp) = expiry(token) else { return Some(ACCEPTED_TTL) };
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    exp.checked_sub(now).filter(|s| *s > 0).map(|s| Duration::from_secs(s).min(ACCEPTED_TTL))
}

/// The `exp` claim (seconds since the epoch) of a JWT, read without checking the signature: the
/// API server has just vouched for the token.
fn expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const AUD: &str = "veer-loadtester";
    const CONTROLLER: &str = "system:serviceaccount:veer-system:veer";

    /// A JWT-shaped token whose payload carries `exp` (unsigned: the fake API server decides).
    fn jwt(subject: &str, exp: Option<u64>) -> String {
        let b64 =
            |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let mut claims = serde_json::json!({"sub": subject});
        if let Some(exp) = exp {
            claims["exp"] = exp.into();
        }
        format!("{}.{}.sig", b64(&serde_json::json!({"alg": "RS256"})), b64(&claims))
    }

    fn unix_now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    /// An API server that knows tokens by their `sub` claim: `controller` and `other` are
    /// ServiceAccounts with the right audience, `wrong-aud` has another audience, `down` makes
    /// the call fail; it counts the calls.
    #[derive(Default)]
    struct FakeApiServer {
        calls: AtomicUsize,
    }

    impl TokenReviewer for FakeApiServer {
        fn review<'a>(
            &'a self,
            token: &'a str,
            audience: &'a str,
        ) -> BoxFuture<'a, Result<Review, ReviewError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let payload = token.split('.').nth(1).unwrap();
                let claims: serde_json::Value = serde_json::from_slice(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
                )
                .unwrap();
                let ok = |user: &str| Review {
                    authenticated: true,
                    username: Some(user.into()),
                    audiences: vec![audience.into()],
                    error: None,
                };
                match claims["sub"].as_str().unwrap() {
                    "controller" => Ok(ok(CONTROLLER)),
                    "other" => Ok(ok("system:serviceaccount:test:other")),
                    "wrong-aud" => Ok(Review {
                        error: Some("token audiences [\"https://kubernetes.default.svc\"] is invalid".into()),
                        ..Review::default()
                    }),
                    "down" => Err(ReviewError::Api("connection refused".into())),
                    _ => Ok(Review::default()),
                }
            })
        }
    }

    fn policy() -> TokenReviewPolicy {
        TokenReviewPolicy { audience: AUD.into(), allowed: BTreeSet::from([CONTROLLER.parse().unwrap()]) }
    }

    fn auth(api: &Arc<FakeApiServer>) -> Authenticator {
        Authenticator::new(Some(Token::new("static")), Some(policy()), Some(api.clone()), false)
    }

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    #[test]
    fn service_account_names_are_validated() {
        for ok in [CONTROLLER, "system:serviceaccount:a:b.c-d", " system:serviceaccount:ns:x "] {
            assert!(ok.parse::<ServiceAccountUser>().is_ok(), "{ok}");
        }
        for bad in [
            "veer",
            "system:serviceaccount:veer-system",
            "system:serviceaccount:veer.system:veer",
            "system:serviceaccount:ns:Veer",
            "system:serviceaccount::veer",
            "system:serviceaccounts:veer-system",
            "system:serviceaccount:ns:a:b",
        ] {
            let e = bad.parse::<ServiceAccountUser>().unwrap_err();
            assert!(e.to_string().contains("system:serviceaccount:<namespace>:<name>"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn decisions_for_each_kind_of_caller() {
        let api = Arc::new(FakeApiServer::default());
        let a = auth(&api);
        let exp = Some(unix_now() + 3600);
        assert_eq!(a.check("/healthz", None).await, Decision::Allow(Caller::Anyone));
        assert!(matches!(a.check("/metrics", None).await, Decision::Unauthorized(_)));
        assert_eq!(
            a.check("/gate/check", Some(&bearer("static"))).await,
            Decision::Allow(Caller::StaticToken)
        );
        assert_eq!(
            a.check("/gate/check", Some(&bearer(&jwt("controller", exp)))).await,
            Decision::Allow(Caller::ServiceAccount(CONTROLLER.into()))
        );
        let d = a.check("/", Some(&bearer(&jwt("other", exp)))).await;
        assert!(
            matches!(&d, Decision::Forbidden(m) if m.contains("system:serviceaccount:test:other may not")),
            "{d:?}"
        );
        let d = a.check("/", Some(&bearer(&jwt("wrong-aud", exp)))).await;
        assert!(matches!(&d, Decision::Unauthorized(m) if m.contains("token audiences")), "{d:?}");
        let d = a.check("/", Some(&bearer(&jwt("down", exp)))).await;
        assert!(matches!(&d, Decision::Unavailable(m) if m.contains("connection refused")), "{d:?}");
        let d = a.check("/", None).await;
        assert!(
            matches!(&d, Decision::Unauthorized(m) if m.contains("Authorization: Bearer") && m.contains("--token-file") && m.contains("audience")),
            "{d:?}"
        );
        // Not a JWT: refused without asking the API server.
        let calls = api.calls.load(Ordering::SeqCst);
        assert!(matches!(a.check("/", Some(&bearer("wrong"))).await, Decision::Unauthorized(_)));
        assert!(matches!(a.check("/", Some(&bearer(&"a.".repeat(20_000)))).await, Decision::Unauthorized(_)));
        assert_eq!(api.calls.load(Ordering::SeqCst), calls);
    }

    #[tokio::test]
    async fn the_api_server_must_confirm_the_audience() {
        // Authenticated, but for other audiences only: not good enough.
        struct NoAudience;
        impl TokenReviewer for NoAudience {
            fn review<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Review, ReviewError>> {
                Box::pin(async {
                    Ok(Review { authenticated: true, username: Some(CONTROLLER.into()), ..Review::default() })
                })
            }
        }
        let a = Authenticator::new(None, Some(policy()), Some(Arc::new(NoAudience)), false);
        let d = a.check("/", Some(&bearer(&jwt("controller", None)))).await;
        assert!(matches!(d, Decision::Unauthorized(_)), "{d:?}");
    }

    #[tokio::test]
    async fn without_a_reviewer_service_account_tokens_fail_closed() {
        let a = Authenticator::new(None, Some(policy()), None, false);
        let d = a.check("/", Some(&bearer(&jwt("controller", None)))).await;
        assert!(matches!(d, Decision::Unavailable(_)), "{d:?}");
    }

    #[tokio::test]
    async fn metrics_may_be_left_open() {
        let a = Authenticator::new(Some(Token::new("t")), None, None, true);
        assert_eq!(a.check("/metrics", None).await, Decision::Allow(Caller::Anyone));
        assert!(matches!(a.check("/gate/check", None).await, Decision::Unauthorized(_)));
        let open = Authenticator::new(None, None, None, false);
        assert_eq!(open.check("/gate/open", None).await, Decision::Allow(Caller::Anyone));
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_cached_for_a_while() {
        let api = Arc::new(FakeApiServer::default());
        let a = auth(&api);
        let calls = || api.calls.load(Ordering::SeqCst);
        let good = bearer(&jwt("controller", Some(unix_now() + 3600)));
        let bad = bearer(&jwt("wrong-aud", None));
        let down = bearer(&jwt("down", None));
        for _ in 0..5 {
            assert!(matches!(a.check("/", Some(&good)).await, Decision::Allow(_)));
            assert!(matches!(a.check("/", Some(&bad)).await, Decision::Unauthorized(_)));
        }
        assert_eq!(calls(), 2, "one TokenReview per token");
        // Errors are not cached: the next request asks again.
        for _ in 0..2 {
            assert!(matches!(a.check("/", Some(&down)).await, Decision::Unavailable(_)));
        }
        assert_eq!(calls(), 4);

        tokio::time::advance(REFUSED_TTL).await;
        a.check("/", Some(&good)).await;
        a.check("/", Some(&bad)).await;
        assert_eq!(calls(), 5, "the refusal expired, the acceptance did not");
        tokio::time::advance(ACCEPTED_TTL).await;
        a.check("/", Some(&good)).await;
        assert_eq!(calls(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn an_accepted_token_is_not_trusted_past_its_expiry() {
        let api = Arc::new(FakeApiServer::default());
        let a = auth(&api);
        let soon = bearer(&jwt("controller", Some(unix_now() + 5)));
        a.check("/", Some(&soon)).await;
        a.check("/", Some(&soon)).await;
        assert_eq!(api.calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(6)).await;
        a.check("/", Some(&soon)).await;
        assert_eq!(api.calls.load(Ordering::SeqCst), 2, "asked again after exp, not after a minute");

        let now = SystemTime::now();
        let unix = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(accepted_ttl(&jwt("x", None), now), Some(ACCEPTED_TTL));
        assert_eq!(accepted_ttl(&jwt("x", Some(unix + 3600)), now), Some(ACCEPTED_TTL));
        assert_eq!(accepted_ttl(&jwt("x", Some(unix + 20)), now), Some(Duration::from_secs(20)));
        assert_eq!(accepted_ttl(&jwt("x", Some(unix)), now), None);
        assert_eq!(accepted_ttl(&jwt("x", Some(unix - 10)), now), None);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let api = Arc::new(FakeApiServer::default());
        let a = auth(&api);
        for i in 0..MAX_CACHED + 50 {
            let d = a.check("/", Some(&bearer(&jwt(&format!("random-{i}"), None)))).await;
            assert!(matches!(d, Decision::Unauthorized(_)));
        }
        assert_eq!(a.review.as_ref().unwrap().cached(), MAX_CACHED);
    }

    #[tokio::test]
    async fn reviews_in_flight_are_limited() {
        // A reviewer that never answers and records how many calls it has at once: the ninth
        // concurrent request waits for a slot, and every request gives up after REVIEW_TIMEOUT
        // with 503.
        #[derive(Default)]
        struct Hangs {
            now: Arc<AtomicUsize>,
            max: AtomicUsize,
        }
        struct InFlight(Arc<AtomicUsize>);
        impl Drop for InFlight {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        impl TokenReviewer for Hangs {
            fn review<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Review, ReviewError>> {
                let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.max.fetch_max(n, Ordering::SeqCst);
                let in_flight = InFlight(self.now.clone());
                Box::pin(async move {
                    let _in_flight = in_flight;
                    std::future::pending().await
                })
            }
        }
        tokio::time::pause();
        let hangs = Arc::new(Hangs::default());
        let a = Arc::new(Authenticator::new(None, Some(policy()), Some(hangs.clone()), false));
        let checks: Vec<_> = (0..MAX_CONCURRENT_REVIEWS * 3)
            .map(|i| {
                let a = a.clone();
                tokio::spawn(async move { a.check("/", Some(&bearer(&jwt(&format!("t{i}"), None)))).await })
            })
            .collect();
        for c in checks {
            let d = c.await.unwrap();
            assert!(matches!(&d, Decision::Unavailable(m) if m.contains("did not answer")), "{d:?}");
        }
        assert_eq!(hangs.max.load(Ordering::SeqCst), MAX_CONCURRENT_REVIEWS);
        assert_eq!(hangs.now.load(Ordering::SeqCst), 0);
    }
}
