//! A real HTTP server on 127.0.0.1 for the client tests: answers every request with one canned
//! response (optionally after a delay) and records what arrived.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::Request, http::StatusCode};
use reqwest::{Url, header::HeaderMap};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    /// The decoded `query` parameter.
    pub query: Option<String>,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().map(|v| v.to_str().unwrap_or_default().to_string()).collect()
    }
}

pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(status: u16, body: &str) -> TestServer {
        TestServer::start_delayed(status, body, Duration::ZERO).await
    }

    pub async fn start_delayed(status: u16, body: &str, delay: Duration) -> TestServer {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let body = body.to_string();
        let handler = move |req: Request| {
            let record = record.clone();
            let body = body.clone();
            async move {
                let url = Url::parse(&format!("http://x{}", req.uri())).expect("a request URI");
                let query = url.query_pairs().find(|(k, _)| k == "query").map(|(_, v)| v.into_owned());
                record.lock().unwrap().push(Seen {
                    path: url.path().to_string(),
                    query,
                    headers: req.headers().clone(),
                });
                tokio::time::sleep(delay).await;
                (StatusCode::from_u16(status).expect("a status"), body)
            }
        };
        let router = Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TestServer { url, seen, task }
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Prometheus instant-vector answer with these sample values.
pub fn vector(values: &[&str]) -> String {
    let samples: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!(r#"{{"metric":{{"pod":"p{i}"}},"value":[1700000000.123,"{v}"]}}"#))
        .collect();
    format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, samples.join(","))
}
