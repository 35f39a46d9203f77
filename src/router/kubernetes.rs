//! The `kubernetes` provider (`flagger-behaviour.md` §3.4): no routing object and no traffic
//! shifting. The apex Service selects the primary pods and `<svc>-canary` the canary pods, so the
//! only strategy is Blue/Green: the canary is tested through `<svc>-canary` for `iterations` checks
//! (10 when unset, see `analysis::Params`), then promoted. Mirroring is not possible.
//!
//! With no object to read weights back from, the controller reports the routes the status stands
//! for ([`routes`]), which is what the decision core set.

use crate::{
    analysis::{Params, Routes, intended_routes},
    api::CanaryStatus,
};

/// The routes of a `kubernetes`-provider Canary: those its status stands for.
pub fn routes(status: &CanaryStatus, params: &Params) -> Routes {
    intended_routes(status, params)
}
