//! The real helm CLI (built by `e2e/build-tools.sh`, path in `VEER_E2E_HELM`) as a subprocess, and
//! helpers to read what `helm template` renders.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository's chart directory `charts/<name>`.
pub fn chart(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts").join(name)
}

/// A test data file under `tests/charts/`.
pub fn data_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/charts").join(name)
}

/// One helm with its own cache/config/data directories (so tests never share repository state).
pub struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
}

/// What a helm run printed, and whether it succeeded.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Helm {
    pub fn new() -> Self {
        let bin = PathBuf::from(super::env("VEER_E2E_HELM"));
        assert!(bin.is_file(), "VEER_E2E_HELM={} does not exist; run e2e/build-tools.sh helm", bin.display());
        Helm { bin, home: tempfile::tempdir().expect("a temporary HELM home") }
    }

    /// Runs helm with `args`, killing it after `timeout` (helm's own `--timeout` should fire first).
    pub fn run_with_timeout(&self, args: &[&str], timeout: Duration) -> Run {
        let home = self.home.path();
        let mut child = Command::new(&self.bin)
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        // Read both pipes on threads so that a large output cannot block the child.
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for helm") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("helm {} did not finish within {timeout:?}", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            success: status.success(),
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_timeout(args, Duration::from_secs(180))
    }

    /// Runs helm and returns its stdout; panics with stderr when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert!(run.success, "helm {} failed:\n{}{}", args.join(" "), run.stderr, run.stdout);
        run.stdout
    }

    /// Runs helm expecting it to fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert!(
            !run.success,
            "helm {} succeeded but should have failed; it printed:\n{}",
            args.join(" "),
            run.stdout
        );
        run.stderr
    }

    /// `helm template RELEASE CHART -n NAMESPACE EXTRA...`, parsed into its objects.
    pub fn template(&self, release: &str, chart: &str, namespace: &str, extra: &[&str]) -> Rendered {
        let chart_dir = self::chart(chart);
        let mut args = vec!["template", release, chart_dir.to_str().unwrap(), "--namespace", namespace];
        args.extend_from_slice(extra);
        Rendered::parse(&self.ok(&args))
    }

    /// Like [`Helm::template`], expecting the rendering to fail; returns helm's error output.
    pub fn template_fails(&self, chart: &str, extra: &[&str]) -> String {
        let chart_dir = self::chart(chart);
        let mut args = vec!["template", "r", chart_dir.to_str().unwrap(), "--namespace", "ns"];
        args.extend_from_slice(extra);
        self.fails(&args)
    }
}

/// The objects of a rendered chart.
pub struct Rendered {
    pub objects: Vec<Value>,
}

impl Rendered {
    pub fn parse(yaml: &str) -> Self {
        let docs: Vec<Value> = serde_saphyr::from_multiple(yaml)
            .unwrap_or_else(|e| panic!("helm's output is not YAML: {e}\n{yaml}"));
        Rendered { objects: docs.into_iter().filter(|d| !d.is_null()).collect() }
    }

    pub fn kinds(&self) -> Vec<String> {
        self.objects.iter().map(|o| o["kind"].as_str().unwrap_or("?").to_owned()).collect()
    }

    pub fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    pub fn find(&self, kind: &str) -> Option<&Value> {
        self.all(kind).into_iter().next()
    }

    /// The only object of `kind`; panics listing what was rendered otherwise.
    pub fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "expected one {kind}, rendered: {:?}", self.kinds());
        all[0]
    }

    /// The first container's args of the only Deployment.
    pub fn args(&self) -> Vec<String> {
        self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("the container has args")
            .iter()
            .map(|a| a.as_str().expect("string args").to_owned())
            .collect()
    }
}
