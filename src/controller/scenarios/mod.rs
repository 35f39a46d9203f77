//! Reconcile, finalize and the watch mappers against kube's mock client: the requests a change to
//! the controller makes on the wire, checked without a cluster.
//!
//! A scenario fills the caches of a test `Context` (`fixtures::world`, `fixtures::put`), scripts the
//! API server (`verifier::ApiServer::script`: each request expected in order, with its reply),
//! reconciles, and reads back what was sent (`ApiServer::verify`, which fails the test on a missing,
//! unexpected or extra request). An empty script asserts that nothing is written at all.
//! `ApiServer::record` answers whatever comes instead, and `fixtures::feed_back` puts it in the
//! caches as the watches would: that is how the at-rest scenarios reach a settled Canary.
//!
//! The scenarios assert requests, statuses and Events, not the controller's internal functions, so
//! that they survive its restructuring; the watch mappers are the exception (`watches`).

mod finalize;
mod fixtures;
mod reconcile;
mod verifier;
mod watches;
