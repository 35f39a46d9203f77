//! `veer promote|abort|retry|pause|resume`: operators' requests sent to a Canary without an edit of
//! its spec (which Flux or Argo CD would revert), through the annotations of
//! [`crate::analysis::request`].
//!
//! A request is checked here first with the rule the controller applies ([`admit`]), so that a
//! refusal is immediate; it is bound to the revision the target holds now (a newer revision never
//! receives it); then the command waits until Veer has answered it (the annotation is removed) and
//! prints the decision it led to, or why Veer refused it. Pause and resume set and remove
//! `veer.dev/paused`. [`send`] is shared with the dashboard.

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::wait::await_condition,
};
use serde_json::json;

use crate::{
    analysis::request::{Action, PAUSED_ANNOTATION, REQUEST_ANNOTATION, Refusal, Request, admit},
    api::Canary,
    router::display_name,
    wait::{ReadError, target_template},
    workload::template_revision,
};

/// The Canary an operation is for.
#[derive(clap::Args, Clone, Debug)]
pub struct CanaryRef {
    /// Namespace of the Canary (default: the kubeconfig's).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Canary name.
    pub name: String,
}

/// Flags of `veer abort` and `veer retry`.
#[derive(clap::Args, Clone, Debug)]
pub struct RequestArgs {
    #[command(flatten)]
    pub canary: CanaryRef,
    /// How long to wait for Veer's answer (`0s`: do not wait).
    #[arg(long, default_value = "60s", value_parser = |s: &str| crate::duration::parse(s).map_err(|e| e.to_string()))]
    pub timeout: Duration,
}

/// Flags of `veer promote`.
#[derive(clap::Args, Clone, Debug)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// Promote now without running the checks (also a failed revision the target still runs).
    #[arg(long)]
    pub full: bool,
}

/// What an operator does to a Canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Request(Action),
    Pause,
    Resume,
}

impl Operation {
    /// The operation's command name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Request(Action::Promote | Action::PromoteFull) => "promote",
            Operation::Request(Action::Abort) => "abort",
            Operation::Request(Action::Retry) => "retry",
            Operation::Pause => "pause",
            Operation::Resume => "resume",
        }
    }
}

/// Why an operation was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("cannot connect to Kubernetes (set KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("Canary {0} not found")]
    NotFound(String),
    #[error("{canary}: {refusal}")]
    Refused { canary: String, refusal: Refusal },
    #[error(
        "{canary}: the request {value:?} is still waiting for Veer; withdraw it with `kubectl annotate canary {name} {REQUEST_ANNOTATION}-` first"
    )]
    Pending { canary: String, name: String, value: String },
    #[error("{canary}: cannot write the request: {source}")]
    Write { canary: String, source: kube::Error },
    #[error("{canary}: Veer refused the request: {message}")]
    RefusedByVeer { canary: String, message: String },
    #[error(
        "{canary}: Veer has not answered within {timeout:?} ({now}); the request stays and is acted on when it can be (is the controller running?), `kubectl annotate canary {name} {REQUEST_ANNOTATION}-` withdraws it"
    )]
    Timeout { canary: String, name: String, timeout: Duration, now: String },
}

/// Runs `veer <operation>` from the command line; `timeout` applies to requests.
pub async fn run(canary: CanaryRef, operation: Operation, timeout: Duration) -> Result<(), ActionError> {
    crate::http::install_crypto_provider();
    let client = Client::try_default().await.map_err(ActionError::Client)?;
    let ns = canary.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let answer = send(&client, &ns, &canary.name, operation, timeout).await?;
    println!("{answer}");
    Ok(())
}

/// Sends `operation` to the Canary `name` in `ns`; for a request, waits up to `timeout` for
/// Veer's answer. Returns what happened, in words.
pub async fn send(
    client: &Client,
    ns: &str,
    name: &str,
    operation: Operation,
    timeout: Duration,
) -> Result<String, ActionError> {
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    let canary = api
        .get_opt(name)
        .await
        .map_err(|source| ReadError { what: format!("Canary {name}.{ns}"), source })?
        .ok_or_else(|| ActionError::NotFound(format!("{name}.{ns}")))?;
    let display = display_name(&canary);
    let write = |source| ActionError::Write { canary: display.clone(), source };
    let params = PatchParams { field_manager: Some("veer-cli".into()), ..Default::default() };
    let action = match operation {
        Operation::Pause | Operation::Resume => {
            let value = (operation == Operation::Pause).then_some("true");
            let patch = json!({"metadata": {"annotations": {PAUSED_ANNOTATION: value}}});
            api.patch(name, &params, &Patch::Merge(&patch)).await.map_err(write)?;
            return Ok(match operation {
                Operation::Pause => format!(
                    "{display} paused: Veer holds it where it is until `veer resume {name}` ({})",
                    describe(&canary)
                ),
                _ => format!("{display} resumed ({})", describe(&canary)),
            });
        }
        Operation::Request(action) => action,
    };
    if let Some(value) = Request::raw(&canary) {
        return Err(ActionError::Pending { canary: display, name: name.into(), value: value.into() });
    }
    let revision =
        target_template(client, ns, &canary).await?.map(|t| template_revision(&t)).unwrap_or_default();
    let request = Request { action, revision: Some(revision.clone()).filter(|r| !r.is_empty()) };
    let status = canary.status.clone().unwrap_or_default();
    admit(&request, &status, &revision)
        .map_err(|refusal| ActionError::Refused { canary: display.clone(), refusal })?;
    let value = request.to_annotation();
    let patch = json!({"metadata": {"annotations": {REQUEST_ANNOTATION: value}}});
    let asked_at = k8s_openapi::jiff::Timestamp::now();
    let sent = api.patch(name, &params, &Patch::Merge(&patch)).await.map_err(write)?;
    if timeout.is_zero() {
        return Ok(format!("{display}: requested {value}"));
    }
    let answered = {
        let value = value.clone();
        await_condition(api.clone(), name, move |c: Option<&Canary>| {
            c.is_none_or(|c| Request::raw(c) != Some(value.as_str()))
        })
    };
    let after = match tokio::time::timeout(timeout, answered).await {
        Ok(Ok(Some(c))) => c,
        Ok(Ok(None)) => return Err(ActionError::NotFound(display)),
        Ok(Err(_)) | Err(_) => {
            let now = api.get_opt(name).await.ok().flatten().map_or_else(String::new, |c| describe(&c));
            return Err(ActionError::Timeout { canary: display, name: name.into(), timeout, now });
        }
    };
    let decided = |c: &Canary| c.status.as_ref().and_then(|s| s.decision.clone());
    if decided(&after) == decided(&sent) {
        // Nothing decided: Veer refused it (the state changed between our check and its tick).
        // Events since a minute before the request (the controller's clock may differ from ours).
        let since = asked_at - k8s_openapi::jiff::SignedDuration::from_secs(60);
        if let Some(message) = refusal_event(client, ns, &canary, since).await {
            return Err(ActionError::RefusedByVeer { canary: display, message });
        }
    }
    Ok(format!("{display}: {}", describe(&after)))
}

/// Phase, weight and the last decision, in one line.
fn describe(c: &Canary) -> String {
    let s = c.status.clone().unwrap_or_default();
    let decision = s.decision.map(|d| format!(": {} {}", d.reason, d.message)).unwrap_or_default();
    format!("{} at canary weight {}{decision}", s.phase.as_str(), s.canary_weight)
}

/// The message of the newest Event saying Veer refused a request on `canary`.
async fn refusal_event(
    client: &Client,
    ns: &str,
    canary: &Canary,
    since: k8s_openapi::jiff::Timestamp,
) -> Option<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let fields = format!("involvedObject.kind=Canary,involvedObject.name={}", canary.name_any());
    let list = events.list(&ListParams::default().fields(&fields)).await.ok()?;
    let marker = format!("request {REQUEST_ANNOTATION} refused: ");
    list.items
        .into_iter()
        .filter(|e| e.involved_object.uid == canary.metadata.uid)
        .filter_map(|e| {
            let message = e.message?;
            let at = e.last_timestamp.map(|t| t.0).or(e.event_time.map(|t| t.0))?;
            let (_, why) = message.split_once(&marker)?;
            (at >= since).then(|| (at, why.to_string()))
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, why)| why)
}
