//! The `veer-loadtester` binary: configured from the environment or Flagger-style flags, killed
//! and restarted for real, and refusing to start on bad settings with a message saying why.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{payload, post, post_with};

const BIN: &str = env!("CARGO_BIN_EXE_veer-loadtester");

/// A running load tester; killed when dropped so a failing test leaves nothing behind.
struct Running {
    child: Child,
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("VEER_LOADTESTER_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Starts the binary with JSON logs and returns once it logs its listening address (within 30 s).
fn start(env: &[(&str, &str)], args: &[&str]) -> Running {
    let mut env = env.to_vec();
    env.push(("VEER_LOADTESTER_LOG_FORMAT", "json"));
    // Owned by the guard from the start, so a panic below still kills and reaps it.
    let mut running = Running { child: command(&env, args).spawn().unwrap(), base: String::new() };
    let stderr = running.child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!("no 'listening' log line within 30 s; stderr so far:\n{}", seen.join("\n"));
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "veer-loadtester listening" {
            running.base = format!("http://{}", v["fields"]["address"].as_str().unwrap());
            return running;
        }
        seen.push(line);
    }
}

/// Runs the binary expecting it to refuse to start; returns its stderr.
fn start_fails(env: &[(&str, &str)], args: &[&str]) -> String {
    let out = command(env, args).output().unwrap();
    assert!(!out.status.success(), "started although it should not have");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn configured_from_the_environment_and_gates_survive_kill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken\n").unwrap();
    let store = format!("file:{}", path_str(&dir.path().join("gates.json")));
    let env = [
        ("VEER_LOADTESTER_ADDRESS", "127.0.0.1"),
        ("VEER_LOADTESTER_PORT", "0"),
        ("VEER_LOADTESTER_TOKEN_FILE", path_str(&token_file)),
        ("VEER_LOADTESTER_GATE_STORE", &store),
        ("VEER_LOADTESTER_ALLOW_SHELL", "true"),
        ("VEER_LOADTESTER_ALLOW_COMMANDS", "echo [a-z]+\nexit [0-9]"),
    ];
    let lt = start(&env, &[]);
    let url = |p: &str| format!("{}{p}", lt.base);
    let p = payload("test", &[]);
    assert_eq!(
        post(&url("/gate/open"), &p).await.0,
        401,
        "token from VEER_LOADTESTER_TOKEN_FILE not enforced"
    );
    let echo = payload("test", &[("type", "bash"), ("cmd", "echo hi"), ("returnCmdOutput", "true")]);
    assert_eq!(post_with(&url("/"), &echo, Some("t0ken")).await, (200, "hi\n".into()));
    let exit = payload("test", &[("type", "bash"), ("cmd", "exit 4")]);
    assert_eq!(
        post_with(&url("/"), &exit, Some("t0ken")).await.0,
        500,
        "second newline-separated pattern not applied"
    );
    let id = payload("test", &[("type", "bash"), ("cmd", "id")]);
    assert_eq!(post_with(&url("/"), &id, Some("t0ken")).await.0, 403);
    assert_eq!(post_with(&url("/gate/open"), &p, Some("t0ken")).await.0, 202);
    assert_eq!(post_with(&url("/rollback/open"), &payload("prod", &[]), Some("t0ken")).await.0, 202);
    // SIGKILL: no chance to flush anything on the way out.
    drop(lt);

    let lt = start(&env, &[]);
    let url = |p: &str| format!("{}{p}", lt.base);
    assert_eq!(post_with(&url("/gate/check"), &p, Some("t0ken")).await, (200, "Approved".into()));
    assert_eq!(
        post_with(&url("/rollback/check"), &payload("prod", &[]), Some("t0ken")).await,
        (200, "Approved".into())
    );
    assert_eq!(post_with(&url("/rollback/check"), &p, Some("t0ken")).await.0, 403);
}

#[tokio::test]
async fn flaggers_single_dash_flags_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file:{}", path_str(&dir.path().join("gates.json")));
    let lt = start(
        &[],
        &[
            "-port=0",
            "--address=127.0.0.1",
            "-timeout=30m",
            "-namespace-regexp=test",
            "-log-level=info",
            "--gate-store",
            &store,
        ],
    );
    let (status, body) = post(&format!("{}/gate/check", lt.base), &payload("prod", &[])).await;
    assert_eq!(status, 403);
    assert!(body.contains("--namespace-regexp"), "{body}");
    // -timeout=30m bounds hey -z.
    let p = payload("test", &[("cmd", "hey -z 31m http://127.0.0.1:1/")]);
    let (status, body) = post(&format!("{}/", lt.base), &p).await;
    assert_eq!(status, 400);
    assert!(body.contains("30m"), "{body}");
}

#[test]
fn bad_settings_stop_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let gates = dir.path().join("gates.json");
    let store = format!("file:{}", path_str(&gates));
    let base = ["--address", "127.0.0.1", "--port", "0", "--gate-store", &store];

    let err = start_fails(&[], &[&base[..], &["--allow-shell"]].concat());
    assert!(err.contains("--allow-shell needs at least one --allow-command"), "{err}");

    let err = start_fails(&[], &[&base[..], &["--allowed-service-account", "veer"]].concat());
    assert!(err.contains("system:serviceaccount:<namespace>:<name>"), "{err}");
    let sa = ["--allowed-service-account", "system:serviceaccount:veer-system:veer"];
    let err = start_fails(&[("KUBECONFIG", "/nonexistent/kubeconfig")], &[&base[..], &sa].concat());
    assert!(err.contains("cannot reach the Kubernetes API for TokenReviews"), "{err}");

    std::fs::write(&gates, "{oops").unwrap();
    let err = start_fails(&[], &base);
    assert!(err.contains("fix it or move it away"), "{err}");

    let err = start_fails(&[("VEER_LOADTESTER_TIMEOUT", "10")], &base);
    assert!(err.contains("a unit is missing"), "{err}");

    let err = start_fails(&[], &[&base[..], &["--token-file", "/nonexistent/veer-token"]].concat());
    assert!(err.contains("cannot read --token-file"), "{err}");
}
