//! Reconcile, finalize and the watch mappers against kube's mock client: the requests a change to
//! the controller would make on the wire, checked without a cluster (see `verifier`).

mod finalize;
mod fixtures;
mod reconcile;
mod verifier;
mod watches;
