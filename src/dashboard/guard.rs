//! What keeps other web pages out of the dashboard. The dashboard acts with the user's own
//! credentials, so a page in the user's browser from another site must not be able to read it
//! or make it act:
//!
//! - every request must name the dashboard's own address in `Host` (a hostile site's domain
//!   re-pointed at 127.0.0.1, DNS rebinding, fails here);
//! - every POST must come from the dashboard's own origin (`Origin`), and carry the token the
//!   dashboard generated at start and put in its pages (`X-Veer-Token`), which no other site can
//!   read.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// The header carrying the token.
pub const TOKEN_HEADER: &str = "x-veer-token";
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// Why a request was turned away.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    #[error("Host {0:?} is not this dashboard's address")]
    Host(String),
    #[error("cross-site request refused: Origin {0:?} is not this dashboard")]
    Origin(String),
    #[error("cross-site request refused: no Origin header")]
    NoOrigin,
    #[error("the request lacks this dashboard's token (reload the page: the dashboard was restarted?)")]
    Token,
}

/// A per-process token, as hex.
#[derive(Debug, thiserror::Error)]
#[error("no random numbers from the operating system")]
pub struct NoRandom;

/// A new token from the operating system's random numbers.
pub fn random_token() -> Result<String, NoRandom> {
    let mut bytes = [0u8; TOKEN_BYTES];
    rustls::crypto::ring::default_provider().secure_random.fill(&mut bytes).map_err(|_| NoRandom)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The checks, for one address and token.
#[derive(Clone, Debug)]
pub struct Guard {
    address: SocketAddr,
    token: String,
}

impl Guard {
    pub fn new(address: SocketAddr, token: String) -> Guard {
        Guard { address, token }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether `host` (the `Host` header) names the dashboard: its address, or `localhost` with
    /// its port when it listens on loopback. Bound to every interface (`0.0.0.0`), it cannot know
    /// its names and takes any.
    pub fn check_host(&self, host: Option<&str>) -> Result<(), Forbidden> {
        let host = host.unwrap_or_default().to_ascii_lowercase();
        let ip = self.address.ip();
        if ip.is_unspecified() {
            return Ok(());
        }
        let port = self.address.port();
        let literal = match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let mut names = vec![literal];
        if ip.is_loopback() {
            names.push("localhost".into());
        }
        let allowed = names.iter().any(|n| host == format!("{n}:{port}") || (port == 80 && host == *n));
        if allowed { Ok(()) } else { Err(Forbidden::Host(host)) }
    }

    /// The checks of a request that acts: the host, the origin, the token.
    pub fn check_post(&self, headers: &HeaderMap) -> Result<(), Forbidden> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let host = header("host");
        self.check_host(host)?;
        let origin = header("origin").ok_or(Forbidden::NoOrigin)?;
        if !origin.eq_ignore_ascii_case(&format!("http://{}", host.unwrap_or_default())) {
            return Err(Forbidden::Origin(origin.to_string()));
        }
        let token = header(TOKEN_HEADER).unwrap_or_default();
        if bool::from(token.as_bytes().ct_eq(self.token.as_bytes())) { Ok(()) } else { Err(Forbidden::Token) }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderName, HeaderValue};

    use super::*;

    fn guard(address: &str) -> Guard {
        Guard::new(address.parse().unwrap(), "t0k3n".into())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_dashboards_own_names_are_taken_as_host() {
        let g = guard("127.0.0.1:3100");
        for ok in ["127.0.0.1:3100", "localhost:3100", "LocalHost:3100"] {
            assert_eq!(g.check_host(Some(ok)), Ok(()), "{ok}");
        }
        for bad in ["evil.example:3100", "127.0.0.1:3101", "127.0.0.1", "localhost", ""] {
            assert!(g.check_host(Some(bad)).is_err(), "{bad}");
        }
        assert!(g.check_host(None).is_err());
        let g = guard("[::1]:3100");
        assert_eq!(g.check_host(Some("[::1]:3100")), Ok(()));
        assert_eq!(g.check_host(Some("localhost:3100")), Ok(()));
        let g = guard("192.0.2.7:80");
        assert_eq!(g.check_host(Some("192.0.2.7")), Ok(()));
        assert!(g.check_host(Some("localhost")).is_err(), "not loopback: not localhost");
        assert_eq!(guard("0.0.0.0:3100").check_host(Some("dashboard.internal:3100")), Ok(()));
    }

    #[test]
    fn a_post_needs_the_same_origin_and_the_token() {
        let g = guard("127.0.0.1:3100");
        let ok = [("host", "127.0.0.1:3100"), ("origin", "http://127.0.0.1:3100"), (TOKEN_HEADER, "t0k3n")];
        assert_eq!(g.check_post(&headers(&ok)), Ok(()));
        let ok = [("host", "localhost:3100"), ("origin", "http://localhost:3100"), (TOKEN_HEADER, "t0k3n")];
        assert_eq!(g.check_post(&headers(&ok)), Ok(()));
        let cases: &[(&[(&str, &str)], Forbidden)] = &[
            (
                &[("host", "127.0.0.1:3100"), ("origin", "http://evil.example"), (TOKEN_HEADER, "t0k3n")],
                Forbidden::Origin("http://evil.example".into()),
            ),
            (&[("host", "127.0.0.1:3100"), (TOKEN_HEADER, "t0k3n")], Forbidden::NoOrigin),
            (&[("host", "127.0.0.1:3100"), ("origin", "http://127.0.0.1:3100")], Forbidden::Token),
            (
                &[("host", "127.0.0.1:3100"), ("origin", "http://127.0.0.1:3100"), (TOKEN_HEADER, "t0k3")],
                Forbidden::Token,
            ),
            (
                &[
                    ("host", "rebound.example:3100"),
                    ("origin", "http://rebound.example:3100"),
                    (TOKEN_HEADER, "x"),
                ],
                Forbidden::Host("rebound.example:3100".into()),
            ),
            // The right origin on another port of the machine is another site.
            (
                &[("host", "127.0.0.1:3100"), ("origin", "http://127.0.0.1:8080"), (TOKEN_HEADER, "t0k3n")],
                Forbidden::Origin("http://127.0.0.1:8080".into()),
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(g.check_post(&headers(pairs)).as_ref(), Err(want), "{pairs:?}");
        }
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
