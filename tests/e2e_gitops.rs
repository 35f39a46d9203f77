//! Veer inside a GitOps pipeline, with the stack's real components at every step: a "CI"
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
        // The commits of the test (the first one, a user's revert) are by "e2e".
        .env("GIT_AUTHOR_NAME", "e2e")
        .env("GIT_AUTHOR_EMAIL", "e2e@example.invalid")
        .env("GIT_COMMITTER_NAME", "e2e")
        .env("GIT_COMMITTER_EMAIL", "e2e@example.invalid")
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

/// The pipeline of one test namespace, started: the registry holds 1.0.0, Git names it, the Flux
/// objects exist, Veer's controller runs, and the Kustomization has applied the first commit (the
/// Canary is Initialized).
struct Pipeline {
    ns: String,
    image: String,
    git_url: String,
    work: tempfile::TempDir,
    sim: Sim,
    kustomizations: Api<DynamicObject>,
    policies: Api<DynamicObject>,
    _controller: Process,
}

impl Pipeline {
    async fn start(client: &Client, ns: &str) -> Pipeline {
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
        git(&fleet, &["commit", "-qm", "podinfo 1.0.0"]);
        git(&fleet, &["push", "-q", &git_url, "main"]);
        let first = git(&fleet, &["rev-parse", "HEAD"]).trim().to_owned();

        // The metrics Veer reads (Istio's, from the traffic simulator): healthy.
        let sim = Sim::new(&common::env("TRAFFICSIM_URL")).unwrap();
        sim.put_istio(ns, "podinfo", &IstioSpec { rps: 20.0, error_rate: 0.0, latency_ms: 20.0 })
            .await
            .unwrap();
        let controller = Process::controller(ns, &[]);
        apply_yaml(client, ns, &flux_objects(ns, &git_url, &image)).await;

        let kustomizations =
            flux_api(client, ns, "kustomize.toolkit.fluxcd.io", "Kustomization", "kustomizations");
        let policies = flux_api(client, ns, "image.toolkit.fluxcd.io", "ImagePolicy", "imagepolicies");
        wait_phase(client, ns, "podinfo", Phase::Initialized, Duration::from_secs(90)).await;
        println!("[{ns}] first commit applied, Canary Initialized after {:?}", t0.elapsed());
        wait_kustomization(&kustomizations, &first, Duration::from_secs(120)).await;
        println!("[{ns}] Kustomization Ready at the first commit after {:?}", t0.elapsed());
        assert_eq!(common::harness::image(client, ns, "podinfo-primary").await, format!("{image}:1.0.0"));
        Pipeline {
            ns: ns.to_owned(),
            image,
            git_url,
            work,
            sim,
            kustomizations,
            policies,
            _controller: controller,
        }
    }

    /// Waits until the ImagePolicy selects `tag`.
    async fn wait_policy(&self, tag: &str, t: Instant) {
        let ns = &self.ns;
        common::wait_for(
            &format!("ImagePolicy podinfo to select {tag}"),
            Duration::from_secs(60),
            || async {
                let p = self.policies.get("podinfo").await.map_err(|e| e.to_string())?;
                let latest = &p.data["status"]["latestRef"];
                if latest["tag"] == tag {
                    Ok(())
                } else {
                    Err(format!("latestRef {latest}, {}", ready_condition(&p)))
                }
            },
        )
        .await;
        println!("[{ns}] ImagePolicy selected {tag} {:?} after the push", t.elapsed());
    }

    /// Waits until the ImagePolicy selects `tag`, then until Flux's commit of it is the head of
    /// `main` (read through a fresh clone, left in `<work>/clone`); returns the commit's hash.
    async fn wait_flux_commit(&self, tag: &str, t: Instant) -> String {
        self.wait_policy(tag, t).await;
        let ns = &self.ns;
        let clone = self.work.path().join("clone");
        let marker = format!("newTag: {tag} #");
        let commit =
            common::wait_for(&format!("Flux's commit of {tag} in Git"), Duration::from_secs(60), || async {
                let _ = std::fs::remove_dir_all(&clone);
                git(self.work.path(), &["clone", "-q", &self.git_url, "clone"]);
                let log = git(&clone, &["log", "-1", "--format=%H %an %s"]);
                let overlay = std::fs::read_to_string(clone.join(OVERLAY)).unwrap();
                if log.contains("fluxcdbot") && overlay.contains(&marker) {
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
        commit
    }

    /// Waits until the Deployment `podinfo` (what Git names, applied) runs `tag`.
    async fn wait_target(&self, client: &Client, tag: &str, t: Instant) {
        let want = format!("{}:{tag}", self.image);
        common::wait_for(&format!("the Deployment to run {tag}"), Duration::from_secs(60), || async {
            let now = image_of(client, &self.ns, "podinfo").await;
            if now == want { Ok(()) } else { Err(now) }
        })
        .await;
        println!("[{}] Deployment podinfo at {tag} {:?} after the push", self.ns, t.elapsed());
    }
}

const OVERLAY: &str = "apps/podinfo/overlays/e2e/kustomization.yaml";

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
            let p = Pipeline::start(&client, ns).await;
            let image = &p.image;
            let kustomizations = &p.kustomizations;

            // "CI" pushes 1.0.1 (and a 2.0.0 the semver range leaves out).
            let t = Instant::now();
            ci_push(image, "1.0.1");
            ci_push(image, "2.0.0");
            let commit = p.wait_flux_commit("1.0.1", t).await;

            // The Kustomization applies it, Veer analyses and promotes it.
            p.wait_target(&client, "1.0.1", t).await;
            // Until the promotion, note when the Kustomization first says Ready at Flux's commit, and
            // what the Canary was doing then: kstatus reads the Canary's conditions, and Flagger's
            // `Promoted` is not one it knows.
            let kustomization_ready: std::sync::Mutex<Option<(Duration, String)>> = Default::default();
            common::wait_for("the Canary to be Succeeded", Duration::from_secs(180), || {
                let ready = kustomization_ready.lock().unwrap().is_none();

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
            let status = wait_kustomization(kustomizations, &commit, Duration::from_secs(120)).await;
            println!(
                "[{ns}] Kustomization Ready at Flux's commit {:?} after the push: {}",
                t.elapsed(),
                status["conditions"]
            );
        })
        .await;
    }

    #[tokio::test]
    #[ignore = "needs the local control plane with the GitOps pieces (make test)"]
    async fn a_bad_tag_is_rolled_back_while_git_names_it_and_a_git_revert_brings_the_old_one_back() {
        require_gitops();
        let client = common::client().await;
        common::with_namespace(&client, "gitops-bad", async |ns| {
            let ns = ns.name.as_str();
            let p = Pipeline::start(&client, ns).await;
            let image = &p.image;
            let bad = format!("{image}:1.0.1");

            // 1.0.1 answers 20 % of its requests with errors (the simulator's canary workload).
            p.sim
                .put_istio(ns, "podinfo", &IstioSpec { rps: 20.0, error_rate: 0.2, latency_ms: 20.0 })
                .await
                .unwrap();
            let t = Instant::now();
            ci_push(image, "1.0.1");
            // The CI step waits for the outcome with `veer wait --image`: it waits for the target to
            // run the image (Flux applies it later), then for Veer's decision on that revision.
            let wait = tokio::process::Command::new(env!("CARGO_BIN_EXE_veer"))
                .args(["wait", "podinfo", "--namespace", ns, "--image", &bad, "--timeout", "3m"])
                .kill_on_drop(true)
                .output();
            let commit = p.wait_flux_commit("1.0.1", t).await;
            p.wait_target(&client, "1.0.1", t).await;
            let out = tokio::time::timeout(Duration::from_secs(200), wait)
                .await
                .expect("veer wait to end within its --timeout")
                .expect("veer wait to run");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            println!(
                "[{ns}] veer wait ended {:?} after the push, {}:\n{stdout}{stderr}",
                t.elapsed(),
                out.status
            );
            assert!(!out.status.success(), "veer wait succeeded on the bad tag:\n{stdout}{stderr}");
            let s = wait_phase(&client, ns, "podinfo", Phase::Failed, Duration::from_secs(30)).await;
            println!("[{ns}] Canary Failed {:?} after the push: {:?}", t.elapsed(), s.decision);
            assert_eq!(
                common::harness::image(&client, ns, "podinfo-primary").await,
                format!("{image}:1.0.0")
            );
            // Git still names 1.0.1, and so does the Deployment (scaled to zero by the rollback).
            assert_eq!(common::harness::image(&client, ns, "podinfo").await, bad);
            wait_replicas(&client, ns, "podinfo", 0, "the rollback scales the canary down").await;

            // What the Kustomization says about it, over a few of its intervals.
            let deadline = Instant::now() + Duration::from_secs(25);
            let mut seen = Vec::new();
            while Instant::now() < deadline {
                let k = p.kustomizations.get("podinfo").await.unwrap();
                let state = format!(
                    "{} (applied {})",
                    ready_condition(&k),
                    k.data["status"]["lastAppliedRevision"].as_str().unwrap_or_default()
                );
                if seen.last() != Some(&state) {
                    println!("[{ns}] {:?} after the push, Kustomization: {state}", t.elapsed());
                    seen.push(state);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            assert!(
                seen.last().is_some_and(|s| s.contains(&commit)),
                "the Kustomization has not applied Flux's commit {commit}: {seen:?}"
            );

            // The user's way back: stop the automation (it would write 1.0.1 again, the newest tag in
            // the range), `git revert` Flux's commit, push. Then 1.0.0 comes back to the Deployment.
            let automations = flux_api(
                &client,
                ns,
                "image.toolkit.fluxcd.io",
                "ImageUpdateAutomation",
                "imageupdateautomations",
            );
            automations
                .patch(
                    "fleet",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(serde_json::json!({"spec": {"suspend": true}})),
                )
                .await
                .expect("suspend the ImageUpdateAutomation");
            p.sim
                .put_istio(ns, "podinfo", &IstioSpec { rps: 20.0, error_rate: 0.0, latency_ms: 20.0 })
                .await
                .unwrap();
            let clone = p.work.path().join("clone");
            git(&clone, &["pull", "-q", "--ff-only", &p.git_url, "main"]);
            git(&clone, &["revert", "--no-edit", &commit]);
            git(&clone, &["push", "-q", &p.git_url, "HEAD:main"]);
            let revert = git(&clone, &["rev-parse", "HEAD"]).trim().to_owned();
            let t = Instant::now();
            p.wait_target(&client, "1.0.0", t).await;
            // Veer's behaviour when the old tag comes back (as Flagger's): no new analysis, the Canary
            // stays Failed, its last applied revision follows the target (decision `Reverted`), so
            // that applying 1.0.1 again would analyse it again.
            let s = common::wait_for("the Canary's Reverted decision", Duration::from_secs(60), || async {
                let s = status(&client, ns, "podinfo").await;
                match &s.decision {
                    Some(d) if d.reason == "Reverted" => Ok(s),
                    other => Err(format!("{:?} at weight {}, decision {other:?}", s.phase, s.canary_weight)),
                }
            })
            .await;
            println!("[{ns}] {:?} after the revert: Canary {:?}, {:?}", t.elapsed(), s.phase, s.decision);
            assert_eq!(s.phase, Phase::Failed, "no new run for the promoted revision: {s:?}");
            assert_eq!(
                common::harness::image(&client, ns, "podinfo-primary").await,
                format!("{image}:1.0.0")
            );
            let status = wait_kustomization(&p.kustomizations, &revert, Duration::from_secs(60)).await;
            println!(
                "[{ns}] Kustomization Ready at the revert {:?} after it: {}",
                t.elapsed(),
                status["conditions"]
            );

            // The canary's errors must first leave the analysis' 30 s window: its metric reads the
            // workload `podinfo` whichever version runs, and a run started within 30 s of 1.0.1's
            // errors would fail on them.
            let t = Instant::now();
            no_recent_errors(ns).await;
            println!("[{ns}] no canary errors in the last 30 s, {:?} after the revert", t.elapsed());

            // Then CI builds the fix, 1.0.2, and once the ImagePolicy has it (before, the automation
            // would write 1.0.1 again), the automation is resumed: the usual way on.
            let t = Instant::now();
            ci_push(image, "1.0.2");
            p.wait_policy("1.0.2", t).await;
            automations
                .patch(
                    "fleet",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(serde_json::json!({"spec": {"suspend": false}})),
                )
                .await
                .expect("resume the ImageUpdateAutomation");
            let commit = p.wait_flux_commit("1.0.2", t).await;
            p.wait_target(&client, "1.0.2", t).await;
            wait_phase(&client, ns, "podinfo", Phase::Succeeded, Duration::from_secs(180)).await;
            println!("[{ns}] Canary Succeeded on 1.0.2 {:?} after its push", t.elapsed());
            assert_eq!(
                common::harness::image(&client, ns, "podinfo-primary").await,
                format!("{image}:1.0.2")
            );
            wait_kustomization(&p.kustomizations, &commit, Duration::from_secs(60)).await;
        })
        .await;
    }
}

/// Waits (up to 90 s) until Prometheus counts no 5xx of the workload `podinfo` over the last 30 s.
async fn no_recent_errors(ns: &str) {
    let http = veer::http::client_builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let url = format!("{}/api/v1/query", common::env("PROMETHEUS_URL"));
    let expr = format!(
        r#"sum(increase(istio_requests_total{{destination_workload_namespace="{ns}",destination_workload="podinfo",response_code=~"5.*"}}[30s]))"#
    );
    common::wait_for("no canary errors over 30 s", Duration::from_secs(90), || async {
        let url = reqwest::Url::parse_with_params(&url, &[("query", expr.as_str())]).unwrap();
        let body: Value =
            http.get(url).send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        let value = body["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
        match value {
            Some(v) if v <= 0.0 => Ok(()),
            other => Err(format!("5xx over 30 s: {other:?}")),
        }
    })
    .await;
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
