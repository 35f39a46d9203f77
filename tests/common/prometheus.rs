//! Debian's Prometheus package as e2e/build-tools.sh unpacked it (`prometheus`, `promtool`), and a
//! Prometheus process of a test's own, with the scrape targets and rule files the test gives it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `root/usr/bin/<name>` of the newest `prometheus-*` directory of the e2e cache
/// (`VEER_E2E_CACHE`, default `$XDG_CACHE_HOME/veer-e2e` or `~/.cache/veer-e2e`).
pub fn package_binary(name: &str) -> PathBuf {
    let cache = std::env::var("VEER_E2E_CACHE").map(PathBuf::from).unwrap_or_else(|_| {
        let base = std::env::var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(super::env("HOME")).join(".cache"));
        base.join("veer-e2e")
    });
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}; run e2e/build-tools.sh prometheus", cache.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("prometheus-"))
        .map(|e| e.path().join("root/usr/bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.pop().unwrap_or_else(|| {
        panic!(
            "no prometheus-*/root/usr/bin/{name} in {}; run e2e/build-tools.sh prometheus",
            cache.display()
        )
    })
}

/// A Prometheus started by the test on a free loopback port, with its data in a temporary
/// directory; stopped by pid (SIGTERM, then SIGKILL) when dropped.
pub struct OwnPrometheus {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    http: reqwest::Client,
}

impl OwnPrometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, job `job`) and evaluating the rule files
    /// `rules` (name, content) every `interval`, and waits until it is ready.
    pub async fn start(
        job: &str,
        targets: &[String],
        rules: &[(&str, String)],
        interval: &str,
    ) -> OwnPrometheus {
        let dir = tempfile::Builder::new().prefix("veer-e2e-prometheus-").tempdir().unwrap();
        let mut files = Vec::new();
        for (name, content) in rules {
            std::fs::write(dir.path().join(name), content).unwrap();
            files.push(format!("'{name}'"));
        }
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global: {{scrape_interval: {interval}, scrape_timeout: {interval}, \
             evaluation_interval: {interval}}}\n\
             rule_files: [{}]\n\
             scrape_configs:\n\
             - job_name: {job}\n  static_configs: [{{targets: [{}]}}]\n",
            files.join(", "),
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = super::harness::free_port();
        let binary = package_binary("prometheus");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(&binary)
            .current_dir(dir.path())
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        println!("own Prometheus: pid {}, http://127.0.0.1:{port}", child.id());
        let http = veer::http::client_builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
        let mut p = OwnPrometheus { child: Some(child), dir, port, http };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&mut self) {
        let ready = format!("{}/-/ready", self.url());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.http.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("Prometheus exited ({status}): {}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "Prometheus not ready in 60 s: {}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `GET /api/v1/<path>` with `params`: the `data` of a successful answer, or the error Prometheus
    /// gave (`bad_data: parse error ...`).
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url()), params)
            .map_err(|e| format!("{path}: {e}"))?;
        let response = self.http.get(url.clone()).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        let body: Value = response.json().await.map_err(|e| format!("GET {url}: {e}"))?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("?"),
                body["error"].as_str().unwrap_or("?")
            ))
        }
    }

    /// An instant query now: the samples of its vector (or the one sample of a scalar).
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", expr)]).await?;
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar") => Ok(vec![serde_json::json!({"metric": {}, "value": data["result"]})]),
            other => Err(format!("{expr}: result type {other:?}")),
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for OwnPrometheus {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        for _ in 0..100 {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The value of one sample of an instant query's answer.
pub fn sample_value(sample: &Value) -> f64 {
    sample["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}
