//! Tasks posted to `/`: what the metadata asks for ([`plan`]) and running it ([`TaskRunner`]).
//!
//! As in Flagger: `type: cmd` (the default) runs in the background and answers 202 at once, and
//! a command already running for the same Canary is not started again, so a `hey -z 10m` begun
//! on the first analysis tick is not restarted on every tick. `bash`, `helm`, `helmv3` and
//! `kubectl` block and answer 200 or 500.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use super::config::Config;
use super::hey::{self, HeyError, HeySpec, WordsError, split_words};
use super::metrics::Metrics;
use super::shell::{ShellRefusal, run_command};
use crate::api::WebhookPayload;

/// Task types Flagger's load tester knows but this one does not run.
const UNSUPPORTED_TYPES: &[&str] = &["concord", "ngrinder"];
/// Load tools Flagger's image bundles that have no built-in equivalent here.
const UNSUPPORTED_TOOLS: &[&str] = &["wrk", "ghz"];

/// A task request that cannot run.
#[derive(Debug, Error)]
pub enum TaskError {
    #[error(
        "metadata not found in payload: set the webhook's metadata, e.g. {{type: cmd, cmd: \"hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/\"}}"
    )]
    MissingMetadata,
    #[error("metadata.cmd is missing or empty: type {0} needs a command to run")]
    MissingCmd(String),
    #[error("unknown task type {0:?}: use cmd (the default), bash, helm, helmv3 or kubectl")]
    UnknownType(String),
    #[error(
        "task type {0:?} is not supported by veer-loadtester: use cmd (hey), bash, helm, helmv3 or kubectl"
    )]
    UnsupportedType(String),
    #[error(
        "{0} is not supported: veer-loadtester has a built-in hey only and bundles no other load tools; \
         use a hey command line, or run {0} from your own image with --allow-shell and a matching --allow-command"
    )]
    UnsupportedTool(String),
    #[error("invalid hey command: {0}")]
    Hey(#[from] HeyError),
    #[error("invalid command: {0}")]
    Words(WordsError),
    #[error(transparent)]
    Refused(#[from] ShellRefusal),
}

impl TaskError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Refused(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// What a task request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskPlan {
    /// The built-in load generator, in the background.
    Hey { spec: Box<HeySpec>, cmd: String },
    /// An external program.
    Command {
        /// The task type, for logs and metrics.
        task_type: String,
        program: String,
        args: Vec<String>,
        /// The command line the policy matched.
        line: String,
        /// Answer after it finishes (true) or at once with 202 (false).
        blocking: bool,
    },
}

/// A boolean metadata field, read as Flagger reads it (Go's `strconv.ParseBool`).
fn flag(metadata: &BTreeMap<String, String>, key: &str) -> bool {
    metadata.get(key).and_then(|v| hey::parse_go_bool(v)).unwrap_or(false)
}

/// The task type of a request (`cmd` when unset), for metrics.
pub fn task_type(payload: &WebhookPayload) -> String {
    payload.metadata.as_ref().and_then(|m| m.get("type")).map_or("cmd", |t| t.trim()).to_owned()
}

/// Decides what a payload asks for and whether it may run.
pub fn plan(payload: &WebhookPayload, config: &Config) -> Result<TaskPlan, TaskError> {
    let metadata = payload.metadata.as_ref().filter(|m| !m.is_empty()).ok_or(TaskError::MissingMetadata)?;
    let typ = metadata.get("type").map_or("cmd", |t| t.trim());
    let typ = if typ.is_empty() { "cmd" } else { typ };
    if UNSUPPORTED_TYPES.contains(&typ) {
        return Err(TaskError::UnsupportedType(typ.to_owned()));
    }
    if !matches!(typ, "cmd" | "bash" | "helm" | "helmv3" | "kubectl") {
        return Err(TaskError::UnknownType(typ.to_owned()));
    }
    // Flagger runs an empty command and reports success; an empty command is a mistake.
    let cmd = metadata.get("cmd").map(|c| c.trim()).filter(|c| !c.is_empty());
    let cmd = cmd.ok_or_else(|| TaskError::MissingCmd(typ.to_owned()))?;

    match typ {
        "cmd" => plan_cmd(cmd, config),
        "bash" => {
            config.shell.check("type bash", cmd)?;
            Ok(TaskPlan::Command {
                task_type: typ.to_owned(),
                program: "bash".into(),
                args: vec!["-c".into(), cmd.to_owned()],
                line: cmd.to_owned(),
                blocking: true,
            })
        }
        _ => {
            // helm, helmv3 (Helm 3 is `helm` now) and kubectl: arguments split on whitespace,
            // without quoting, as Flagger does.
            let program = if typ == "kubectl" { "kubectl" } else { "helm" };
            let line = format!("{program} {cmd}");
            config.shell.check(&format!("type {typ}"), &line)?;
            Ok(TaskPlan::Command {
                task_type: typ.to_owned(),
                program: program.into(),
                args: cmd.split_whitespace().map(str::to_owned).collect(),
                line,
                blocking: true,
            })
        }
    }
}

fn plan_cmd(cmd: &str, config: &Config) -> Result<TaskPlan, TaskError> {
    let shell = |config: &Config| -> Result<TaskPlan, TaskError> {
        config.shell.check("type cmd", cmd)?;
        Ok(TaskPlan::Command {
            task_type: "cmd".into(),
            program: "sh".into(),
            args: vec!["-c".into(), cmd.to_owned()],
            line: cmd.to_owned(),
            blocking: false,
        })
    };
    let words = match split_words(cmd) {
        Ok(w) => w,
        // Pipes, `;`, `$VAR`...: a shell command, whatever program it starts with.
        Err(WordsError::ShellSyntax(_)) => return shell(config),
        Err(e) => return Err(TaskError::Words(e)),
    };
    let Some(first) = words.first() else { return Err(TaskError::MissingCmd("cmd".into())) };
    let program = first.rsplit('/').next().unwrap_or_default();
    if program == "hey" {
        let spec = hey::parse_hey_args(&words[1..])?;
        spec.check_limits(config.max_workers, config.timeout)?;
        return Ok(TaskPlan::Hey { spec: Box::new(spec), cmd: cmd.to_owned() });
    }
    if UNSUPPORTED_TOOLS.contains(&program) {
        // An operator who installed the tool and allowed it explicitly can still run it.
        return match config.shell.check("type cmd", cmd) {
            Ok(()) => shell(config),
            Err(_) => Err(TaskError::UnsupportedTool(program.to_owned())),
        };
    }
    shell(config)
}

/// The answer to a task request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResponse {
    pub status: StatusCode,
    pub body: String,
}

impl TaskResponse {
    fn new(status: StatusCode, body: impl Into<String>) -> Self {
        Self { status, body: body.into() }
    }
}

/// Runs planned tasks: background ones at most once per (Canary, command), all of them within
/// the task limit and the per-command timeout.
#[derive(Clone)]
pub struct TaskRunner {
    inner: Arc<Inner>,
}

struct Inner {
    running: Mutex<HashSet<String>>,
    slots: Arc<Semaphore>,
    max_tasks: usize,
    timeout: Duration,
    output_limit: usize,
    metrics: Arc<Metrics>,
}

/// Removes a background task's key when it ends, however it ends.
struct RunningGuard {
    inner: Arc<Inner>,
    key: String,
    _slot: OwnedSemaphorePermit,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.inner.running.lock().expect("running-task set lock poisoned").remove(&self.key);
    }
}

impl TaskRunner {
    /// A runner with the config's limits.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                running: Mutex::new(HashSet::new()),
                slots: Arc::new(Semaphore::new(config.max_tasks)),
                max_tasks: config.max_tasks,
                timeout: config.timeout,
                output_limit: config.output_limit_bytes,
                metrics,
            }),
        }
    }

    fn busy(&self) -> TaskResponse {
        TaskResponse::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} tasks are running already (--max-tasks); try again later or raise --max-tasks",
                self.inner.max_tasks
            ),
        )
    }

    /// Starts or runs `plan` for the Canary in `payload`.
    pub async fn submit(&self, payload: &WebhookPayload, plan: TaskPlan) -> TaskResponse {
        let metadata = payload.metadata.clone().unwrap_or_default();
        let log_output = flag(&metadata, "logCmdOutput");
        let return_output = flag(&metadata, "returnCmdOutput");
        let canary = format!("{}.{}", payload.name, payload.namespace);
        match plan {
            TaskPlan::Hey { spec, cmd } => self.start_background(&canary, cmd.clone(), "cmd", move |inner| {
                let (name, namespace) = (payload.name.clone(), payload.namespace.clone());
                // Counted as active before the 202 goes out, so /metrics never lags a started run.
                let active = inner.metrics.run_started();
                async move {
                    let _active = active;
                    let observer = inner.metrics.run_observer(&name, &namespace);
                    info!(canary = %format!("{name}.{namespace}"), %cmd, "load test started");
                    match hey::run(&spec, inner.timeout, observer).await {
                        Ok(report) => {
                            inner.metrics.run_finished(&name, &namespace, &report);
                            info!(
                                canary = %format!("{name}.{namespace}"),
                                %cmd,
                                requests = report.requests,
                                errors = report.errors(),
                                rate = report.rate(),
                                p50_ms = ms(report.latency.quantile(0.5)),
                                p90_ms = ms(report.latency.quantile(0.9)),
                                p99_ms = ms(report.latency.quantile(0.99)),
                                "load test finished: {}",
                                report.summary()
                            );
                        }
                        Err(e) => {
                            warn!(canary = %format!("{name}.{namespace}"), %cmd, "load test failed: {e}")
                        }
                    }
                }
            }),
            TaskPlan::Command { task_type, program, args, line, blocking: false } => {
                let key_canary = canary.clone();
                self.start_background(&key_canary, line.clone(), &task_type, move |inner| async move {
                    info!(%canary, command = %line, "command started");
                    match run_command(&program, &args, inner.timeout, inner.output_limit).await {
                        Ok(out) => {
                            if log_output {
                                info!(%canary, command = %line, stdout = %out.stdout, stderr = %out.stderr, "command output");
                            }
                            info!(%canary, command = %line, "command finished");
                        }
                        Err(e) => warn!(%canary, command = %line, "command failed: {e}"),
                    }
                })
            }
            TaskPlan::Command { task_type, program, args, line, blocking: true } => {
                let Ok(_slot) = self.inner.slots.clone().try_acquire_owned() else {
                    self.inner.metrics.task(&task_type, "busy");
                    return self.busy();
                };
                info!(%canary, command = %line, "command started");
                match run_command(&program, &args, self.inner.timeout, self.inner.output_limit).await {
                    Ok(out) => {
                        self.inner.metrics.task(&task_type, "succeeded");
                        if log_output {
                            info!(%canary, command = %line, stdout = %out.stdout, stderr = %out.stderr, "command output");
                        }
                        info!(%canary, command = %line, "command finished");
                        let body = if return_output { out.stdout } else { String::new() };
                        TaskResponse::new(StatusCode::OK, body)
                    }
                    Err(e) => {
                        self.inner.metrics.task(&task_type, "failed");
                        warn!(%canary, command = %line, "command failed: {e}");
                        TaskResponse::new(StatusCode::INTERNAL_SERVER_ERROR, format!("command {line:?}: {e}"))
                    }
                }
            }
        }
    }

    fn start_background<F, Fut>(
        &self,
        canary: &str,
        command: String,
        task_type: &str,
        work: F,
    ) -> TaskResponse
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let key = format!("{canary}\n{command}");
        let mut running = self.inner.running.lock().expect("running-task set lock poisoned");
        if running.contains(&key) {
            self.inner.metrics.task(task_type, "already_running");
            return TaskResponse::new(
                StatusCode::ACCEPTED,
                format!("already running for {canary}: {command}\n"),
            );
        }
        let Ok(slot) = self.inner.slots.clone().try_acquire_owned() else {
            drop(running);
            self.inner.metrics.task(task_type, "busy");
            return self.busy();
        };
        running.insert(key.clone());
        drop(running);
        self.inner.metrics.task(task_type, "accepted");
        let guard = RunningGuard { inner: self.inner.clone(), key, _slot: slot };
        let fut = work(self.inner.clone());
        tokio::spawn(async move {
            let _guard = guard;
            fut.await;
        });
        TaskResponse::new(StatusCode::ACCEPTED, format!("started for {canary}: {command}\n"))
    }
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtester::shell::ShellPolicy;

    fn payload(meta: &[(&str, &str)]) -> WebhookPayload {
        WebhookPayload {
            name: "podinfo".into(),
            namespace: "test".into(),
            metadata: Some(meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }
    }

    fn with_shell(patterns: &[&str]) -> Config {
        let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        Config { shell: ShellPolicy::new(true, &patterns).unwrap(), ..Config::default() }
    }

    #[test]
    fn hey_is_built_in_and_the_default_type() {
        let p = plan(
            &payload(&[("cmd", "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/")]),
            &Config::default(),
        );
        assert!(matches!(p, Ok(TaskPlan::Hey { .. })), "{p:?}");
        let p = plan(
            &payload(&[("type", "cmd"), ("cmd", "/usr/local/bin/hey -n 10 -c 1 http://a/")]),
            &Config::default(),
        );
        assert!(matches!(p, Ok(TaskPlan::Hey { .. })), "{p:?}");
    }

    #[test]
    fn missing_or_empty_things_are_400() {
        let mut empty = payload(&[]);
        assert!(matches!(plan(&empty, &Config::default()), Err(TaskError::MissingMetadata)));
        empty.metadata = None;
        assert!(matches!(plan(&empty, &Config::default()), Err(TaskError::MissingMetadata)));
        let e = plan(&payload(&[("type", "cmd"), ("cmd", "  ")]), &Config::default()).unwrap_err();
        assert!(matches!(e, TaskError::MissingCmd(_)) && e.status() == StatusCode::BAD_REQUEST);
        let e = plan(&payload(&[("type", "bash")]), &Config::default()).unwrap_err();
        assert!(matches!(e, TaskError::MissingCmd(_)));
    }

    #[test]
    fn unknown_and_unsupported_types_are_400() {
        let e = plan(&payload(&[("type", "tester"), ("cmd", "x")]), &Config::default()).unwrap_err();
        assert!(matches!(e, TaskError::UnknownType(_)) && e.status() == StatusCode::BAD_REQUEST, "{e}");
        let e = plan(&payload(&[("type", "concord"), ("cmd", "x")]), &Config::default()).unwrap_err();
        assert!(matches!(e, TaskError::UnsupportedType(_)), "{e}");
    }

    #[test]
    fn wrk_and_ghz_are_not_supported_unless_explicitly_allowed() {
        for cmd in ["wrk -t2 -c10 -d30s http://a/", "ghz --insecure --call a.B/C podinfo:9999"] {
            let e = plan(&payload(&[("cmd", cmd)]), &Config::default()).unwrap_err();
            assert!(
                matches!(e, TaskError::UnsupportedTool(_)) && e.status() == StatusCode::BAD_REQUEST,
                "{e}"
            );
            assert!(e.to_string().contains("not supported"), "{e}");
        }
        let p = plan(&payload(&[("cmd", "wrk -d30s http://a/")]), &with_shell(&["wrk .*"])).unwrap();
        assert!(matches!(p, TaskPlan::Command { blocking: false, .. }), "{p:?}");
    }

    #[test]
    fn bad_hey_lines_are_400_with_the_reason() {
        let e = plan(&payload(&[("cmd", "hey -z 1m")]), &Config::default()).unwrap_err();
        assert!(e.to_string().starts_with("invalid hey command: hey needs a target URL"), "{e}");
        let e = plan(&payload(&[("cmd", "hey -c 1000 -z 1m http://a/")]), &Config::default()).unwrap_err();
        assert!(e.to_string().contains("--max-workers"), "{e}");
        let e = plan(&payload(&[("cmd", "hey -z 2h http://a/")]), &Config::default()).unwrap_err();
        assert!(e.to_string().contains("--timeout"), "{e}");
        let e = plan(&payload(&[("cmd", "hey 'http://a/")]), &Config::default()).unwrap_err();
        assert!(matches!(e, TaskError::Words(_)) && e.status() == StatusCode::BAD_REQUEST, "{e}");
    }

    #[test]
    fn shell_tasks_are_refused_by_default() {
        for meta in [
            vec![("type", "bash"), ("cmd", "curl -sd 'test' http://podinfo-canary/token | grep token")],
            vec![("type", "cmd"), ("cmd", "curl http://a/")],
            vec![("cmd", "hey -z 1m http://a/ | tee /tmp/x")],
            vec![("type", "helm"), ("cmd", "test podinfo")],
            vec![("type", "helmv3"), ("cmd", "test podinfo")],
            vec![("type", "kubectl"), ("cmd", "get pods")],
        ] {
            let e = plan(&payload(&meta), &Config::default()).unwrap_err();
            assert_eq!(e.status(), StatusCode::FORBIDDEN, "{meta:?}: {e}");
            assert!(e.to_string().contains("--allow-shell"), "{e}");
        }
    }

    #[test]
    fn allowed_shell_tasks_run_only_when_a_pattern_matches() {
        let config =
            with_shell(&["helm test podinfo( --timeout [0-9]+m)?", "kubectl get pods -n [a-z]+", "echo .*"]);
        let p = plan(&payload(&[("type", "helmv3"), ("cmd", "test podinfo --timeout 3m")]), &config).unwrap();
        assert_eq!(
            p,
            TaskPlan::Command {
                task_type: "helmv3".into(),
                program: "helm".into(),
                args: vec!["test".into(), "podinfo".into(), "--timeout".into(), "3m".into()],
                line: "helm test podinfo --timeout 3m".into(),
                blocking: true,
            }
        );
        let p = plan(&payload(&[("type", "kubectl"), ("cmd", "get pods -n test")]), &config).unwrap();
        assert!(matches!(p, TaskPlan::Command { blocking: true, .. }));
        let p = plan(&payload(&[("type", "bash"), ("cmd", "echo hi")]), &config).unwrap();
        assert!(matches!(p, TaskPlan::Command { ref program, blocking: true, .. } if program == "bash"));
        let p = plan(&payload(&[("cmd", "echo hi")]), &config).unwrap();
        assert!(matches!(p, TaskPlan::Command { ref program, blocking: false, .. } if program == "sh"));
        let e = plan(&payload(&[("type", "kubectl"), ("cmd", "delete ns test")]), &config).unwrap_err();
        assert!(matches!(e, TaskError::Refused(ShellRefusal::NotAllowed { .. })), "{e}");
    }
}
