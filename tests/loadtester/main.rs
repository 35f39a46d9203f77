//! veer-loadtester against real HTTP servers on 127.0.0.1: the load generator, the API, and
//! the binary. Timings are printed (run with `--nocapture` to see them), never asserted tightly.

mod api;
mod auth;
mod binary;
mod generator;
mod support;
