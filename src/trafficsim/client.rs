//! A small typed client for the control API, for tests and tools.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use super::api::{ErrorBody, IstioSpec, IstioView, NginxSpec, NginxView};
use super::exposition::{self, Sample};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("request to the traffic simulator failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the traffic simulator answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    #[error("the traffic simulator's /metrics did not parse: {0}")]
    Metrics(#[from] exposition::ParseError),
}

/// Client of one simulator, e.g. `Client::new("http://127.0.0.1:19091")`.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        // Real requests may sleep up to 1.5 × the 30 s latency limit.
        let http = crate::http::client_builder().timeout(Duration::from_secs(60)).build()?;
        Ok(Self { base: base_url.trim_end_matches('/').to_owned(), http })
    }

    /// Creates or replaces an Istio workload's traffic.
    pub async fn put_istio(
        &self,
        namespace: &str,
        workload: &str,
        spec: &IstioSpec,
    ) -> Result<IstioView, ClientError> {
        self.call(Method::PUT, &format!("/api/istio/{namespace}/{workload}"), Some(spec)).await
    }

    pub async fn get_istio(&self, namespace: &str, workload: &str) -> Result<Option<IstioView>, ClientError> {
        not_found_is_none(
            self.call(Method::GET, &format!("/api/istio/{namespace}/{workload}"), None::<&()>).await,
        )
    }

    pub async fn list_istio(&self) -> Result<Vec<IstioView>, ClientError> {
        self.call(Method::GET, "/api/istio", None::<&()>).await
    }

    /// `true` if it existed.
    pub async fn delete_istio(&self, namespace: &str, workload: &str) -> Result<bool, ClientError> {
        self.delete(&format!("/api/istio/{namespace}/{workload}")).await
    }

    /// Creates or replaces an NGINX ingress's canary (and primary) traffic.
    pub async fn put_nginx(
        &self,
        namespace: &str,
        ingress: &str,
        spec: &NginxSpec,
    ) -> Result<NginxView, ClientError> {
        self.call(Method::PUT, &format!("/api/nginx/{namespace}/{ingress}"), Some(spec)).await
    }

    pub async fn get_nginx(&self, namespace: &str, ingress: &str) -> Result<Option<NginxView>, ClientError> {
        not_found_is_none(
            self.call(Method::GET, &format!("/api/nginx/{namespace}/{ingress}"), None::<&()>).await,
        )
    }

    pub async fn list_nginx(&self) -> Result<Vec<NginxView>, ClientError> {
        self.call(Method::GET, "/api/nginx", None::<&()>).await
    }

    pub async fn delete_nginx(&self, namespace: &str, ingress: &str) -> Result<bool, ClientError> {
        self.delete(&format!("/api/nginx/{namespace}/{ingress}")).await
    }

    /// Scrapes `/metrics` and parses it.
    pub async fn metrics(&self) -> Result<Vec<Sample>, ClientError> {
        let response = self.http.get(format!("{}/metrics", self.base)).send().await?;
        let response = check(response).await?;
        Ok(exposition::parse(&response.text().await?)?)
    }

    /// Sends one real request to `/traffic/{namespace}/{workload}` and returns its status.
    pub async fn istio_request(&self, namespace: &str, workload: &str) -> Result<StatusCode, ClientError> {
        Ok(self.http.get(format!("{}/traffic/{namespace}/{workload}", self.base)).send().await?.status())
    }

    /// Sends one real request to `/traffic-nginx/{namespace}/{ingress}` and returns its status.
    pub async fn nginx_request(&self, namespace: &str, ingress: &str) -> Result<StatusCode, ClientError> {
        Ok(self.http.get(format!("{}/traffic-nginx/{namespace}/{ingress}", self.base)).send().await?.status())
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        Ok(check(request.send().await?).await?.json().await?)
    }

    async fn delete(&self, path: &str) -> Result<bool, ClientError> {
        let response = self.http.delete(format!("{}{path}", self.base)).send().await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        check(response).await?;
        Ok(true)
    }
}

async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<ErrorBody>(&text).map(|b| b.error).unwrap_or(text);
    Err(ClientError::Status { status, message })
}

fn not_found_is_none<T>(result: Result<T, ClientError>) -> Result<Option<T>, ClientError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(ClientError::Status { status: StatusCode::NOT_FOUND, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
