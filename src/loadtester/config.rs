//! Command-line flags (each also settable from a `VEER_LOADTESTER_*` environment variable) and
//! the validated runtime configuration built from them.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Parser};
use regex::Regex;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::auth::{BadServiceAccount, DEFAULT_AUDIENCE, ServiceAccountUser, TokenReviewPolicy};
use super::gates::{ConfigMapGateStore, FileGateStore, GateStore, GateStoreError};
use super::shell::{ShellPolicy, ShellPolicyError};

/// Where the service account's namespace is mounted in a pod.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// ConfigMap name used when the gate store is chosen by default in a cluster.
pub const DEFAULT_GATE_CONFIGMAP: &str = "veer-loadtester-gates";
/// File used when the gate store is chosen by default outside a cluster.
pub const DEFAULT_GATE_FILE: &str = "veer-loadtester-gates.json";
/// Default of `--read-timeout`: a webhook payload is a few hundred bytes and arrives in
/// milliseconds; ten seconds leaves room for a slow network while a client that trickles bytes
/// to hold a connection open is cut off quickly.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// veer-loadtester: a Flagger-loadtester-compatible webhook service that is not a remote shell.
///
/// Serves `/` (tasks), `/gate/*`, `/rollback/*`, `/healthz` and `/metrics`. Runs `hey` command
/// lines natively; runs nothing else unless --allow-shell and --allow-command say so.
#[derive(Parser, Debug, Clone)]
#[command(name = "veer-loadtester", version)]
pub struct Args {
    /// Port to listen on (Flagger's manifests run the load tester on 8080).
    #[arg(long, env = "VEER_LOADTESTER_PORT", default_value_t = 9090)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, env = "VEER_LOADTESTER_ADDRESS", default_value = "0.0.0.0")]
    pub address: IpAddr,

    /// Longest any command or load run may take, as a Go duration (30s, 10m, 1h).
    #[arg(long, env = "VEER_LOADTESTER_TIMEOUT", default_value = "1h", value_parser = parse_duration_arg)]
    pub timeout: Duration,

    /// Only payloads whose namespace matches this regular expression (in full) may use any
    /// endpoint; others get 403. Unset: every namespace.
    #[arg(long, env = "VEER_LOADTESTER_NAMESPACE_REGEXP")]
    pub namespace_regexp: Option<String>,

    /// Allow shell tasks (type bash, helm, helmv3, kubectl, and cmd other than hey), limited to
    /// commands matching an --allow-command pattern.
    #[arg(long, env = "VEER_LOADTESTER_ALLOW_SHELL", action = ArgAction::SetTrue)]
    pub allow_shell: bool,

    /// A regular expression a shell command line must match in full to run; repeatable. In the
    /// environment variable, separate patterns with newlines.
    #[arg(long = "allow-command", env = "VEER_LOADTESTER_ALLOW_COMMANDS", value_delimiter = '\n')]
    pub allow_commands: Vec<String>,

    /// File holding a bearer token every request except /healthz must present
    /// (`Authorization: Bearer <token>`). Unset: no authentication.
    #[arg(long, env = "VEER_LOADTESTER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// A ServiceAccount allowed to call with its own token (`system:serviceaccount:<ns>:<name>`),
    /// e.g. Veer's controller; repeatable or comma-separated. Turns on TokenReview: a bearer token
    /// that is not the --token-file token is checked by the API server.
    #[arg(
        long = "allowed-service-account",
        env = "VEER_LOADTESTER_ALLOWED_SERVICE_ACCOUNTS",
        value_delimiter = ','
    )]
    pub allowed_service_accounts: Vec<String>,

    /// The audience ServiceAccount tokens must be issued for (the controller's projected token).
    #[arg(long, env = "VEER_LOADTESTER_TOKEN_REVIEW_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    pub token_review_audience: String,

    /// Serve /metrics without a token even when authentication is on, for Prometheus scraping
    /// by pod annotations (the metrics name Canaries and their load runs, nothing secret).
    #[arg(long, env = "VEER_LOADTESTER_UNAUTHENTICATED_METRICS", action = ArgAction::SetTrue)]
    pub unauthenticated_metrics: bool,

    /// Where gate state is kept: `file:<path>` or `configmap:<namespace>/<name>`. Default: a
    /// ConfigMap `veer-loadtester-gates` in the pod's namespace in a cluster, else the file
    /// `veer-loadtester-gates.json` in the working directory.
    #[arg(long, env = "VEER_LOADTESTER_GATE_STORE")]
    pub gate_store: Option<GateStoreSpec>,

    /// Longest time a client may take to send a request's headers, and again its body; then the
    /// connection is closed (headers) or answered 408 (body), so slow clients cannot hold
    /// connections open. A Go duration.
    #[arg(long, env = "VEER_LOADTESTER_READ_TIMEOUT", default_value = "10s", value_parser = parse_read_timeout)]
    pub read_timeout: Duration,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "VEER_LOADTESTER_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Most workers (`hey -c`) one load run may use.
    #[arg(long, env = "VEER_LOADTESTER_MAX_WORKERS", default_value_t = 200)]
    pub max_workers: u32,

    /// Most tasks (load runs and commands) running at once; more get 429.
    #[arg(long, env = "VEER_LOADTESTER_MAX_TASKS", default_value_t = 32)]
    pub max_tasks: usize,

    /// Most bytes of stdout and of stderr kept per command.
    #[arg(long, env = "VEER_LOADTESTER_OUTPUT_LIMIT_BYTES", default_value_t = 1 << 20)]
    pub output_limit_bytes: usize,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, env = "VEER_LOADTESTER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format: text or json (Flagger's -zap-encoding is accepted: console = text).
    #[arg(long, alias = "zap-encoding", env = "VEER_LOADTESTER_LOG_FORMAT", default_value = "text",
          value_parser = ["text", "json", "console"])]
    pub log_format: String,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    match crate::duration::parse(s) {
        Ok(d) if d.is_zero() => Err("the timeout must be longer than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_read_timeout(s: &str) -> Result<Duration, String> {
    match crate::duration::parse(s) {
        Ok(d) if d.is_zero() => Err("the read timeout must be longer than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Flagger's load tester takes Go-style single-dash flags (`-port=8080 -timeout=1h`); rewrite
/// the ones we share to `--` so an existing Deployment's args keep working.
pub fn normalize_go_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    const SHARED: &[&str] = &["port", "timeout", "namespace-regexp", "log-level", "zap-encoding"];
    args.into_iter()
        .map(|a| {
            let Some(s) = a.to_str() else { return a };
            let Some(rest) = s.strip_prefix('-').filter(|r| !r.starts_with('-')) else { return a };
            let name = rest.split_once('=').map_or(rest, |(n, _)| n);
            if SHARED.contains(&name) { OsString::from(format!("-{s}")) } else { a }
        })
        .collect()
}

/// Where gates are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateStoreSpec {
    /// `file:<path>`.
    File(PathBuf),
    /// `configmap:<namespace>/<name>`.
    ConfigMap { namespace: String, name: String },
}

impl FromStr for GateStoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        const USAGE: &str = "use file:<path> or configmap:<namespace>/<name>";
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(format!("{s:?} names no file; {USAGE}"));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("configmap:") {
            let Some((namespace, name)) = rest.split_once('/') else {
                return Err(format!("{s:?} needs both a namespace and a name; {USAGE}"));
            };
            let valid = |v: &str| {
                !v.is_empty()
                    && v.len() <= 253
                    && v.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            };
            if !valid(namespace) || !valid(name) {
                return Err(format!("{s:?} does not hold a valid Kubernetes namespace and name; {USAGE}"));
            }
            return Ok(Self::ConfigMap { namespace: namespace.to_owned(), name: name.to_owned() });
        }
        Err(format!("unknown gate store {s:?}; {USAGE}"))
    }
}

impl std::fmt::Display for GateStoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::ConfigMap { namespace, name } => write!(f, "configmap:{namespace}/{name}"),
        }
    }
}

impl GateStoreSpec {
    /// The default: a ConfigMap in the namespace named by `service_account_namespace_file` when
    /// that file exists (running in a pod), else a file in the working directory.
    pub fn default_for(service_account_namespace_file: &Path) -> Self {
        match std::fs::read_to_string(service_account_namespace_file) {
            Ok(ns) if !ns.trim().is_empty() => {
                Self::ConfigMap { namespace: ns.trim().to_owned(), name: DEFAULT_GATE_CONFIGMAP.to_owned() }
            }
            _ => Self::File(PathBuf::from(DEFAULT_GATE_FILE)),
        }
    }

    /// Opens the store: loads the file, or connects to the API server and reads the ConfigMap.
    pub async fn open(&self) -> Result<Arc<dyn GateStore>, ConfigError> {
        Ok(match self {
            Self::File(path) => Arc::new(FileGateStore::open(path).await?),
            Self::ConfigMap { namespace, name } => {
                crate::http::install_crypto_provider();
                let client = kube::Client::try_default().await.map_err(|e| ConfigError::Kube(Box::new(e)))?;
                Arc::new(ConfigMapGateStore::connect(client, namespace, name).await?)
            }
        })
    }
}

/// A startup configuration problem.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read --token-file {path}: {source}")]
    TokenFile { path: String, source: std::io::Error },
    #[error("--token-file {path} is empty; put the token in it (surrounding whitespace is ignored)")]
    EmptyToken { path: String },
    #[error(transparent)]
    ServiceAccount(#[from] BadServiceAccount),
    #[error(
        "--token-review-audience is empty; use the audience of the callers' tokens (default veer-loadtester)"
    )]
    EmptyAudience,
    #[error(
        "cannot reach the Kubernetes API for TokenReviews (--allowed-service-account): {0}; run in a cluster or set KUBECONFIG"
    )]
    TokenReviewClient(Box<kube::Error>),
    #[error("--namespace-regexp {pattern:?} is not a valid regular expression: {source}")]
    NamespaceRegexp { pattern: String, source: regex::Error },
    #[error(transparent)]
    Shell(#[from] ShellPolicyError),
    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },
    #[error(
        "cannot reach the Kubernetes API for the gate ConfigMap: {0}; run in a cluster, set KUBECONFIG, \
         or use --gate-store file:<path>"
    )]
    Kube(Box<kube::Error>),
    #[error(transparent)]
    GateStore(#[from] GateStoreError),
}

/// A bearer token, kept only as its SHA-256 digest so comparisons take the same time whatever
/// the presented token's length or content.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text.
    pub fn new(token: &str) -> Self {
        Self { digest: Sha256::digest(token.as_bytes()).into() }
    }

    /// Constant-time check of a presented token.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }
}

/// Payload namespaces allowed to use the load tester.
#[derive(Debug, Clone)]
pub struct NamespaceFilter {
    pattern: String,
    regex: Regex,
}

impl NamespaceFilter {
    /// Compiles `pattern`, anchored so it must match the whole namespace.
    pub fn new(pattern: &str) -> Result<Self, ConfigError> {
        let regex = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|source| ConfigError::NamespaceRegexp { pattern: pattern.to_owned(), source })?;
        Ok(Self { pattern: pattern.to_owned(), regex })
    }

    /// Whether `namespace` may use the load tester.
    pub fn allows(&self, namespace: &str) -> bool {
        self.regex.is_match(namespace)
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

/// The validated settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Per-command and per-load-run time limit.
    pub timeout: Duration,
    /// Allowed payload namespaces; `None` allows all.
    pub namespaces: Option<NamespaceFilter>,
    /// What shell commands may run.
    pub shell: ShellPolicy,
    /// Bearer token accepted on every endpoint but /healthz; `None` with no `token_review`
    /// disables authentication.
    pub token: Option<Token>,
    /// ServiceAccount tokens accepted besides `token`, checked with TokenReviews.
    pub token_review: Option<TokenReviewPolicy>,
    /// /metrics needs no token.
    pub unauthenticated_metrics: bool,
    /// Longest wait for a request's headers (see [`super::serve_with`]) and for its body.
    pub read_timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most workers per load run.
    pub max_workers: u32,
    /// Most concurrent tasks.
    pub max_tasks: usize,
    /// Most bytes kept per output stream of a command.
    pub output_limit_bytes: usize,
}

impl Default for Config {
    /// Flagger's defaults with Veer's safety: no shell, no token, 1h timeout.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3600),
            namespaces: None,
            shell: ShellPolicy::disabled(),
            token: None,
            token_review: None,
            unauthenticated_metrics: false,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_body_bytes: 1 << 20,
            max_workers: 200,
            max_tasks: 32,
            output_limit_bytes: 1 << 20,
        }
    }
}

impl Args {
    /// Validates the flags and reads the token file.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let token = match &self.token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::TokenFile { path: path.display().to_string(), source })?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(ConfigError::EmptyToken { path: path.display().to_string() });
                }
                Some(Token::new(text))
            }
        };
        let allowed = self
            .allowed_service_accounts
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<ServiceAccountUser>())
            .collect::<Result<BTreeSet<_>, _>>()?;
        let token_review = if allowed.is_empty() {
            None
        } else {
            let audience = self.token_review_audience.trim();
            if audience.is_empty() {
                return Err(ConfigError::EmptyAudience);
            }
            Some(TokenReviewPolicy { audience: audience.to_owned(), allowed })
        };
        let namespaces = match self.namespace_regexp.as_deref() {
            None | Some("") => None,
            Some(p) => Some(NamespaceFilter::new(p)?),
        };
        let patterns: Vec<String> =
            self.allow_commands.iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
        for (flag, value) in [("max-workers", self.max_workers as usize), ("max-tasks", self.max_tasks)] {
            if value == 0 {
                return Err(ConfigError::Zero { flag });
            }
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Zero { flag: "max-body-bytes" });
        }
        Ok(Config {
            timeout: self.timeout,
            namespaces,
            shell: ShellPolicy::new(self.allow_shell, &patterns)?,
            token,
            token_review,
            unauthenticated_metrics: self.unauthenticated_metrics,
            read_timeout: self.read_timeout,
            max_body_bytes: self.max_body_bytes,
            max_workers: self.max_workers,
            max_tasks: self.max_tasks,
            output_limit_bytes: self.output_limit_bytes,
        })
    }

    /// The gate store to use: the flag, or the default for where we run.
    pub fn gate_store_spec(&self) -> GateStoreSpec {
        self.gate_store
            .clone()
            .unwrap_or_else(|| GateStoreSpec::default_for(Path::new(SERVICE_ACCOUNT_NAMESPACE_FILE)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let argv = std::iter::once("veer-loadtester").chain(args.iter().copied()).map(OsString::from);
        Args::try_parse_from(normalize_go_flags(argv))
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.port, 9090);
        assert_eq!(a.timeout, Duration::from_secs(3600));
        let c = a.config().unwrap();
        assert!(!c.shell.shell_allowed());
        assert!(c.token.is_none() && c.namespaces.is_none());
        assert!(c.token_review.is_none() && !c.unauthenticated_metrics);
        assert_eq!(c.read_timeout, DEFAULT_READ_TIMEOUT);
        assert!(parse(&["--read-timeout", "0s"]).is_err());
        assert_eq!(parse(&["--read-timeout", "2s"]).unwrap().read_timeout, Duration::from_secs(2));
    }

    #[test]
    fn allowed_service_accounts_turn_on_token_review() {
        let c = parse(&[
            "--allowed-service-account",
            "system:serviceaccount:veer-system:veer,system:serviceaccount:ci:runner",
            "--allowed-service-account=system:serviceaccount:ops:veer",
            "--unauthenticated-metrics",
        ])
        .unwrap()
        .config()
        .unwrap();
        let review = c.token_review.unwrap();
        assert_eq!(review.audience, "veer-loadtester");
        let allowed: Vec<&str> = review.allowed.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            allowed,
            [
                "system:serviceaccount:ci:runner",
                "system:serviceaccount:ops:veer",
                "system:serviceaccount:veer-system:veer"
            ]
        );
        assert!(c.unauthenticated_metrics);
        let c = parse(&[
            "--allowed-service-account",
            "system:serviceaccount:a:b",
            "--token-review-audience",
            "lt",
        ])
        .unwrap()
        .config()
        .unwrap();
        assert_eq!(c.token_review.unwrap().audience, "lt");

        let e = parse(&["--allowed-service-account", "veer"]).unwrap().config().unwrap_err().to_string();
        assert!(e.contains("system:serviceaccount:<namespace>:<name>"), "{e}");
        let e = parse(&[
            "--allowed-service-account",
            "system:serviceaccount:a:b",
            "--token-review-audience",
            " ",
        ])
        .unwrap()
        .config()
        .unwrap_err();
        assert!(matches!(e, ConfigError::EmptyAudience), "{e}");
    }

    #[test]
    fn flaggers_single_dash_flags_are_accepted() {
        let a = parse(&[
            "-port=8080",
            "-log-level=info",
            "-timeout=30m",
            "-namespace-regexp",
            "test",
            "-zap-encoding=json",
        ])
        .unwrap();
        assert_eq!(a.port, 8080);
        assert_eq!(a.timeout, Duration::from_secs(1800));
        assert_eq!(a.namespace_regexp.as_deref(), Some("test"));
        assert_eq!(a.log_format, "json");
    }

    #[test]
    fn bad_values_are_rejected_with_the_reason() {
        let e = parse(&["--timeout", "10"]).unwrap_err().to_string();
        assert!(e.contains("a unit is missing"), "{e}");
        let e = parse(&["--gate-store", "redis://x"]).unwrap_err().to_string();
        assert!(e.contains("file:<path> or configmap:<namespace>/<name>"), "{e}");
        let e = parse(&["--allow-shell"]).unwrap().config().unwrap_err().to_string();
        assert!(e.contains("--allow-command"), "{e}");
        let e = parse(&["--namespace-regexp", "("]).unwrap().config().unwrap_err().to_string();
        assert!(e.contains("not a valid regular expression"), "{e}");
        let e = parse(&["--max-workers", "0"]).unwrap().config().unwrap_err().to_string();
        assert!(e.contains("--max-workers must be at least 1"), "{e}");
    }

    #[test]
    fn gate_store_specs() {
        assert_eq!("file:/data/g.json".parse(), Ok(GateStoreSpec::File("/data/g.json".into())));
        assert_eq!(
            "configmap:test/gates".parse(),
            Ok(GateStoreSpec::ConfigMap { namespace: "test".into(), name: "gates".into() })
        );
        for bad in ["file:", "configmap:test", "configmap:/x", "configmap:Test/x", "memory"] {
            assert!(bad.parse::<GateStoreSpec>().is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let ns_file = dir.path().join("namespace");
        assert_eq!(GateStoreSpec::default_for(&ns_file), GateStoreSpec::File(DEFAULT_GATE_FILE.into()));
        std::fs::write(&ns_file, "flagger-system\n").unwrap();
        assert_eq!(
            GateStoreSpec::default_for(&ns_file),
            GateStoreSpec::ConfigMap {
                namespace: "flagger-system".into(),
                name: DEFAULT_GATE_CONFIGMAP.into()
            }
        );
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let c = parse(&["--token-file", path.to_str().unwrap()]).unwrap().config().unwrap();
        let token = c.token.unwrap();
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cret\n") && !token.matches("s3cre") && !token.matches(""));
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        std::fs::write(&path, " \n").unwrap();
        let e = parse(&["--token-file", path.to_str().unwrap()]).unwrap().config().unwrap_err();
        assert!(matches!(e, ConfigError::EmptyToken { .. }), "{e}");
    }

    #[test]
    fn namespace_filter_matches_whole_namespaces() {
        let f = NamespaceFilter::new("test|team-.*").unwrap();
        assert!(f.allows("test") && f.allows("team-a"));
        assert!(!f.allows("mytest") && !f.allows("test2") && !f.allows("x-team-a"));
    }
}
