//! Session affinity as the routers carry it out (Istio's VirtualService, the Gateway API's
//! HTTPRoute): which cookie pins a session to which side at the current weight, and the
//! `Set-Cookie` headers that hand the cookies out or expire them. The decision is made here once;
//! each router only renders it in its own objects.
//!
//! The cookies themselves (`status.sessionAffinityCookie`, `primarySessionAffinityCookie`,
//! `previousSessionAffinityCookie`) are created and retired by the decision core.

use std::time::Duration;

use super::Routes;
use crate::api::{CanaryStatus, SessionAffinity};

/// Cookie `Max-Age` when `sessionAffinity.maxAge` is unset or 0.
pub const DEFAULT_COOKIE_MAX_AGE: i64 = 86400;

/// A cookie that pins sessions to one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin<'a> {
    /// `<name>=<value>`, which requests carry to stay on this side.
    pub cookie: &'a str,
    /// The `Set-Cookie` header the weighted route's destination of this side answers with.
    pub set_cookie: String,
}

/// What session affinity asks of the routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan<'a> {
    /// Nothing: no session affinity, or no cookie yet.
    None,
    /// The canary receives traffic: requests with the canary cookie go to the canary (whose
    /// responses hand it out); with `primaryCookieName`, requests with the primary cookie stay on
    /// the primary for one interval (the primary's responses hand that one out).
    Pinned { canary: Pin<'a>, primary: Option<Pin<'a>> },
    /// Weight 0 (between runs, or after a rollback or promotion): requests still carrying the
    /// run's cookie are routed as the others, and told to drop it.
    Expire { cookie: &'a str, set_cookie: String },
}

/// The plan at `routes` for a Canary with `affinity`, whose status holds the cookies. `interval`
/// is the analysis interval, the primary cookie's `Max-Age`.
pub fn plan<'a>(
    routes: Routes,
    affinity: Option<&SessionAffinity>,
    status: &'a CanaryStatus,
    interval: Duration,
) -> Plan<'a> {
    let Some(sa) = affinity else { return Plan::None };
    let cookie = status.session_affinity_cookie.as_str();
    if routes.canary > 0 {
        if cookie.is_empty() {
            return Plan::None;
        }
        let max_age = sa.max_age.filter(|a| *a != 0).unwrap_or(DEFAULT_COOKIE_MAX_AGE);
        let canary = Pin { cookie, set_cookie: set_cookie(cookie, max_age, sa) };
        let primary_cookie = status.primary_session_affinity_cookie.as_str();
        let primary = (sa.primary_cookie_name.as_deref().is_some_and(|n| !n.is_empty())
            && !primary_cookie.is_empty())
        .then(|| Pin {
            cookie: primary_cookie,
            set_cookie: set_cookie(primary_cookie, interval.as_secs() as i64, sa),
        });
        return Plan::Pinned { canary, primary };
    }
    let previous = if cookie.is_empty() { status.previous_session_affinity_cookie.as_str() } else { cookie };
    if previous.is_empty() {
        return Plan::None;
    }
    Plan::Expire { cookie: previous, set_cookie: format!("{previous}; Max-Age=-1") }
}

/// The `Set-Cookie` value: `<name>=<value>; Max-Age=<n>` and the configured attributes.
fn set_cookie(cookie: &str, max_age: i64, sa: &SessionAffinity) -> String {
    let mut out = format!("{cookie}; Max-Age={max_age}");
    if let Some(domain) = sa.domain.as_ref().filter(|d| !d.is_empty()) {
        out.push_str(&format!("; Domain={domain}"));
    }
    if sa.http_only == Some(true) {
        out.push_str("; HttpOnly");
    }
    if sa.partitioned == Some(true) {
        out.push_str("; Partitioned");
    }
    if let Some(path) = sa.path.as_ref().filter(|p| !p.is_empty()) {
        out.push_str(&format!("; Path={path}"));
    }
    if let Some(same_site) = sa.same_site.as_ref().filter(|s| !s.is_empty()) {
        out.push_str(&format!("; SameSite={same_site}"));
    }
    if sa.secure == Some(true) {
        out.push_str("; Secure");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(primary: Option<&str>) -> SessionAffinity {
        SessionAffinity {
            cookie_name: "canary".into(),
            primary_cookie_name: primary.map(Into::into),
            max_age: Some(0),
            ..Default::default()
        }
    }

    fn status(cookie: &str, primary: &str, previous: &str) -> CanaryStatus {
        CanaryStatus {
            session_affinity_cookie: cookie.into(),
            primary_session_affinity_cookie: primary.into(),
            previous_session_affinity_cookie: previous.into(),
            ..Default::default()
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn the_cookies_at_each_weight() {
        let s = status("canary=abc", "primary=xyz", "canary=old");
        // No affinity, or no cookie yet: nothing.
        assert_eq!(plan(Routes::canary(10), None, &s, MINUTE), Plan::None);
        assert_eq!(plan(Routes::canary(10), Some(&sa(None)), &status("", "", ""), MINUTE), Plan::None);
        // The canary has traffic: its cookie (default Max-Age), and the primary's for one interval.
        assert_eq!(
            plan(Routes::canary(10), Some(&sa(Some("primary"))), &s, MINUTE),
            Plan::Pinned {
                canary: Pin { cookie: "canary=abc", set_cookie: "canary=abc; Max-Age=86400".into() },
                primary: Some(Pin { cookie: "primary=xyz", set_cookie: "primary=xyz; Max-Age=60".into() }),
            }
        );
        assert!(matches!(
            plan(Routes::canary(10), Some(&sa(None)), &s, MINUTE),
            Plan::Pinned { primary: None, .. }
        ));
        // Weight 0: the run's cookie, else the previous run's, is expired.
        assert_eq!(
            plan(Routes::PRIMARY, Some(&sa(None)), &s, MINUTE),
            Plan::Expire { cookie: "canary=abc", set_cookie: "canary=abc; Max-Age=-1".into() }
        );
        assert_eq!(
            plan(Routes::PRIMARY, Some(&sa(None)), &status("", "", "canary=old"), MINUTE),
            Plan::Expire { cookie: "canary=old", set_cookie: "canary=old; Max-Age=-1".into() }
        );
        assert_eq!(plan(Routes::PRIMARY, Some(&sa(None)), &status("", "", ""), MINUTE), Plan::None);
    }

    #[test]
    fn set_cookie_carries_the_configured_attributes() {
        let sa = SessionAffinity {
            cookie_name: "c".into(),
            max_age: Some(30),
            domain: Some("example.com".into()),
            http_only: Some(true),
            partitioned: Some(true),
            path: Some("/".into()),
            same_site: Some("Strict".into()),
            secure: Some(true),
            ..Default::default()
        };
        let s = status("c=v", "", "");
        let Plan::Pinned { canary, .. } = plan(Routes::canary(5), Some(&sa), &s, MINUTE) else { panic!() };
        assert_eq!(
            canary.set_cookie,
            "c=v; Max-Age=30; Domain=example.com; HttpOnly; Partitioned; Path=/; SameSite=Strict; Secure"
        );
    }
}
