//! Reconcile, finalize and the watch mappers against kube's mock client: the requests a change to
//! the controller makes on the wire, checked without a cluster.
//!
//! A scenario sets a stage (`fixtures::Scenario`: the mock API server, a test `Context` and its
//! caches, filled with `fixtures::put` as the watches would), scripts the API server (each request
//! expected in order, with its reply: `fixtures::apply`, `status_write`, `event`, ...), reconciles
//! once (`Scenario::step`, or `tick` when the reconcile may fail; the Events it queued are recorded
//! after it returns, so scripts list them after its other writes) and reads back what was sent. A
//! missing, unexpected or extra request fails the test; an empty script asserts that nothing is
//! written at all. `ApiServer::record` answers whatever comes instead, and `fixtures::feed_back`
//! puts it in the caches as the watches would: that is how the at-rest scenarios reach a settled
//! Canary.
//!
//! The scenarios assert requests, statuses and Events, not the controller's internal functions, so
//! that they survive its restructuring; the watch mappers are the exception (`watches`).

mod finalize;
mod fixtures;
mod reconcile;
mod verifier;
mod watches;
