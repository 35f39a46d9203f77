//! Outgoing HTTP: one place that sets up TLS for reqwest (the ring provider, the same one kube
//! uses, so only one crypto library is linked), and one way to read a response body that the
//! other side controls without holding more of it than a limit.

use std::sync::Once;

static PROVIDER: Once = Once::new();

/// Installs ring as the process-wide rustls provider. Idempotent; call before any TLS client is
/// built (the binaries do it first thing, tests through [`client_builder`]).
pub fn install_crypto_provider() {
    PROVIDER.call_once(|| {
        // Err means another provider is installed already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client builder with the crypto provider in place.
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// How much of an error answer from a webhook or an alert receiver is read: 8 KiB. Messages keep
/// the first 512 characters of it (at most 2 KiB of UTF-8) after leading whitespace; the rest of
/// the 8 KiB is room for that whitespace. The rest of the body is never read.
pub const ERROR_BODY_BYTES: usize = 8 * 1024;

/// The start of a response body, read up to a limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CappedBody {
    /// The first bytes of the body: all of it, or exactly the limit.
    pub bytes: Vec<u8>,
    /// The body was longer than the limit; the rest was not read.
    pub truncated: bool,
}

impl CappedBody {
    /// The bytes as text, with invalid UTF-8 (a cut can split a character) replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Reads at most `limit` bytes of `response`'s body, chunk by chunk as they arrive, and stops at
/// the first chunk that passes the limit: the rest is never read and the connection is dropped,
/// so an endless or huge body costs at most `limit` bytes plus one chunk. The request's timeout
/// still bounds the time.
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<CappedBody, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(CappedBody { bytes, truncated: true });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(CappedBody { bytes, truncated: false })
}

/// A server on 127.0.0.1 whose every answer is `status` with a body that never ends, for the
/// tests of the clients that read bodies.
#[cfg(test)]
pub(crate) async fn endless_body_server(status: u16) -> (String, tokio::task::JoinHandle<()>) {
    use axum::{Router, body::Body, http::StatusCode};

    let handler = move || async move {
        let chunk = axum::body::Bytes::from(vec![b'x'; 16 * 1024]);
        let body =
            Body::from_stream(futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone())));
        (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().fallback(handler)).await;
    });
    (url, task)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{Router, routing::get};

    use super::*;

    /// A server answering `GET /` with `body`.
    async fn serve(body: &'static str) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, Router::new().route("/", get(move || async move { body }))).await;
        });
        (url, task)
    }

    async fn get_capped(url: &str, limit: usize) -> CappedBody {
        let response = client_builder().build().unwrap().get(url).send().await.unwrap();
        read_capped(response, limit).await.unwrap()
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let (url, _server) = serve("0123456789").await;
        assert_eq!(
            get_capped(&url, 10).await,
            CappedBody { bytes: b"0123456789".to_vec(), truncated: false }
        );
        assert_eq!(get_capped(&url, 11).await.text(), "0123456789");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_cut_at_the_limit() {
        let (url, _server) = serve("0123456789").await;
        assert_eq!(get_capped(&url, 9).await, CappedBody { bytes: b"012345678".to_vec(), truncated: true });
        assert_eq!(get_capped(&url, 0).await, CappedBody { bytes: Vec::new(), truncated: true });
    }

    #[tokio::test]
    async fn an_endless_body_stops_at_the_limit() {
        let (url, _server) = endless_body_server(200).await;
        let limit = 1 << 20;
        let body = tokio::time::timeout(Duration::from_secs(10), get_capped(&url, limit))
            .await
            .expect("reading stops at the limit instead of waiting for the end");
        assert!(body.truncated);
        assert_eq!(body.bytes.len(), limit);
    }
}
