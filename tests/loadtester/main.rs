//! veer-loadtester against real HTTP servers on 127.0.0.1. Timings are printed (run with
//! `--nocapture` to see them), never asserted tightly.

mod generator;
mod support;
