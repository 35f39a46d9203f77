//! Veer inside a GitOps pipeline (issue 17), with the stack's real components at every step: a "CI"
//! step pushes semver tags of an image to the stack's registry with crane; Flux's
//! image-reflector-controller (ImageRepository, ImagePolicy with a semver range) picks the newest, and
//! image-automation-controller (ImageUpdateAutomation) writes it into Git through the `$imagepolicy`
//! marker of the overlay; source-controller (GitRepository) and kustomize-controller (Kustomization,
//! `wait: true`) apply it; Veer analyses and promotes it. The GitOps repository is
//! `tests/gitops/fleet` (apps/podinfo/base, apps/podinfo/overlays/e2e, infrastructure/), pushed to the
//! stack's Git server. Timings are printed, not asserted. Without the GitOps pieces of the stack the
//! test fails; `VEER_E2E_GITOPS=0 make test` leaves it out.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::harness::*;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::Value;
use veer::{
    api::Phase,
    trafficsim::{Client as Sim, IstioSpec},
};

/// Panics, saying how to start them, unless `e2e/up.sh` started the GitOps pieces
/// (`VEER_E2E_GITOPS_RUNNING=1`).
fn require_gitops() {
    common::require_flux();
    let running = common::env("VEER_E2E_GITOPS_RUNNING");
    assert!(
        running == "1",
        "the GitOps pieces are not running (VEER_E2E_GITOPS_RUNNING={running}): start them with `make up` \
         (or `VEER_E2E_GITOPS=1 e2e/up.sh`), then `. e2e/.run/env`; or leave these tests out: \
         `VEER_E2E_GITOPS=0 make test`, or `cargo test -- --include-ignored --skip gitops::`."
    );
}

/// Runs `program` with `args` in `dir` (bounded by the tools themselves: every server is local),
/// and returns its stdout; panics with its output when it fails.
fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        // No user or system configuration may change what git does here.
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(dir: &Path, args: &[&str]) -> String {
    run(dir, "git", args)
}

/// Copies the fixture repository into `to`, filling in the registry and the namespace.
fn copy_fixture(from: &Path, to: &Path, registry: &str, ns: &str) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_fixture(&entry.path(), &target, registry, ns);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(&target, text.replace("E2E_REGISTRY", registry).replace("E2E_NAMESPACE", ns))
                .unwrap();
        }
    }
}

/// The "CI" step: pushes `REPO:TAG` to the registry. The content does not matter (kwok's pods pull
/// nothing), only the tag does: one tiny layer, the tag written into it so each tag is its own image.
fn ci_push(image: &str, tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("version"), tag).unwrap();
    run(dir.path(), "tar", &["-cf", "layer.tar", "version"]);
    let crane = common::env("VEER_E2E_CRANE");
    run(dir.path(), &crane, &["append", "--insecure", "-f", "layer.tar", "-t", &format!("{image}:{tag}")]);
}

fn flux_api(client: &Client, ns: &str, group: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// The Ready condition of a Flux object, for messages.
fn ready_condition(obj: &DynamicObject) -> String {
    obj.data["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| format!("{} {}: {}", c["status"], c["reason"], c["message"]))
        .unwrap_or_else(|| "no Ready condition".to_owned())
}

/// Waits until the Kustomization is Ready and has applied the Git revision `revision` (a commit
/// hash; the status says `main@sha1:<hash>`). Returns its status.
async fn wait_kustomization(api: &Api<DynamicObject>, revision: &str, timeout: Duration) -> Value {
    common::wait_for(&format!("Kustomization podinfo Ready at {revision}"), timeout, || async {
        let k = api.get("podinfo").await.map_err(|e| e.to_string())?;
        common::flux::ready(&k)?;
        let applied = k.data["status"]["lastAppliedRevision"].as_str().unwrap_or_default().to_owned();
        if applied.ends_with(revision) {
            Ok(k.data["status"].clone())
        } else {
            Err(format!("Ready, but applied {applied:?}"))
        }
    })
    .await
}

/// The Flux objects of the pipeline, all in the test's namespace `ns`.
fn flux_objects(ns: &str, git_url: &str, image: &str) -> String {
    format!(
        r#"
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: fleet}}
spec:
  interval: 5s
  url: {git_url}
  ref: {{branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: podinfo}}
spec:
  interval: 10s
  retryInterval: 5s
  timeout: 2m
  path: ./apps/podinfo/overlays/e2e
  prune: true
  wait: true
  targetNamespace: {ns}
  sourceRef: {{kind: GitRepository, name: fleet}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {{name: podinfo}}
spec:
  image: {image}
  interval: 5s
  insecure: true
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {{name: podinfo}}
spec:
  imageRepositoryRef: {{name: podinfo}}
  policy:
    semver: {{range: ">=1.0.0 <2.0.0"}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {{name: fleet}}
spec:
  interval: 5s
  sourceRef: {{kind: GitRepository, name: fleet}}
  git:
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{name: fluxcdbot, email: fluxcdbot@example.invalid}}
      messageTemplate: "podinfo: {{{{ range .Changed.Changes }}}}{{{{ .OldValue }}}} -> {{{{ .NewValue }}}} {{{{ end }}}}"
    push: {{branch: main}}
  update:
    path: ./apps/podinfo/overlays/e2e
    strategy: Setters
"#
    )
}

/// The tests that need the GitOps pieces of the stack: `VEER_E2E_GITOPS=0 make test` leaves this
/// module out (`--skip gitops::`), and they fail, saying how to start them, when they are not running.
mod gitops {
    use super::*;

    #[tokio::test]
    #[ignore = "needs the local control plane with the GitOps pieces (make test)"]
    async fn a_new_semver_tag_goes_through_git_and_flux_and_veer_promotes_it() {
        require_gitops();
        let client = common::client().await;
        common::with_namespace(&client, "gitops", async |ns| {
            let ns = ns.name.as_str();
            let t0 = Instant::now();
            let registry = common::env("VEER_E2E_REGISTRY");
            let image = format!("{registry}/{ns}/podinfo");
            let git_url = format!("{}/{ns}.git", common::env("VEER_E2E_GIT_URL"));

            // "CI" has built 1.0.0, and the GitOps repository names it.
            ci_push(&image, "1.0.0");
            let work = tempfile::tempdir().unwrap();
            let fleet = work.path().join("fleet");
            std::fs::create_dir(&fleet).unwrap();
            let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/gitops/fleet");
            copy_fixture(&fixture, &fleet, &registry, ns);
            git(&fleet, &["init", "-q", "-b", "main"]);
            git(&fleet, &["add", "."]);
            git(
                &fleet,
                &[
                    "-c",
                    "user.name=e2e",
                    "-c",
                    "user.email=e2e@example.invalid",
                    "commit",
                    "-qm",
                    "podinfo 1.0.0",
                ],
            );
            git(&fleet, &["push", "-q", &git_url, "main"]);
            let first = git(&fleet, &["rev-parse", "HEAD"]).trim().to_owned();

            // The metrics Veer reads (Istio's, from the traffic simulator): healthy.
            let sim = Sim::new(&common::env("TRAFFICSIM_URL")).unwrap();
            sim.put_istio(ns, "podinfo", &IstioSpec { rps: 20.0, error_rate: 0.0, latency_ms: 20.0 })
                .await
                .unwrap();
            let _controller = Process::controller(ns, &[]);
            apply_yaml(&client, ns, &flux_objects(ns, &git_url, &image)).await;

            let kustomizations =
                flux_api(&client, ns, "kustomize.toolkit.fluxcd.io", "Kustomization", "kustomizations");
            let policies = flux_api(&client, ns, "image.toolkit.fluxcd.io", "ImagePolicy", "imagepolicies");
            wait_phase(&client, ns, "podinfo", Phase::Initialized, Duration::from_secs(90)).await;
            println!("[{ns}] first commit applied, Canary Initialized after {:?}", t0.elapsed());
            wait_kustomization(&kustomizations, &first, Duration::from_secs(120)).await;
            println!("[{ns}] Kustomization Ready at the first commit after {:?}", t0.elapsed());
            assert_eq!(common::harness::image(&client, ns, "podinfo-primary").await, format!("{image}:1.0.0"));

            // "CI" pushes 1.0.1 (and a 2.0.0 the semver range leaves out).
            let t = Instant::now();
            ci_push(&image, "1.0.1");
            ci_push(&image, "2.0.0");
            common::wait_for("ImagePolicy podinfo to select 1.0.1", Duration::from_secs(60), || async {
                let p = policies.get("podinfo").await.map_err(|e| e.to_string())?;
                let latest = &p.data["status"]["latestRef"];
                if latest["tag"] == "1.0.1" {
                    Ok(())
                } else {
                    Err(format!("latestRef {latest}, {}", ready_condition(&p)))
                }
            })
            .await;
            println!("[{ns}] ImagePolicy selected 1.0.1 {:?} after the push", t.elapsed());

            // Flux commits the tag to Git: read it back through a clone.
            let clone = work.path().join("clone");
            let commit =
                common::wait_for("Flux's commit of 1.0.1 in Git", Duration::from_secs(60), || async {
                    let _ = std::fs::remove_dir_all(&clone);
                    git(work.path(), &["clone", "-q", &git_url, "clone"]);
                    let log = git(&clone, &["log", "-1", "--format=%H %an %s"]);
                    let overlay =
                        std::fs::read_to_string(clone.join("apps/podinfo/overlays/e2e/kustomization.yaml"))
                            .unwrap();
                    if log.contains("fluxcdbot") && overlay.contains("newTag: 1.0.1 #") {
                        Ok(log.split_whitespace().next().unwrap().to_owned())
                    } else {
                        Err(format!("head: {log}"))
                    }
                })
                .await;
            println!(
                "[{ns}] Flux committed {commit} {:?} after the push:\n{}",
                t.elapsed(),
                git(&clone, &["log", "--format=  %h %an: %s"])
            );

            // The Kustomization applies it, Veer analyses and promotes it.
            common::wait_for("the Deployment to run 1.0.1", Duration::from_secs(60), || async {
                let now = image_of(&client, ns, "podinfo").await;
                if now == format!("{image}:1.0.1") { Ok(()) } else { Err(now) }
            })
            .await;
            println!("[{ns}] Deployment podinfo at 1.0.1 {:?} after the push", t.elapsed());
            // Until the promotion, note when the Kustomization first says Ready at Flux's commit, and
            // what the Canary was doing then: kstatus reads the Canary's conditions, and Flagger's
            // `Promoted` is not one it knows.
            let kustomization_ready: std::sync::Mutex<Option<(Duration, String)>> = Default::default();
            common::wait_for("the Canary to be Succeeded", Duration::from_secs(180), || {
                let ready = kustomization_ready.lock().unwrap().is_none();
                let kustomizations = &kustomizations;
                let client = &client;
                let commit = &commit;
                let seen = &kustomization_ready;
                async move {
                    let s = status(client, ns, "podinfo").await;
                    if ready
                        && let Ok(k) = kustomizations.get("podinfo").await
                        && common::flux::ready(&k).is_ok()
                        && k.data["status"]["lastAppliedRevision"].as_str().is_some_and(|r| r.ends_with(commit.as_str()))
                    {
                        *seen.lock().unwrap() = Some((t.elapsed(), format!("{:?} at weight {}", s.phase, s.canary_weight)));
                    }
                    if s.phase == Phase::Succeeded {
                        Ok(())
                    } else {
                        Err(format!("{:?} at weight {}, decision {:?}", s.phase, s.canary_weight, s.decision))
                    }
                }
            })
            .await;
            println!("[{ns}] Canary Succeeded {:?} after the push", t.elapsed());
            if let Some((at, phase)) = kustomization_ready.into_inner().unwrap() {
                println!("[{ns}] the Kustomization was Ready at Flux's commit {at:?} after the push, the Canary {phase}");
            }
            assert_eq!(common::harness::image(&client, ns, "podinfo-primary").await, format!("{image}:1.0.1"));
            let status = wait_kustomization(&kustomizations, &commit, Duration::from_secs(120)).await;
            println!(
                "[{ns}] Kustomization Ready at Flux's commit {:?} after the push: {}",
                t.elapsed(),
                status["conditions"]
            );
        })
        .await;
    }
}

async fn image_of(client: &Client, ns: &str, deployment: &str) -> String {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), ns);
    match api.get_opt(deployment).await {
        Ok(Some(d)) => d
            .spec
            .and_then(|s| s.template.spec)
            .map(|s| s.containers[0].image.clone().unwrap_or_default())
            .unwrap_or_default(),
        Ok(None) => "(no Deployment)".to_owned(),
        Err(e) => e.to_string(),
    }
}
