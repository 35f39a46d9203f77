//! `veer wait`: for CI pipelines, waits until the revision the target runs now (or the one with
//! `--image`) is promoted, and exits 0; exits non-zero with the decision's reason when that
//! revision is rolled back, the Canary stalls, or the time runs out.
//!
//! The revision is recognised by its hash: the target's pod template hashed as the controller
//! hashes it ([`crate::workload::template_revision`]) must be the Canary's
//! `status.lastAppliedSpec`, so a `Succeeded` left over from the previous release never counts.
//! What to make of a Canary and its target is [`judge`], a pure function; [`run`] watches the
//! Canary and reads the target at each change of it (the controller updates the Canary's status
//! whenever the target changes).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::PodTemplateSpec,
};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};

use crate::{
    analysis::TargetKind,
    api::{Canary, Phase},
    router::display_name,
    workload::template_revision,
};

/// Flags of `veer wait`.
#[derive(clap::Args, Clone, Debug)]
pub struct WaitArgs {
    /// Namespace of the Canary (default: the kubeconfig's).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Canary name.
    pub name: String,
    /// Wait for the revision whose pod template runs this image (as written in the target, e.g.
    /// `ghcr.io/org/app:1.2.3`); until the target runs it, wait for it to (GitOps applies it later).
    /// Default: the revision the target runs when `veer wait` starts.
    #[arg(long)]
    pub image: Option<String>,
    /// Give up after this long.
    #[arg(long, default_value = "30m", value_parser = |s: &str| crate::duration::parse(s).map_err(|e| e.to_string()))]
    pub timeout: Duration,
}

/// Why `veer wait` did not see the revision promoted.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("cannot connect to Kubernetes (set KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("the watch failed: {0}")]
    Watch(#[source] watcher::Error),
    #[error("Canary {0} was deleted")]
    Deleted(String),
    #[error("{canary}: {reason}: {message}")]
    Failed { canary: String, reason: String, message: String },
    #[error("gave up after {timeout:?}: {last}")]
    Timeout { timeout: Duration, last: String },
}

/// Where the awaited revision stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not decided yet; why, in words.
    Waiting(String),
    /// Promoted: the primary runs it.
    Promoted,
    /// It will not be promoted without a change: rolled back, or the Canary stalled.
    Failed { reason: String, message: String },
}

/// What `veer wait` reads of the target's pod template, once per change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The template's revision hash, as the controller writes it to `status.lastAppliedSpec`.
    pub revision: String,
    /// The images of its containers and init containers.
    pub images: Vec<String>,
}

impl Template {
    pub fn of(template: &PodTemplateSpec) -> Template {
        let spec = template.spec.as_ref();
        let containers =
            spec.into_iter().flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()));
        Template {
            revision: template_revision(template),
            images: containers.filter_map(|c| c.image.clone()).collect(),
        }
    }
}

/// Where the revision of `template` (the target's; `None`: the target does not exist) stands,
/// according to `canary`'s status. With `image`, only a template running that image is the
/// awaited revision.
pub fn judge(canary: &Canary, template: Option<&Template>, image: Option<&str>) -> Progress {
    let target = &canary.spec.target_ref;
    let status = canary.status.clone().unwrap_or_default();
    // A stall is the user's to fix whatever the revision: say so now rather than at the timeout.
    if let Some(c) = status.conditions.iter().find(|c| c.type_ == "Stalled" && c.status == "True") {
        return Progress::Failed {
            reason: format!("Stalled ({})", c.reason),
            message: c.message.clone().unwrap_or_default(),
        };
    }
    let Some(template) = template else {
        return Progress::Waiting(format!("{} {} not found", target.kind, target.name));
    };
    if let Some(image) = image
        && !template.images.iter().any(|i| i == image)
    {
        return Progress::Waiting(format!("{} {} does not run {image} yet", target.kind, target.name));
    }
    let revision = &template.revision;
    if &status.last_applied_spec != revision {
        return Progress::Waiting(format!(
            "Veer has not started on this revision of {} {} yet",
            target.kind, target.name
        ));
    }
    let decision = status.decision.as_ref();
    match status.phase {
        Phase::Failed => Progress::Failed {
            reason: decision.map_or_else(|| "RolledBack".into(), |d| d.reason.clone()),
            message: decision.map_or_else(|| "the canary was rolled back".into(), |d| d.message.clone()),
        },
        // The first revision becomes the primary at initialization.
        Phase::Initialized => Progress::Promoted,
        Phase::Succeeded if &status.last_promoted_spec == revision => Progress::Promoted,
        phase => Progress::Waiting(format!(
            "{} at weight {}{}",
            phase.as_str(),
            status.canary_weight,
            decision.map(|d| format!(": {}", d.message)).unwrap_or_default()
        )),
    }
}

/// Runs `veer wait`.
pub async fn run(args: WaitArgs) -> Result<(), WaitError> {
    crate::http::install_crypto_provider();
    let client = Client::try_default().await.map_err(WaitError::Client)?;
    let ns = args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let canaries: Api<Canary> = Api::namespaced(client.clone(), &ns);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", args.name));
    let mut stream = watcher(canaries, config).default_backoff().touched_objects().boxed();
    let deadline = tokio::time::Instant::now() + args.timeout;
    // The revision awaited without --image: the one the target runs at the first look.
    let mut pinned: Option<String> = None;
    let mut last = format!("Canary {}.{ns} not found", args.name);
    loop {
        let canary = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return Err(WaitError::Timeout { timeout: args.timeout, last }),
            Ok(None) => return Err(WaitError::Deleted(format!("{}.{ns}", args.name))),
            Ok(Some(Err(e))) => return Err(WaitError::Watch(e)),
            Ok(Some(Ok(c))) if c.metadata.deletion_timestamp.is_some() => {
                return Err(WaitError::Deleted(display_name(&c)));
            }
            Ok(Some(Ok(c))) => c,
        };
        let template = target_template(&client, &ns, &canary).await?.map(|t| Template::of(&t));
        let image = match (&args.image, &template) {
            (Some(image), _) => Some(image.clone()),
            (None, Some(t)) => {
                // The revision the target ran at the first look; another one replacing it before
                // it is promoted ends the wait.
                if *pinned.get_or_insert_with(|| t.revision.clone()) != t.revision {
                    return Err(WaitError::Failed {
                        canary: display_name(&canary),
                        reason: "Superseded".into(),
                        message: format!(
                            "{} {} changed to another revision before this one was promoted",
                            canary.spec.target_ref.kind, canary.spec.target_ref.name
                        ),
                    });
                }
                None
            }
            (None, None) => None,
        };
        match judge(&canary, template.as_ref(), image.as_deref()) {
            Progress::Promoted => {
                println!("{}: promoted", display_name(&canary));
                return Ok(());
            }
            Progress::Failed { reason, message } => {
                return Err(WaitError::Failed { canary: display_name(&canary), reason, message });
            }
            Progress::Waiting(why) => {
                let why = format!("{}: {why}", display_name(&canary));
                if why != last {
                    println!("{why}");
                    last = why;
                }
            }
        }
    }
}

/// An object the command line could not read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {what}: {source}")]
pub struct ReadError {
    pub what: String,
    #[source]
    pub source: kube::Error,
}

/// The pod template of the Canary's target, if it exists.
pub(crate) async fn target_template(
    client: &Client,
    ns: &str,
    canary: &Canary,
) -> Result<Option<PodTemplateSpec>, ReadError> {
    let name = &canary.spec.target_ref.name;
    let what = |kind: &str| format!("{kind} {name}.{ns}");
    Ok(match TargetKind::of(canary) {
        Ok(TargetKind::Deployment) => Api::<Deployment>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|source| ReadError { what: what("Deployment"), source })?
            .and_then(|d| d.spec)
            .map(|s| s.template),
        Ok(TargetKind::DaemonSet) => Api::<DaemonSet>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|source| ReadError { what: what("DaemonSet"), source })?
            .and_then(|d| d.spec)
            .map(|s| s.template),
        // Veer stalls such a Canary, which `judge` reports.
        Err(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    use super::*;
    use crate::api::{CanaryCondition, CanaryStatus, Decision};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn canary(phase: Phase, applied: &PodTemplateSpec, promoted: &PodTemplateSpec) -> Canary {
        let mut c = crate::fixtures::canary("podinfo", "test")
            .spec(serde_json::json!({
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 80},
            }))
            .build();
        c.status = Some(CanaryStatus {
            phase,
            canary_weight: 20,
            last_applied_spec: template_revision(applied),
            last_promoted_spec: template_revision(promoted),
            decision: Some(Decision {
                time: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                reason: "RolledBack".into(),
                message: "rolled back podinfo.test: failed checks threshold reached 2".into(),
            }),
            ..Default::default()
        });
        c
    }

    #[test]
    fn the_revision_counts_only_once_veer_has_started_on_it() {
        let (old, new) = (template("app:1"), template("app:2"));
        // The status still describes the previous release, promoted.
        let c = canary(Phase::Succeeded, &old, &old);
        assert_eq!(
            judge(&c, Some(&Template::of(&new)), None),
            Progress::Waiting("Veer has not started on this revision of Deployment podinfo yet".into())
        );
        let c = canary(Phase::Progressing, &new, &old);
        assert!(
            matches!(judge(&c, Some(&Template::of(&new)), None), Progress::Waiting(w) if w.starts_with("Progressing at weight 20")),
        );
        let c = canary(Phase::Succeeded, &new, &new);
        assert_eq!(judge(&c, Some(&Template::of(&new)), None), Progress::Promoted);
        let c = canary(Phase::Initialized, &new, &new);
        assert_eq!(judge(&c, Some(&Template::of(&new)), None), Progress::Promoted);
    }

    #[test]
    fn a_rollback_of_the_revision_is_a_failure_with_the_decision() {
        let (old, new) = (template("app:1"), template("app:2"));
        let c = canary(Phase::Failed, &new, &old);
        assert_eq!(
            judge(&c, Some(&Template::of(&new)), None),
            Progress::Failed {
                reason: "RolledBack".into(),
                message: "rolled back podinfo.test: failed checks threshold reached 2".into()
            }
        );
        // A failure of the previous revision is not this one's.
        let c = canary(Phase::Failed, &old, &old);
        assert!(matches!(judge(&c, Some(&Template::of(&new)), None), Progress::Waiting(_)));
    }

    #[test]
    fn with_an_image_the_target_must_run_it_first() {
        let (old, new) = (template("app:1"), template("app:2"));
        let c = canary(Phase::Succeeded, &old, &old);
        assert_eq!(
            judge(&c, Some(&Template::of(&old)), Some("app:2")),
            Progress::Waiting("Deployment podinfo does not run app:2 yet".into())
        );
        let c = canary(Phase::Succeeded, &new, &new);
        assert_eq!(judge(&c, Some(&Template::of(&new)), Some("app:2")), Progress::Promoted);
        assert_eq!(judge(&c, None, Some("app:2")), Progress::Waiting("Deployment podinfo not found".into()));
    }

    #[test]
    fn a_stalled_canary_fails_at_once_with_its_message() {
        let t = template("app:1");
        let mut c = canary(Phase::Initializing, &t, &t);
        c.status.as_mut().unwrap().conditions.push(CanaryCondition {
            type_: "Stalled".into(),
            status: "True".into(),
            reason: "GatewayRefsMissing".into(),
            message: Some("Canary podinfo.test: spec.service.gatewayRefs is required".into()),
            ..Default::default()
        });
        assert_eq!(
            judge(&c, Some(&Template::of(&t)), None),
            Progress::Failed {
                reason: "Stalled (GatewayRefsMissing)".into(),
                message: "Canary podinfo.test: spec.service.gatewayRefs is required".into()
            }
        );
    }
}
