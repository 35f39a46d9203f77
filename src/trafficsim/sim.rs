//! The whole simulator state: the configured Istio workloads and NGINX ingresses. Pure; the HTTP
//! layer holds it behind a mutex and passes the clock in.

use std::collections::BTreeMap;
use std::time::Instant;

use thiserror::Error;

use super::api::{IstioSpec, IstioView, NginxSpec, NginxView};
use super::exposition;
use super::model::{DEFAULT_BUCKETS_US, ISTIO_BUCKETS_US, Profile, RealRequest, SpecError, Traffic};

/// Most Istio workloads, and separately most NGINX ingresses, held at once (the scale benchmark's
/// metrics-heavy profile configures one per Canary, up to 1,000 and more).
pub const MAX_STREAMS: usize = 2048;
const MAX_NAME_LEN: usize = 253;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum SimError {
    #[error(
        "{what} {value:?} is not a Kubernetes name (1-253 of a-z, 0-9, '-', '.', alphanumeric at both ends)"
    )]
    BadName { what: &'static str, value: String },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("at most {MAX_STREAMS} {kind} can be configured; DELETE some first")]
    Full { kind: &'static str },
}

/// `namespace/name` of a workload or ingress. Both parts are checked, so they never need escaping in
/// label values or URLs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    namespace: String,
    name: String,
}

fn is_k8s_name(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.chars().all(ok_char)
        && alnum(s.chars().next())
        && alnum(s.chars().next_back())
}

impl Key {
    pub fn new(namespace: &str, name: &str, what: &'static str) -> Result<Self, SimError> {
        if !is_k8s_name(namespace) {
            return Err(SimError::BadName { what: "namespace", value: namespace.to_owned() });
        }
        if !is_k8s_name(name) {
            return Err(SimError::BadName { what, value: name.to_owned() });
        }
        Ok(Self { namespace: namespace.to_owned(), name: name.to_owned() })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Which stream a real request was decided on, so that it is recorded on the same one even if the
/// workload was deleted and re-created while the request slept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    pub request: RealRequest,
}

#[derive(Debug)]
pub(crate) struct IstioWorkload {
    generation: u64,
    pub(crate) traffic: Traffic,
}

#[derive(Debug)]
pub(crate) struct NginxIngress {
    generation: u64,
    pub(crate) canary: Traffic,
    pub(crate) primary: Traffic,
}

impl NginxIngress {
    /// The `canary` label of canary-served series: NGINX names the canary backend
    /// `<namespace>-<service>-<port>`, and Flagger's canary service is `<name>-canary`.
    pub(crate) fn canary_label(key: &Key) -> String {
        format!("{}-{}-canary-80", key.namespace, key.name)
    }
}

/// The metric shapes exported for the Istio workloads (NGINX ingresses always export theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Shape {
    /// `istio_requests_total`, `istio_request_duration_milliseconds`.
    Istio,
    /// `http_request_duration_seconds`.
    Generic,
    /// Linkerd's `response_total`, `response_latency_ms`.
    Linkerd,
    /// Open Service Mesh's `osm_request_total`, `osm_request_duration_ms`.
    Osm,
}

impl Shape {
    pub const ALL: [Shape; 4] = [Shape::Istio, Shape::Generic, Shape::Linkerd, Shape::Osm];
}

#[derive(Debug)]
pub struct Sim {
    pub(crate) istio: BTreeMap<Key, IstioWorkload>,
    pub(crate) nginx: BTreeMap<Key, NginxIngress>,
    pub(crate) shapes: Vec<Shape>,
    next_generation: u64,
}

impl Default for Sim {
    fn default() -> Self {
        Self::with_shapes(&Shape::ALL)
    }
}

impl Sim {
    pub fn new() -> Self {
        Self::default()
    }

    /// A simulator whose Istio workloads export only `shapes` (each one about 50 series per
    /// workload: at a thousand workloads, what Prometheus scrapes matters).
    pub fn with_shapes(shapes: &[Shape]) -> Self {
        let mut shapes = shapes.to_vec();
        shapes.sort();
        shapes.dedup();
        Self { istio: BTreeMap::new(), nginx: BTreeMap::new(), shapes, next_generation: 0 }
    }

    pub(crate) fn exports(&self, shape: Shape) -> bool {
        self.shapes.contains(&shape)
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Creates or updates a workload; `true` when it was created.
    pub fn put_istio(
        &mut self,
        key: Key,
        spec: &IstioSpec,
        now: Instant,
    ) -> Result<(bool, IstioView), SimError> {
        let profile = Profile::new(spec.rps, spec.error_rate, spec.latency_ms)?;
        if let Some(w) = self.istio.get_mut(&key) {
            w.traffic.set_profile(profile, now)?;
            return Ok((false, istio_view(&key, w)));
        }
        if self.istio.len() >= MAX_STREAMS {
            return Err(SimError::Full { kind: "Istio workloads" });
        }
        let w = IstioWorkload {
            generation: self.generation(),
            traffic: Traffic::new(profile, &ISTIO_BUCKETS_US, now)?,
        };
        let view = istio_view(&key, &w);
        self.istio.insert(key, w);
        Ok((true, view))
    }

    pub fn get_istio(&mut self, key: &Key, now: Instant) -> Option<IstioView> {
        let w = self.istio.get_mut(key)?;
        w.traffic.advance(now);
        Some(istio_view(key, w))
    }

    pub fn list_istio(&mut self, now: Instant) -> Vec<IstioView> {
        self.istio
            .iter_mut()
            .map(|(key, w)| {
                w.traffic.advance(now);
                istio_view(key, w)
            })
            .collect()
    }

    pub fn delete_istio(&mut self, key: &Key) -> bool {
        self.istio.remove(key).is_some()
    }

    pub fn put_nginx(
        &mut self,
        key: Key,
        spec: &NginxSpec,
        now: Instant,
    ) -> Result<(bool, NginxView), SimError> {
        let canary = Profile::new(spec.rps, spec.error_rate, spec.latency_ms)?;
        let primary = canary.healthy_at(spec.primary_rps)?;
        if let Some(i) = self.nginx.get_mut(&key) {
            // Both streams see the same latencies, so checking one for bucket room covers both and
            // their bucket sets stay identical.
            i.canary.set_profile(canary, now)?;
            i.primary.set_profile(primary, now)?;
            return Ok((false, nginx_view(&key, i)));
        }
        if self.nginx.len() >= MAX_STREAMS {
            return Err(SimError::Full { kind: "NGINX ingresses" });
        }
        let i = NginxIngress {
            generation: self.generation(),
            canary: Traffic::new(canary, &DEFAULT_BUCKETS_US, now)?,
            primary: Traffic::new(primary, &DEFAULT_BUCKETS_US, now)?,
        };
        let view = nginx_view(&key, &i);
        self.nginx.insert(key, i);
        Ok((true, view))
    }

    pub fn get_nginx(&mut self, key: &Key, now: Instant) -> Option<NginxView> {
        let i = self.nginx.get_mut(key)?;
        i.canary.advance(now);
        i.primary.advance(now);
        Some(nginx_view(key, i))
    }

    pub fn list_nginx(&mut self, now: Instant) -> Vec<NginxView> {
        self.nginx
            .iter_mut()
            .map(|(key, i)| {
                i.canary.advance(now);
                i.primary.advance(now);
                nginx_view(key, i)
            })
            .collect()
    }

    pub fn delete_nginx(&mut self, key: &Key) -> bool {
        self.nginx.remove(key).is_some()
    }

    /// Decides a real request to an Istio workload; `None` if it is not configured.
    pub fn begin_istio_request(&mut self, key: &Key) -> Option<Ticket> {
        let w = self.istio.get_mut(key)?;
        Some(Ticket { generation: w.generation, request: w.traffic.next_real() })
    }

    pub fn finish_istio_request(&mut self, key: &Key, ticket: Ticket) {
        if let Some(w) = self.istio.get_mut(key).filter(|w| w.generation == ticket.generation) {
            w.traffic.record_real(ticket.request);
        }
    }

    /// Decides a real canary-served request to an NGINX ingress; `None` if it is not configured.
    pub fn begin_nginx_request(&mut self, key: &Key) -> Option<Ticket> {
        let i = self.nginx.get_mut(key)?;
        Some(Ticket { generation: i.generation, request: i.canary.next_real() })
    }

    pub fn finish_nginx_request(&mut self, key: &Key, ticket: Ticket) {
        if let Some(i) = self.nginx.get_mut(key).filter(|i| i.generation == ticket.generation) {
            i.canary.record_real(ticket.request);
        }
    }

    /// Brings every counter up to `now` and renders the Prometheus text exposition.
    pub fn scrape(&mut self, now: Instant) -> String {
        for w in self.istio.values_mut() {
            w.traffic.advance(now);
        }
        for i in self.nginx.values_mut() {
            i.canary.advance(now);
            i.primary.advance(now);
        }
        exposition::render(self)
    }
}

fn istio_view(key: &Key, w: &IstioWorkload) -> IstioView {
    let t = &w.traffic;
    IstioView {
        namespace: key.namespace.clone(),
        workload: key.name.clone(),
        rps: t.profile().rps(),
        error_rate: t.profile().error_rate(),
        latency_ms: t.profile().latency_ms(),
        requests_total: t.ok().count + t.errors().count,
        errors_total: t.errors().count,
        real_requests: t.real_total(),
    }
}

fn nginx_view(key: &Key, i: &NginxIngress) -> NginxView {
    let c = &i.canary;
    NginxView {
        namespace: key.namespace.clone(),
        ingress: key.name.clone(),
        canary: NginxIngress::canary_label(key),
        rps: c.profile().rps(),
        error_rate: c.profile().error_rate(),
        latency_ms: c.profile().latency_ms(),
        primary_rps: i.primary.profile().rps(),
        requests_total: c.ok().count + c.errors().count,
        errors_total: c.errors().count,
        primary_requests_total: i.primary.ok().count + i.primary.errors().count,
        real_requests: c.real_total(),
    }
}
