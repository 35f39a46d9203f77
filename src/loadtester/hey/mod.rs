//! The built-in `hey`: the command line Canaries written for Flagger pass to the load tester
//! (`hey -z 1m -q 10 -c 2 http://...`), parsed and run natively, with no external binary.

mod generator;
mod histogram;
mod parse;
mod words;

pub use generator::{GeneratorError, Outcome, RequestObserver, RunReport, USER_AGENT_TOKEN, run};
pub use histogram::LatencyHistogram;
pub(crate) use parse::parse_go_bool;
pub use parse::{HeyError, HeySpec, SUPPORTED_FLAGS, Stop, parse_hey_args};
pub use words::{WordsError, split_words};
