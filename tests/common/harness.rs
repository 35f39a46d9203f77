//! Running Veer in the end-to-end tests: the controller (and the load tester) as real processes
//! restricted to the test's namespace, manifests applied from YAML, and waits on Canary state.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams},
    discovery::pinned_kind,
};
use serde_json::{Value, json};
use veer::api::{Canary, CanaryStatus, Phase};

use super::{env, wait_for};

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A process of one of Veer's binaries; killed (SIGTERM, then SIGKILL) when dropped. Its output
/// goes to a log file whose tail is printed when the test fails.
pub struct Process {
    child: Option<Child>,
    pub log: PathBuf,
    pub port: u16,
    name: String,
}

/// A kubeconfig that acts as the Helm chart's ServiceAccount for `namespace`, with exactly the
/// chart's RBAC (rendered by `helm template`, applied with the admin identity). Controllers of the
/// end-to-end tests run with it, so every scenario also proves the chart grants enough.
pub fn chart_identity(namespace: &str) -> PathBuf {
    let release = format!("veer-{namespace}");
    let sets = [format!("fullnameOverride={release}"), "leaderElection.enabled=true".to_owned()];
    chart_identity_of("veer", &release, namespace, &sets, &release)
}

/// Like [`chart_identity`], for the load tester's chart: release `flagger-loadtester` (so its
/// ServiceAccount, and the gate ConfigMap its Role names, are `flagger-loadtester` and
/// `flagger-loadtester-gates`) with the given `--set` values. Returns the kubeconfig and the
/// ServiceAccount's user name.
pub fn loadtester_chart_identity(namespace: &str, sets: &[String]) -> (PathBuf, String) {
    let path =
        chart_identity_of("veer-loadtester", "flagger-loadtester", namespace, sets, "flagger-loadtester");
    (path, format!("system:serviceaccount:{namespace}:flagger-loadtester"))
}

/// Renders `chart`'s ServiceAccount and RBAC for `release` in `namespace` with `sets`, applies them
/// as the admin, and writes a kubeconfig that impersonates ServiceAccount `account`.
fn chart_identity_of(chart: &str, release: &str, namespace: &str, sets: &[String], account: &str) -> PathBuf {
    let chart_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts").join(chart);
    let mut template = Command::new(env("VEER_E2E_HELM"));
    template.args(["template", release]).arg(&chart_dir).args(["--namespace", namespace]);
    for set in sets {
        template.args(["--set", set]);
    }
    let rendered = template
        .args(["--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml"])
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("veer-e2e-helm/cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("veer-e2e-helm/config"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("veer-e2e-helm/data"))
        .output()
        .expect("helm runs");
    assert!(rendered.status.success(), "helm template: {}", String::from_utf8_lossy(&rendered.stderr));
    let mut kubectl = Command::new(env("VEER_E2E_KUBECTL"))
        .args(["apply", "--server-side", "--force-conflicts", "--field-manager", "veer-e2e", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl runs");
    {
        use std::io::Write;
        kubectl.stdin.take().expect("stdin").write_all(&rendered.stdout).expect("RBAC piped to kubectl");
    }
    assert!(kubectl.wait().expect("kubectl ends").success(), "the chart's RBAC applies");
    // The admin kubeconfig, impersonating the ServiceAccount.
    let admin = fs::read_to_string(env("KUBECONFIG")).expect("the admin kubeconfig");
    let mut config: Value = serde_saphyr::from_str(&admin).expect("a kubeconfig");
    for user in config["users"].as_array_mut().expect("users") {
        user["user"]["as"] = json!(format!("system:serviceaccount:{namespace}:{account}"));
    }
    let path = std::env::temp_dir().join(format!("{chart}-{namespace}.kubeconfig"));
    fs::write(&path, serde_json::to_string(&config).expect("JSON is YAML")).expect("kubeconfig written");
    path
}

/// The arguments of `veer controller` for one namespace on `port`: a 1 s minimum interval, plain
/// logs (Veer's at debug), and the local Prometheus as metrics server unless `extra` (appended)
/// names another `--metrics-server`.
pub fn controller_args(namespace: &str, port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "controller",
        "--namespace",
        namespace,
        "--min-analysis-interval",
        "1s",
        "--log-format",
        "plain",
        "--log-level",
        "info,veer=debug",
        "--listen-address",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]
    .map(String::from)
    .to_vec();
    if !extra.contains(&"--metrics-server") {
        args.extend(["--metrics-server".to_string(), env("PROMETHEUS_URL")]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

impl Process {
    fn spawn(binary: &str, name: &str, args: &[String], port: u16) -> Process {
        Process::spawn_with(binary, name, args, port, &[])
    }

    fn spawn_with(
        binary: &str,
        name: &str,
        args: &[String],
        port: u16,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Process {
        let mut command = Command::new(binary);
        command.args(args).envs(env.iter().copied());
        Process::command(name, command, port)
    }

    /// Starts `veer controller` for one namespace, with a 1 s minimum interval and the local
    /// Prometheus as metrics server (unless `extra` names another `--metrics-server`).
    pub fn controller(namespace: &str, extra: &[&str]) -> Process {
        Process::controller_with(namespace, extra, None, &[])
    }

    /// [`controller`](Self::controller) with another kubeconfig than the chart identity's (one made
    /// from [`chart_identity`], say) and extra environment variables (`VEER_FAILPOINTS`, `POD_NAME`).
    pub fn controller_with(
        namespace: &str,
        extra: &[&str],
        kubeconfig: Option<&Path>,
        vars: &[(&str, &str)],
    ) -> Process {
        let port = free_port();
        let args = controller_args(namespace, port, extra);
        // The port keeps the logs of several controllers of one namespace apart.
        let kubeconfig = kubeconfig.map_or_else(|| chart_identity(namespace), Path::to_path_buf);
        let mut all: Vec<(&str, &std::ffi::OsStr)> = vec![("KUBECONFIG", kubeconfig.as_os_str())];
        all.extend(vars.iter().map(|(k, v)| (*k, std::ffi::OsStr::new(v))));
        Process::spawn_with(
            env!("CARGO_BIN_EXE_veer"),
            &format!("veer-controller-{namespace}-{port}"),
            &args,
            port,
            &all,
        )
    }

    /// Starts Flagger itself (`VEER_E2E_FLAGGER`, the release pinned in `e2e/versions.env`, built
    /// by `e2e/build-tools.sh`) for one namespace, out of cluster with the admin kubeconfig, the
    /// local Prometheus as metrics server and its own metrics on a free port.
    pub fn flagger(namespace: &str, provider: &str) -> Process {
        let port = free_port();
        let args: Vec<String> = [
            "-kubeconfig",
            &env("KUBECONFIG"),
            "-namespace",
            namespace,
            "-mesh-provider",
            provider,
            "-metrics-server",
            &env("PROMETHEUS_URL"),
            "-port",
            &port.to_string(),
            "-log-level",
            "info",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Process::spawn(&env("VEER_E2E_FLAGGER"), &format!("flagger-{namespace}"), &args, port)
    }

    /// Starts the `veer` binary with exactly `args` (no defaults added); `port` is the port the
    /// caller passed in them, if any.
    pub fn veer(name: &str, args: &[String], port: u16) -> Process {
        Process::spawn(env!("CARGO_BIN_EXE_veer"), name, args, port)
    }

    /// Starts a prepared `command` (any program: a tool the test needs, a binary unpacked from the
    /// image, `chroot`), its output going to the log file like the others'; `port` is the port the
    /// caller gave it, if any.
    pub fn command(name: &str, mut command: Command, port: u16) -> Process {
        let log = std::env::temp_dir().join(format!("{name}.log"));
        let out = fs::File::create(&log).expect("a log file");
        let child = command
            .stdout(Stdio::from(out.try_clone().expect("log handle")))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Process { child: Some(child), log, port, name: name.into() }
    }

    /// [`veer`](Self::veer) with extra environment variables (`KUBECONFIG`, say).
    pub fn veer_with_env(
        name: &str,
        args: &[String],
        port: u16,
        vars: &[(&str, &std::ffi::OsStr)],
    ) -> Process {
        Process::spawn_with(env!("CARGO_BIN_EXE_veer"), name, args, port, vars)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts `veer-loadtester` on a free port with a file gate store.
    pub fn loadtester(name: &str, extra: &[&str]) -> Process {
        Process::loadtester_with_env(name, extra, &[])
    }

    /// Starts `veer-loadtester` on a free port with `KUBECONFIG=kubeconfig` (for example from
    /// [`loadtester_chart_identity`]), with a file gate store unless `extra` names one.
    pub fn loadtester_as(name: &str, extra: &[&str], kubeconfig: &Path) -> Process {
        Process::loadtester_with_env(name, extra, &[("KUBECONFIG", kubeconfig.as_os_str())])
    }

    fn loadtester_with_env(name: &str, extra: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Process {
        let port = free_port();
        let mut args: Vec<String> =
            vec!["--address".into(), "127.0.0.1".into(), "--port".into(), port.to_string()];
        if !extra.contains(&"--gate-store") {
            let store = std::env::temp_dir().join(format!("{name}-gates.json"));
            args.extend(["--gate-store".into(), format!("file:{}", store.display())]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Process::spawn_with(env!("CARGO_BIN_EXE_veer-loadtester"), name, &args, port, env)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The text of the process' `/metrics` endpoint (the controller's admin port).
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.url());
        let client = veer::http::client_builder().build().expect("an HTTP client");
        let response = client.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        response.text().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit code, if it did.
    pub async fn exited(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last lines of the process' output.
    pub fn tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the output contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        fs::read_to_string(&self.log).unwrap_or_default().contains(needle)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first: the controller shuts down gracefully.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            for _ in 0..50 {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- last lines of {} ({}) ----\n{}", self.name, self.log.display(), self.tail(60));
        }
    }
}

/// Server-side applies every document of a multi-document YAML string in `namespace`.
pub async fn apply_yaml(client: &Client, namespace: &str, yaml: &str) {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("bad YAML: {e}\n{yaml}"));
    for mut doc in docs.into_iter().filter(|d| !d.is_null()) {
        let (group, version) = match doc["apiVersion"].as_str().expect("apiVersion").rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), doc["apiVersion"].as_str().unwrap().to_string()),
        };
        let kind = doc["kind"].as_str().expect("kind").to_string();
        let (ar, caps) = pinned_kind(client, &GroupVersionKind::gvk(&group, &version, &kind))
            .await
            .unwrap_or_else(|e| panic!("unknown kind {kind}: {e}"));
        let name = doc["metadata"]["name"].as_str().expect("metadata.name").to_string();
        let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
            doc["metadata"]["namespace"] = json!(namespace);
            Api::namespaced_with(client.clone(), namespace, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        api.patch(&name, &PatchParams::apply("veer-e2e").force(), &Patch::Apply(&doc))
            .await
            .unwrap_or_else(|e| panic!("cannot apply {kind} {name}: {e}"));
    }
}

/// A podinfo-like workload as in Flagger's tests: selector `app: <name>`, a Secret in envFrom, a
/// ConfigMap volume.
pub fn podinfo_yaml(name: &str, image: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: {name}-secret}}
stringData: {{token: "s3cr3t"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}-config}}
data: {{color: blue}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}, app.kubernetes.io/name: {name}}}
spec:
  replicas: 2
  minReadySeconds: 1
  progressDeadlineSeconds: 60
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: podinfod
        image: {image}
        ports: [{{name: http, containerPort: 9898}}, {{name: http-metrics, containerPort: 9797}}]
        envFrom: [{{secretRef: {{name: {name}-secret}}}}]
        volumeMounts: [{{name: config, mountPath: /etc/podinfo}}]
      volumes:
      - name: config
        configMap: {{name: {name}-config}}
"#
    )
}

/// The user's Ingress `podinfo` (class nginx, host app.example.com) that NGINX Canaries refer to.
pub const USER_INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: podinfo
  labels: {app: podinfo}
  annotations: {kubernetes.io/ingress.class: nginx}
spec:
  rules:
  - host: app.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: podinfo, port: {number: 80}}}
"#;

/// A Canary `podinfo` targeting the Deployment `podinfo`: `spec` and `analysis` are YAML lines
/// indented for their place (2 spaces under `spec`, 4 under `analysis`).
pub fn canary_yaml(spec: &str, analysis: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo}}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
{spec}
  analysis:
{analysis}
"#
    )
}

/// A DaemonSet shaped like Flagger's `podinfo-ds` fixture: selector `app: <name>`, the Secret and
/// ConfigMap of [`podinfo_yaml`] (which must be applied too, or created otherwise).
pub fn podinfo_daemonset_yaml(name: &str, image: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  minReadySeconds: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: podinfod
        image: {image}
        ports: [{{name: http, containerPort: 9898}}]
"#
    )
}

/// The canary destination's weight in the VirtualService `podinfo`.
pub async fn vs_canary_weight(client: &Client, ns: &str) -> Option<i64> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &veer::router::istio::resource(veer::router::istio::VIRTUAL_SERVICE),
    );
    let vs = api.get_opt("podinfo").await.ok()??;
    let routes = vs.data["spec"]["http"][0]["route"].as_array()?.clone();
    routes
        .iter()
        .find(|r| r["destination"]["host"].as_str().is_some_and(|h| h.ends_with("-canary")))
        .and_then(|r| r["weight"].as_i64())
}

/// The replicas of a Deployment; `None` when it has none set or does not exist.
pub async fn replicas(client: &Client, ns: &str, name: &str) -> Option<i32> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.ok().flatten().and_then(|d| d.spec).and_then(|s| s.replicas)
}

/// Waits (up to a minute) until the Deployment has `want` replicas. The controller writes the
/// status first and then scales, so a phase seen in the status can precede the scaling by a moment.
pub async fn wait_replicas(client: &Client, ns: &str, name: &str, want: i32, why: &str) {
    wait_for(&format!("{name} at {want} replicas ({why})"), Duration::from_secs(60), || async {
        match replicas(client, ns, name).await {
            Some(n) if n == want => Ok(()),
            other => Err(format!("replicas {other:?}")),
        }
    })
    .await;
}

/// The Canary's status (default when it has none yet).
pub async fn status(client: &Client, ns: &str, name: &str) -> CanaryStatus {
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    api.get(name).await.map(|c| c.status.unwrap_or_default()).unwrap_or_default()
}

/// Waits until the Canary is in `phase`, and returns its status.
pub async fn wait_phase(
    client: &Client,
    ns: &str,
    name: &str,
    phase: Phase,
    timeout: Duration,
) -> CanaryStatus {
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("Canary {name}.{ns} to be {phase}"), timeout, || async {
        let c = api.get(name).await.map_err(|e| e.to_string())?;
        let s = c.status.unwrap_or_default();
        if s.phase == phase {
            Ok(s)
        } else {
            Err(format!(
                "phase {:?}, weight {}, failed checks {}, decision {:?}",
                s.phase,
                s.canary_weight,
                s.failed_checks,
                s.decision.map(|d| format!("{}: {}", d.reason, d.message))
            ))
        }
    })
    .await
}

/// Waits until the controller adopted the Canary (`status.decision.reason: Adopted`), and returns
/// its status.
pub async fn wait_adopted(client: &Client, ns: &str, name: &str, timeout: Duration) -> CanaryStatus {
    wait_for(&format!("the adoption of {name}.{ns}"), timeout, || async {
        let s = status(client, ns, name).await;
        match &s.decision {
            Some(d) if d.reason == "Adopted" => Ok(s),
            other => Err(format!("{:?}, decision {other:?}", s.phase)),
        }
    })
    .await
}

/// Sets the image of the first container of a Deployment (a new revision).
pub async fn set_image(client: &Client, ns: &str, deployment: &str, image: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = api.get(deployment).await.expect("the Deployment");
    let container = d.spec.unwrap().template.spec.unwrap().containers[0].name.clone();
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}});
    api.patch(deployment, &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("image patched");
}

/// The image of the first container of a Deployment.
pub async fn image(client: &Client, ns: &str, deployment: &str) -> String {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = api.get(deployment).await.unwrap_or_else(|e| panic!("Deployment {deployment}: {e}"));
    d.spec.unwrap().template.spec.unwrap().containers[0].image.clone().unwrap_or_default()
}

/// Sets the image of the first container of a DaemonSet.
pub async fn set_daemonset_image(client: &Client, ns: &str, name: &str, image: &str) {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let d = api.get(name).await.expect("the DaemonSet");
    let container = d.spec.unwrap().template.spec.unwrap().containers[0].name.clone();
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("image patched");
}

/// An Event as recorded: its message, how often it was recorded (`count`) and its type.
#[derive(Clone, Debug)]
pub struct RecordedEvent {
    pub message: String,
    pub count: i32,
    pub type_: String,
}

/// The Events recorded on an object with their counts, oldest first.
pub async fn recorded_events(client: &Client, ns: &str, name: &str) -> Vec<RecordedEvent> {
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&kube::api::ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("events");
    let mut items: Vec<_> = list.items;
    items.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0));
    items
        .into_iter()
        .map(|e| RecordedEvent {
            message: e.message.unwrap_or_default(),
            count: e.count.unwrap_or(1),
            type_: e.type_.unwrap_or_default(),
        })
        .collect()
}

/// How long the effects of a tick (routes, scaling, Events, alerts, run counters) may follow its
/// status: see [`wait_event`].
pub const AFTER_STATUS: Duration = Duration::from_secs(60);

/// The message of the Event [`wait_event`] waits for.
#[derive(Clone, Copy, Debug)]
pub enum Message<'a> {
    Is(&'a str),
    StartsWith(&'a str),
    Contains(&'a str),
}

impl Message<'_> {
    pub fn matches(self, message: &str) -> bool {
        match self {
            Message::Is(m) => message == m,
            Message::StartsWith(m) => message.starts_with(m),
            Message::Contains(m) => message.contains(m),
        }
    }
}

/// Waits (up to [`AFTER_STATUS`]) until an Event of `type_` (`Normal`, `Warning`; `None`: any)
/// whose message matches `message` is recorded on `name`, and returns all the Events recorded on
/// it, oldest first.
///
/// The controller writes a tick's status first and carries out its effects afterwards (routes,
/// scaling, Events, alerts, counters), so the Event of a phase can follow the phase by a moment:
/// after waiting for a status, read Events through this, not with one [`recorded_events`]. To
/// count Events of earlier ticks, wait first for the last Event of the tick that was waited for.
pub async fn wait_event(
    client: &Client,
    ns: &str,
    name: &str,
    type_: Option<&str>,
    message: Message<'_>,
) -> Vec<RecordedEvent> {
    let what =
        format!("a {} Event on {name} whose message {message:?}", type_.unwrap_or("Normal or Warning"));
    wait_for(&what, AFTER_STATUS, || async {
        let events = recorded_events(client, ns, name).await;
        if events.iter().any(|e| type_.is_none_or(|t| e.type_ == t) && message.matches(&e.message)) {
            Ok(events)
        } else {
            let seen: Vec<String> =
                events.iter().map(|e| format!("{} x{}: {}", e.type_, e.count, e.message)).collect();
            Err(format!("{seen:#?}"))
        }
    })
    .await
}

/// How many times a message starting with `prefix` was recorded (the sum of the Event counts).
pub fn times_recorded(events: &[RecordedEvent], prefix: &str) -> i32 {
    events.iter().filter(|e| e.message.starts_with(prefix)).map(|e| e.count).sum()
}

/// POSTs a Flagger webhook payload naming the Canary to a load tester endpoint (`/gate/open`,
/// `/gate/close`, `/rollback/open`, ...) and returns the HTTP status.
pub async fn loadtester_post(loadtester: &Process, path: &str, canary: &str, ns: &str) -> u16 {
    let url = format!("{}{path}", loadtester.url());
    let client = veer::http::client_builder().build().expect("an HTTP client");
    let body = json!({"name": canary, "namespace": ns, "phase": "Waiting"});
    // The load tester may still be starting: retry connection errors for a while.
    let response = wait_for(&format!("POST {url}"), Duration::from_secs(20), || {
        let request = client.post(&url).json(&body).send();
        async move { request.await.map_err(|e| e.to_string()) }
    })
    .await;
    response.status().as_u16()
}

/// Messages of the Events recorded on an object, oldest first. A read once: right after a status
/// wait, use [`wait_event`].
pub async fn events(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&kube::api::ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("events");
    let mut items: Vec<_> = list.items;
    items.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0));
    items.into_iter().filter_map(|e| e.message).collect()
}
