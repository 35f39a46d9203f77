//! Command-line flags of `veer controller`. Names follow Flagger's flags where they mean the same
//! (see docs/flags.md); every flag can also be set from an environment variable.

use std::{path::PathBuf, time::Duration};

use clap::Args;

use crate::telemetry::LogFormat;

/// Flags of `veer controller`.
#[derive(Args, Clone, Debug)]
pub struct ControllerArgs {
    /// Prometheus URL for the built-in metrics, when a Canary sets no metricsServer.
    #[arg(long, env = "VEER_METRICS_SERVER", default_value = "http://prometheus:9090")]
    pub metrics_server: String,

    /// Provider of Canaries that set no spec.provider: istio, nginx, kubernetes, gatewayapi:v1,
    /// gatewayapi:v1beta1, linkerd, osm or smi:v1alpha1|2|3[:mesh].
    #[arg(long, env = "VEER_MESH_PROVIDER", default_value = "istio")]
    pub mesh_provider: String,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "VEER_NAMESPACE", default_value = "")]
    pub namespace: String,

    /// Label keys (comma-separated, in order of preference) that identify a target's pods.
    #[arg(
        long,
        env = "VEER_SELECTOR_LABELS",
        default_value = "app,name,app.kubernetes.io/name",
        value_delimiter = ','
    )]
    pub selector_labels: Vec<String>,

    /// Label prefixes (comma-separated; `*` for all) copied from targets to generated objects.
    #[arg(long, env = "VEER_INCLUDE_LABEL_PREFIX", default_value = "", value_delimiter = ',')]
    pub include_label_prefix: Vec<String>,

    /// Annotation prefix of the NGINX canary Ingress.
    #[arg(long, env = "VEER_INGRESS_ANNOTATIONS_PREFIX", default_value = "nginx.ingress.kubernetes.io")]
    pub ingress_annotations_prefix: String,

    /// Ingress class annotation for generated ingress objects (Flagger: Contour only).
    #[arg(long, env = "VEER_INGRESS_CLASS", default_value = "")]
    pub ingress_class: String,

    /// Track ConfigMaps and Secrets referenced by targets: a change starts a canary run.
    /// A bare `--enable-config-tracking` means `true`, as with Flagger's Go flag.
    #[arg(long, env = "VEER_ENABLE_CONFIG_TRACKING", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub enable_config_tracking: bool,

    /// Refuse Canaries that reference a MetricTemplate, an AlertProvider or a Gloo upstream in
    /// another namespace (for clusters shared by teams): such a Canary stalls, naming the reference.
    /// A bare `--no-cross-namespace-refs` means `true`, as with Flagger's Go flag.
    #[arg(long, env = "VEER_NO_CROSS_NAMESPACE_REFS", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub no_cross_namespace_refs: bool,

    /// Run only while holding a Lease, so that several replicas can run for availability.
    /// A bare `--enable-leader-election` means `true`, as with Flagger's Go flag.
    #[arg(long, env = "VEER_ENABLE_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub enable_leader_election: bool,

    /// Namespace of the leader election Lease (default: --namespace, else kube-system).
    #[arg(long, env = "VEER_LEADER_ELECTION_NAMESPACE", default_value = "kube-system")]
    pub leader_election_namespace: String,

    /// Cluster name shown in alerts.
    #[arg(long, env = "VEER_CLUSTER_NAME", default_value = "")]
    pub cluster_name: String,

    /// Port of /metrics, /healthz and /readyz.
    #[arg(long, env = "VEER_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address the admin server binds to.
    #[arg(long, env = "VEER_LISTEN_ADDRESS", default_value = "0.0.0.0")]
    pub listen_address: std::net::IpAddr,

    /// Log level or tracing filter (e.g. `info`, `debug`, `veer=debug,kube=warn`).
    #[arg(long, env = "VEER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "VEER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// URL receiving every Kubernetes Event Veer records (Canaries without `type: event` hooks).
    #[arg(long, env = "EVENT_WEBHOOK_URL", default_value = "")]
    pub event_webhook: String,

    /// Slack incoming webhook for Canaries without alerts.
    #[arg(long, env = "SLACK_URL", default_value = "")]
    pub slack_url: String,

    /// Slack bot token (sent as a bearer token).
    #[arg(long, env = "SLACK_TOKEN", default_value = "", hide_env_values = true)]
    pub slack_token: String,

    /// HTTP(S) proxy for Slack.
    #[arg(long, env = "SLACK_PROXY_URL", default_value = "")]
    pub slack_proxy_url: String,

    /// Slack user name.
    #[arg(long, env = "SLACK_USER", default_value = "flagger")]
    pub slack_user: String,

    /// Slack channel.
    #[arg(long, env = "SLACK_CHANNEL", default_value = "")]
    pub slack_channel: String,

    /// MS Teams incoming webhook for Canaries without alerts.
    #[arg(long, env = "MSTEAMS_URL", default_value = "")]
    pub msteams_url: String,

    /// HTTP(S) proxy for MS Teams.
    #[arg(long, env = "MSTEAMS_PROXY_URL", default_value = "")]
    pub msteams_proxy_url: String,

    /// Shortest analysis interval; shorter intervals are raised to it (Flagger: fixed 10s).
    #[arg(long, env = "VEER_MIN_ANALYSIS_INTERVAL", default_value = "10s", value_parser = parse_interval)]
    pub min_analysis_interval: Duration,

    /// Canaries reconciled at the same time. A reconcile mostly waits for the API server; with 16, a
    /// saturated API server made steps of 1,000 simultaneous rollouts up to 18 s late (p99), with 64
    /// under 4 s (docs/benchmarks.md).
    #[arg(long, env = "VEER_CONCURRENCY", default_value_t = 64)]
    pub concurrency: u16,

    /// File holding a bearer token for the hosts of --webhook-token-hosts, typically a projected
    /// ServiceAccount token with audience veer-loadtester. Read at start (unreadable: Veer does not
    /// start) and again when the copy is a minute old, as kubelet rotates it.
    #[arg(long, env = "VEER_WEBHOOK_TOKEN_FILE")]
    pub webhook_token_file: Option<PathBuf>,

    /// Webhook hosts (`host` or `host:port`, comma-separated) that get the token of
    /// --webhook-token-file as `Authorization: Bearer`. A URL's host must equal an entry (and its
    /// port the entry's port, if given); every other webhook gets no token, since Canary authors
    /// choose webhook URLs.
    #[arg(long, env = "VEER_WEBHOOK_TOKEN_HOSTS", value_delimiter = ',')]
    pub webhook_token_hosts: Vec<String>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

impl ControllerArgs {
    /// Label prefixes with empty entries removed.
    pub fn label_prefixes(&self) -> Vec<String> {
        self.include_label_prefix.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }

    /// The namespace of the leader election Lease.
    pub fn lease_namespace(&self) -> String {
        if self.leader_election_namespace == "kube-system" && !self.namespace.is_empty() {
            self.namespace.clone()
        } else {
            self.leader_election_namespace.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_follow_flagger() {
        let a = Cli::parse_from(["veer"]).args;
        assert_eq!(a.mesh_provider, "istio");
        assert_eq!(a.selector_labels, ["app", "name", "app.kubernetes.io/name"]);
        assert!(a.label_prefixes().is_empty());
        assert!(a.enable_config_tracking);
        assert_eq!(a.port, 8080);
        assert_eq!(a.min_analysis_interval, Duration::from_secs(10));
        let a = Cli::parse_from([
            "veer",
            "--include-label-prefix",
            "app.kubernetes.io,team",
            "--namespace",
            "apps",
        ])
        .args;
        assert_eq!(a.label_prefixes(), ["app.kubernetes.io", "team"]);
        assert_eq!(a.lease_namespace(), "apps");
        assert!(Cli::try_parse_from(["veer", "--min-analysis-interval", "soon"]).is_err());
        assert_eq!(a.webhook_token_file, None);
        assert!(a.webhook_token_hosts.is_empty());
    }

    #[test]
    fn webhook_token_hosts_are_a_comma_list() {
        let a = Cli::parse_from([
            "veer",
            "--webhook-token-file",
            "/var/run/secrets/veer/loadtester/token",
            "--webhook-token-hosts",
            "flagger-loadtester.test,flagger-loadtester.prod:80",
        ])
        .args;
        assert_eq!(
            a.webhook_token_file.as_deref(),
            Some(std::path::Path::new("/var/run/secrets/veer/loadtester/token"))
        );
        assert_eq!(a.webhook_token_hosts, ["flagger-loadtester.test", "flagger-loadtester.prod:80"]);
    }

    #[test]
    fn boolean_flags_take_an_optional_value() {
        // Flagger's Go flags accept `-enable-leader-election` alone as well as `=true`/`=false`.
        let a =
            Cli::parse_from(["veer", "--enable-leader-election", "--leader-election-namespace", "ops"]).args;
        assert!(a.enable_leader_election);
        assert_eq!(a.lease_namespace(), "ops");
        let a = Cli::parse_from(["veer", "--enable-leader-election=false", "--enable-config-tracking=false"])
            .args;
        assert!(!a.enable_leader_election);
        assert!(!a.enable_config_tracking);
        let a =
            Cli::parse_from(["veer", "--enable-config-tracking", "--enable-leader-election", "true"]).args;
        assert!(a.enable_config_tracking);
        assert!(a.enable_leader_election);
        assert!(!Cli::parse_from(["veer"]).args.enable_leader_election);
        assert!(!Cli::parse_from(["veer"]).args.no_cross_namespace_refs);
        assert!(Cli::parse_from(["veer", "--no-cross-namespace-refs"]).args.no_cross_namespace_refs);
    }
}
