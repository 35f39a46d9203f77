//! The built-in hey against a local target: rate, duration, counting, errors, request shape.

use std::sync::Arc;
use std::time::{Duration, Instant};

use veer::loadtester::hey::{HeySpec, RunReport, parse_hey_args, run, split_words};

use crate::support::Target;

fn spec(line: &str) -> HeySpec {
    let words = split_words(line).unwrap();
    parse_hey_args(&words[1..]).unwrap()
}

async fn run_line(line: &str, max: Duration) -> (RunReport, Duration) {
    let started = Instant::now();
    let report = run(&spec(line), max, Arc::new(())).await.unwrap();
    let took = started.elapsed();
    println!("{line}\n  -> {} (wall {took:?})", report.summary());
    (report, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_run_delivers_the_rate_for_the_duration_and_counts_everything() {
    let target = Target::start().await;
    // 2 workers x 25 req/s for 3 s: 150 requests expected.
    let (r, took) =
        run_line(&format!("hey -z 3s -q 25 -c 2 {}", target.url("/ok")), Duration::from_secs(60)).await;
    let expected = 150.0;
    println!(
        "  measured: {} requests ({:.0}% of {expected}), {:.1} req/s (asked 50), run {:?}",
        r.requests,
        r.requests as f64 * 100.0 / expected,
        r.rate(),
        r.elapsed
    );
    // Every request the target answered is accounted for, as completed or as cut off at the end.
    assert_eq!(target.hits(), r.requests + r.abandoned);
    assert_eq!(r.successes, r.requests);
    assert_eq!(r.errors(), 0);
    assert_eq!(r.status_counts.get(&200), Some(&r.requests));
    // Pacing can only delay requests, never add any: 25/s per worker gives at most 75 each.
    assert!(r.requests <= 150, "more requests than -q allows: {}", r.requests);
    assert!(r.requests > 0);
    assert!(r.latency.count() == r.requests);
    // It stopped by itself (generous bound; the measured time is printed above).
    assert!(took < Duration::from_secs(13), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_count_runs_send_exactly_n_and_count_500s_as_errors() {
    let target = Target::start().await;
    // 53 over 5 workers: hey would drop the remainder; here all 53 go out.
    let (r, _) = run_line(&format!("hey -n 53 -c 5 {}", target.url("/fail")), Duration::from_secs(60)).await;
    assert_eq!(r.requests, 53);
    assert_eq!(target.hits(), 53);
    assert_eq!(r.http_errors, 53);
    assert_eq!(r.successes, 0);
    assert_eq!(r.transport_errors, 0);
    assert_eq!(r.status_counts.get(&500), Some(&53));
    assert!(!r.timed_out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_targets_count_as_transport_errors() {
    // A port that was free a moment ago and has no listener now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (r, _) = run_line(&format!("hey -n 10 -c 2 http://127.0.0.1:{port}/"), Duration::from_secs(60)).await;
    assert_eq!(r.requests, 10);
    assert_eq!(r.transport_errors, 10);
    assert!(r.sample_error.is_some());
    assert!(r.summary().contains("10 errors"), "{}", r.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_timeout_turns_slow_responses_into_errors() {
    let target = Target::start().await;
    let (r, took) =
        run_line(&format!("hey -n 2 -c 2 -t 1 {}", target.url("/slow")), Duration::from_secs(60)).await;
    assert_eq!(r.transport_errors, 2, "{}", r.summary());
    assert!(took < Duration::from_secs(3), "the 1 s request timeout was not applied: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_is_bounded_by_the_command_timeout() {
    let target = Target::start().await;
    // Asked for far more than fits in the 1 s bound.
    let (r, took) =
        run_line(&format!("hey -n 100000 -c 1 -q 20 {}", target.url("/ok")), Duration::from_secs(1)).await;
    assert!(r.timed_out, "{}", r.summary());
    assert!(r.requests < 100000);
    assert!(r.summary().contains("cut short by the per-command timeout"));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // In-flight requests at the deadline are cut; the -z deadline also cuts a slow response.
    let (r, took) =
        run_line(&format!("hey -z 1s -c 1 {}", target.url("/slow")), Duration::from_secs(60)).await;
    assert_eq!((r.requests, r.abandoned), (0, 1), "{}", r.summary());
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_headers_body_auth_and_host_reach_the_target() {
    let target = Target::start().await;
    let line = format!(
        "hey -n 1 -c 1 -m put -H 'X-Canary: yes' -H 'User-Agent: ci' -d '{{\"k\":1}}' -T application/json \
         -A text/plain -a user:pw -host podinfo.example {}",
        target.url("/echo")
    );
    let (r, _) = run_line(&line, Duration::from_secs(60)).await;
    assert_eq!(r.successes, 1);
    let seen = target.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    let h = |n: &str| s.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(s.method, "PUT");
    assert_eq!(&s.body[..], br#"{"k":1}"#);
    assert_eq!(h("x-canary").as_deref(), Some("yes"));
    assert_eq!(h("content-type").as_deref(), Some("application/json"));
    assert_eq!(h("accept").as_deref(), Some("text/plain"));
    assert_eq!(h("host").as_deref(), Some("podinfo.example"));
    // "user:pw" in base64.
    assert_eq!(h("authorization").as_deref(), Some("Basic dXNlcjpwdw=="));
    let ua = h("user-agent").unwrap();
    assert!(ua.starts_with("ci veer-loadtester/"), "{ua}");
}
