//! The HTTP API: Flagger's status codes and bodies, the security settings, durable gates.

use std::sync::Arc;
use std::time::Duration;

use veer::loadtester::gates::{FileGateStore, GateStore, MemoryGateStore};
use veer::loadtester::shell::ShellPolicy;
use veer::loadtester::{Config, NamespaceFilter, Token};

use crate::support::{Api, Target, eventually, get, payload, post, post_with};

fn memory() -> Arc<dyn GateStore> {
    Arc::new(MemoryGateStore::default())
}

#[tokio::test]
async fn gate_and_rollback_endpoints_answer_like_flagger() {
    let api = Api::start(Config::default(), memory()).await;
    let p = payload("test", &[]);
    assert_eq!(post(&api.url("/gate/approve"), &p).await, (200, "OK".into()));
    assert_eq!(post(&api.url("/gate/approve"), "").await, (200, "OK".into()), "approve needs no body");
    assert_eq!(post(&api.url("/gate/halt"), &p).await, (403, "Forbidden".into()));

    // Gates start closed.
    assert_eq!(post(&api.url("/gate/check"), &p).await, (403, "Forbidden".into()));
    assert_eq!(post(&api.url("/rollback/check"), &p).await, (403, "Forbidden".into()));

    let (status, body) = post(&api.url("/gate/open"), &p).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(post(&api.url("/gate/check"), &p).await, (200, "Approved".into()));
    assert_eq!(post(&api.url("/rollback/check"), &p).await.0, 403, "the rollback switch is separate");
    // Another Canary's gate is untouched.
    let other = r#"{"name":"other","namespace":"test"}"#;
    assert_eq!(post(&api.url("/gate/check"), other).await.0, 403);

    assert_eq!(post(&api.url("/rollback/open"), &p).await.0, 202);
    assert_eq!(post(&api.url("/rollback/check"), &p).await, (200, "Approved".into()));
    assert_eq!(post(&api.url("/gate/close"), &p).await.0, 202);
    assert_eq!(post(&api.url("/gate/check"), &p).await, (403, "Forbidden".into()));
    assert_eq!(post(&api.url("/rollback/close"), &p).await.0, 202);
    assert_eq!(post(&api.url("/rollback/check"), &p).await, (403, "Forbidden".into()));

    assert_eq!(get(&api.url("/healthz"), None).await, (200, "OK".into()));
    api.stop().await;
}

#[tokio::test]
async fn bad_payloads_get_400_with_a_reason() {
    let api = Api::start(Config { max_body_bytes: 1024, ..Config::default() }, memory()).await;
    for path in ["/gate/check", "/gate/open", "/rollback/close", "/"] {
        let (status, body) = post(&api.url(path), "{not json").await;
        assert_eq!(status, 400, "{path}");
        assert!(body.starts_with("invalid payload:"), "{path}: {body}");
        let (status, body) = post(&api.url(path), r#"{"name":"podinfo"}"#).await;
        assert_eq!(status, 400, "{path}");
        assert!(body.contains("namespace"), "{path}: {body}");
    }
    let (status, body) = post(&api.url("/gate/open"), r#"{"name":"Pod/Info","namespace":"test"}"#).await;
    assert_eq!(status, 400);
    assert!(body.contains("is not a Kubernetes name"), "{body}");
    // Task names become metric labels: they are checked too.
    let task = r#"{"name":"x","namespace":"Not A Namespace","metadata":{"cmd":"hey http://127.0.0.1:1/"}}"#;
    let (status, body) = post(&api.url("/"), task).await;
    assert_eq!(status, 400);
    assert!(body.contains("is not a Kubernetes namespace"), "{body}");
    let big = format!(r#"{{"name":"podinfo","namespace":"test","checksum":"{}"}}"#, "x".repeat(4096));
    let (status, body) = post(&api.url("/gate/open"), &big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("--max-body-bytes"), "{body}");
    api.stop().await;
}

#[tokio::test]
async fn task_requests_without_a_runnable_task_get_400() {
    let api = Api::start(Config::default(), memory()).await;
    let (status, body) = post(&api.url("/"), &payload("test", &[])).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("metadata not found in payload"), "{body}");
    // Any unknown path is the task endpoint, as in Flagger.
    assert_eq!(post(&api.url("/some/path"), &payload("test", &[])).await.0, 400);
    for (meta, want) in [
        (vec![("type", "tester"), ("cmd", "x")], "unknown task type"),
        (vec![("type", "ngrinder"), ("server", "x")], "not supported"),
        (vec![("cmd", "")], "metadata.cmd is missing or empty"),
        (vec![("cmd", "wrk -d 1m http://a/")], "wrk is not supported"),
        (vec![("cmd", "ghz --insecure x:9999")], "ghz is not supported"),
        (vec![("cmd", "hey -z 1m")], "invalid hey command"),
        (vec![("cmd", "hey -D /etc/passwd http://a/")], "read a file"),
    ] {
        let (status, body) = post(&api.url("/"), &payload("test", &meta)).await;
        assert_eq!(status, 400, "{meta:?}: {body}");
        assert!(body.contains(want), "{meta:?}: {body}");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hey_runs_in_the_background_once_per_canary_and_command() {
    let target = Target::start().await;
    let api = Api::start(Config::default(), memory()).await;
    let cmd = format!("hey -z 2s -q 10 -c 2 {}", target.url("/ok"));
    let p = payload("test", &[("type", "cmd"), ("cmd", &cmd)]);

    let started = std::time::Instant::now();
    let (status, body) = post(&api.url("/"), &p).await;
    assert_eq!(status, 202, "{body}");
    assert!(body.starts_with("started"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(1), "202 must come at once, not after the run");
    // The next analysis tick sends the same hook: no second run.
    let (status, body) = post(&api.url("/"), &p).await;
    assert_eq!(status, 202);
    assert!(body.starts_with("already running"), "{body}");
    // The same command for another Canary is a separate run.
    let other = payload("other", &[("cmd", &cmd)]);
    assert!(post(&api.url("/"), &other).await.1.starts_with("started"));

    // Both runs end by themselves; /metrics then shows what they did.
    let done = eventually(Duration::from_secs(15), async || {
        get(&api.url("/metrics"), None).await.1.contains("veer_loadtester_load_runs_active 0")
    })
    .await;
    println!("two 2 s runs finished after {:?}; target got {} requests", started.elapsed(), target.hits());
    assert!(done, "runs did not finish");
    // Two runs of at most 2 workers x 10/s x 2 s each.
    assert!(target.hits() > 0 && target.hits() <= 80, "{}", target.hits());
    let metrics = get(&api.url("/metrics"), None).await.1;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("veer_loadtester_load_requests_total{")
                && l.contains(r#"namespace="test""#)
                && l.contains("success")
        })
        .unwrap_or_else(|| panic!("no request counter:\n{metrics}"));
    println!("  {line}");
    for q in ["0.5", "0.9", "0.99"] {
        assert!(metrics.contains(&format!(r#"quantile="{q}""#)), "no p{q} in metrics:\n{metrics}");
    }
    assert!(
        metrics.contains(r#"veer_loadtester_tasks_total{task_type="cmd",result="already_running"} 1"#),
        "{metrics}"
    );

    // Finished: the same hook starts a new run.
    assert!(post(&api.url("/"), &p).await.1.starts_with("started"));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_beyond_max_tasks_get_429() {
    let target = Target::start().await;
    let api = Api::start(Config { max_tasks: 1, ..Config::default() }, memory()).await;
    let first = payload("test", &[("cmd", &format!("hey -z 2s -q 1 -c 1 {}", target.url("/ok")))]);
    let second = payload("test", &[("cmd", &format!("hey -z 2s -q 1 -c 1 {}", target.url("/fail")))]);
    assert_eq!(post(&api.url("/"), &first).await.0, 202);
    let (status, body) = post(&api.url("/"), &second).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("--max-tasks"), "{body}");
    // The slot frees up when the run ends by itself.
    let freed =
        eventually(Duration::from_secs(15), async || post(&api.url("/"), &second).await.0 == 202).await;
    assert!(freed, "the finished run did not give its slot back");
    api.stop().await;
}

#[tokio::test]
async fn shell_tasks_are_refused_by_default() {
    let api = Api::start(Config::default(), memory()).await;
    for meta in [
        vec![("type", "bash"), ("cmd", "echo pwned > /tmp/veer-loadtester-should-not-exist")],
        vec![("type", "cmd"), ("cmd", "curl -s http://example/")],
        vec![("type", "kubectl"), ("cmd", "get secrets -A")],
        vec![("type", "helm"), ("cmd", "ls")],
        vec![("type", "helmv3"), ("cmd", "ls")],
    ] {
        let (status, body) = post(&api.url("/"), &payload("test", &meta)).await;
        assert_eq!(status, 403, "{meta:?}: {body}");
        assert!(body.contains("--allow-shell"), "{body}");
    }
    assert!(!std::path::Path::new("/tmp/veer-loadtester-should-not-exist").exists());
    api.stop().await;
}

#[tokio::test]
async fn allowed_shell_commands_run_with_flaggers_blocking_semantics() {
    let shell = ShellPolicy::new(true, &["echo [a-z]+".to_owned(), "exit [0-9]".to_owned()]).unwrap();
    let api = Api::start(Config { shell, ..Config::default() }, memory()).await;
    let run = |meta: Vec<(&'static str, &'static str)>| {
        let url = api.url("/");
        async move { post(&url, &payload("test", &meta)).await }
    };
    // bash blocks: 200, with stdout only when returnCmdOutput is "true".
    assert_eq!(
        run(vec![("type", "bash"), ("cmd", "echo hello"), ("returnCmdOutput", "true")]).await,
        (200, "hello\n".into())
    );
    assert_eq!(
        run(vec![("type", "bash"), ("cmd", "echo hello"), ("logCmdOutput", "true")]).await,
        (200, String::new())
    );
    // A failing command: 500 with the reason.
    let (status, body) = run(vec![("type", "bash"), ("cmd", "exit 3")]).await;
    assert_eq!(status, 500);
    assert!(body.contains("exit status: 3"), "{body}");
    // Not matching any pattern (the whole line must match): 403.
    let (status, body) = run(vec![("type", "bash"), ("cmd", "echo hello; id")]).await;
    assert_eq!(status, 403);
    assert!(body.contains("matches no --allow-command pattern"), "{body}");
    // cmd is asynchronous: 202 at once.
    assert_eq!(run(vec![("cmd", "echo later")]).await.0, 202);
    api.stop().await;
}

#[tokio::test]
async fn a_configured_token_is_required_everywhere_but_healthz() {
    let config = Config { token: Some(Token::new("s3cret")), ..Config::default() };
    let api = Api::start(config, memory()).await;
    let p = payload("test", &[]);
    for path in [
        "/gate/approve",
        "/gate/halt",
        "/gate/check",
        "/gate/open",
        "/gate/close",
        "/rollback/check",
        "/rollback/open",
        "/rollback/close",
        "/",
        "/x",
    ] {
        for token in [None, Some("wrong"), Some("s3cret2"), Some("S3CRET"), Some("")] {
            let (status, body) = post_with(&api.url(path), &p, token).await;
            assert_eq!(status, 401, "{path} with {token:?}");
            assert!(body.contains("Authorization: Bearer"), "{body}");
        }
    }
    assert_eq!(get(&api.url("/metrics"), None).await.0, 401);
    assert_eq!(get(&api.url("/metrics"), Some("s3cret")).await.0, 200);
    assert_eq!(get(&api.url("/healthz"), None).await, (200, "OK".into()));
    // With the token, everything works as usual.
    assert_eq!(post_with(&api.url("/gate/open"), &p, Some("s3cret")).await.0, 202);
    assert_eq!(post_with(&api.url("/gate/check"), &p, Some("s3cret")).await, (200, "Approved".into()));
    assert_eq!(post_with(&api.url("/gate/approve"), &p, Some("s3cret")).await, (200, "OK".into()));
    api.stop().await;
}

#[tokio::test]
async fn namespace_regexp_forbids_other_namespaces_on_every_endpoint() {
    let config =
        Config { namespaces: Some(NamespaceFilter::new("test|team-.*").unwrap()), ..Config::default() };
    let gates = memory();
    let api = Api::start(config, gates.clone()).await;
    for ns in ["prod", "mytest", "test2"] {
        let p = payload(ns, &[("cmd", "hey -n 1 -c 1 http://127.0.0.1:1/")]);
        for path in [
            "/gate/approve",
            "/gate/halt",
            "/gate/check",
            "/gate/open",
            "/gate/close",
            "/rollback/check",
            "/rollback/open",
            "/rollback/close",
            "/",
        ] {
            let (status, body) = post(&api.url(path), &p).await;
            assert_eq!(status, 403, "{ns} {path}: {body}");
            assert!(body.contains("--namespace-regexp"), "{body}");
        }
    }
    assert!(gates.open_keys().await.unwrap().is_empty(), "a forbidden /gate/open changed state");
    // Without a payload the namespace is unknown: refused too.
    assert_eq!(post(&api.url("/gate/approve"), "").await.0, 400);
    for ns in ["test", "team-a"] {
        let p = payload(ns, &[]);
        assert_eq!(post(&api.url("/gate/approve"), &p).await, (200, "OK".into()));
        assert_eq!(post(&api.url("/gate/open"), &p).await.0, 202);
        assert_eq!(post(&api.url("/gate/check"), &p).await, (200, "Approved".into()));
    }
    api.stop().await;
}

#[tokio::test]
async fn gates_survive_a_restart_with_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gates.json");
    let p = payload("test", &[]);

    let api = Api::start(Config::default(), Arc::new(FileGateStore::open(&path).await.unwrap())).await;
    assert_eq!(post(&api.url("/gate/open"), &p).await.0, 202);
    assert_eq!(post(&api.url("/rollback/open"), &p).await.0, 202);
    api.stop().await;

    // A new process would do exactly this: open the same file and serve.
    let api = Api::start(Config::default(), Arc::new(FileGateStore::open(&path).await.unwrap())).await;
    assert_eq!(
        post(&api.url("/gate/check"), &p).await,
        (200, "Approved".into()),
        "restart closed an approved gate"
    );
    assert_eq!(post(&api.url("/rollback/check"), &p).await, (200, "Approved".into()));
    assert_eq!(post(&api.url("/gate/close"), &p).await.0, 202);
    api.stop().await;

    let api = Api::start(Config::default(), Arc::new(FileGateStore::open(&path).await.unwrap())).await;
    assert_eq!(
        post(&api.url("/gate/check"), &p).await,
        (403, "Forbidden".into()),
        "restart re-opened a closed gate"
    );
    assert_eq!(post(&api.url("/rollback/check"), &p).await, (200, "Approved".into()));
    api.stop().await;
}

#[tokio::test]
async fn a_failing_gate_store_is_a_500_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("state");
    std::fs::create_dir(&sub).unwrap();
    let store = FileGateStore::open(sub.join("gates.json")).await.unwrap();
    let api = Api::start(Config::default(), Arc::new(store)).await;
    // The directory disappears under the running server.
    std::fs::remove_dir_all(&sub).unwrap();
    let (status, body) = post(&api.url("/gate/open"), &payload("test", &[])).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("could not use the gate store"), "{body}");
    // The failed open did not open the gate.
    assert_eq!(post(&api.url("/gate/check"), &payload("test", &[])).await.0, 403);
    api.stop().await;
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let read_timeout = Duration::from_millis(500);
    let api = Api::start(Config { read_timeout, ..Config::default() }, memory()).await;
    let addr = api.base.trim_start_matches("http://").to_owned();
    // A connection that sends nothing, and one whose headers never end: both closed after the
    // read timeout (without it they stayed open for as long as the client liked).
    for first_bytes in ["", "POST /gate/check HTTP/1.1\r\nHost: lt\r\n"] {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        conn.write_all(first_bytes.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
        assert!(closed.is_ok(), "still open after 5 s: {first_bytes:?}");
        println!("{first_bytes:?}: closed after {:?}", started.elapsed());
        assert!(started.elapsed() >= Duration::from_millis(400));
    }
    // Headers in time, then a body that stops arriving: 408 with the reason.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"POST /gate/check HTTP/1.1\r\nHost: lt\r\nContent-Length: 100\r\n\r\n{\"name\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer within 5 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--read-timeout"), "{answer}");

    // One request per connection: nothing idles open between two webhook calls.
    let response = crate::support::client().post(api.url("/gate/approve")).send().await.unwrap();
    assert_eq!(response.headers()["connection"], "close");
    api.stop().await;
}

#[tokio::test]
async fn a_caller_hanging_up_stops_its_blocking_command_and_frees_the_slot() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survived");
    // The command starts a background process that would leave a mark after 1 s.
    let cmd = format!("(sleep 1; touch '{}') & sleep 30", marker.display());
    let shell = ShellPolicy::new(true, &[regex::escape(&cmd), "echo ok".to_owned()]).unwrap();
    let api = Api::start(Config { shell, max_tasks: 1, ..Config::default() }, memory()).await;
    // A caller that gives up after 300 ms, as the controller does after a hook's timeout.
    let hasty = veer::http::client_builder().no_proxy().timeout(Duration::from_millis(300)).build().unwrap();
    let body = payload("test", &[("type", "bash"), ("cmd", &cmd)]);
    let err = hasty.post(api.url("/")).body(body).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // The slot of --max-tasks 1 is free again, and the command's background process is gone.
    let quick = payload("test", &[("type", "bash"), ("cmd", "echo ok")]);
    let freed = eventually(Duration::from_secs(5), async || post(&api.url("/"), &quick).await.0 == 200).await;
    assert!(freed, "the abandoned command still holds its slot");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!marker.exists(), "a process started by the abandoned command was still running");
    api.stop().await;
}
